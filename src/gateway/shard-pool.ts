/**
 * Owns the gateway's side of the shard actors: one worker thread per shard, the requests waiting
 * for replies, and the per-shard bound on outstanding work. Relies on protocol (slot map, ops,
 * port messages). Must not touch HTTP or WebSocket objects: a reply goes to a `ReplyTarget`.
 *
 *   submit(target, request) ─> shard = slotMap.shardOf(key)
 *        outstanding[shard] >= queueLimit or shard down?  -> target gets 503 at once
 *        else frame[shard].push(request); one postMessage per shard per event-loop turn
 *   worker reply frame ─> pending.get(id).deliver(reply)
 */
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { RETRY_AFTER_SECONDS, type ErrorData } from '../protocol/errors';
import type { Reply, Request } from '../protocol/ops';
import type { ActorConfig, FromActor, ShardStats, ToActor } from '../protocol/port-messages';
import { SlotMap } from '../protocol/slot-map';
import { shardNodes, type Config } from './config';

export interface ReplyTarget {
  deliver(reply: Reply): void;
}

export interface PoolLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const ACTOR_MAIN = join(__dirname, '..', 'shard-actor', 'main.js');

/** Delay before a crashed actor is started again (its keys get 503 meanwhile). */
const RESPAWN_DELAY_MS = 1000;

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

  private constructor(config: Readonly<Config>, urls: string[], private readonly log: PoolLogger) {
    this.queueLimit = config.queueLimit;
    this.queueBytes = config.queueBytes;
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
          maxRetries: config.maxRetries,
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
    const id = this.nextId++;
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
            this.log[m.level]({ shard: s.index, ...m.data }, m.msg);
            break;
        }
      });
      worker.on('error', (err) => {
        this.log.error({ shard: s.index, err: err.message }, 'shard actor crashed');
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
        this.log.error({ shard: s.index, err: (err as Error).message }, 'shard actor restart failed; retrying');
        void worker.terminate(); // a worker that reported 'fatal' would otherwise live on, idle
        if (!s.stopping) setTimeout(() => this.respawn(s), RESPAWN_DELAY_MS).unref();
      },
    );
  }

  private release(s: ShardHandle, id: number): void {
    const n = s.pendingBytes.get(id);
    if (n !== undefined) {
      s.pendingBytes.delete(id);
      s.bytes -= n;
    }
  }

  private onReplies(s: ShardHandle, replies: Reply[]): void {
    for (const r of replies) {
      const target = s.pending.get(r[0]);
      if (target === undefined) continue;
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
    const message = `${why}; an operation in flight may or may not have been applied`;
    for (const [id, target] of s.pending) {
      s.pending.delete(id);
      this.release(s, id);
      this.totalOutstanding--;
      target.deliver([id, 503, 'KV_ERR_OUTCOME_UNKNOWN', message, RETRY_AFTER_SECONDS]);
    }
    if (this.totalOutstanding === 0 && this.onIdle) this.onIdle();
  }
}
