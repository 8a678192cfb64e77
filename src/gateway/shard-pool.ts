/**
 * Owns the gateway's side of the shard actors: one worker thread per shard, the requests waiting
 * for replies, the per-shard bound on outstanding work, and the routing table (slot -> shard),
 * read from the shards themselves (their kv_slots rows). Relies on protocol (slot map, ops, port
 * messages). Must not touch HTTP or WebSocket objects: a reply goes to a `ReplyTarget`.
 *
 *   submit(target, request) ─> shard = route[slotOf(key)]
 *        outstanding[shard] >= queueLimit or shard down?  -> target gets 503 at once
 *        else frame[shard].push(request); one postMessage per shard per event-loop turn
 *   worker reply frame ─> pending.get(id).deliver(reply)
 *        KV_ERR_WRONG_SHARD (the slot moved) ─> refresh the map from every shard, re-route the
 *        request (at most MAX_REDIRECTS times, with backoff, then 503 KV_ERR_SLOT_MOVING)
 *
 * The map is a cache: a stale one costs a redirect, never a wrong answer, because every shard
 * checks ownership in the statement that reads or writes the rows.
 */
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { RETRY_AFTER_SECONDS, type ErrorData } from '../protocol/errors';
import type { Reply, Request } from '../protocol/ops';
import type { ActorConfig, FromActor, ShardStats, ToActor } from '../protocol/port-messages';
import { SlotMap, SLOT_COUNT, resolveOwners, slotOf, type MoveProgress, type ShardOwnership } from '../protocol/slot-map';
import type { Config } from './config';

export interface ReplyTarget {
  deliver(reply: Reply): void;
}

export interface PoolLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

type ControlReply = Extract<FromActor, { type: 'ownership' | 'bootstrapped' }>;

const ACTOR_MAIN = join(__dirname, '..', 'shard-actor', 'main.js');

/** Delay before a crashed actor is started again (its keys get 503 meanwhile). */
const RESPAWN_DELAY_MS = 1000;
/** Re-routes of one request after KV_ERR_WRONG_SHARD before it is answered 503. */
const MAX_REDIRECTS = 8;
/** While slots move, how often the map (and the mover's progress) is re-read. */
const PROGRESS_REFRESH_MS = 5000;
/** How long the gateway waits for a shard's ownership rows or a new shard's actor. */
const CONTROL_TIMEOUT_MS = 5000;

class ShardHandle {
  worker: Worker;
  /** Requests sent to this shard and not yet answered, by id. */
  readonly pending = new Map<number, ReplyTarget>();
  /** The requests themselves, by id, to re-route one the shard refuses (its slot moved). */
  readonly requests = new Map<number, Request>();
  /** kv_shard.shard_index of this database; null until known (down at start, or not a member). */
  shardIndex: number | null = null;
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
    readonly url: string,
  ) {
    this.worker = this.spawn();
  }
  spawn(): Worker {
    return new Worker(ACTOR_MAIN, { workerData: this.cfg, name: `shard-${this.index}` });
  }
}

export class ShardPool {
  private readonly shards: ShardHandle[];
  /** Handle position (in `shards`) serving each slot; -1 = unknown (refresh pending). */
  private readonly route = new Int32Array(SLOT_COUNT).fill(-1);
  /** Highest slot epoch seen, and slots seen mid-move, at the last refresh. */
  epoch = 0;
  movingSlots = 0;
  /** Map refreshes done, and requests re-routed after KV_ERR_WRONG_SHARD (metrics). */
  refreshes = 0;
  redirects = 0;
  /** The newest mover progress any shard reported at the last refresh. */
  moveProgress: MoveProgress | null = null;
  private progressTimer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  private refreshAgain = false;
  private readonly redirectCount = new WeakMap<Request, number>();
  private controlWaiters = new Map<number, (m: ControlReply) => void>();
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

  private constructor(private readonly config: Readonly<Config>, urls: string[], private readonly log: PoolLogger) {
    this.queueLimit = config.queueLimit;
    this.queueBytes = config.queueBytes;
    this.shards = urls.map((url, i) => new ShardHandle(i, actorConfig(config, i, url), url));
  }

  /**
   * Start one actor per shard URL; resolves when every actor has initialised its shard and the
   * slot map has been read from the shards. A store's first start (every database empty)
   * bootstraps it: shard i gets index i and the even map's slots.
   */
  static async start(config: Readonly<Config>, urls: string[], log: PoolLogger): Promise<ShardPool> {
    const pool = new ShardPool(config, urls, log);
    try {
      await Promise.all(pool.shards.map((s) => pool.wire(s)));
      await pool.bootstrapIfNew();
      await pool.refreshMap();
    } catch (err) {
      for (const s of pool.shards) s.stopping = true; // an exit now is not a crash to respawn
      await Promise.all(pool.shards.map((s) => s.worker.terminate()));
      throw err;
    }
    return pool;
  }

  private async bootstrapIfNew(): Promise<void> {
    const members = this.shards.filter((s) => s.shardIndex !== null);
    const fresh = this.shards.filter((s) => s.shardIndex === null && s.up);
    if (fresh.length === 0) return;
    if (members.length === 0 && fresh.length === this.shards.length) {
      const map = SlotMap.even(this.shards.length);
      await Promise.all(
        this.shards.map(async (s) => {
          const m = await this.control(s, (id) => ({ type: 'bootstrap', id, shard: s.index, shardCount: this.shards.length, slotRanges: map.rangesOf(s.index) }));
          if (m.type === 'bootstrapped' && m.error) {
            const err = new Error(m.error.message);
            (err as { code?: string }).code = m.error.code;
            throw err;
          }
          s.shardIndex = s.index;
        }),
      );
      return;
    }
    if (members.length === 0) {
      const down = this.shards.filter((s) => !s.up).map((s) => `#${s.index}`);
      throw new Error(`cannot create the store while shard URL(s) ${down.join(', ')} are unreachable: every shard must be up at a store's first start`);
    }
    // Some databases hold a store and these do not: they were added to the list by hand.
    throw new Error(
      `shard URL(s) ${fresh.map((s) => `#${s.index}`).join(', ')} name empty databases, but the others hold a store. ` +
        'Refusing to start: a new shard must join with `kvsql shards add <url>` (it then gets slots with `kvsql rebalance`).',
    );
  }

  /** One control request to an actor, answered by a message with the same id (or a timeout). */
  private control(s: ShardHandle, build: (id: number) => ToActor): Promise<ControlReply> {
    return new Promise((resolve, reject) => {
      const id = this.nextStatsId++;
      const timer = setTimeout(() => {
        this.controlWaiters.delete(id);
        reject(new Error(`shard ${s.index} did not answer within ${CONTROL_TIMEOUT_MS} ms`));
      }, CONTROL_TIMEOUT_MS);
      this.controlWaiters.set(id, (m) => {
        clearTimeout(timer);
        resolve(m as ControlReply);
      });
      s.worker.postMessage(build(id));
    });
  }

  /**
   * Read every shard's kv_slots and kv_peers and rebuild the routing table. One refresh at a
   * time; a request for one while it runs makes it run once more after. A shard that does not
   * answer keeps its slots routed as before (its ops get 503 while it is down anyway).
   */
  refreshMap(): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false;
        await this.refreshOnce().catch((err) => this.log.warn({ err: (err as Error).message }, 'slot map refresh failed'));
      } while (this.refreshAgain);
      this.refreshing = null;
    })();
    return this.refreshing;
  }

  private async refreshOnce(): Promise<void> {
    const seen: ShardOwnership[] = [];
    const ask = async (s: ShardHandle): Promise<void> => {
      if (s.exited || s.stopping) return;
      const m = await this.control(s, (id) => ({ type: 'ownership', id })).catch(() => null);
      if (m === null || m.type !== 'ownership' || m.ownership === undefined) return;
      s.shardIndex = m.ownership.shardIndex;
      seen.push(m.ownership);
    };
    await Promise.all(this.shards.map(ask));
    // Shards added after this gateway started: learn their URL from the others' kv_peers.
    const known = new Set(this.shards.map((s) => s.shardIndex).filter((x) => x !== null));
    const knownUrls = new Set(this.shards.map((s) => s.url));
    for (const o of seen) {
      for (const [index, url] of o.peers) {
        if (known.has(index) || knownUrls.has(url)) continue;
        known.add(index);
        knownUrls.add(url);
        const s = new ShardHandle(this.shards.length, actorConfig(this.config, this.shards.length, url), url);
        this.shards.push(s);
        this.log.info({ shard: s.index, shardIndex: index }, 'joining a shard added to the store');
        try {
          await this.wire(s);
          await ask(s);
        } catch (err) {
          this.log.error({ shard: s.index, err: (err as Error).message }, 'cannot start an actor for a new shard');
        }
      }
    }
    const resolved = resolveOwners(seen);
    const byIndex = new Map<number, number>();
    for (const s of this.shards) if (s.shardIndex !== null) byIndex.set(s.shardIndex, s.index);
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
      const owner = resolved.owner[slot];
      if (owner === -1) continue; // nobody answered for it: keep the old route
      this.route[slot] = byIndex.get(owner) ?? -1;
    }
    this.epoch = resolved.epoch;
    this.movingSlots = resolved.moving;
    this.refreshes++;
    for (const o of seen) if (o.progress && (this.moveProgress === null || o.progress.updatedAt > this.moveProgress.updatedAt)) this.moveProgress = o.progress;
    // While a mover works, re-read every few seconds so /metrics shows its progress.
    const busy = this.movingSlots > 0 || (this.moveProgress?.state === 'running' && Date.now() - this.moveProgress.updatedAt < 60_000);
    if (busy && this.progressTimer === null) {
      this.progressTimer = setInterval(() => void this.refreshMap(), PROGRESS_REFRESH_MS);
      this.progressTimer.unref();
    } else if (!busy && this.progressTimer !== null) {
      clearInterval(this.progressTimer);
      this.progressTimer = null;
    }
  }

  /** The routing table as `[[firstSlot, lastSlot, shardIndex], ...]` (-1: unknown). */
  slotRanges(): Array<[number, number, number]> {
    const out: Array<[number, number, number]> = [];
    const ownerOf = (slot: number) => {
      const h = this.route[slot];
      return h === -1 ? -1 : this.shards[h].shardIndex ?? -1;
    };
    let start = 0;
    for (let s = 1; s <= SLOT_COUNT; s++) {
      if (s === SLOT_COUNT || ownerOf(s) !== ownerOf(start)) {
        out.push([start, s - 1, ownerOf(start)]);
        start = s;
      }
    }
    return out;
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
    const h = this.route[slotOf(key)];
    if (h === -1) {
      this.rejected++;
      // No reachable shard reported this slot (its shard was down when the map was read).
      target.deliver([0, 503, 'KV_ERR_SHARD_UNAVAILABLE', 'no reachable shard owns this key\'s slot', RETRY_AFTER_SECONDS]);
      void this.refreshMap();
      return;
    }
    const shard = this.shards[h];
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
    this.totalOutstanding++;
    this.dispatch(shard, target, [this.nextId++, op, key, value, ttlMs, flags, ifVersion]);
  }

  /** Queue an admitted request (counted in totalOutstanding) for one shard's next frame. */
  private dispatch(shard: ShardHandle, target: ReplyTarget, req: Request): void {
    const id = req[0];
    const value = req[3];
    shard.pending.set(id, target);
    shard.requests.set(id, req);
    if (value !== null && value.length > 0) {
      shard.pendingBytes.set(id, value.length);
      shard.bytes += value.length;
    }
    shard.frame.push(req);
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
    if (this.progressTimer !== null) clearInterval(this.progressTimer);
    this.progressTimer = null;
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
            s.shardIndex = m.shardIndex;
            started = true;
            resolve();
            break;
          case 'fatal':
            this.log.error({ shard: s.index, error: m.error }, 'shard actor failed to start');
            reject(new Error(`shard ${s.index}: ${m.error.message}`));
            break;
          case 'ownership':
          case 'bootstrapped':
            this.controlWaiters.get(m.id)?.(m);
            this.controlWaiters.delete(m.id);
            break;
          case 'health':
            s.up = m.up;
            s.lastError = m.error;
            if (m.up) void this.refreshMap(); // it may have come back after moves: re-read its slots
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
    s.requests.delete(id);
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
      if (r[2] === 'KV_ERR_WRONG_SHARD') {
        const req = s.requests.get(r[0]);
        if (req !== undefined) {
          s.pending.delete(r[0]);
          this.release(s, r[0]);
          this.redirect(target, req, r);
          continue;
        }
      }
      s.pending.delete(r[0]);
      this.release(s, r[0]);
      this.totalOutstanding--;
      target.deliver(r);
    }
    if (this.totalOutstanding === 0 && this.onIdle) this.onIdle();
  }

  /**
   * The shard refused the request: its slot moved. Refresh the map, then route it again; from
   * the second redirect on, wait a little first (the flip between two shards takes milliseconds).
   * The request stays counted in totalOutstanding meanwhile.
   */
  private redirect(target: ReplyTarget, req: Request, refusal: Reply): void {
    const n = (this.redirectCount.get(req) ?? 0) + 1;
    if (n > MAX_REDIRECTS) {
      this.redirectCount.delete(req);
      this.totalOutstanding--;
      target.deliver([req[0], 503, 'KV_ERR_SLOT_MOVING', `re-routed ${MAX_REDIRECTS} times: ${String(refusal[3])}`, RETRY_AFTER_SECONDS]);
      if (this.totalOutstanding === 0 && this.onIdle) this.onIdle();
      return;
    }
    this.redirectCount.set(req, n);
    this.redirects++;
    // The refusing shard moved the slot and named the new owner: go there now, and bring the
    // rest of the map up to date in the background (a wrong hint just costs another redirect).
    const hint = typeof refusal[4] === 'number' ? this.byShardIndex(refusal[4]) : undefined;
    if (n === 1 && hint !== undefined && hint.up && !hint.exited) {
      this.route[slotOf(req[2])] = hint.index;
      void this.refreshMap();
      this.dispatch(hint, target, req);
      return;
    }
    const resend = (): void => {
      const h = this.route[slotOf(req[2])];
      const shard = h === -1 ? undefined : this.shards[h];
      if (shard === undefined || !shard.up || shard.exited) {
        this.redirectCount.delete(req);
        this.totalOutstanding--;
        target.deliver([req[0], 503, shard === undefined ? 'KV_ERR_SLOT_MOVING' : 'KV_ERR_SHARD_UNAVAILABLE', 'the shard that owns this key is unavailable', RETRY_AFTER_SECONDS]);
        if (this.totalOutstanding === 0 && this.onIdle) this.onIdle();
        return;
      }
      this.dispatch(shard, target, req);
    };
    const delay = n === 1 ? 0 : Math.min(500, 5 * 2 ** n);
    void this.refreshMap().then(() => (delay === 0 ? resend() : setTimeout(resend, delay)));
  }

  private byShardIndex(index: number): ShardHandle | undefined {
    if (index < 0) return undefined;
    for (const s of this.shards) if (s.shardIndex === index) return s;
    return undefined;
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


function actorConfig(config: Readonly<Config>, i: number, url: string): ActorConfig {
  return {
          shard: i,
          url,
          slotHoldMs: config.slotHoldMs,
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
  };
}
