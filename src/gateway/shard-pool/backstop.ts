/**
 * Owns the gateway's deadline backstop: whatever is still outstanding at opDeadlineMs is answered
 * here, whether or not the shard's actor ever answers. Relies on ShardHandle (pending, submit
 * order), Redirects (re-routed requests) and the pool's release. Must not admit or send: it only
 * answers and releases.
 *
 * The actor answers every op within its own, shorter deadline (actor-config.ts: opDeadlineMs
 * minus a margin for the hop and timer lateness), so this answer is for a stuck actor thread. Per
 * shard, oldest first from its submit order: a read gets SHARD_UNAVAILABLE, a write
 * OUTCOME_UNKNOWN (the actor still holds it and may apply it, in order: a later write to its key
 * waits behind it there). So "every op is answered within KVSQL_OP_DEADLINE_MS" does not depend
 * on the actor. A re-routed request counts from its first submit time, wherever it now waits.
 */
import { errorReply, isReadOp, type Reply } from '../../protocol/ops';
import type { Redirects } from './redirects';
import type { Pending, ShardHandle } from './worker-handle';

/** Resolution of the deadline backstop. */
export const TICK_MS = 50;

/** Drops `p` (s.pending's entry for `id`) from the shard's queue: it is answered or moves elsewhere. */
export type Release = (s: ShardHandle, id: number, p: Pending) => void;

export class Backstop {
  constructor(
    private readonly opDeadlineMs: number,
    private readonly redirects: Redirects,
    private readonly release: Release,
  ) {}

  /** On the pool's tick: answer the shard's requests that reached the op deadline, oldest first. */
  sweepShard(s: ShardHandle, now: number): void {
    const ring = s.submitted;
    for (let signed = ring.peek(); signed !== undefined; signed = ring.peek()) {
      const id = Math.abs(signed);
      const p = s.pending.get(id);
      if (p !== undefined && now - p.at < this.opDeadlineMs - TICK_MS) break;
      ring.shift();
      if (p === undefined) continue;
      this.release(s, id, p);
      p.target.deliver(this.deadlineReply(id, signed < 0, s.index));
    }
  }

  /**
   * Re-routed requests, by their first submit time. One waiting for a map refresh was not
   * applied: every refusal is decided before anything is written, so only a request now sent
   * to a shard can be in doubt.
   */
  sweepRedirected(now: number): void {
    const redirected = this.redirects.redirected;
    for (const [id, e] of redirected) {
      if (now - e.at < this.opDeadlineMs - TICK_MS) continue;
      const s = e.shard;
      const p = s === null ? undefined : s.pending.get(id);
      if (s !== null && p === undefined) continue;
      this.redirects.forget(e.req);
      if (s !== null) this.release(s, id, p!);
      else redirected.delete(id);
      e.target.deliver(
        s === null
          ? errorReply(
              id,
              'KV_ERR_SLOT_MOVING',
              `the slot of this key is moving and no shard took it within the op deadline (${this.opDeadlineMs} ms); the operation was not applied`,
            )
          : this.deadlineReply(id, !isReadOp(e.req[1]), s.index),
      );
    }
  }

  /** The op-deadline answer of a request that was sent (`shard`) or is waiting to be re-sent. */
  private deadlineReply(id: number, write: boolean, shard: number | null): Reply {
    const where = shard === null ? 'the shard owning its slot' : `shard ${shard}`;
    return write
      ? errorReply(
          id,
          'KV_ERR_OUTCOME_UNKNOWN',
          `${where} gave no answer within the op deadline (${this.opDeadlineMs} ms); the write may or may not have been applied`,
        )
      : errorReply(id, 'KV_ERR_SHARD_UNAVAILABLE', `${where} gave no answer within the op deadline (${this.opDeadlineMs} ms)`);
  }
}
