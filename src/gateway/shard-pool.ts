/**
 * Owns the gateway's side of the shard actors: one worker thread per shard, the requests waiting
 * for replies, the per-shard bound on outstanding work, and the routing table (slot -> shard),
 * read from the shards themselves (their kv_slots rows). Relies on protocol (slot map, ops, port
 * messages). Must not touch HTTP or WebSocket objects: a reply goes to a `ReplyTarget`.
 *
 *   submit(target, request) ─> shard = route[slotOf(key)]
 *        shard down, or outstanding >= queueLimit, or bytes >= queueBytes,
 *        or estimated wait > queueWaitMs?                    -> target gets 503 at once
 *        else frame[shard].push(request); one postMessage per shard per event-loop turn
 *   worker reply frame ─> pending.get(id).deliver(reply)
 *        KV_ERR_WRONG_SHARD (the slot moved) ─> refresh the map from every shard, re-route the
 *        request (at most MAX_REDIRECTS times, with backoff, then 503 KV_ERR_SLOT_MOVING)
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
 *
 * The map is a cache: a stale one costs a redirect, never a wrong answer, because every shard
 * checks ownership in the statement that reads or writes the rows. A re-routed request keeps its
 * first submit time: the deadline backstop counts from there, wherever the request now waits.
 */
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { KvError, type ErrorData } from '../protocol/errors';
import type { ScanRequest, ShardPage } from '../protocol/listing';
import { errorReply, isReadOp, type Reply, type Request } from '../protocol/ops';
import type { ActorConfig, FromActor, ShardStats, ToActor } from '../protocol/port-messages';
import { SlotMap, SLOT_COUNT, SLOT_OWNED, resolveOwners, slotOf, type MoveProgress, type ShardOwnership } from '../protocol/slot-map';
import { shardNodes, type Config } from '../config/config';
import { mysqlTls } from './tls';
import type { FeedRow } from '../protocol/feed';

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

type ControlReply = Extract<FromActor, { type: 'ownership' | 'bootstrapped' }>;
type ScanReply = Extract<FromActor, { type: 'scanned' | 'counted' }>;
type FeedMessage = Extract<FromActor, { type: 'feed' }>;
type FeedRangeReply = Extract<FromActor, { type: 'feedRange' }>;

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

const ACTOR_MAIN = join(__dirname, '..', 'shard-actor', 'main.js');

/** Delay before a crashed actor is started again (its keys get 503 meanwhile). */
const RESPAWN_DELAY_MS = 1000;
/** Re-routes of one request after KV_ERR_WRONG_SHARD before it is answered 503. */
const MAX_REDIRECTS = 8;
/** While slots move, how often the map (and the mover's progress) is re-read. */
const PROGRESS_REFRESH_MS = 5000;
/**
 * And otherwise this often: routing never needs it (a stale route costs a redirect, which
 * refreshes), but /v1/slots, /metrics and the first sight of a mover running elsewhere do.
 */
const IDLE_REFRESH_MS = 30_000;
/** How long the gateway waits for a shard's ownership rows or a new shard's actor. */
const CONTROL_TIMEOUT_MS = 5000;

/**
 * Scans (listing pages, counts) waiting per shard in this gateway; more are answered 503 at once.
 * Each holds at most a page: MAX_LIST_LIMIT keys of up to 1 KiB, or MAX_PAGE_VALUE_BYTES of
 * values plus one value (protocol/listing), so the bytes they pin are bounded with the count.
 */
const SCAN_QUEUE_LIMIT = 16;

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

/**
 * A request sent to a shard and not yet answered: who gets the reply, the request itself and when
 * it was first submitted (to re-route one the shard refuses: its slot moved). One object per op,
 * one map entry: the main thread's bookkeeping per op is a set and a delete.
 */
class Pending {
  constructor(
    readonly target: ReplyTarget,
    readonly req: Request,
    readonly at: number,
  ) {}
}

/** Value bytes a request holds in its shard's queue (the byte bound counts these). */
const bytesOf = (req: Request): number => (req[3] === null ? 0 : req[3].length);

class ShardHandle {
  worker: Worker;
  /** Requests sent to this shard and not yet answered, by id. */
  readonly pending = new Map<number, Pending>();
  /** kv_shard.shard_index of this database; null until known (down at start, or not a member). */
  shardIndex: number | null = null;
  /** Value bytes of the pending requests. */
  bytes = 0;
  up = true;
  lastError: ErrorData | undefined;
  frame: Request[] = [];
  /** Frames and ops handed to the actor, and reply frames back (metrics: ops per hand-off). */
  framesSent = 0;
  opsSent = 0;
  replyFrames = 0;
  /** Scans and counts sent to this shard and not yet answered. */
  scans = 0;
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
  /**
   * Re-routed requests, by id, until answered: the deadline backstop checks them apart from the
   * shards' submit rings (their first submit time is older than the ring's newer entries), also
   * while they wait for a map refresh on no shard at all.
   */
  private readonly redirected = new Map<number, { target: ReplyTarget; req: Request; at: number; shard: ShardHandle | null }>();
  private controlWaiters = new Map<number, (m: ControlReply) => void>();
  private nextId = 1;
  /** Operations answered 503 here without reaching an actor (queue full or shard down). */
  rejected = 0;
  private flushScheduled = false;
  private readonly packr = new Packr({ useRecords: false, moreTypes: false });
  private statsWaiters = new Map<number, (s: ShardStats) => void>();
  /** Scans and counts in flight, by id: settled by the shard's answer, its deadline, or its crash. */
  private readonly scanWaiters = new Map<number, { shard: ShardHandle; settle: (m: ScanReply | null, error?: ErrorData) => void }>();
  /** Ids of control requests to the actors (stats, scans, counts, feed reads): one sequence for all. */
  private nextControlId = 1;
  /** Catch-up reads of the change feed in flight, by id. */
  private readonly feedRangeWaiters = new Map<number, { shard: ShardHandle; settle: (m: FeedRangeReply) => void }>();
  /** The change feed's hub (null until one attaches). */
  private feedListener: FeedListener | null = null;
  private readonly queueLimit: number;
  /** Value bytes of pending PUTs per shard before 503 (a lone oversized PUT still passes). */
  private readonly queueBytes: number;
  /** KVSQL_OP_DEADLINE_MS: every op and every listing page is answered within it. */
  readonly opDeadlineMs: number;
  private readonly queueWaitMs: number;
  private readonly ticker: NodeJS.Timeout;
  private readonly idleRefresh: NodeJS.Timeout;

  private constructor(
    private readonly config: Readonly<Config>,
    urls: string[],
    private readonly log: PoolLogger,
  ) {
    this.queueLimit = config.queueLimit;
    this.queueBytes = config.queueBytes;
    this.opDeadlineMs = config.opDeadlineMs;
    this.queueWaitMs = config.queueWaitMs;
    this.ticker = setInterval(this.tick, TICK_MS);
    this.ticker.unref();
    this.idleRefresh = setInterval(() => void this.refreshMap(), IDLE_REFRESH_MS);
    this.idleRefresh.unref();
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
      clearInterval(pool.ticker);
      clearInterval(pool.idleRefresh);
      await Promise.all(pool.shards.map((s) => s.worker.terminate()));
      throw err;
    }
    return pool;
  }

  private async bootstrapIfNew(): Promise<void> {
    const members = this.shards.filter((s) => s.shardIndex !== null);
    const fresh = this.shards.filter((s) => s.shardIndex === null && s.up);
    if (fresh.length === 0) return;
    if ((members.length === 0 && fresh.length === this.shards.length) || (members.length > 0 && (await this.concurrentFirstStart(members)))) {
      const map = SlotMap.even(this.shards.length);
      await Promise.all(
        fresh.map(async (s) => {
          const m = await this.control(s, (id) => ({
            type: 'bootstrap',
            id,
            shard: s.index,
            shardCount: this.shards.length,
            slotRanges: map.rangesOf(s.index),
          }));
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

  /**
   * Some databases are members and the rest are empty. That is a store's first start by several
   * gateways at once (another gateway bootstrapped these members a moment ago, or died half way)
   * exactly when every member is shard i of this list with the i-th even share, at epoch 1:
   * nothing was ever moved, so the empty ones may get their even share too (the bootstrap's
   * identity check refuses a different list). Anything else is a database added by hand.
   */
  private async concurrentFirstStart(members: ShardHandle[]): Promise<boolean> {
    const map = SlotMap.even(this.shards.length);
    for (const s of members) {
      if (s.shardIndex !== s.index) return false;
      const m = await this.control(s, (id) => ({ type: 'ownership', id })).catch(() => null);
      if (m === null || m.type !== 'ownership' || m.ownership === undefined) return false;
      const rows = m.ownership.slots; // flattened [slot, state, epoch, peer]
      if (rows.length === 0) continue; // identity written, slots not yet seeded: mid-bootstrap
      const mine = new Set<number>();
      for (let i = 0; i < rows.length; i += 4) {
        if (rows[i + 1] !== SLOT_OWNED || rows[i + 2] !== 1) return false;
        mine.add(rows[i]);
      }
      for (const [first, last] of JSON.parse(map.rangesOf(s.index)) as Array<[number, number]>) {
        for (let slot = first; slot <= last; slot++) if (!mine.delete(slot)) return false;
      }
      if (mine.size > 0) return false;
    }
    return true;
  }

  /** One control request to an actor, answered by a message with the same id (or a timeout). */
  private control(s: ShardHandle, build: (id: number) => ToActor): Promise<ControlReply> {
    return new Promise((resolve, reject) => {
      const id = this.nextControlId++;
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
      return h === -1 ? -1 : (this.shards[h].shardIndex ?? -1);
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

  /** Position (in the shard list) of the shard this gateway routes `key` to now; -1 = unknown. */
  shardOf(key: Uint8Array): number {
    return this.route[slotOf(key)];
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

  /**
   * One page of one key range from every member shard, in shard order (listing, SCAN, KEYS:
   * gateway/key-lister.ts merges them). Rejects with a KvError at once when a shard is down or
   * has SCAN_QUEUE_LIMIT scans waiting, and with 503 KV_ERR_SHARD_UNAVAILABLE when a shard has
   * not answered by `deadlineAt` (epoch ms).
   */
  async scanShards(request: ScanRequest, deadlineAt: number): Promise<ShardPage[]> {
    // Own copies: a view of a larger buffer (a WebSocket frame, Node's pool slab) would be
    // structured-cloned whole, once per shard.
    const q: ScanRequest = { ...request, prefix: Uint8Array.from(request.prefix), after: request.after === null ? null : Uint8Array.from(request.after) };
    const replies = await this.askShards(deadlineAt, (id) => ({ type: 'scan', id, request: q }));
    return replies.map((m) => (m as Extract<ScanReply, { type: 'scanned' }>).page!);
  }

  /** Every member shard's count of the keys of the slots it serves, with its served bitmap (DBSIZE). */
  async countShards(deadlineAt: number): Promise<Array<{ count: number; served: Uint8Array }>> {
    const replies = await this.askShards(deadlineAt, (id) => ({ type: 'count', id }));
    return replies.map((m) => {
      const c = m as Extract<ScanReply, { type: 'counted' }>;
      return { count: c.count!, served: c.served! };
    });
  }

  private askShards(deadlineAt: number, build: (id: number) => ToActor): Promise<ScanReply[]> {
    // A shard that is down is skipped only when no slot routes to it (drained, or never given
    // any): if the map is stale and it does serve some, the caller's coverage check sees the gap.
    const members = this.shards.filter((s) => s.shardIndex !== null && (s.up && !s.exited ? true : this.route.includes(s.index)));
    if (members.length === 0) return Promise.reject(new KvError('KV_ERR_SHARD_UNAVAILABLE', 'no shard is reachable'));
    for (const s of members) {
      if (!s.up || s.exited) {
        this.rejected++;
        return Promise.reject(new KvError('KV_ERR_SHARD_UNAVAILABLE', `shard ${s.index} is unavailable`));
      }
      if (s.scans >= SCAN_QUEUE_LIMIT) {
        this.rejected++;
        return Promise.reject(new KvError('KV_ERR_OVERLOADED', `shard ${s.index} has ${s.scans} scans queued`));
      }
    }
    return Promise.all(
      members.map(
        (s) =>
          new Promise<ScanReply>((resolve, reject) => {
            const id = this.nextControlId++;
            s.scans++;
            const settle = (m: ScanReply | null, error?: ErrorData): void => {
              if (!this.scanWaiters.delete(id)) return;
              clearTimeout(timer);
              s.scans--;
              if (error !== undefined) reject(new KvError(error.code, error.message));
              else resolve(m!);
            };
            const timer = setTimeout(
              () =>
                settle(null, { code: 'KV_ERR_SHARD_UNAVAILABLE', message: `shard ${s.index} gave no answer within the op deadline (${this.opDeadlineMs} ms)` }),
              Math.max(0, deadlineAt - Date.now()),
            );
            this.scanWaiters.set(id, { shard: s, settle });
            s.worker.postMessage(build(id));
          }),
      ),
    );
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
    const s = this.shards[shard];
    if (s === undefined || !s.up || s.exited) return Promise.reject(new KvError('KV_ERR_SHARD_UNAVAILABLE', `shard ${shard} is unavailable`));
    return new Promise((resolve, reject) => {
      const id = this.nextControlId++;
      const timer = setTimeout(() => {
        if (this.feedRangeWaiters.delete(id))
          reject(new KvError('KV_ERR_SHARD_UNAVAILABLE', `shard ${shard} gave no answer within the op deadline (${this.opDeadlineMs} ms)`));
      }, this.opDeadlineMs);
      this.feedRangeWaiters.set(id, {
        shard: s,
        settle: (m) => {
          clearTimeout(timer);
          if (m.error !== undefined) reject(new KvError(m.error.code, m.error.message));
          else resolve({ rows: m.rows!, trimmed: m.trimmed! });
        },
      });
      s.worker.postMessage({ type: 'feedRange', id, after, upto, limit } satisfies ToActor);
    });
  }

  /** Route one request. The target is answered exactly once, possibly synchronously. */
  submit(target: ReplyTarget, op: Request[1], key: Uint8Array, value: Uint8Array | null, ttlMs: number, flags: number, ifVersion: number): void {
    const h = this.route[slotOf(key)];
    if (h === -1) {
      this.rejected++;
      // No reachable shard reported this slot (its shard was down when the map was read).
      target.deliver(errorReply(0, 'KV_ERR_SHARD_UNAVAILABLE', "no reachable shard owns this key's slot"));
      void this.refreshMap();
      return;
    }
    const shard = this.shards[h];
    if (!shard.up) {
      this.rejected++;
      target.deliver(errorReply(0, 'KV_ERR_SHARD_UNAVAILABLE', `shard ${shard.index} is unavailable`));
      return;
    }
    if (shard.pending.size >= this.queueLimit || (value !== null && value.length > 0 && shard.bytes + value.length > this.queueBytes && shard.bytes > 0)) {
      this.rejected++;
      target.deliver(errorReply(0, 'KV_ERR_OVERLOADED', `shard ${shard.index} has ${shard.pending.size} operations queued`));
      return;
    }
    const now = Date.now();
    if (this.queueWaitMs > 0 && shard.pending.size > 0) {
      const waitMs = this.estimatedWaitMs(shard, now);
      if (waitMs > this.queueWaitMs) {
        this.rejected++;
        target.deliver(
          errorReply(
            0,
            'KV_ERR_OVERLOADED',
            `shard ${shard.index}: estimated queue wait ${waitMs === Infinity ? 'unbounded' : `${Math.round(waitMs)} ms`} exceeds ${this.queueWaitMs} ms`,
          ),
        );
        return;
      }
    }
    this.dispatch(shard, target, [this.nextId++, op, key, value, ttlMs, flags, ifVersion], now);
  }

  /**
   * Queue an admitted request for one shard's next frame. `at` is
   * when it was first submitted (a re-routed request keeps it).
   */
  private dispatch(shard: ShardHandle, target: ReplyTarget, req: Request, at: number): void {
    const id = req[0];
    const value = req[3];
    if (shard.pending.size === 0) shard.busySince = Date.now();
    shard.submitted.push(isReadOp(req[1]) ? id : -id, at);
    shard.pending.set(id, new Pending(target, req, at));
    if (value !== null) shard.bytes += value.length;
    shard.frame.push(req);
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
        const p = s.pending.get(id);
        if (p !== undefined && now - ring.peekAt() < this.opDeadlineMs - TICK_MS) break;
        ring.shift();
        if (p === undefined) continue;
        this.release(s, id, p);
        p.target.deliver(this.deadlineReply(id, signed < 0, s.index));
      }
    }
    // Re-routed requests, by their first submit time. One waiting for a map refresh was not
    // applied: every refusal is decided before anything is written, so only a request now sent
    // to a shard can be in doubt.
    for (const [id, e] of this.redirected) {
      if (now - e.at < this.opDeadlineMs - TICK_MS) continue;
      const s = e.shard;
      const p = s === null ? undefined : s.pending.get(id);
      if (s !== null && p === undefined) continue;
      this.redirectCount.delete(e.req);
      if (s !== null) this.release(s, id, p!);
      else this.redirected.delete(id);
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

  async stats(timeoutMs = 2000): Promise<Array<ShardStats | null>> {
    return Promise.all(
      this.shards.map(
        (s) =>
          new Promise<ShardStats | null>((resolve) => {
            const id = this.nextControlId++;
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
    clearInterval(this.idleRefresh);
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
          case 'scanned':
          case 'counted':
            this.scanWaiters.get(m.id)?.settle(m, m.error);
            break;
          case 'feed':
            this.feedListener?.onFeed(s.index, s.shardIndex, m);
            break;
          case 'feedRange': {
            const w = this.feedRangeWaiters.get(m.id);
            this.feedRangeWaiters.delete(m.id);
            w?.settle(m);
            break;
          }
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

  /** `p` (s.pending's entry for `id`) is answered or moves elsewhere: drop it from the shard's queue. */
  private release(s: ShardHandle, id: number, p: Pending): void {
    s.pending.delete(id);
    if (this.redirected.size > 0) this.redirected.delete(id);
    if (s.pending.size === 0) s.busyMs += Date.now() - s.busySince; // the last one: idle from now
    s.bytes -= bytesOf(p.req);
  }

  private onReplies(s: ShardHandle, replies: Reply[]): void {
    s.replyFrames++;
    for (const r of replies) {
      const p = s.pending.get(r[0]);
      if (p === undefined) continue; // answered by the deadline backstop already
      s.completed++;
      this.release(s, r[0], p);
      if (r[2] === 'KV_ERR_WRONG_SHARD') this.redirect(p.target, p.req, p.at, r, s);
      else p.target.deliver(r);
    }
  }

  /**
   * The shard refused the request: its slot moved. Refresh the map, then route it again; from
   * the second redirect on, wait a little first (the flip between two shards takes milliseconds).
   */
  private redirect(target: ReplyTarget, req: Request, at: number, refusal: Reply, from: ShardHandle): void {
    const id = req[0];
    const n = (this.redirectCount.get(req) ?? 0) + 1;
    const giveUp = (code: 'KV_ERR_SLOT_MOVING' | 'KV_ERR_SHARD_UNAVAILABLE', message: string): void => {
      this.redirectCount.delete(req);
      this.redirected.delete(id);
      target.deliver(errorReply(id, code, message));
    };
    if (n > MAX_REDIRECTS) {
      giveUp('KV_ERR_SLOT_MOVING', `re-routed ${MAX_REDIRECTS} times: ${String(refusal[3])}`);
      return;
    }
    this.redirectCount.set(req, n);
    this.redirects++;
    const entry = { target, req, at, shard: null as ShardHandle | null };
    this.redirected.set(id, entry);
    const send = (shard: ShardHandle): void => {
      entry.shard = shard;
      this.dispatch(shard, target, req, at);
    };
    // The refusing shard moved the slot and named the new owner: go there now, and bring the
    // rest of the map up to date in the background (a wrong hint just costs another redirect).
    const hint = typeof refusal[4] === 'number' ? this.byShardIndex(refusal[4]) : undefined;
    const backoff = Math.min(500, 5 * 2 ** n);
    if (hint === from) {
      // It is taking the slot over (between the source's hand-off and its own take-over, a few
      // ms): ask it again shortly; the map is right already.
      setTimeout(() => {
        if (this.redirected.get(id) !== entry) return; // answered meanwhile (op deadline)
        if (!from.up || from.exited) giveUp('KV_ERR_SHARD_UNAVAILABLE', 'the shard that owns this key is unavailable');
        else send(from);
      }, backoff);
      return;
    }
    if (n === 1 && hint !== undefined && hint.up && !hint.exited) {
      this.route[slotOf(req[2])] = hint.index;
      void this.refreshMap();
      send(hint);
      return;
    }
    const resend = (): void => {
      if (this.redirected.get(id) !== entry) return; // answered meanwhile (op deadline)
      const h = this.route[slotOf(req[2])];
      const shard = h === -1 ? undefined : this.shards[h];
      if (shard === undefined || !shard.up || shard.exited) {
        giveUp(shard === undefined ? 'KV_ERR_SLOT_MOVING' : 'KV_ERR_SHARD_UNAVAILABLE', 'the shard that owns this key is unavailable');
        return;
      }
      send(shard);
    };
    const delay = n === 1 ? 0 : backoff;
    void this.refreshMap().then(() => (delay === 0 ? resend() : setTimeout(resend, delay)));
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
    // A read changed nothing whatever happened to it: it is plainly unavailable (safe to retry).
    const message = `${why}; an operation in flight may or may not have been applied`;
    for (const w of [...this.scanWaiters.values()]) if (w.shard === s) w.settle(null, { code: 'KV_ERR_SHARD_UNAVAILABLE', message: why });
    for (const [id, w] of [...this.feedRangeWaiters]) {
      if (w.shard !== s) continue;
      this.feedRangeWaiters.delete(id);
      w.settle({ type: 'feedRange', id, error: { code: 'KV_ERR_SHARD_UNAVAILABLE', message: why } });
    }
    this.feedListener?.onFeedLost(s.index);
    for (const [id, p] of s.pending) {
      this.release(s, id, p);
      if (isReadOp(p.target.op)) p.target.deliver(errorReply(id, 'KV_ERR_SHARD_UNAVAILABLE', why));
      else p.target.deliver(errorReply(id, 'KV_ERR_OUTCOME_UNKNOWN', message));
    }
  }
}

/** Everything an actor needs, derived from the gateway's Config in this one place. */
function actorConfig(config: Readonly<Config>, i: number, url: string): ActorConfig {
  return {
    shard: i,
    url,
    nodes: shardNodes(url),
    slotHoldMs: config.slotHoldMs,
    batching: config.batching,
    maxBatchOps: config.maxBatchOps,
    maxBatchBytes: config.maxBatchBytes,
    readsInFlight: config.readsInFlight,
    writesInFlight: config.writesInFlight,
    queryTimeoutMs: config.queryTimeoutMs,
    opDeadlineMs: actorDeadlineMs(config.opDeadlineMs),
    maxRetries: config.maxRetries,
    tls: mysqlTls(config),
    feed: config.feed
      ? { enabled: true, pollMs: config.feedPollMs, retentionMs: config.feedRetentionMs, maxRows: config.feedMaxRows, maxBytes: config.feedMaxBytes }
      : undefined,
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
