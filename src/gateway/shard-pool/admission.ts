/**
 * Owns the gateway's bound on each shard's outstanding work: which new op is refused 503 at once
 * (shard down, queue full, too many value bytes, or too long a wait), and the service rate that
 * the time bound estimates from. Relies on ShardHandle (pending, bytes, submit order, rate
 * fields). Must not send or answer anything: the pool asks, counts the refusal and delivers it.
 *
 *   submit ─> shard down?                                              -> 503 SHARD_UNAVAILABLE
 *             pending >= queueLimit, or bytes + value > queueBytes
 *             (a lone oversized value still passes)                    -> 503 OVERLOADED
 *             oldest outstanding op waited > queueWaitMs AND
 *             pending / rate > queueWaitMs                             -> 503 OVERLOADED
 *
 * Time bound: an op is refused when its shard's oldest outstanding op has waited longer than
 * queueWaitMs AND the shard's backlog would take longer than queueWaitMs to serve at its recently
 * measured rate (outstanding / ops completed per second of busy time, i.e. with work outstanding;
 * an EWMA over RATE_WINDOW_MS windows with at least half a window of busy time). The first alone
 * would let one slow op (a lock wait) close the whole shard; the second alone would refuse a
 * burst after a quiet spell, when the measured rate is low only because little was offered. A
 * hung shard meets both at once (no completions: the rate decays).
 */
import { errorReply, type Reply } from '../../protocol/ops';
import type { ShardHandle } from './worker-handle';

/**
 * The service rate is sampled over windows this long (completions come in batches, so a 50 ms
 * tick would see bursts and gaps) and smoothed with weight RATE_ALPHA for the newest sample
 * (a time constant of about 0.7 s).
 */
const RATE_WINDOW_MS = 250;
const RATE_ALPHA = 0.3;

export interface AdmissionLimits {
  /** Outstanding ops per shard. */
  queueLimit: number;
  /** Value bytes of pending PUTs per shard before 503 (a lone oversized PUT still passes). */
  queueBytes: number;
  /** The time bound (0: off). */
  queueWaitMs: number;
}

export class Admission {
  constructor(private readonly limits: AdmissionLimits) {}

  /** The refusal of an op for `shard` carrying `value` by health, count and bytes; null: admitted so far. */
  refusal(shard: ShardHandle, value: Uint8Array | null): Reply | null {
    if (!shard.up) return errorReply(0, 'KV_ERR_SHARD_UNAVAILABLE', `shard ${shard.index} is unavailable`);
    if (
      shard.pending.size >= this.limits.queueLimit ||
      (value !== null && value.length > 0 && shard.bytes + value.length > this.limits.queueBytes && shard.bytes > 0)
    ) {
      return errorReply(0, 'KV_ERR_OVERLOADED', `shard ${shard.index} has ${shard.pending.size} operations queued`);
    }
    return null;
  }

  /** The refusal of an op for `shard` by the time bound at `now`; null: admitted. */
  waitRefusal(shard: ShardHandle, now: number): Reply | null {
    const queueWaitMs = this.limits.queueWaitMs;
    if (queueWaitMs > 0 && shard.pending.size > 0) {
      const waitMs = this.estimatedWaitMs(shard, now);
      if (waitMs > queueWaitMs) {
        return errorReply(
          0,
          'KV_ERR_OVERLOADED',
          `shard ${shard.index}: estimated queue wait ${waitMs === Infinity ? 'unbounded' : `${Math.round(waitMs)} ms`} exceeds ${queueWaitMs} ms`,
        );
      }
    }
    return null;
  }

  /**
   * How long a new op would wait on this shard, or 0 when it need not be refused: only when the
   * oldest outstanding op has waited longer than queueWaitMs is the backlog estimated, as
   * outstanding ops / measured rate (see the header).
   */
  private estimatedWaitMs(s: ShardHandle, now: number): number {
    const ring = s.submitted;
    let head = ring.peek();
    let oldest = head === undefined ? undefined : s.pending.get(Math.abs(head));
    while (head !== undefined && oldest === undefined) {
      ring.shift();
      head = ring.peek();
      oldest = head === undefined ? undefined : s.pending.get(Math.abs(head));
    }
    // No measurement yet (a fresh gateway): the count and byte bounds still hold.
    if (oldest === undefined || now - oldest.at <= this.limits.queueWaitMs || s.rate === 0) return 0;
    return (s.pending.size / s.rate) * 1000;
  }

  /**
   * On the pool's tick: close the shard's rate window once it is RATE_WINDOW_MS old. Rate =
   * completions per ms of *busy* time (work outstanding; counted exactly at the 0 <-> non-0
   * transitions), so idle gaps do not dilute it: what the shard serves while it has work.
   */
  measure(s: ShardHandle, now: number): void {
    const span = now - s.windowStart;
    if (span < RATE_WINDOW_MS) return;
    if (s.pending.size > 0) {
      s.busyMs += now - s.busySince;
      s.busySince = now;
    }
    if (s.busyMs >= RATE_WINDOW_MS / 2) {
      const sample = (s.completed * 1000) / s.busyMs;
      s.rate = s.rate === 0 ? sample : s.rate + RATE_ALPHA * (sample - s.rate);
    }
    s.windowStart = now;
    s.busyMs = 0;
    s.completed = 0;
  }
}
