/**
 * Owns the MySQL implementation of ShardStore for one shard: builds the shard's connections and
 * hands each method to the file that owns its concept. Relies on those files (connections,
 * ownership, reads, writes, expiry, feed). Must not hold SQL or logic of its own: a method here is
 * one call through.
 *
 *   MysqlShardStore ──> ShardConnections   pools per node, writer selection, acquire rules, probe
 *        ├── StoreOwnership   init, bootstrap, ownership, movedTo, fillSlots
 *        ├── StoreReads       readLive, scanRange, readValues, countBySlot (+ served-set cache)
 *        ├── StoreWrites      transact, settle, reserveVersionBlock
 *        ├── StoreExpiry      reap, reapWithFeed, due scans, expirer lease
 *        └── StoreFeed        feedHead, feedTail, feedRange, feedFill, feedTrim
 */
import type { FeedRow } from '../../protocol/feed';
import type { ScanRequest } from '../../protocol/listing';
import type { GroupStats } from '../../protocol/port-messages';
import type { ShardOwnership } from '../../protocol/slot-map';
import type {
  CountResult,
  Decide,
  DueRow,
  FeedHead,
  FeedRetention,
  ReadResult,
  Recheck,
  ScanResult,
  ShardIdentity,
  ShardInit,
  ShardStore,
  TxControl,
} from '../shard-store';
import { ShardConnections, type StoreOptions } from './connections';
import { StoreExpiry } from './expiry';
import { StoreFeed } from './feed';
import { StoreOwnership } from './ownership';
import { StoreReads } from './reads';
import { StoreWrites } from './writes';

export class MysqlShardStore implements ShardStore {
  private readonly c: ShardConnections;
  private readonly owner: StoreOwnership;
  private readonly reads: StoreReads;
  private readonly writes: StoreWrites;
  private readonly expiry: StoreExpiry;
  private readonly feed: StoreFeed;
  /** Read batches answered through the epoch (fast) and through the slots' rows (for tests and profiling). */
  readonly readPaths: { epoch: number; slots: number };

  constructor(opts: StoreOptions) {
    this.c = new ShardConnections(opts);
    this.owner = new StoreOwnership(this.c);
    this.reads = new StoreReads(this.c);
    this.writes = new StoreWrites(this.c);
    this.expiry = new StoreExpiry(this.c, opts.leaseMs ?? 6000);
    this.feed = new StoreFeed(this.c);
    this.readPaths = this.reads.readPaths;
  }

  async init(): Promise<ShardInit> {
    const got = await this.owner.init();
    this.writes.hashTags = got.hashTags;
    return got;
  }

  async bootstrap(identity: ShardIdentity): Promise<ShardInit> {
    const got = await this.owner.bootstrap(identity);
    this.writes.hashTags = got.hashTags;
    return got;
  }

  ownership(): Promise<ShardOwnership> {
    return this.owner.ownership();
  }

  movedTo(slots: number[]): Promise<Map<number, number>> {
    return this.owner.movedTo(slots);
  }

  fillSlots(limit: number): Promise<number> {
    return this.owner.fillSlots(limit);
  }

  readLive(keys: Buffer[], slots: number[], ctl?: TxControl): Promise<ReadResult> {
    return this.reads.readLive(keys, slots, ctl);
  }

  scanRange(q: ScanRequest, end: Buffer | null, ctl?: TxControl): Promise<ScanResult> {
    return this.reads.scanRange(q, end, ctl);
  }

  readValues(keys: Buffer[], ctl?: TxControl): Promise<Map<string, { v: Buffer; expires_at: number | null }>> {
    return this.reads.readValues(keys, ctl);
  }

  countBySlot(ctl?: TxControl): Promise<CountResult> {
    return this.reads.countBySlot(ctl);
  }

  transact(sortedKeys: Buffer[], sortedSlots: number[], decide: Decide, ctl?: TxControl, recheck?: Recheck, withValues?: boolean): Promise<void> {
    return this.writes.transact(sortedKeys, sortedSlots, decide, ctl, recheck, withValues);
  }

  settle(threadId: number, connectedAt: number): Promise<boolean> {
    return this.writes.settle(threadId, connectedAt);
  }

  reserveVersionBlock(size: number, above: number): Promise<number> {
    return this.writes.reserveVersionBlock(size, above);
  }

  reap(keys: Buffer[]): Promise<number> {
    return this.expiry.reap(keys);
  }

  reapWithFeed(keys: Buffer[]): Promise<number> {
    return this.expiry.reapWithFeed(keys);
  }

  scanDueWindow(afterTs: number, uptoTs: number, limit: number): Promise<DueRow[]> {
    return this.expiry.scanDueWindow(afterTs, uptoTs, limit);
  }

  scanDueTies(ts: number, afterKey: Buffer, limit: number): Promise<DueRow[]> {
    return this.expiry.scanDueTies(ts, afterKey, limit);
  }

  scanOverdue(limit: number): Promise<DueRow[]> {
    return this.expiry.scanOverdue(limit);
  }

  tryExpirerLock(): Promise<boolean> {
    return this.expiry.tryExpirerLock();
  }

  releaseExpirerLock(): Promise<void> {
    return this.expiry.releaseExpirerLock();
  }

  feedHead(window: number): Promise<FeedHead> {
    return this.feed.feedHead(window);
  }

  feedTail(after: number, holes: number[], limit: number): Promise<FeedRow[]> {
    return this.feed.feedTail(after, holes, limit);
  }

  feedRange(after: number, upto: number, limit: number): Promise<{ rows: FeedRow[]; trimmed: number }> {
    return this.feed.feedRange(after, upto, limit);
  }

  feedFill(ids: number[]): Promise<void> {
    return this.feed.feedFill(ids);
  }

  feedTrim(now: number, limits: FeedRetention): Promise<number> {
    return this.feed.feedTrim(now, limits);
  }

  now(): Promise<number> {
    return this.c.probe();
  }

  groupStats(): GroupStats | null {
    return this.c.groupStats();
  }

  async close(): Promise<void> {
    await this.expiry.releaseExpirerLock();
    await this.c.close();
  }
}
