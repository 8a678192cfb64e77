/**
 * Owns the gateway's change-feed watchers: which shards' tailers run (only while someone
 * watches), a bounded ring of recent batches per shard, resuming from a cursor (catch-up reads of
 * kv_feed, then the ring, then live), and fan-out by key prefix. Relies on ShardPool (feed
 * messages, catch-up reads) and protocol/feed (cursor). Must not touch sockets: every door (the
 * WebSocket watch op, SSE, the Redis door's keyspace notifications) is a `FeedSink`.
 *
 * Per shard (position f), what a watcher sees:
 *
 *   kv_feed ids:  ... trimmed | ............ catch-up reads (p, low] ............ | ring | live
 *                             p (cursor)                                 floor <= low
 *   ring: | batch | batch | ... |   each batch = rows the tailer found in one poll, with its
 *         low-water mark `low` and `top` (highest id seen so far). floor = top of the last batch
 *         dropped from the ring (or where the tailer started): a position >= floor is replayed
 *         from the ring alone; a lower one is first read from MySQL up to `low` (every id <= low
 *         is committed or dead, so a range read there misses nothing).
 *
 * What must stay true: a watcher's position for a shard is only ever a valid resume point (every
 * id <= it delivered to this watcher or dead): after row r of batch b it is max(pos, min(r,
 * b.low)); after a catch-up row r it is r. Rows with id <= pos are never delivered again. A row
 * the tailer delivers after its low reached q has id > q (it was a hole above low), so filtering
 * by id > pos loses nothing. Memory: the ring is bounded (RING_ROWS per shard); a watcher holds
 * only its positions; a slow sink is the door's to cut off (FeedSink.backlogged and unsubscribe).
 */
import {
  decodeCursor,
  encodeCursor,
  FEED_CREATED,
  FEED_KIND,
  FEED_REDIS_EVENTS,
  FEED_WITH_TTL,
  FEED_TYPE_NAMES,
  type CursorPositions,
  type FeedRow,
  type FeedType,
} from '../protocol/feed';
import { KvError, toErrorData, type ErrorData } from '../protocol/errors';
import type { FeedListener, ShardPool } from './shard-pool';
import { Packr } from 'msgpackr';

const packr = new Packr({ useRecords: false, moreTypes: false });

/** Rows kept per shard for watchers that resume from a recent cursor or join late. */
const RING_ROWS = 100_000;
/** Rows per catch-up read. */
const CATCHUP_ROWS = 1000;
/** How long a shard's tailer keeps running after its last watcher left (a reconnect is cheap then). */
const LINGER_MS = 5000;
/** While a catch-up waits (tailer starting, sink backlogged), it looks again this often. */
const WAIT_MS = 20;
/** A shard whose tailer has not started within this long fails its watchers (503, with the cursor). */
const START_TIMEOUT_MS = 5000;

/** One change as a watcher sees it. */
export interface FeedEvent {
  type: FeedType;
  /** Redis's name for the change: set, incrby, incrbyfloat, append, del, expire, persist, expired. */
  event: string;
  /** put: the key did not exist (or had expired) before (Redis's `new`). */
  created: boolean;
  /** put: the op itself set a TTL (SET ... EX; Redis then also notifies `expire`). */
  ttl: boolean;
  key: Buffer;
  /** The version written (put), or of the value acted on (del, expire, persist, expired). */
  version: number;
  /** Unix ms on the shard's clock when the change committed (its transaction's NOW). */
  at: number;
  /** The key's expiry after the change (put with a TTL, expire), else null. */
  expiresAt: number | null;
  /** kv_shard index and kv_feed id: (shard, id) names the event exactly, also across resumes. */
  shard: number;
  id: number;
}

/** An error that ends a subscription; `cursor` (when known) resumes it without loss. */
export interface FeedError extends ErrorData {
  cursor?: string;
}

/** Where a subscription's events go: one per door connection or per Redis subscriber. */
export interface FeedSink {
  /** An event, and the cursor to resume after it. */
  onEvent(e: FeedEvent, cursor: string): void;
  /** The subscription ended (it is already unsubscribed). */
  onError(err: FeedError): void;
  /** Catch-up waits while this is true (the door's buffer is full); live events are not held. */
  backlogged?(): boolean;
}

export interface Subscription {
  /** The resume point after everything delivered so far. */
  cursor(): string;
  unsubscribe(): void;
}

export interface SubscribeOptions {
  /** Key prefix (empty: every key), or the exact key with `exact`. */
  prefix: Uint8Array;
  exact?: boolean;
  /** 'now', or a cursor string from an earlier event or error. */
  from: string;
}

interface Batch {
  rows: FeedRow[];
  low: number;
  top: number;
  /** The rows' keys as latin1 strings, made once for every watcher that looks (W3). */
  keys?: string[];
}

class ShardFeed {
  state: 'off' | 'starting' | 'on' = 'off';
  waiters: Array<() => void> = [];
  low = 0;
  floor = 0;
  top = 0;
  /** Ring of batches: live ones are batches[head..]. */
  batches: Batch[] = [];
  head = 0;
  rows = 0;
  /** Watchers receiving this shard's batches as they come. */
  readonly live = new Set<Watcher>();
  constructor(
    readonly pos: number,
    readonly index: number,
  ) {}
  reset(): void {
    this.state = 'off';
    this.batches = [];
    this.head = 0;
    this.rows = 0;
    this.live.clear();
  }
}

class Watcher implements Subscription {
  closed = false;
  readonly prefix: string;
  constructor(
    private readonly hub: FeedHub,
    prefix: Uint8Array,
    readonly exact: boolean,
    /** kv_shard index -> position; also positions of shards this gateway does not know. */
    readonly pos: CursorPositions,
    readonly sink: FeedSink,
  ) {
    this.prefix = Buffer.from(prefix.buffer, prefix.byteOffset, prefix.byteLength).toString('latin1');
  }
  cursor(): string {
    return encodeCursor(this.pos);
  }
  unsubscribe(): void {
    this.hub.remove(this);
  }
  matches(keyStr: string): boolean {
    return this.exact ? keyStr === this.prefix : keyStr.startsWith(this.prefix);
  }
}

export class FeedHub implements FeedListener {
  private readonly feeds = new Map<number, ShardFeed>();
  private readonly watchers = new Set<Watcher>();
  private lingerTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly pool: ShardPool,
    private readonly enabled: boolean,
  ) {
    pool.attachFeed(this);
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  /**
   * Watch keys under `opts.prefix` from `opts.from`. Throws KvError for a bad cursor or when the
   * feed is off; a cursor past retention is reported through sink.onError (KV_ERR_CURSOR_EXPIRED)
   * once the shard says so. Events then flow to the sink until unsubscribe() or an error.
   */
  subscribe(opts: SubscribeOptions, sink: FeedSink): Subscription {
    if (!this.enabled) throw new KvError('KV_ERR_BAD_REQUEST', 'the change feed is off on this gateway (KVSQL_FEED=off)');
    const fromNow = opts.from === 'now';
    const pos: CursorPositions = fromNow ? new Map() : decodeCursor(opts.from);
    const w = new Watcher(this, opts.prefix, opts.exact === true, pos, sink);
    this.watchers.add(w);
    if (this.lingerTimer !== null) {
      clearTimeout(this.lingerTimer);
      this.lingerTimer = null;
    }
    for (const [position, index] of this.pool.feedShards()) {
      let f = this.feeds.get(position);
      if (f === undefined || f.index !== index) this.feeds.set(position, (f = new ShardFeed(position, index)));
      if (fromNow) {
        // From now: the current low-water mark once the tailer runs; nothing older is replayed.
        pos.set(index, -1);
        this.ensureStarted(f).then(
          () => {
            if (w.closed) return;
            pos.set(index, f!.low);
            this.replayAndJoin(w, f!, f!.low);
          },
          (err) => {
            // Not started: nothing of this shard was delivered; a resume starts at its low mark then.
            pos.delete(index);
            this.fail(w, toErrorData(err));
          },
        );
      } else {
        if (!pos.has(index)) pos.set(index, 0);
        void this.catchUp(w, f, pos.get(index)!).catch((err) => this.fail(w, toErrorData(err)));
      }
    }
    return w;
  }

  /** The cursor a 'now' subscription starts from, once every shard's tailer runs. */
  async ready(sub: Subscription): Promise<string> {
    const w = sub as Watcher;
    for (;;) {
      let pending = false;
      for (const v of w.pos.values()) if (v < 0) pending = true;
      // A failed watcher's ready never comes: its sink got the error.
      if (!pending || w.closed) return w.cursor();
      await sleep(WAIT_MS / 4);
    }
  }

  remove(w: Watcher): void {
    if (w.closed) return;
    w.closed = true;
    this.watchers.delete(w);
    for (const f of this.feeds.values()) f.live.delete(w);
    if (this.watchers.size === 0 && this.lingerTimer === null) {
      this.lingerTimer = setTimeout(() => {
        this.lingerTimer = null;
        if (this.watchers.size > 0) return;
        for (const f of this.feeds.values()) {
          if (f.state !== 'off') this.pool.feedWatch(f.pos, false);
          f.reset();
        }
      }, LINGER_MS);
      this.lingerTimer.unref();
    }
  }

  /** Ends every subscription (gateway shutdown), each with its cursor. */
  closeAll(err: ErrorData): void {
    for (const w of [...this.watchers]) this.fail(w, err);
  }

  private fail(w: Watcher, err: ErrorData): void {
    if (w.closed) return;
    const cursor = w.cursor();
    this.remove(w);
    w.sink.onError({ code: err.code, message: err.message, cursor });
  }

  /** Resolves once the shard's tailer runs; rejects (503) if it has not started within START_TIMEOUT_MS. */
  private ensureStarted(f: ShardFeed): Promise<void> {
    if (f.state === 'on') return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = f.waiters.indexOf(done);
        if (i >= 0) f.waiters.splice(i, 1);
        reject(
          new KvError(
            'KV_ERR_SHARD_UNAVAILABLE',
            `shard ${f.index}'s change feed did not start within ${START_TIMEOUT_MS} ms (shard down?); resume from the cursor`,
          ),
        );
      }, START_TIMEOUT_MS);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      f.waiters.push(done);
    });
    if (f.state === 'off') {
      f.state = 'starting';
      this.pool.feedWatch(f.pos, true);
    }
    return p;
  }

  /** From position p: read MySQL until the ring covers p, then replay the ring and go live. */
  private async catchUp(w: Watcher, f: ShardFeed, p: number): Promise<void> {
    await this.ensureStarted(f);
    while (!w.closed) {
      if (f.state !== 'on') {
        await this.ensureStarted(f);
        continue;
      }
      if (p >= f.floor) {
        this.replayAndJoin(w, f, p);
        return;
      }
      const upto = f.low;
      if (upto < f.floor || upto <= p) {
        await sleep(WAIT_MS);
        continue;
      }
      const page = await this.pool.feedRange(f.pos, p, upto, CATCHUP_ROWS);
      if (w.closed) return;
      if (p < page.trimmed) {
        this.fail(w, {
          code: 'KV_ERR_CURSOR_EXPIRED',
          message: `the cursor's position ${p} on shard ${f.index} is older than the feed's retention (rows up to ${page.trimmed} were trimmed); start again from "now"`,
        });
        return;
      }
      for (const r of page.rows) {
        p = r[0];
        w.pos.set(f.index, p);
        const keyStr = Buffer.from(r[1].buffer, r[1].byteOffset, r[1].byteLength).toString('latin1');
        if (r[4] !== 0 && w.matches(keyStr)) w.sink.onEvent(eventOf(r, f.index), w.cursor());
        if (w.closed) return;
      }
      p = page.rows.length >= CATCHUP_ROWS ? p : upto;
      w.pos.set(f.index, p);
      while (!w.closed && w.sink.backlogged?.() === true) await sleep(WAIT_MS);
    }
  }

  /** Replay the ring's batches after p, then receive the shard's batches live (synchronous). */
  private replayAndJoin(w: Watcher, f: ShardFeed, p: number): void {
    if (w.closed) return;
    w.pos.set(f.index, Math.max(w.pos.get(f.index) ?? 0, p));
    let i = f.head;
    while (i < f.batches.length && f.batches[i].top <= p) i++;
    for (; i < f.batches.length && !w.closed; i++) this.deliver(w, f, f.batches[i]);
    if (!w.closed) f.live.add(w);
  }

  private deliver(w: Watcher, f: ShardFeed, b: Batch): void {
    let pos = w.pos.get(f.index)!;
    const keys = (b.keys ??= b.rows.map((r) => Buffer.from(r[1].buffer, r[1].byteOffset, r[1].byteLength).toString('latin1')));
    for (let i = 0; i < b.rows.length; i++) {
      const r = b.rows[i];
      if (r[0] <= pos) continue;
      if (!w.matches(keys[i])) continue;
      pos = Math.max(pos, Math.min(r[0], b.low));
      w.pos.set(f.index, pos);
      w.sink.onEvent(eventOf(r, f.index), w.cursor());
      if (w.closed) return;
    }
    w.pos.set(f.index, Math.max(pos, b.low));
  }

  onFeed(position: number, index: number | null, m: { rows: Uint8Array | null; low: number; start: { floor: number } | null }): void {
    const f = this.feeds.get(position);
    if (f === undefined || f.state === 'off' || (index !== null && index !== f.index)) return;
    if (m.start !== null) {
      f.state = 'on';
      f.floor = m.start.floor;
      f.top = m.start.floor;
      f.low = m.low;
      f.batches = [];
      f.head = 0;
      f.rows = 0;
      const waiters = f.waiters;
      f.waiters = [];
      for (const resolve of waiters) resolve();
      return;
    }
    if (f.state !== 'on') return;
    const rows: FeedRow[] = m.rows === null ? [] : (packr.unpack(m.rows) as FeedRow[]);
    for (const r of rows) if (r[0] > f.top) f.top = r[0];
    const b: Batch = { rows, low: m.low, top: f.top };
    f.low = m.low;
    f.batches.push(b);
    f.rows += rows.length;
    while (f.rows > RING_ROWS && f.head < f.batches.length - 1) {
      const old = f.batches[f.head++];
      f.rows -= old.rows.length;
      f.floor = old.top;
    }
    if (f.head > 1024 && f.head * 2 > f.batches.length) {
      f.batches = f.batches.slice(f.head);
      f.head = 0;
    }
    for (const w of f.live) this.deliver(w, f, b);
  }

  onFeedLost(position: number): void {
    const f = this.feeds.get(position);
    if (f === undefined || f.state === 'off') return;
    const lost = new Set<Watcher>(this.watchers);
    f.reset();
    for (const w of lost) this.fail(w, { code: 'KV_ERR_SHARD_UNAVAILABLE', message: `shard ${f.index}'s actor restarted; resume from the cursor` });
  }
}

function eventOf(r: FeedRow, shard: number): FeedEvent {
  const key = Buffer.from(r[1].buffer, r[1].byteOffset, r[1].byteLength);
  const kind = r[4] & FEED_KIND;
  return {
    type: FEED_TYPE_NAMES[kind],
    event: FEED_REDIS_EVENTS[kind],
    created: (r[4] & FEED_CREATED) !== 0,
    ttl: (r[4] & FEED_WITH_TTL) !== 0,
    key,
    version: r[2],
    at: r[3],
    expiresAt: r[5],
    shard,
    id: r[0],
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
