/**
 * Owns the actor's replies on their way to the gateway: the one way a user op is answered (at most
 * once), and the frames they leave in (one `send` per flush). Relies on PendingOp and protocol/ops.
 * Must not decide answers: the paths (read, write, reap, deadlines, health) choose each reply.
 *
 *   answer(op, reply) / push(reply) ─> replies[] ─> flush() ─> send(one frame)
 *
 * What must stay true: an op is answered once (`op.answered`); its value is freed once it cannot
 * run again (no batch holds it, or that batch has finished); a frame of GET replies is cut at
 * about OUTBOX_FLUSH_BYTES of values (countValueBytes), so one batch never packs gigabytes.
 */
import type { Reply } from '../protocol/ops';
import type { PendingOp } from './pending-op';

export type SendReplies = (replies: Reply[]) => void;

/** Reply frames to the gateway are cut at about this many value bytes. */
const OUTBOX_FLUSH_BYTES = 4 * 1024 * 1024;

export class Outbox {
  private replies: Reply[] = [];
  private bytes = 0;

  constructor(private readonly send: SendReplies) {}

  /** A reply to no PendingOp (a refusal at intake, a script run outside MySQL). */
  push(reply: Reply): void {
    this.replies.push(reply);
  }

  /** The one way a user op is answered: at most once, and its value freed once it cannot run again. */
  answer(op: PendingOp, reply: Reply): void {
    if (op.answered) return;
    op.answered = true;
    if (!op.batch || op.batch.finished) op.value = null;
    this.replies.push(reply);
  }

  /**
   * Many GETs of one large value share one row but each reply carries a copy: after `n` more value
   * bytes are queued, send once a few MiB are waiting.
   */
  countValueBytes(n: number): void {
    this.bytes += n;
    if (this.bytes >= OUTBOX_FLUSH_BYTES) this.flush();
  }

  flush(): void {
    if (this.replies.length === 0) return;
    const out = this.replies;
    this.replies = [];
    this.bytes = 0;
    this.send(out);
  }
}
