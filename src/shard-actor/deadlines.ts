/**
 * Owns the op deadline of one shard actor: the user ops admitted and not yet past the sweep, the
 * batches running, and giving up on a batch (abandon). Relies on ActorState (outbox, clock,
 * stats) and PendingOp. Must not start work or decide health: the sweep reports a stalled batch
 * and the actor asks the health probe.
 *
 * Every user op gets `deadline = arrival + opDeadlineMs` and is appended to `admitted` (arrival
 * order = deadline order). A DEADLINE_TICK_MS sweep pops its head: an op past its deadline and
 * still unanswered is answered there and then, however MySQL behaves:
 *
 *   admitted: [ popped ... | head: oldest deadline -> ... newest ]
 *
 *   waiting (key queue or ready queue)  -> 503 SHARD_UNAVAILABLE, marked answered, pruned before
 *                                          its batch starts: never applied
 *   in a read batch                     -> the batch is abandoned: 503 SHARD_UNAVAILABLE
 *   in a write batch, COMMIT not sent   -> abandoned: 503 SHARD_UNAVAILABLE; COMMIT is never
 *                                          sent (TxControl), the connection is destroyed: rollback
 *   in a write batch, COMMIT sent       -> abandoned: 500 OUTCOME_UNKNOWN; the connection is
 *                                          destroyed and the batch's keys STAY held in the
 *                                          scheduler until the server has settled that
 *                                          transaction (write-path.ts, settle), so no later
 *                                          write to those keys can overtake a COMMIT that may
 *                                          still apply
 *
 * An abandoned batch frees its slot at once (its statement may never return); the path that ran
 * it sees `race` resolve to null.
 */
import { errorReply } from '../protocol/ops';
import type { ActorState, Attempted } from './actor-state';
import { Fifo } from '../protocol/fifo';
import type { Batch, PendingOp } from './pending-op';
import { newTxControl } from './shard-store';

/** Resolution of the op deadline sweep. */
export const DEADLINE_TICK_MS = 50;
/** A batch running longer than this triggers a health probe (a hung server is found early). */
const STALL_PROBE_MS = 1000;

export class BatchWatch {
  /** Every user op accepted and not yet popped by the deadline sweep, in arrival order. */
  private readonly admitted = new Fifo<PendingOp>();
  private readonly running = new Set<Batch>();

  constructor(private readonly s: ActorState) {}

  /** A user op accepted: its deadline (already set) is watched from now on. */
  admit(op: PendingOp): void {
    this.admitted.push(op);
  }

  begin(kind: Batch['kind'], ops: PendingOp[]): Batch {
    let giveUp!: () => void;
    const gaveUp = new Promise<null>((resolve) => (giveUp = () => resolve(null)));
    const b: Batch = { kind, ops, ctl: newTxControl(), startedAt: this.s.localClock(), finished: false, gaveUp, giveUp };
    for (const op of ops) op.batch = b;
    this.running.add(b);
    return b;
  }

  end(b: Batch): void {
    b.finished = true;
    this.running.delete(b);
    for (const op of b.ops) op.batch = null;
  }

  /** The batch's work, or null as soon as it is abandoned (its work may never settle). */
  race<T>(b: Batch, work: Promise<Attempted<T>>): Promise<Attempted<T> | null> {
    return Promise.race([work, b.gaveUp]);
  }

  /**
   * Gives up on a running batch: answers its ops now (see the header for which answer), makes
   * sure COMMIT is never sent if it was not, and destroys its connection.
   */
  abandon(b: Batch, why: string): void {
    if (b.finished || b.ctl.abandoned) return;
    b.ctl.abandoned = true;
    b.ctl.cut?.();
    this.s.stats.abandoned++;
    const unknown = b.kind === 'write' && b.ctl.phase === 'commit';
    const code = unknown ? 'KV_ERR_OUTCOME_UNKNOWN' : 'KV_ERR_SHARD_UNAVAILABLE';
    const message = unknown
      ? `shard ${this.s.cfg.shard}: ${why} after COMMIT was sent; the write may or may not have been applied`
      : `shard ${this.s.cfg.shard}: ${why}; the operation was not applied`;
    for (const op of b.ops) this.s.out.answer(op, errorReply(op.id, code, message));
    this.s.out.flush();
    this.s.log('warn', 'batch abandoned', {
      why,
      kind: b.kind,
      ops: b.ops.length,
      commitSent: b.ctl.phase === 'commit',
      ageMs: this.s.localClock() - b.startedAt,
    });
    b.giveUp();
  }

  /** Abandons every running batch (the shard was found down). */
  abandonAll(why: string): void {
    for (const b of [...this.running]) this.abandon(b, why);
  }

  /**
   * Every DEADLINE_TICK_MS: answer what passed its deadline. True when a batch has run longer
   * than STALL_PROBE_MS (the caller probes the shard).
   */
  sweep(): boolean {
    const s = this.s;
    const now = s.localClock();
    for (let op = this.admitted.peek(); op !== undefined; op = this.admitted.peek()) {
      if (!op.answered && op.deadline! > now) break;
      this.admitted.shift();
      if (op.answered) continue;
      if (op.batch) this.abandon(op.batch, `no answer within the op deadline (${s.cfg.opDeadlineMs} ms)`);
      else
        s.out.answer(
          op,
          errorReply(
            op.id,
            'KV_ERR_SHARD_UNAVAILABLE',
            `shard ${s.cfg.shard}: not started within the op deadline (${s.cfg.opDeadlineMs} ms); the operation was not applied`,
          ),
        );
    }
    s.out.flush();
    for (const b of this.running) if (now - b.startedAt > STALL_PROBE_MS) return true;
    return false;
  }
}
