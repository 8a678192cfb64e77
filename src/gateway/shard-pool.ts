/**
 * Owns the gateway's side of the shard actors: one worker thread per shard, the requests waiting
 * for replies, and the per-shard bound on outstanding work. Relies on protocol (slot map, ops,
 * port messages). Must not touch HTTP or WebSocket objects: a reply goes to a `ReplyTarget`.
 *
 *   submit(target, request) ─> shard = slotMap.shardOf(key)
 *        shard down, or outstanding >= queueLimit, or bytes >= queueBytes,
 *        or estimated wait > queueWaitMs?                    -> target gets 503 at once
 *        else frame[shard].push(request); one postMessage per shard per event-loop turn
 *   worker reply frame ─> pending.get(id).deliver(reply)
 *   every TICK_MS: an op outstanding for opDeadlineMs is answered here (backstop, see below)
 *
 * Deadline: the actor answers every op within `actorDeadline` (opDeadlineMs minus a margin for
 * the hop and timer lateness). The gateway keeps, per shard, a ring of (id, submit time) in
 * submit order and answers whatever is still outstanding at opDeadlineMs itself: a read with
 * SHARD_UNAVAILABLE, a write with OUTCOME_UNKNOWN (the actor still holds it and may apply it, in
 * order: a later write to its key waits behind it there). That holds even if the actor's thread
 * is stuck, so "every op is answered within KVSQL_OP_DEADLINE_MS" does not depend on the actor.
 *
 * Time bound on queueing: an op is refused when its shard's oldest outstanding op has waited
 * longer than queueWaitMs AND the shard's backlog would take longer than queueWaitMs to serve at
 * its recently measured rate (outstanding / ops completed per second of busy time, i.e. with
 * work outstanding; an EWMA over 250 ms windows with at least 125 ms of busy time). The first alone would let one slow op (a lock wait) close the whole shard;
 * the second alone would refuse a burst after a quiet spell, when the measured rate is low only
 * because little was offered. A hung shard meets both at once (no completions: the rate decays).
 */
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { ERRORS, RETRY_AFTER_SECONDS, type ErrorData } from '../protocol/errors';
import { isReadOp, type Reply, type Request } from '../protocol/ops';
import type { ActorConfig, FromActor, ShardStats, ToActor } from '../protocol/port-messages';
import { SlotMap } from '../protocol/slot-map';
import { shardNodes, type Config } from './config';
import { mysqlTls } from './tls';

export interface ReplyTarget {
  /** The op it waits for: a crashed actor's reads are safely retryable, its writes are not. */
  readonly op: number;
  deliver(reply: Reply): void;
}

export interface PoolLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** An actor's error data (errLog) as an Error again, so the logger prints its type and stack. */
function reviveErr(data: unknown): Error {
  const d = data as { type?: string; message?: string; code?: string; stack?: string };
  const err = new Error(d.message ?? String(data));
  err.name = d.type ?? 'Error';
  if (d.stack !== undefined) err.stack = d.stack;
  if (d.code !== undefined) (err as { code?: string }).code = d.code;
  return err;
}

const ACTOR_MAIN = join(__dirname, '..', 'shard-actor', 'main.js');

/** Delay before a crashed actor is started again (its keys get 503 meanwhile). */
const RESPAWN_DELAY_MS = 1000;
/** Resolution of the deadline backstop. */
const TICK_MS = 50;
/**
 * The service rate is sampled over windows this long (completions come in batches, so a 50 ms
 * tick would see bursts and gaps) and smoothed with weight RATE_ALPHA for the newest sample
 * (a time constant of about 0.7 s).
 */
const RATE_WINDOW_MS = 250;
const RATE_ALPHA = 0.3;

/** The actor's own deadline: a little under the gateway's, so its precise answer comes first. */
export function actorDeadlineMs(opDeadlineMs: number): number {
  return opDeadlineMs - Math.min(500, Math.floor(opDeadlineMs / 4));
}

/**
 * Submit order of one shard's requests: (id, time), consumed from the head; a write's id is
 * stored negated. Entries whose request was answered are skipped when they reach the head.
 *
 *   ids/ats: [ consumed ... | head -> oldest outstanding (or answered), ..., newest ]
 */
class SubmitRing {
  private ids: number[] = [];
  private ats: number[] = [];
  private head = 0;
  push(signedId: number, at: number): void {
    this.ids.push(signedId);
    this.ats.push(at);
  }
  get empty(): boolean {
    return this.head >= this.ids.length;
  }
  peekId(): number {
    return this.ids[this.head];
  }
  peekAt(): number {
    return this.ats[this.head];
  }
  shift(): void {
    this.head++;
    if (this.head === this.ids.length) {
      this.ids = [];
      this.ats = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.ids.length) {
      this.ids = this.ids.slice(this.head);
      this.ats = this.ats.slice(this.head);
      this.head = 0;
    }
  }
}

class ShardHandle {
  worker: Worker;
  /** Requests sent to this shard and not yet answered, by id. */
  readonly pending = new Map<number, ReplyTarget>();
  /** Value bytes of the pending PUTs, by id (only those with a value). */
  readonly pendingBytes = new Map<number, number>();
  bytes = 0;
  up = true;
  lastError: ErrorData | undefined;
  frame: Request[] = [];
  /** Set once stop() began: an exit is then expected, not a crash. */
  stopping = false;
  /** The current worker has exited (crashed, or failed to start) and no new one runs yet. */
  exited = false;
  readonly submitted = new SubmitRing();
  /** Replies received since the last tick, and the service rate (ops/s) measured from them. */
  completed = 0;
  rate = 0;
  /** The current rate window: when it began, and for how many ms of it the shard had work. */
  windowStart = Date.now();
  busyMs = 0;
  /** Since when the shard has had work outstanding (meaningful while pending.size > 0). */
  busySince = 0;
  constructor(
    readonly index: number,
    readonly cfg: ActorConfig,
  ) {
    this.worker = this.spawn();
  }
  spawn(): Worker {
    return new Worker(ACTOR_MAIN, { workerData: this.cfg, name: `shard-${this.index}` });
  }
}

export class ShardPool {
  readonly slotMap: SlotMap;
  private readonly shards: ShardHandle[];
  private nextId = 1;
  private totalOutstanding = 0;
  /** Operations answered 503 here without reaching an actor (queue full or shard down). */
  rejected = 0;
  private flushScheduled = false;
  private readonly packr = new Packr({ useRecords: false, moreTypes: false });
  private statsWaiters = new Map<number, (s: ShardStats) => void>();
  private nextStatsId = 1;
  private readonly queueLimit: number;
  /** Value bytes of pending PUTs per shard before 503 (a lone oversized PUT still passes). */
  private readonly queueBytes: number;
  /** Called when the last outstanding request is answered (for graceful shutdown). */
  onIdle: (() => void) | null = null;
  private readonly opDeadlineMs: number;
  private readonly queueWaitMs: number;
  private readonly ticker: NodeJS.Timeout;

  private constructor(config: Readonly<Config>, urls: string[], private readonly log: PoolLogger) {
    this.queueLimit = config.queueLimit;
    this.queueBytes = config.queueBytes;
    this.opDeadlineMs = config.opDeadlineMs;
    this.queueWaitMs = config.queueWaitMs;
    this.ticker = setInterval(this.tick, TICK_MS);
    this.ticker.unref();
    this.slotMap = SlotMap.even(urls.length);
    this.shards = urls.map(
      (url, i) =>
        new ShardHandle(i, {
          shard: i,
          shardCount: urls.length,
          url,
          nodes: shardNodes(url),
          slotRanges: this.slotMap.rangesOf(i),
          batching: config.batching,
          maxBatchOps: config.maxBatchOps,
          maxBatchBytes: config.maxBatchBytes,
          readsInFlight: config.readsInFlight,
          writesInFlight: config.writesInFlight,
          queryTimeoutMs: config.queryTimeoutMs,
          opDeadlineMs: actorDeadlineMs(config.opDeadlineMs),
          maxRetries: config.maxRetries,
          tls: mysqlTls(config),
          expiry: {
            enabled: config.expiry,
            tickMs: config.expiryTickMs,
            horizonMs: config.expiryHorizonMs,
            reapBatch: config.reapBatch,
            reapsInFlight: config.reapsInFlight,
            maxWheelKeys: config.maxWheelKeys,
            lockRetryMs: config.expiryLockRetryMs,
          },
        }),
    );
  }

  /** Start one actor per shard URL; resolves when every actor has initialised its shard. */
  static async start(config: Readonly<Config>, urls: string[], log: PoolLogger): Promise<ShardPool> {
    const pool = new ShardPool(config, urls, log);
    try {
      await Promise.all(pool.shards.map((s) => pool.wire(s)));
    } catch (err) {
      clearInterval(pool.ticker);
      await Promise.all(pool.shards.map((s) => s.worker.terminate()));
      throw err;
    }
    return pool;
  }

  get shardCount(): number {
    return this.shards.length;
  }

  /** Requests sent and not yet answered, over all shards. */
  get outstanding(): number {
    return this.totalOutstanding;
  }

  /** The worker thread of one shard (operations and tests: e.g. to observe a crash and restart). */
  workerOf(shard: number): Worker {
    return this.shards[shard].worker;
  }

  health(): Array<{ shard: number; up: boolean; error?: ErrorData }> {
    return this.shards.map((s) => ({ shard: s.index, up: s.up, error: s.up ? undefined : s.lastError }));
  }

  /** True when some shard is a group of nodes (Galera), whose actor reports node states. */
  get hasGroups(): boolean {
    return this.shards.some((s) => s.cfg.nodes.length > 1);
  }

  queueDepths(): number[] {
    return this.shards.map((s) => s.pending.size);
  }

  /** Route one request. The target is answered exactly once, possibly synchronously. */
  submit(target: ReplyTarget, op: Request[1], key: Uint8Array, value: Uint8Array | null, ttlMs: number, flags: number, ifVersion: number): void {
    const shard = this.shards[this.slotMap.shardOf(key)];
    if (!shard.up) {
      this.rejected++;
      target.deliver([0, 503, 'KV_ERR_SHARD_UNAVAILABLE', `shard ${shard.index} is unavailable`, RETRY_AFTER_SECONDS]);
      return;
    }
    if (shard.pending.size >= this.queueLimit || (value !== null && value.length > 0 && shard.bytes + value.length > this.queueBytes && shard.bytes > 0)) {
      this.rejected++;
      target.deliver([0, 503, 'KV_ERR_OVERLOADED', `shard ${shard.index} has ${shard.pending.size} operations queued`, RETRY_AFTER_SECONDS]);
      return;
    }
    const now = Date.now();
    if (this.queueWaitMs > 0 && shard.pending.size > 0) {
      const waitMs = this.estimatedWaitMs(shard, now);
      if (waitMs > this.queueWaitMs) {
        this.rejected++;
        target.deliver([0, 503, 'KV_ERR_OVERLOADED', `shard ${shard.index}: estimated queue wait ${waitMs === Infinity ? 'unbounded' : `${Math.round(waitMs)} ms`} exceeds ${this.queueWaitMs} ms`, RETRY_AFTER_SECONDS]);
        return;
      }
    }
    const id = this.nextId++;
    if (shard.pending.size === 0) shard.busySince = now;
    shard.submitted.push(isReadOp(op) ? id : -id, now);
    shard.pending.set(id, target);
    if (value !== null && value.length > 0) {
      shard.pendingBytes.set(id, value.length);
      shard.bytes += value.length;
    }
    this.totalOutstanding++;
    shard.frame.push([id, op, key, value, ttlMs, flags, ifVersion]);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushFrames);
    }
  }

  /**
   * How long a new op would wait on this shard, or 0 when it need not be refused: only when the
   * oldest outstanding op has waited longer than queueWaitMs is the backlog estimated, as
   * outstanding ops / measured rate (see the header).
   */
  private estimatedWaitMs(s: ShardHandle, now: number): number {
    const ring = s.submitted;
    while (!ring.empty && !s.pending.has(Math.abs(ring.peekId()))) ring.shift();
    // No measurement yet (a fresh gateway): the count and byte bounds still hold.
    if (ring.empty || now - ring.peekAt() <= this.queueWaitMs || s.rate === 0) return 0;
    return (s.pending.size / s.rate) * 1000;
  }

  /** Every TICK_MS: measure each shard's service rate; answer what reached the op deadline. */
  private readonly tick = (): void => {
    const now = Date.now();
    let answered = false;
    for (const s of this.shards) {
      // Rate = completions per ms of *busy* time (work outstanding; counted exactly at the 0 <->
      // non-0 transitions), so idle gaps do not dilute it: what the shard serves while it has work.
      const span = now - s.windowStart;
      if (span >= RATE_WINDOW_MS) {
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
      // Backstop deadline, oldest first.
      const ring = s.submitted;
      while (!ring.empty) {
        const signed = ring.peekId();
        const id = Math.abs(signed);
        const target = s.pending.get(id);
        if (target !== undefined && now - ring.peekAt() < this.opDeadlineMs - TICK_MS) break;
        ring.shift();
        if (target === undefined) continue;
        s.pending.delete(id);
        this.release(s, id);
        this.totalOutstanding--;
        answered = true;
        target.deliver(
          signed < 0
            ? [id, ERRORS.KV_ERR_OUTCOME_UNKNOWN, 'KV_ERR_OUTCOME_UNKNOWN', `shard ${s.index} gave no answer within the op deadline (${this.opDeadlineMs} ms); the write may or may not have been applied`]
            : [id, 503, 'KV_ERR_SHARD_UNAVAILABLE', `shard ${s.index} gave no answer within the op deadline (${this.opDeadlineMs} ms)`, RETRY_AFTER_SECONDS],
        );
      }
    }
    if (answered && this.totalOutstanding === 0 && this.onIdle) this.onIdle();
  };

  /** One postMessage per shard carrying everything submitted during this event-loop turn. */
  private readonly flushFrames = (): void => {
    this.flushScheduled = false;
    for (const s of this.shards) {
      if (s.frame.length === 0) continue;
      const bytes = new Uint8Array(this.packr.pack(s.frame));
      s.frame = [];
      s.worker.postMessage(bytes satisfies ToActor, [bytes.buffer as ArrayBuffer]);
    }
  };

  async stats(timeoutMs = 2000): Promise<Array<ShardStats | null>> {
    return Promise.all(
      this.shards.map(
        (s) =>
          new Promise<ShardStats | null>((resolve) => {
            const id = this.nextStatsId++;
            const timer = setTimeout(() => {
              this.statsWaiters.delete(id);
              resolve(null);
            }, timeoutMs);
            this.statsWaiters.set(id, (st) => {
              clearTimeout(timer);
              resolve(st);
            });
            s.worker.postMessage({ type: 'stats', id } satisfies ToActor);
          }),
      ),
    );
  }

  /** Let every actor finish what it accepted, then stop them and close their MySQL pools. */
  async stop(timeoutMs: number): Promise<void> {
    const waitFor = (s: ShardHandle, type: 'drained' | 'stopped') =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        const on = (m: FromActor) => {
          if (!(m instanceof Uint8Array) && m.type === type) {
            clearTimeout(timer);
            s.worker.off('message', on);
            resolve();
          }
        };
        s.worker.on('message', on);
        s.worker.once('exit', () => resolve());
      });
    await Promise.all(
      this.shards.map(async (s) => {
        s.stopping = true;
        if (!s.exited) {
          const drained = waitFor(s, 'drained');
          s.worker.postMessage({ type: 'drain' } satisfies ToActor);
          await drained;
          const stopped = waitFor(s, 'stopped');
          s.worker.postMessage({ type: 'stop' } satisfies ToActor);
          await stopped;
          await s.worker.terminate();
        }
        // Whatever a timed-out actor still held gets an answer, never silence.
        this.failShard(s, `gateway stopped before shard ${s.index} answered`);
      }),
    );
    clearInterval(this.ticker);
  }

  /** Attach handlers to the shard's current worker; resolves on its first 'ready'. */
  private wire(s: ShardHandle): Promise<void> {
    return new Promise((resolve, reject) => {
      let started = false;
      const worker = s.worker;
      worker.on('message', (m: FromActor) => {
        if (m instanceof Uint8Array) {
          this.onReplies(s, this.packr.unpack(m) as Reply[]);
          return;
        }
        switch (m.type) {
          case 'ready':
            started = true;
            resolve();
            break;
          case 'fatal':
            this.log.error({ shard: s.index, error: m.error }, 'shard actor failed to start');
            reject(new Error(`shard ${s.index}: ${m.error.message}`));
            break;
          case 'health':
            s.up = m.up;
            s.lastError = m.error;
            if (m.up) this.log.info({ shard: s.index }, 'shard up');
            else this.log.error({ shard: s.index, error: m.error }, 'shard down');
            break;
          case 'stats':
            this.statsWaiters.get(m.id)?.(m.stats);
            this.statsWaiters.delete(m.id);
            break;
          case 'log':
            this.log[m.level]({ shard: s.index, ...m.data, ...(m.data?.err ? { err: reviveErr(m.data.err) } : {}) }, m.msg);
            break;
        }
      });
      worker.on('error', (err) => {
        this.log.error({ shard: s.index, err }, 'shard actor crashed');
      });
      worker.on('exit', (code) => {
        if (worker === s.worker) s.exited = true;
        if (!started) {
          reject(new Error(`shard ${s.index} actor exited with code ${code}`));
          return;
        }
        if (s.stopping) return;
        // A crash after start: answer what it held, serve 503 for its keys, start a new actor.
        this.failShard(s, `shard ${s.index} actor exited (code ${code}); restarting it`);
        setTimeout(() => this.respawn(s), RESPAWN_DELAY_MS).unref();
      });
    });
  }

  private respawn(s: ShardHandle): void {
    if (s.stopping) return;
    const crash = s.lastError;
    s.worker = s.spawn();
    s.exited = false;
    const worker = s.worker;
    this.wire(s).then(
      () => {
        // Up again unless the new actor reported its MySQL down while starting.
        if (s.lastError === crash) {
          s.up = true;
          s.lastError = undefined;
        }
        this.log.info({ shard: s.index, up: s.up }, 'shard actor restarted');
      },
      (err) => {
        this.log.error({ shard: s.index, err }, 'shard actor restart failed; retrying');
        void worker.terminate(); // a worker that reported 'fatal' would otherwise live on, idle
        if (!s.stopping) setTimeout(() => this.respawn(s), RESPAWN_DELAY_MS).unref();
      },
    );
  }

  private release(s: ShardHandle, id: number): void {
    if (s.pending.size === 0) s.busyMs += Date.now() - s.busySince; // the last one: idle from now
    const n = s.pendingBytes.get(id);
    if (n !== undefined) {
      s.pendingBytes.delete(id);
      s.bytes -= n;
    }
  }

  private onReplies(s: ShardHandle, replies: Reply[]): void {
    for (const r of replies) {
      const target = s.pending.get(r[0]);
      if (target === undefined) continue; // answered by the deadline backstop already
      s.completed++;
      s.pending.delete(r[0]);
      this.release(s, r[0]);
      this.totalOutstanding--;
      target.deliver(r);
    }
    if (this.totalOutstanding === 0 && this.onIdle) this.onIdle();
  }

  /** A crashed actor answers nothing more: fail what it held so no caller hangs. */
  private failShard(s: ShardHandle, why: string): void {
    s.up = false;
    s.lastError = { code: 'KV_ERR_SHARD_UNAVAILABLE', message: why };
    // The actor may have sent a COMMIT before it died: a write it held may or may not be applied,
    // so nothing it held is reported as safely retryable.
    // A read changed nothing whatever happened to it: it is plainly unavailable (safe to retry).
    const message = `${why}; an operation in flight may or may not have been applied`;
    for (const [id, target] of s.pending) {
      s.pending.delete(id);
      this.release(s, id);
      this.totalOutstanding--;
      if (isReadOp(target.op)) target.deliver([id, 503, 'KV_ERR_SHARD_UNAVAILABLE', why, RETRY_AFTER_SECONDS]);
      else target.deliver([id, ERRORS.KV_ERR_OUTCOME_UNKNOWN, 'KV_ERR_OUTCOME_UNKNOWN', message]);
    }
    if (this.totalOutstanding === 0 && this.onIdle) this.onIdle();
  }
}
