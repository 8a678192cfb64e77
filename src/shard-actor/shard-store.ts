/**
 * Owns the seam between the actor and MySQL: the ShardStore interface, the rows and results that
 * cross it, and TxControl, which the actor and a store share for one batch. Relies on
 * src/protocol types only. Must not hold an implementation: the MySQL one is
 * mysql-store/mysql-shard-store.ts, the actor's tests use an in-memory one; both are checked
 * against this interface at compile time (`implements ShardStore`).
 *
 * The shard's clock decides expiry: reads return only rows live on the shard's clock, and a write
 * transaction's `now` is the shard's, so gateways with skewed clocks agree on which keys are
 * live. A COMMIT whose outcome is unknown is reported as such (TxControl.phase), and settle()
 * says when it is certainly decided.
 */
import type { FeedRow } from '../protocol/feed';
import type { ScanRequest } from '../protocol/listing';
import type { GroupStats } from '../protocol/port-messages';
import type { ShardOwnership } from '../protocol/slot-map';

/**
 * Shared by the actor and the store for one batch (a read or a write transaction, retries
 * included). The actor abandons a batch whose op deadline passed; the store then never sends
 * COMMIT and `cut` destroys the connection in use, so a statement stuck in a hung server holds
 * neither a pool slot nor the actor.
 */
export interface TxControl {
  /** Set by the actor: stop; never send COMMIT. */
  abandoned: boolean;
  /**
   * Set by the store: 'commit' once the COMMIT statement was handed to the connection, 'work'
   * again when a transact attempt starts (an earlier attempt's COMMIT failed with an answer).
   */
  phase: 'work' | 'commit';
  /** Set by the store: the server thread id of the connection that sent COMMIT, and when it connected (local ms). */
  threadId: number;
  connectedAt: number;
  /** Set by the store while it holds a connection: destroys it at once. */
  cut: (() => void) | null;
}

export function newTxControl(): TxControl {
  return { abandoned: false, phase: 'work', threadId: 0, connectedAt: 0, cut: null };
}

export interface LiveRow {
  k: Buffer;
  v: Buffer;
  version: number;
  expires_at: number | null;
  now_ms: number;
}

export interface LockedRow {
  version: number;
  expiresAt: number | null;
  /** The row's value: read with the lock only for batches with an op that needs it (needsValue). */
  value?: Buffer;
}

export interface RowMutations {
  /** [key, value, version, expiresAt] for keys that had no row when locked */
  inserts: Array<[Buffer, Uint8Array, number, number | null]>;
  /** [key, value, version, expiresAt] for keys whose row is locked */
  upserts: Array<[Buffer, Uint8Array, number, number | null]>;
  /** [key, expiresAt] for rows whose value is unchanged */
  ttlUpdates: Array<[Buffer, number | null]>;
  deletes: Buffer[];
  /** [slot, key] of keys in slots being copied away (state 2): logged for the mover's catch-up. */
  changed?: Array<[number, Buffer]>;
  /** Change-feed rows (KVSQL_FEED on): one INSERT into kv_feed, the batch's last statement. */
  feed?: FeedWrite[];
}

/** One change-feed row of a write batch: [key, version, type, expiresAt] (kv_feed; at = the batch's now). */
export type FeedWrite = [Buffer, number, number, number | null];

export interface DueRow {
  k: Buffer;
  expires_at: number;
}

export interface ShardIdentity {
  shard: number;
  shardCount: number;
  slotRanges: string;
}

/** What init and bootstrap learn from kv_shard. */
export interface ShardInit {
  /** kv_shard.shard_index; null for a database not (yet) part of a store. */
  shardIndex: number | null;
  /** The store hashes {tags} (kv_shard.hash_rule = HASH_TAGS), else whole keys. */
  hashTags: boolean;
}

/** The result of one read batch: live rows, and which of the asked slots this shard serves. */
export interface ReadResult {
  rows: LiveRow[];
  /** Slots (of those asked) whose kv_slots state lets this shard serve reads, same snapshot. */
  served: Set<number>;
}

/** A served set and the kv_slots_epoch.n it was read at. */
export interface ServedSet {
  epoch: number;
  slots: Set<number>;
}

/** One live row of a key-range scan; `len` (the value's length) only when values were asked. */
export interface ScanRow {
  k: Buffer;
  expires_at: number | null;
  len?: number;
}

/** The rows of one key-range scan and the served set of the same read view (see scanRange). */
export interface ScanResult {
  rows: ScanRow[];
  served: ServedSet;
}

/** Live keys per slot (all slots with rows), with the served set of the same read view. */
export interface CountResult {
  counts: Map<number, number>;
  served: ServedSet;
}

/**
 * The slots of a write batch as locked (LOCK IN SHARE MODE) in its transaction: state by slot,
 * absent = not owned. The mover's fence (an UPDATE of the row) waits for this transaction.
 */
export type SlotStates = Map<number, number>;

/** The seam between the actor and MySQL. */
export interface ShardStore {
  /**
   * Applies the schema and its migrations; returns this shard's index, or null for a database
   * that is not yet part of a store (the gateway then bootstraps it, or refuses), and the store's
   * hash rule. A store switching rules (`kvsql hashtags enable`) is refused (fatal).
   */
  init(): Promise<ShardInit>;
  /** First start of a store: record this shard's identity and seed its slots (idempotent). */
  bootstrap(identity: ShardIdentity): Promise<ShardInit>;
  /** This shard's kv_slots and kv_peers (the gateway builds the slot map from every shard's). */
  ownership(): Promise<ShardOwnership>;
  /**
   * Routing hints for slots this shard refused: slot -> the new owner's index for a slot it moved
   * away, or its own index for a slot it is taking over (importing: it owns the slot in a moment).
   */
  movedTo(slots: number[]): Promise<Map<number, number>>;
  /** Fill `slot` of up to `limit` rows written before the column existed; returns how many. */
  fillSlots(limit: number): Promise<number>;
  readLive(keys: Buffer[], slots: number[], ctl?: TxControl): Promise<ReadResult>;
  /**
   * Live rows in [q.prefix, end), > q.after, ascending, at most q.limit (with values: each
   * value's length, not the value), and the served set as of the same read view.
   */
  scanRange(q: ScanRequest, end: Buffer | null, ctl?: TxControl): Promise<ScanResult>;
  /** Values and expiries of those of `keys` that are live now (point reads; for a scan's page). */
  readValues(keys: Buffer[], ctl?: TxControl): Promise<Map<string, { v: Buffer; expires_at: number | null }>>;
  /** Live rows per slot, from the kv_slot index, and the served set as of the same read view. */
  countBySlot(ctl?: TxControl): Promise<CountResult>;
  /**
   * One attempt of one transaction. `ctl.phase` is 'work' until COMMIT is handed to the
   * connection, then 'commit': an error thrown with it 'commit' came from the COMMIT.
   * `decide` also gets kv_seq's counter as committed when the rows were locked: every version
   * issued on this shard by then, by any gateway, is below it, and the state of every slot in
   * `sortedSlots`, share-locked. Keys in `logKeys` (returned by decide: keys of slots being
   * copied away) are recorded in kv_slot_changes in the same transaction. `withValues`: the
   * locked rows carry their values (LockedRow.value).
   */
  transact(sortedKeys: Buffer[], sortedSlots: number[], decide: Decide, ctl?: TxControl, recheck?: Recheck, withValues?: boolean): Promise<void>;
  /**
   * After a connection was lost with its COMMIT in flight: true once the server has certainly
   * finished that transaction (committed or rolled back), i.e. its connection's thread is gone
   * (killed here if needed) or the server restarted since. Throws while the server is unreachable.
   */
  settle(threadId: number, connectedAt: number): Promise<boolean>;
  /** Reserve `size` versions, all above `above`; returns the first. */
  reserveVersionBlock(size: number, above: number): Promise<number>;
  /** Delete those of `keys` whose row is still expired now (autocommit); returns how many. */
  reap(keys: Buffer[]): Promise<number>;
  /** reap() with the change feed on: also writes an `expired` kv_feed row for each row it deleted. */
  reapWithFeed(keys: Buffer[]): Promise<number>;
  /** Where a feed tailer starts (see FeedHead); `window` ids below the highest are listed. */
  feedHead(window: number): Promise<FeedHead>;
  /** kv_feed rows with id > after (at most limit), and those of `holes` (ids below it). */
  feedTail(after: number, holes: number[], limit: number): Promise<FeedRow[]>;
  /** kv_feed rows in (after, upto], ascending, at most limit, with the retention horizon. */
  feedRange(after: number, upto: number, limit: number): Promise<{ rows: FeedRow[]; trimmed: number }>;
  /** Filler rows at these ids, where nobody holds them (see feedFill in mysql-store/statements.ts). */
  feedFill(ids: number[]): Promise<void>;
  /** One bounded retention step; returns the rows deleted. */
  feedTrim(now: number, limits: FeedRetention): Promise<number>;
  /** The shard's clock, in unix ms. Doubles as the health probe: a read-only server fails it. */
  now(): Promise<number>;
  scanDueWindow(afterTs: number, uptoTs: number, limit: number): Promise<DueRow[]>;
  scanDueTies(ts: number, afterKey: Buffer, limit: number): Promise<DueRow[]>;
  scanOverdue(limit: number): Promise<DueRow[]>;
  /** Take or renew this shard's expirer lease (a row in kv_lease); true while this store holds it. */
  tryExpirerLock(): Promise<boolean>;
  releaseExpirerLock(): Promise<void>;
  /** Writer node and node health of a Galera shard group; null (or absent) for a single server. */
  groupStats?(): GroupStats | null;
  close(): Promise<void>;
}

/**
 * Decides a write transaction's row changes from its locked rows, the shard's clock, kv_seq's
 * counter as committed when the rows were locked, and the batch's slot states (see transact).
 */
export type Decide = (locked: Map<string, LockedRow>, now: number, issuedBelow: number, slots: SlotStates) => Promise<RowMutations> | RowMutations;

/**
 * Called when a transaction INSERTed rows (keys that had no row to lock), after the INSERT and
 * before COMMIT, with kv_seq's counter as committed then. Returns upserts to apply before COMMIT
 * (new versions for those rows), or null to commit as planned. See write-path.ts, WritePath.run.
 */
export type Recheck = (issuedNow: number) => Promise<RecheckFix | null> | RecheckFix | null;

/** New versions for a batch's created rows, and its feed rows with those versions (same order). */
export interface RecheckFix {
  upserts: RowMutations['upserts'];
  feed?: FeedWrite[];
}

/**
 * Most keys one reapBatch statement lists. MariaDB turns an IN list of
 * in_predicate_conversion_threshold (1000) or more values into a join with a table of those
 * values; with FORCE INDEX (PRIMARY) that plan walks the primary key instead of looking each key
 * up (EXPLAIN: `<derived> ALL` + `kv eq_ref` instead of `kv range PRIMARY`). Measured on a
 * throwaway server, 200k overdue rows, statements back to back: 2000 keys 16.9k rows/s, 1000 keys
 * 16.6k/s (join), 999 keys 18.4k/s, 256 keys 24.0k/s (range). Small statements also keep one reap
 * short (a few ms), so a read waits behind at most that. test/shard-actor/lock-scope.test.ts
 * checks the plan.
 */
export const MAX_REAP_KEYS = 256;

/** Where a feed tailer starts: the highest id, the retention horizon, and which ids exist in (from, max]. */
export interface FeedHead {
  max: number;
  trimmed: number;
  from: number;
  present: number[];
}

/** Retention of one shard's kv_feed (KVSQL_FEED_RETENTION_MS, _MAX_ROWS, _MAX_BYTES). */
export interface FeedRetention {
  retentionMs: number;
  maxRows: number;
  maxBytes: number;
}
