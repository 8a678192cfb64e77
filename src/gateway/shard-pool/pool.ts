/**
 * Owns the gateway's side of the shard actors: one worker thread per shard (spawn, wire, respawn
 * after a crash, stop), the requests waiting for replies, and the hand-off of ops in frames. The
 * layers around submit live beside it, one file each: admission (the per-shard bound), backstop
 * (the op deadline), redirects (a slot that moved), routing (the slot map); control calls
 * (stats, scans, feed reads) and the store's first start too. Relies on them and on protocol (ops,
 * port messages). Must not touch HTTP or WebSocket objects: a reply goes to a `ReplyTarget`.
 *
 *   submit(target, request) ─> shard = route[slotOf(key)]            (routing.ts)
 *        refused by admission?                   -> target gets 503 at once (admission.ts)
 *        else frame[shard].push(request); one postMessage per shard per event-loop turn
 *   worker reply frame ─> pending.get(id).deliver(reply)
 *        KV_ERR_WRONG_SHARD (the slot moved) ─> re-route (redirects.ts)
 *   every TICK_MS: rate windows (admission.ts); an op outstanding for opDeadlineMs is answered
 *        here (backstop.ts)
 *   worker exit ─> every op it held answered (failShard), its keys 503, a new actor after 1 s
 */
import { errorReply, isReadOp, isWrongShard, type Reply, type Request } from '../../protocol/ops';
import type { FromActor, ShardStats, ToActor } from '../../protocol/port-messages';
import type { MoveProgress } from '../../protocol/slot-map';
import type { ErrorData } from '../../protocol/errors';
import type { FeedRow } from '../../protocol/feed';
import type { ScanRequest, ShardPage } from '../../protocol/listing';
import type { Config } from '../../config/config';
import { Packr } from 'msgpackr';
import type { Worker } from 'node:worker_threads';
import { actorConfig } from './actor-config';
import { Admission } from './admission';
import { Backstop, TICK_MS } from './backstop';
import { bootstrapIfNew } from './bootstrap';
import { ControlCalls } from './control';
import { Redirects } from './redirects';
import { SlotRouter } from './routing';
import { bytesOf, Pending, ShardHandle, type ReplyTarget } from './worker-handle';

export interface PoolLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

type FeedMessage = Extract<FromActor, { type: 'feed' }>;

/** Receives every shard's change-feed batches (the gateway's feed hub). */
export interface FeedListener {
  onFeed(shard: number, shardIndex: number | null, m: FeedMessage): void;
  /** The shard's actor exited or went down: its tailer's state is gone. */
  onFeedLost(shard: number): void;
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

/** Delay before a crashed actor is started again (its keys get 503 meanwhile). */
const RESPAWN_DELAY_MS = 1000;

export class ShardPool {
  private readonly shards: ShardHandle[] = [];
  private readonly control: ControlCalls;
  private readonly router: SlotRouter;
  private readonly redirector: Redirects;
  private readonly backstop: Backstop;
  private readonly admission: Admission;
  /** The routing table (the router's): handle position serving each slot, -1 = unknown. */
  private readonly route: Int32Array;
  private nextId = 1;
  /** Operations answered 503 here without reaching an actor (queue full or shard down). */
  private refused = 0;
  private flushScheduled = false;
  private readonly packr = new Packr({ useRecords: false, moreTypes: false });
  /** The change feed's hub (null until one attaches). */
  private feedListener: FeedListener | null = null;
  /** KVSQL_OP_DEADLINE_MS: every op and every listing page is answered within it. */
  readonly opDeadlineMs: number;
  private readonly ticker: NodeJS.Timeout;

  private constructor(
    private readonly config: Readonly<Config>,
    urls: string[],
    private readonly log: PoolLogger,
  ) {
    this.opDeadlineMs = config.opDeadlineMs;
    this.control = new ControlCalls(this.shards, config.opDeadlineMs, (position) => this.route.includes(position));
    this.router = new SlotRouter(this.shards, this.control, (url) => this.join(url), log);
    this.route = this.router.route;
    this.redirector = new Redirects(this.shards, this.router, this.dispatch);
    this.backstop = new Backstop(config.opDeadlineMs, this.redirector, this.release);
    this.admission = new Admission({ queueLimit: config.queueLimit, queueBytes: config.queueBytes, queueWaitMs: config.queueWaitMs });
    this.ticker = setInterval(this.tick, TICK_MS);
    this.ticker.unref();
    for (const [i, url] of urls.entries()) this.shards.push(new ShardHandle(i, actorConfig(config, i, url), url));
  }

  /**
   * Start one actor per shard URL; resolves when every actor has initialised its shard and the
   * slot map has been read from the shards. A store's first start (every database empty)
   * bootstraps it: shard i gets index i and the even map's slots (bootstrap.ts).
   */
  static async start(config: Readonly<Config>, urls: string[], log: PoolLogger): Promise<ShardPool> {
    const pool = new ShardPool(config, urls, log);
    try {
      await Promise.all(pool.shards.map((s) => pool.wire(s)));
      await bootstrapIfNew(pool.shards, pool.control);
      await pool.refreshMap();
      // Shards that disagree on how keys hash would have two gateways serve a key from two shards.
      if (pool.router.hashRuleConflict !== null) throw new Error(`refusing to start: ${pool.router.hashRuleConflict}`);
    } catch (err) {
      for (const s of pool.shards) s.stopping = true; // an exit now is not a crash to respawn
      clearInterval(pool.ticker);
      pool.router.stop();
      await Promise.all(pool.shards.map((s) => s.worker.terminate()));
      throw err;
    }
    return pool;
  }

  /** A shard found in kv_peers: its actor, started at the next position and wired. */
  private async join(url: string): Promise<ShardHandle> {
    const s = new ShardHandle(this.shards.length, actorConfig(this.config, this.shards.length, url), url);
    this.shards.push(s);
    await this.wire(s);
    return s;
  }

  /** Re-read every shard's slots and rebuild the routing table (routing.ts). */
  refreshMap(): Promise<void> {
    return this.router.refreshMap();
  }

  /** Highest slot epoch seen, and slots seen mid-move, at the last refresh. */
  get epoch(): number {
    return this.router.epoch;
  }
  get movingSlots(): number {
    return this.router.movingSlots;
  }
  /** Map refreshes done, and requests re-routed after KV_ERR_WRONG_SHARD (metrics). */
  get refreshes(): number {
    return this.router.refreshes;
  }
  get redirects(): number {
    return this.redirector.count;
  }
  /** The newest mover progress any shard reported at the last refresh. */
  /** The store hashes {tags} of keys (kv_shard.hash_rule), else whole keys. */
  get hashTags(): boolean {
    return this.router.hashTags;
  }

  get moveProgress(): MoveProgress | null {
    return this.router.moveProgress;
  }
  /** Operations (and scans) answered 503 here without reaching an actor (queue full or shard down). */
  get rejected(): number {
    return this.refused + this.control.rejected;
  }

  /** The routing table as `[[firstSlot, lastSlot, shardIndex], ...]` (-1: unknown). */
  slotRanges(): Array<[number, number, number]> {
    return this.router.slotRanges();
  }

  /** The slot of `key` under the store's hashing rule (whole key, or Redis Cluster hash tags). */
  slotOf(key: Uint8Array): number {
    return this.router.slotOf(key);
  }

  /** Position (in the shard list) of the shard this gateway routes `key` to now; -1 = unknown. */
  shardOf(key: Uint8Array): number {
    return this.router.shardOf(key);
  }

  get shardCount(): number {
    return this.shards.length;
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

  /** Frames and ops handed to each shard's actor, and reply frames back (metrics). */
  handoffs(): Array<{ framesSent: number; opsSent: number; replyFrames: number }> {
    return this.shards.map((s) => ({ framesSent: s.framesSent, opsSent: s.opsSent, replyFrames: s.replyFrames }));
  }

  queueDepths(): number[] {
    return this.shards.map((s) => s.pending.size);
  }

  /** One page of one key range from every member shard, in shard order (control.ts). */
  scanShards(request: ScanRequest, deadlineAt: number): Promise<ShardPage[]> {
    return this.control.scanShards(request, deadlineAt);
  }

  /** Every member shard's count of the keys of the slots it serves, with its served bitmap (DBSIZE). */
  countShards(deadlineAt: number): Promise<Array<{ count: number; served: Uint8Array }>> {
    return this.control.countShards(deadlineAt);
  }

  /** The change feed's hub: gets every shard's feed messages. */
  attachFeed(listener: FeedListener): void {
    this.feedListener = listener;
  }

  /** Member shards as [position, kv_shard index] (those whose index is known). */
  feedShards(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (const s of this.shards) if (s.shardIndex !== null) out.push([s.index, s.shardIndex]);
    return out;
  }

  /** Start or stop the tailer of shard `shard` (its position in the list). */
  feedWatch(shard: number, on: boolean): void {
    const s = this.shards[shard];
    if (s !== undefined && !s.exited) s.worker.postMessage({ type: 'feedWatch', on } satisfies ToActor);
  }

  /** kv_feed rows of one shard in (after, upto], at most `limit`, with its retention horizon. */
  feedRange(shard: number, after: number, upto: number, limit: number): Promise<{ rows: FeedRow[]; trimmed: number }> {
    return this.control.feedRange(shard, after, upto, limit);
  }

  /** Redis WAIT on one shard (control.ts): replicas that committed, 0 at once on a single server. */
  waitReplicas(shard: number, replicas: number, timeoutMs: number): Promise<number> {
    return this.control.waitReplicas(shard, replicas, timeoutMs);
  }

  /** The shard serving a slot by this gateway's map (-1: none reachable). */
  shardOfSlot(slot: number): number {
    return this.route[slot];
  }

  stats(timeoutMs = 2000): Promise<Array<ShardStats | null>> {
    return this.control.stats(timeoutMs);
  }

  /** Route one request. The target is answered exactly once, possibly synchronously. */
  submit(target: ReplyTarget, op: Request[1], key: Uint8Array, value: Uint8Array | null, ttlMs: number, flags: number, ifVersion: number): void {
    const h = this.route[this.router.slotOf(key)];
    if (h === -1) {
      this.refused++;
      // No reachable shard reported this slot (its shard was down when the map was read).
      target.deliver(errorReply(0, 'KV_ERR_SHARD_UNAVAILABLE', "no reachable shard owns this key's slot"));
      void this.refreshMap();
      return;
    }
    const shard = this.shards[h];
    const refusal = this.admission.refusal(shard, value);
    if (refusal !== null) {
      this.refused++;
      target.deliver(refusal);
      return;
    }
    const now = Date.now();
    const late = this.admission.waitRefusal(shard, now);
    if (late !== null) {
      this.refused++;
      target.deliver(late);
      return;
    }
    this.dispatch(shard, target, [this.nextId++, op, key, value, ttlMs, flags, ifVersion], now);
  }

  /**
   * Queue an admitted request for one shard's next frame. `at` is
   * when it was first submitted (a re-routed request keeps it).
   */
  private readonly dispatch = (shard: ShardHandle, target: ReplyTarget, req: Request, at: number): void => {
    const id = req[0];
    const value = req[3];
    if (shard.pending.size === 0) shard.busySince = Date.now();
    shard.submitted.push(isReadOp(req[1]) ? id : -id);
    shard.pending.set(id, new Pending(target, req, at));
    if (value !== null) shard.bytes += value.length;
    shard.frame.push(req);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushFrames);
    }
  };

  /** Every TICK_MS: measure each shard's service rate; answer what reached the op deadline. */
  private readonly tick = (): void => {
    const now = Date.now();
    for (const s of this.shards) {
      this.admission.measure(s, now);
      this.backstop.sweepShard(s, now);
    }
    this.backstop.sweepRedirected(now);
  };

  /** One postMessage per shard carrying everything submitted during this event-loop turn. */
  private readonly flushFrames = (): void => {
    this.flushScheduled = false;
    for (const s of this.shards) {
      if (s.frame.length === 0) continue;
      const bytes = new Uint8Array(this.packr.pack(s.frame));
      s.framesSent++;
      s.opsSent += s.frame.length;
      s.frame = [];
      s.worker.postMessage(bytes satisfies ToActor, [bytes.buffer as ArrayBuffer]);
    }
  };

  /** Let every actor finish what it accepted, then stop them and close their MySQL pools. */
  async stop(timeoutMs: number): Promise<void> {
    this.router.stop();
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
          case 'scanned':
          case 'counted':
          case 'feedRange':
          case 'waited':
          case 'stats':
            this.control.onMessage(m);
            break;
          case 'health':
            s.up = m.up;
            s.lastError = m.error;
            if (m.up) void this.refreshMap(); // it may have come back after moves: re-read its slots
            if (m.up) this.log.info({ shard: s.index }, 'shard up');
            else this.log.error({ shard: s.index, error: m.error }, 'shard down');
            break;
          case 'feed':
            this.feedListener?.onFeed(s.index, s.shardIndex, m);
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

  /** `p` (s.pending's entry for `id`) is answered or moves elsewhere: drop it from the shard's queue. */
  private readonly release = (s: ShardHandle, id: number, p: Pending): void => {
    s.pending.delete(id);
    const redirected = this.redirector.redirected;
    if (redirected.size > 0) redirected.delete(id);
    if (s.pending.size === 0) s.busyMs += Date.now() - s.busySince; // the last one: idle from now
    s.bytes -= bytesOf(p.req);
  };

  private onReplies(s: ShardHandle, replies: Reply[]): void {
    s.replyFrames++;
    for (const r of replies) {
      const p = s.pending.get(r[0]);
      if (p === undefined) continue; // answered by the deadline backstop already
      s.completed++;
      this.release(s, r[0], p);
      if (isWrongShard(r)) this.redirector.redirect(p.target, p.req, p.at, r, s);
      else p.target.deliver(r);
    }
  }

  /** A crashed actor answers nothing more: fail what it held so no caller hangs. */
  private failShard(s: ShardHandle, why: string): void {
    s.up = false;
    s.lastError = { code: 'KV_ERR_SHARD_UNAVAILABLE', message: why };
    // The actor may have sent a COMMIT before it died: a write it held may or may not be applied,
    // so nothing it held is reported as safely retryable.
    // A read changed nothing whatever happened to it: it is plainly unavailable (safe to retry).
    const message = `${why}; an operation in flight may or may not have been applied`;
    this.control.failShard(s, why);
    this.feedListener?.onFeedLost(s.index);
    for (const [id, p] of s.pending) {
      this.release(s, id, p);
      if (isReadOp(p.target.op)) p.target.deliver(errorReply(id, 'KV_ERR_SHARD_UNAVAILABLE', why));
      else p.target.deliver(errorReply(id, 'KV_ERR_OUTCOME_UNKNOWN', message));
    }
  }
}
