/**
 * Owns every SQL statement the actor sends to its MySQL shard, and the shard's connection pool.
 * Relies on mysql2 and sql/schema.sql. Must not decide anything: which rows change and how is the
 * write plan's job; when to run is the actor's.
 *
 * Every statement text is in STATEMENTS, named (COMMIT and ROLLBACK aside), built once per batch
 * size and cached (one text per size, so the server's parser and mysql2's formatter see a small,
 * fixed set). The shard's clock decides expiry: every read and
 * every write transaction evaluates NOW(3) on the server (session time zone +00:00), so gateways
 * with skewed clocks still agree on which keys are live.
 *
 * A write transaction is three round trips:
 *   1. START TRANSACTION; SELECT ... WHERE k IN (sorted keys) ORDER BY k FOR UPDATE; SELECT now
 *   2. INSERT ... ON DUPLICATE KEY UPDATE ...; UPDATE ... CASE ...; DELETE ...
 *   3. COMMIT
 * When it INSERTs keys that had no row, round trip 2 also reads kv_seq (the version recheck, see
 * Recheck), and in the rare case that another actor reserved a block meanwhile one more round
 * trip rewrites those rows with fresh versions before COMMIT:
 *   2. INSERT ...; (the other statements); SELECT next_version FROM kv_seq
 *   2b. INSERT ... ON DUPLICATE KEY UPDATE ... with new versions   (only then)
 * READ COMMITTED takes no gap locks, so only existing rows in the batch are locked, in key order.
 * COMMIT travels alone so that a connection lost before it was sent is a clean, retryable failure
 * (the server rolls back), and only a connection lost while COMMIT was in flight leaves the
 * outcome unknown (TxControl.phase says which).
 *
 * Every wait is bounded, whatever the server does (a hung server accepts TCP and then says
 * nothing): a connection is acquired within ACQUIRE_TIMEOUT_MS (mysql2's own pool queue has no
 * timeout), every statement has a timeout, and a connection whose statement timed out or was cut
 * is destroyed, never returned to the pool (mysql2 keeps a timed-out statement as the connection's
 * active command until the server answers, so a reused connection would queue behind it).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { isIP, type Socket } from 'node:net';
import { checkServerIdentity, type TLSSocket } from 'node:tls';
import mysql from 'mysql2/promise';
import type { Pool, PoolConnection, RowDataPacket, ResultSetHeader } from 'mysql2/promise';
import { SERVED_STATES, SLOT_IMPORTING, SLOT_MOVED, slotOf, type ShardOwnership } from '../protocol/slot-map';
import { formatSql } from './sql-format';
import { FEED_EXPIRED, FEED_FILLER, type FeedRow } from '../protocol/feed';
import { dropEpochTriggers, migrateSchema, seedSlots, UNSLOTTED } from './schema-migration';
import type { GroupStats, MysqlTls } from '../protocol/port-messages';
import type { ScanRequest } from '../protocol/listing';
import { classify, isConnectionFatal, StoreError } from './mysql-errors';
import { DEFAULT_SELECTOR_OPTIONS, NodeSelector, type SelectorLog, type SelectorOptions } from './node-selector';

/** Longest wait for a pooled connection (a new one includes connect and session setup). */
export const ACQUIRE_TIMEOUT_MS = 3000;
/**
 * Timeout of the health probe's query, and separately of its connection acquire. Not shorter: a
 * new connection over a slow link costs several round trips, and a false "down" abandons every
 * batch in flight.
 */
export const PROBE_TIMEOUT_MS = 3000;
/** Reads of a scan's rows before its served set is given up on (see withServedSet). */
const SCAN_EPOCH_ATTEMPTS = 3;
/** Least time between two reloads of the served set (see loadServed). */
const SERVED_RELOAD_MS = 1000;

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
   * that is not yet part of a store (the gateway then bootstraps it, or refuses).
   */
  init(): Promise<number | null>;
  /** First start of a store: record this shard's identity and seed its slots (idempotent). */
  bootstrap(identity: ShardIdentity): Promise<void>;
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
  transact(
    sortedKeys: Buffer[],
    sortedSlots: number[],
    decide: Decide,
    ctl?: TxControl,
    recheck?: Recheck,
    withValues?: boolean,
  ): Promise<void>;
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
  /** Filler rows at these ids, where nobody holds them (see STATEMENTS.feedFill). */
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
 * (new versions for those rows), or null to commit as planned. See actor.ts, runWrites.
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

export const NOW_MS = 'CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)';

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

/** Bytes of a kv_feed row besides its key: id, version, at, expires_at, type, InnoDB row header. */
export const FEED_ROW_OVERHEAD_BYTES = 48;
/** Rows one trim DELETE removes at most (a bounded page, like a reap). */
export const FEED_TRIM_PAGE = 1000;
/** Ids one trim pass marks at most: the trim mark never runs far ahead of the deletes. */
const FEED_TRIM_SPAN = 10_000;

const placeholders = (n: number, group: string): string => new Array(n).fill(group).join(',');

/** A cache of statement texts per batch size, named for logs. */
class Statements {
  private readonly cache = new Map<number, string>();
  constructor(
    readonly name: string,
    private readonly build: (n: number) => string,
  ) {}
  sql(n: number): string {
    let s = this.cache.get(n);
    if (s === undefined) {
      s = this.build(n);
      this.cache.set(n, s);
    }
    return s;
  }
}

/** A statement whose text does not depend on a batch size. */
const fixed = (name: string, sql: string): { readonly name: string; readonly sql: string } => ({ name, sql });

/** Statement texts keyed by two sizes (keys, slots). */
class Statements2 {
  private readonly cache = new Map<number, string>();
  constructor(
    readonly name: string,
    private readonly build: (n: number, n2: number) => string,
  ) {}
  sql(n: number, n2: number): string {
    const key = n * 65536 + n2;
    let s = this.cache.get(key);
    if (s === undefined) {
      s = this.build(n, n2);
      this.cache.set(key, s);
    }
    return s;
  }
}

function lockBatchSql(n: number, n2: number, extra: string): string {
  return (
    `START TRANSACTION; SELECT slot, state FROM kv_slots WHERE slot IN (${placeholders(n2, '?')}) ORDER BY slot LOCK IN SHARE MODE; ` +
    `SELECT k, version, expires_at${extra} FROM kv WHERE k IN (${placeholders(n, '?')}) ORDER BY k FOR UPDATE; ` +
    `SELECT ${NOW_MS} AS now_ms, (SELECT next_version FROM kv_seq WHERE id = 1) AS next_version`
  );
}

export const STATEMENTS = {
  /**
   * Rows and ownership in ONE statement, so one read view (READ COMMITTED: per statement): the
   * uncorrelated subquery lists the asked slots this shard serves (evaluated once); the LEFT JOIN
   * from a one-row table returns the live rows, or one all-NULL row when there are none. A slot
   * moved away between two statements therefore cannot make a key look absent. (A derived table
   * for the slots instead made MariaDB use a block-nested-loop join, 3-5x slower at 8-64 keys.)
   * Parameters: the slots (n2), then the keys (n).
   */
  readLive: new Statements2(
    'readLive',
    (n, n2) =>
      `SELECT (SELECT GROUP_CONCAT(slot) FROM kv_slots WHERE slot IN (${placeholders(n2, '?')}) AND state IN (${SERVED_STATES.join(',')})) AS served, ` +
      `kv.k, kv.v, kv.version, kv.expires_at, ${NOW_MS} AS now_ms FROM (SELECT 1 AS one) d ` +
      `LEFT JOIN kv ON kv.k IN (${placeholders(n, '?')}) AND (kv.expires_at IS NULL OR kv.expires_at > ${NOW_MS})`,
  ),
  /**
   * The same read, with kv_slots_epoch.n in place of the asked slots' rows (same one-statement
   * read view): every transaction that changes which slots this shard serves also adds 1 to n
   * (schema-migration BUMP_SLOTS_EPOCH), so when n equals the epoch the store last read together
   * with the whole served set (servedSlots), that set is this snapshot's. One point read of one
   * row instead of an IN-list over up to a batch's worth of slot rows and a GROUP_CONCAT: at 330
   * keys, 14 µs of MariaDB and driver time per key instead of 26 (DESIGN.md "Per-operation cost").
   * Parameters: the keys (n).
   */
  readLiveEpoch: new Statements(
    'readLiveEpoch',
    (n) =>
      `SELECT (SELECT n FROM kv_slots_epoch WHERE id = 1) AS ep, ` +
      `kv.k, kv.v, kv.version, kv.expires_at, ${NOW_MS} AS now_ms FROM (SELECT 1 AS one) d ` +
      `LEFT JOIN kv ON kv.k IN (${placeholders(n, '?')}) AND (kv.expires_at IS NULL OR kv.expires_at > ${NOW_MS})`,
  ),
  /**
   * A key-range scan (listing, SCAN): the live rows of [prefix, end) after `after`, in key order,
   * and kv_slots_epoch.n of the same read view (one statement). FORCE INDEX (PRIMARY): left to
   * itself MariaDB 10.11 reads such a range through kv_expires_at (its entries hold k and
   * expires_at, so it covers the query) and sorts it, a filesort of the whole range for LIMIT n;
   * on the primary key the range is read in order and stops after n rows (EXPLAIN: `range
   * PRIMARY`, no filesort; test/shard-actor/scan-range.test.ts). The ep row has k NULL. Variants
   * (bit 1: after given, 2: end given, 4: value lengths) so no condition is a dummy. Parameters:
   * prefix, after?, end?, limit.
   */
  scanRange: new Statements(
    'scanRange',
    (variant) =>
      `SELECT n AS ep, NULL AS k, NULL AS expires_at${variant & 4 ? ', NULL AS len' : ''} FROM kv_slots_epoch WHERE id = 1 UNION ALL ` +
      `(SELECT NULL, k, expires_at${variant & 4 ? ', LENGTH(v)' : ''} FROM kv FORCE INDEX (PRIMARY) WHERE k >= ?${variant & 1 ? ' AND k > ?' : ''}${variant & 2 ? ' AND k < ?' : ''} ` +
      `AND (expires_at IS NULL OR expires_at > ${NOW_MS}) ORDER BY k LIMIT ?)`,
  ),
  /** The values of a scan's page: point reads of the keys chosen from scanRange's rows. */
  scanValues: new Statements('scanValues', (n) => `SELECT k, v, expires_at FROM kv WHERE k IN (${placeholders(n, '?')}) AND (expires_at IS NULL OR expires_at > ${NOW_MS})`),
  /**
   * DBSIZE: rows per slot from the kv_slot index alone (an index-only walk, no row reads), minus
   * the expired rows not yet reaped per slot (a kv_expires_at range, one row read each), with
   * kv_slots_epoch.n, in one read view. Rows of slots this shard does not serve (a move's copy
   * on its target, leftovers on its source) are dropped by the caller with the served set.
   */
  countBySlot: fixed(
    'countBySlot',
    'SELECT n AS ep, NULL AS slot, NULL AS c FROM kv_slots_epoch WHERE id = 1 ' +
      'UNION ALL SELECT NULL, slot, COUNT(*) FROM kv FORCE INDEX (kv_slot) GROUP BY slot ' +
      `UNION ALL SELECT NULL, slot, -COUNT(*) FROM kv FORCE INDEX (kv_expires_at) WHERE expires_at <= ${NOW_MS} GROUP BY slot`,
  ),
  /** Every slot this shard serves, with the epoch of that set, in one read view. */
  servedSlots: fixed(
    'servedSlots',
    `SELECT (SELECT n FROM kv_slots_epoch WHERE id = 1) AS ep, s.slot FROM (SELECT 1 AS one) d LEFT JOIN kv_slots s ON s.state IN (${SERVED_STATES.join(',')})`,
  ),
  /** Slots share-locked first (ascending), then rows (ascending): one lock order for all (§7). */
  lockBatch: new Statements2('lockBatch', (n, n2) => lockBatchSql(n, n2, '')),
  /** The same, with the rows' values: for batches with incr, append, getdel or getex. */
  lockBatchValues: new Statements2('lockBatchValues', (n, n2) => lockBatchSql(n, n2, ', v')),
  insertBatch: new Statements('insertBatch', (n) => `INSERT INTO kv (k, v, version, expires_at, slot) VALUES ${placeholders(n, '(?,?,?,?,?)')}`),
  upsertBatch: new Statements(
    'upsertBatch',
    (n) =>
      `INSERT INTO kv (k, v, version, expires_at, slot) VALUES ${placeholders(n, '(?,?,?,?,?)')} ` +
      'ON DUPLICATE KEY UPDATE v = VALUES(v), version = VALUES(version), expires_at = VALUES(expires_at), slot = VALUES(slot)',
  ),
  logChanges: new Statements('logChanges', (n) => `INSERT INTO kv_slot_changes (slot, k, n) VALUES ${placeholders(n, '(?,?,1)')} ON DUPLICATE KEY UPDATE n = n + 1`),
  ttlBatch: new Statements(
    'ttlBatch',
    (n) => `UPDATE kv SET expires_at = CASE k ${new Array(n).fill('WHEN ? THEN ?').join(' ')} END WHERE k IN (${placeholders(n, '?')})`,
  ),
  /** The batch's change-feed rows (the last statement before COMMIT; at = the batch's now). */
  feedInsert: new Statements('feedInsert', (n) => `INSERT INTO kv_feed (k, version, at, type, expires_at) VALUES ${placeholders(n, '(?,?,?,?,?)')}`),
  /**
   * After a version recheck gave a batch's created rows new versions: the same for its feed rows,
   * which are this transaction's rows at ids >= the feed INSERT's first id with the old versions
   * (versions are never reused on a shard, so no other row has them). Parameters: (old, new) x n,
   * first id, olds.
   */
  feedRenumber: new Statements(
    'feedRenumber',
    (n) => `UPDATE kv_feed SET version = CASE version ${new Array(n).fill('WHEN ? THEN ?').join(' ')} END WHERE id >= ? AND version IN (${placeholders(n, '?')})`,
  ),
  /**
   * The reap lane's delete with its feed rows, one transaction, one round trip. The expired rows
   * are read and locked first (FOR UPDATE), gathered into @kv_reaped; their `expired` rows are
   * inserted from that list; then exactly those are deleted: the same @kv_now in both conditions,
   * and every row the SELECT matched is locked, so the DELETE cannot see it otherwise (DESIGN.md
   * §16). Not one INSERT ... SELECT ... FOR UPDATE: that is a "bulk insert", which under
   * innodb_autoinc_lock_mode=1 (MariaDB's default) holds kv_feed's table AUTO-INC lock while it
   * waits for row locks, stalling every writer's feed INSERT (and deadlocking with one that holds
   * such a row); the INSERT from JSON_TABLE waits for nothing. @kv_reaped is at most MAX_REAP_KEYS
   * keys of at most 1 KiB in hex, about 0.5 MB: under MariaDB's group_concat_max_len (1 MB),
   * which also bounds JSON_ARRAYAGG there. Parameters: keys, keys. The DELETE is result 5.
   */
  reapFeedBatch: new Statements(
    'reapFeedBatch',
    (n) =>
      `START TRANSACTION; SET @kv_now = ${NOW_MS}; SET @kv_reaped = NULL; ` +
      `SELECT JSON_ARRAYAGG(JSON_ARRAY(HEX(k), version, expires_at)) INTO @kv_reaped FROM kv FORCE INDEX (PRIMARY) ` +
      `WHERE k IN (${placeholders(n, '?')}) AND expires_at <= @kv_now FOR UPDATE; ` +
      `INSERT INTO kv_feed (k, version, at, type, expires_at) SELECT UNHEX(j.k), j.v, @kv_now, ${FEED_EXPIRED}, j.e ` +
      `FROM JSON_TABLE(@kv_reaped, '$[*]' COLUMNS (k VARCHAR(2048) PATH '$[0]', v BIGINT UNSIGNED PATH '$[1]', e BIGINT PATH '$[2]')) j; ` +
      `DELETE kv FROM kv FORCE INDEX (PRIMARY) WHERE k IN (${placeholders(n, '?')}) AND expires_at <= @kv_now; COMMIT`,
  ),
  /** The tailer's poll: rows after its highest id, and the rows of up to n holes below it. */
  feedTail: new Statements(
    'feedTail',
    (n) =>
      'SELECT id, k, version, at, type, expires_at FROM kv_feed WHERE id > ? ORDER BY id LIMIT ?' +
      (n > 0 ? `; SELECT id, k, version, at, type, expires_at FROM kv_feed WHERE id IN (${placeholders(n, '?')})` : ''),
  ),
  /** A catch-up read of (after, upto], with the retention horizon of the same read view. */
  feedRange: fixed(
    'feedRange',
    'SELECT upto AS id, NULL AS k, NULL AS version, NULL AS at, 255 AS type, NULL AS expires_at FROM kv_feed_trim WHERE id = 1 UNION ALL ' +
      '(SELECT id, k, version, at, type, expires_at FROM kv_feed WHERE id > ? AND id <= ? ORDER BY id LIMIT ?)',
  ),
  /** Where a tailer starts: the highest id and the retention horizon. */
  feedHead: fixed('feedHead', 'SELECT (SELECT MAX(id) FROM kv_feed) AS m, (SELECT upto FROM kv_feed_trim WHERE id = 1) AS t'),
  feedIdsIn: fixed('feedIdsIn', 'SELECT id FROM kv_feed WHERE id > ? AND id <= ? ORDER BY id'),
  /**
   * Proof for holes: a filler row at each hole's id. InnoDB makes the INSERT wait for a
   * transaction that holds that id uncommitted; IGNORE then skips it if that one committed
   * (the real row stays), else the filler takes the id, which nobody can use any more.
   */
  feedFill: new Statements('feedFill', (n) => `INSERT IGNORE INTO kv_feed (id, k, version, at, type, expires_at) VALUES ${placeholders(n, `(?, '', 0, 0, ${FEED_FILLER}, NULL)`)}`),
  /** Retention: the ends of the table, the average key of its newest rows, the oldest rows' times. */
  feedStats: fixed(
    'feedStats',
    'SELECT (SELECT MIN(id) FROM kv_feed) AS lo, (SELECT MAX(id) FROM kv_feed) AS hi, ' +
      '(SELECT AVG(LENGTH(k)) FROM (SELECT k FROM kv_feed ORDER BY id DESC LIMIT 100) r) AS klen, ' +
      '(SELECT MAX(id) FROM (SELECT id, at FROM kv_feed ORDER BY id LIMIT 1000) o WHERE at > 0 AND at < ?) AS old',
  ),
  feedTrimMark: fixed('feedTrimMark', 'UPDATE kv_feed_trim SET upto = GREATEST(upto, ?) WHERE id = 1'),
  feedTrimPage: fixed('feedTrimPage', 'DELETE FROM kv_feed WHERE id <= ? ORDER BY id LIMIT ?'),
  /** After a create's INSERT: has any actor reserved a newer version block meanwhile? */
  readSeq: new Statements('readSeq', () => 'SELECT next_version FROM kv_seq WHERE id = 1'),
  /**
   * One point DELETE per key, never `k IN (...)`: on a small table the optimizer scans the whole
   * table for an IN-list DELETE even with FORCE INDEX (PRIMARY) (MariaDB 10.11: 20 keys of 100
   * rows), and a DELETE, unlike an UPDATE (semi-consistent read), waits for every row it scans.
   * Two write transactions on disjoint keys then waited for each other's rows and deadlocked
   * (DESIGN.md §7, step 3; test/shard-actor/lock-scope.test.ts).
   */
  deleteBatch: new Statements('deleteBatch', (n) => new Array(n).fill('DELETE FROM kv WHERE k = ?').join(';')),
  /**
   * The expirer's delete: one statement, each row re-checked under its lock. Forced onto the
   * primary key (multi-table syntax: MySQL and MariaDB take no index hint in a single-table
   * DELETE): through kv_expires_at, chosen whenever fewer rows are overdue than the batch lists,
   * it locked other keys' overdue rows, index entry first, and deadlocked with a write of another
   * key that was giving its row a new expiry. At worst it now scans the primary key in ascending
   * order, holding only its own rows, which closes no cycle (DESIGN.md §7, step 5).
   */
  reapBatch: new Statements('reapBatch', (n) => `DELETE kv FROM kv FORCE INDEX (PRIMARY) WHERE k IN (${placeholders(n, '?')}) AND expires_at <= ${NOW_MS}`),
  /** Autocommit, outside any data transaction: the counter row is locked for one statement only. */
  reserveVersions: fixed(
    'reserveVersions',
    'UPDATE kv_seq SET next_version = LAST_INSERT_ID(GREATEST(next_version, ? + 1) + ?) WHERE id = 1; SELECT LAST_INSERT_ID() AS end_version',
  ),
  /** The health probe and clock sync. */
  probe: fixed('probe', `SELECT ${NOW_MS} AS now_ms, @@read_only AS ro`),
  // Setup and ownership.
  sessionSetup: fixed('sessionSetup', "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; SET SESSION time_zone = '+00:00'"),
  galeraSyncWait: fixed('galeraSyncWait', 'SET SESSION wsrep_sync_wait = 1'),
  shardRow: fixed('shardRow', 'SELECT shard_index, slots_seeded FROM kv_shard WHERE id = 1'),
  insertIdentity: fixed(
    'insertIdentity',
    'INSERT IGNORE INTO kv_shard (id, shard_index, shard_count, slot_ranges, created_at, slots_seeded) VALUES (1, ?, ?, ?, ?, 0)',
  ),
  identity: fixed('identity', 'SELECT shard_index, shard_count, slot_ranges FROM kv_shard WHERE id = 1'),
  ownership: fixed(
    'ownership',
    'SELECT shard_index FROM kv_shard WHERE id = 1; SELECT slot, state, epoch, peer FROM kv_slots; SELECT shard_index, url FROM kv_peers; ' +
      'SELECT state, slots_total, slots_done, rows_copied, started_at, updated_at, pause_p99_ms FROM kv_move_progress WHERE id = 1',
  ),
  /** Where refused slots went: the new owner of a moved slot, this shard itself for one it is taking over. */
  movedTo: new Statements(
    'movedTo',
    (n) =>
      `SELECT slot, IF(state = ${SLOT_IMPORTING}, (SELECT shard_index FROM kv_shard WHERE id = 1), peer) AS peer FROM kv_slots ` +
      `WHERE slot IN (${placeholders(n, '?')}) AND state IN (${SLOT_MOVED}, ${SLOT_IMPORTING})`,
  ),
  unslottedPage: fixed('unslottedPage', 'SELECT k FROM kv WHERE slot = ? ORDER BY k LIMIT ?'),
  fillSlots: new Statements(
    'fillSlots',
    (n) => `UPDATE kv SET slot = CASE k ${new Array(n).fill('WHEN ? THEN ?').join(' ')} END WHERE k IN (${placeholders(n, '?')}) AND slot = ${UNSLOTTED}`,
  ),
  // Settling an in-doubt COMMIT.
  uptime: fixed('uptime', "SHOW GLOBAL STATUS LIKE 'Uptime'"),
  killConnection: fixed('killConnection', 'KILL CONNECTION ?'),
  threadAlive: fixed('threadAlive', 'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ?'),
  // The expirer's scans and lease.
  dueWindow: fixed('dueWindow', 'SELECT k, expires_at FROM kv WHERE expires_at > ? AND expires_at <= ? ORDER BY expires_at, k LIMIT ?'),
  dueTies: fixed('dueTies', 'SELECT k, expires_at FROM kv WHERE expires_at = ? AND k > ? ORDER BY k LIMIT ?'),
  overdue: fixed('overdue', `SELECT k, expires_at FROM kv WHERE expires_at <= ${NOW_MS} ORDER BY expires_at LIMIT ?`),
  takeLease: fixed('takeLease', `UPDATE kv_lease SET holder = ?, expires_at = ${NOW_MS} + ? WHERE name = 'expirer' AND (holder = ? OR expires_at < ${NOW_MS})`),
  releaseLease: fixed('releaseLease', "UPDATE kv_lease SET expires_at = 0 WHERE name = 'expirer' AND holder = ?"),
};

const SCHEMA_PATH = join(__dirname, '..', '..', '..', 'sql', 'schema.sql');

export function schemaStatements(): string[] {
  return readFileSync(SCHEMA_PATH, 'utf8')
    .split(/;\s*\n/)
    .map((s) => s.replace(/^\s*--.*$/gm, '').trim())
    .filter((s) => s.length > 0);
}

export interface StoreOptions {
  url: string;
  /** The shard group's node URLs (a Galera cluster); absent or one entry: a single server. */
  nodes?: string[];
  poolSize: number;
  queryTimeoutMs: number;
  /** TLS to the server; null/undefined = clear text. */
  tls?: MysqlTls | null;
  /** How long an expirer lease lasts without renewal (the holder renews it every check). */
  leaseMs?: number;
  selector?: Partial<SelectorOptions>;
  log?: SelectorLog;
}

/**
 * mysql2's `ssl` option. Verification is chain AND host name; a server without TLS fails the
 * connect, never a silent downgrade. mysql2 (3.x) checks the name only for DNS host names: for an
 * IP address it checks "localhost" instead, so for IP hosts the name is checked by tlsIdentityError
 * on every new connection.
 */
export function sslOption(tls: MysqlTls | null | undefined, host: string): { ca?: string; rejectUnauthorized: boolean; verifyIdentity: boolean } | undefined {
  if (!tls) return undefined;
  return { ca: tls.ca ?? undefined, rejectUnauthorized: tls.verify, verifyIdentity: tls.verify && isIP(host) === 0 };
}

/** For an IP host with verification on: the certificate must name that IP (see sslOption). */
function tlsIdentityError(tls: MysqlTls | null | undefined, host: string, stream: unknown): Error | null {
  if (!tls?.verify || isIP(host) === 0) return null;
  const socket = stream as TLSSocket;
  // A resumed session (mysql2 caches them) was set up by a checked handshake, and shows no
  // certificate: mysql2 skips its own checks then too.
  if (socket.isSessionReused()) return null;
  const err = checkServerIdentity(host, socket.getPeerCertificate());
  return err === undefined ? null : Object.assign(err, { fatal: true }); // a connection error: the shard is down
}

const hostOf = (url: string): string => new URL(url).hostname.replace(/^\[|\]$/g, '');

/** The parameters of insertBatch / upsertBatch for `list`: key, value, version, expiry, slot per row. */
function rowParams(list: RowMutations['upserts']): unknown[] {
  const params: unknown[] = [];
  for (const u of list) params.push(u[0], u[1], u[2], u[3], slotOf(u[0]));
  return params;
}

/** The parameters of feedInsert: key, version, at, type, expiry per row. */
function feedParams(list: FeedWrite[], now: number): unknown[] {
  const params: unknown[] = [];
  for (const f of list) params.push(f[0], f[1], now, f[2], f[3]);
  return params;
}

function feedRows(rows: RowDataPacket[]): FeedRow[] {
  const out: FeedRow[] = [];
  for (const r of rows) out.push([Number(r.id), r.k as Buffer, Number(r.version), Number(r.at), Number(r.type), r.expires_at === null ? null : Number(r.expires_at)]);
  return out;
}

/** The rows of a read statement that are rows (the LEFT JOIN's all-NULL row is not). */
function liveRows(rows: RowDataPacket[]): LiveRow[] {
  const live: LiveRow[] = [];
  for (const r of rows) if (r.k !== null) live.push(r as LiveRow);
  return live;
}

export class MysqlShardStore implements ShardStore {
  private readonly nodes: string[];
  /** One pool per node, opened when the node becomes the writer, dropped when it stops being it. */
  private readonly pools: Array<Pool | null>;
  /** Null for a single server: then pools[0] is the one pool, forever. */
  private readonly selector: NodeSelector | null = null;
  private selectorStarted = false;
  /** Node of each COMMIT in flight, by `<threadId>:<connectedAt>` (settle must ask that node). */
  private readonly commitNode = new Map<string, number>();
  /** Identifies this store as the holder of the expirer lease. */
  private readonly leaseHolder = `${process.pid}-${randomBytes(6).toString('hex')}`;
  private readonly timeout: number;
  /** The last new pool connection's certificate-name failure (IP hosts; see sslOption). */
  private tlsError: Error | null = null;
  /** The served set and the epoch it was read at (null: not read yet, or seen to be stale). */
  private served: ServedSet | null = null;
  private servedLoading = false;
  private servedLoadedAt = -Infinity;
  /** Read batches answered through the epoch (fast) and through the slots' rows (for tests and profiling). */
  readonly readPaths = { epoch: 0, slots: 0 };

  constructor(private readonly opts: StoreOptions) {
    this.timeout = opts.queryTimeoutMs;
    this.nodes = opts.nodes !== undefined && opts.nodes.length > 0 ? opts.nodes : [opts.url];
    this.pools = this.nodes.map(() => null);
    if (this.nodes.length > 1) {
      this.selector = new NodeSelector(
        this.nodes,
        { ...DEFAULT_SELECTOR_OPTIONS, ...opts.selector },
        (from, _to, reason) => this.dropPool(from, reason.startsWith('failback')),
        opts.log ?? (() => undefined),
      );
    } else {
      this.pools[0] = this.createPool(this.nodes[0]);
    }
  }

  /** The writer node's pool. Throws (a connection-class error) when the group has no usable node. */
  private get pool(): Pool {
    const w = this.selector === null ? 0 : this.selector.writer;
    if (w < 0) throw new StoreError('KV_NO_WRITER_NODE', 'no node of the shard group is Synced in the Primary component');
    return (this.pools[w] ??= this.createPool(this.nodes[w]));
  }

  /** Writer node and per-node health of a shard group; null for a single server. */
  groupStats(): GroupStats | null {
    return this.selector?.stats() ?? null;
  }

  /**
   * The writer moved away from node `i`. New statements go to the new writer at once. A node
   * that failed: its statements in flight fail now (a hung node would hold them until the query
   * timeout); a COMMIT among them answers KV_ERR_OUTCOME_UNKNOWN. A healthy node left by a
   * failback: what runs there finishes, and the pool closes after the query timeout.
   */
  private dropPool(i: number, graceful: boolean): void {
    const pool = i >= 0 ? this.pools[i] : null;
    if (!pool) return;
    this.pools[i] = null;
    if (graceful) {
      setTimeout(() => void pool.end().catch(() => undefined), this.timeout + 1000).unref();
      return;
    }
    type CoreConn = { stream?: { destroy(err?: Error): void } };
    const all = (pool as unknown as { pool: { _allConnections?: { toArray(): CoreConn[] } } }).pool._allConnections?.toArray() ?? [];
    for (const c of all) c.stream?.destroy(codedError('PROTOCOL_CONNECTION_LOST', 'the shard group switched away from this node'));
    void pool.end().catch(() => undefined);
  }

  /** A connection error may mean the writer died or hung: re-probe the group at once. */
  private suspect(err: unknown): void {
    if (this.selector !== null && classify(err) === 'connection') void this.selector.refresh();
  }

  private createPool(url: string): Pool {
    const host = hostOf(url);
    const pool = mysql.createPool({
      uri: url,
      ssl: sslOption(this.opts.tls, host),
      connectionLimit: this.opts.poolSize,
      maxIdle: this.opts.poolSize,
      waitForConnections: true,
      queueLimit: 0, // the actor bounds work in flight; the pool never holds more than that
      multipleStatements: true,
      connectTimeout: 3000,
      enableKeepAlive: true,
      supportBigNumbers: true,
      bigNumberStrings: false,
      // No stack trace captured per statement (mysql2 does by default: Error.captureStackTrace on
      // every query, ~1.3% of a worker's CPU in the HTTP GET profile). Store errors are
      // classified by code (mysql-errors.ts); their stacks were never read.
      trace: false,
    });
    // Every connection: READ COMMITTED (no gap locks) and UTC so NOW(3) maps 1:1 to unix time.
    // With a callback: an error here (server shutting down, KILL) must not be an unhandled
    // 'error' event, which would end the worker; the broken connection is dropped instead.
    // In a Galera group also wsrep_sync_wait = 1: every SELECT and START TRANSACTION first waits
    // until this node has applied every write-set committed anywhere in the cluster before it,
    // so a read after a switch (or through another gateway on another node) sees every write
    // acknowledged before it (DESIGN.md §9 measures the cost).
    const setup = STATEMENTS.sessionSetup.sql + (this.selector !== null ? '; ' + STATEMENTS.galeraSyncWait.sql : '');
    type CoreConn = { query(sql: string, cb: (err: Error | null) => void): void; destroy(): void; stream: unknown; kvConnectedAt?: number };
    (pool as unknown as { pool: { on(ev: string, cb: (c: CoreConn) => void): void } }).pool.on('connection', (conn) => {
      this.tlsError = tlsIdentityError(this.opts.tls, host, conn.stream);
      if (this.tlsError !== null) return conn.destroy();
      conn.kvConnectedAt = Date.now();
      conn.query(setup, (err) => {
        if (err) conn.destroy();
      });
    });
    return pool;
  }

  /** A pooled connection within `timeoutMs`, or a connection-class error (KV_ACQUIRE_TIMEOUT). */
  private acquire(timeoutMs: number = ACQUIRE_TIMEOUT_MS): Promise<PoolConnection> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        const err = new StoreError('KV_ACQUIRE_TIMEOUT', `no MySQL connection within ${timeoutMs} ms (server hung or unreachable)`);
        this.suspect(err);
        reject(err);
      }, timeoutMs);
      this.pool.getConnection().then(
        (conn) => {
          if (settled) conn.release(); // the waiter gave up; the connection is healthy
          else {
            settled = true;
            clearTimeout(timer);
            resolve(conn);
          }
        },
        (err) => {
          this.suspect(err);
          if (!settled) {
            settled = true;
            clearTimeout(timer);
            reject(err);
          }
        },
      );
    });
  }

  /**
   * One statement on a pooled connection, released after, or destroyed when it failed in a way
   * that leaves the connection unusable (timed out, lost).
   */
  private async query<T>(sql: string, params: unknown[] | undefined, timeout: number = this.timeout, acquireMs = ACQUIRE_TIMEOUT_MS): Promise<T> {
    const conn = await this.acquire(Math.min(acquireMs, timeout));
    try {
      const [rows] = await conn.query({ sql: params === undefined ? sql : formatSql(sql, params), timeout });
      conn.release();
      return rows as T;
    } catch (err) {
      this.suspect(err);
      if (isConnectionFatal(err)) destroyHard(conn);
      else conn.release();
      throw err;
    }
  }

  /**
   * Runs setup statements (schema, migrations, identity) on one connection: the writer chosen
   * first, TLS names checked; a connection that failed is destroyed (a schema statement may still
   * be running in a hung server).
   */
  private async withSetupConnection<T>(fn: (conn: PoolConnection) => Promise<T>): Promise<T> {
    if (this.selector !== null) {
      if (!this.selectorStarted) {
        this.selectorStarted = true;
        this.selector.start();
      }
      await this.selector.refresh();
    }
    const conn = await this.acquire();
    if (this.tlsError !== null) {
      conn.destroy();
      throw this.tlsError; // says which name the certificate lacks (the pool hook can only drop it)
    }
    let result: T;
    try {
      result = await fn(conn);
    } catch (err) {
      destroyHard(conn);
      throw err;
    }
    conn.release();
    return result;
  }

  init(): Promise<number | null> {
    return this.withSetupConnection(async (conn) => {
      for (const sql of schemaStatements()) await conn.query({ sql, timeout: 60_000 });
      await migrateSchema(conn);
      await dropEpochTriggers(conn);
      const [rows] = await conn.query<RowDataPacket[]>(STATEMENTS.shardRow.sql);
      if (rows.length === 0) return null;
      // A data dir from before kv_slots: its slots are the ranges it was created with.
      if (Number(rows[0].slots_seeded) === 0) await seedSlots(conn);
      return Number(rows[0].shard_index);
    });
  }

  bootstrap(identity: ShardIdentity): Promise<void> {
    return this.withSetupConnection(async (conn) => {
      await conn.query(STATEMENTS.insertIdentity.sql, [identity.shard, identity.shardCount, identity.slotRanges, Date.now()]);
      const [rows] = await conn.query<RowDataPacket[]>(STATEMENTS.identity.sql);
      const row = rows[0];
      if (row.shard_index !== identity.shard || row.slot_ranges !== identity.slotRanges) {
        // Two gateways created the store at once with different shard lists.
        throw new StoreError(
          'KV_SHARD_IDENTITY_MISMATCH',
          `shard ${identity.shard} was created as shard ${row.shard_index} of ${row.shard_count} with slots ${row.slot_ranges}; ` +
            `this gateway maps slots ${identity.slotRanges} to it. Refusing to start: keys would be served from the wrong shard. ` +
            'Use the same shard list (and count) as when the data was written.',
        );
      }
      await seedSlots(conn);
    });
  }

  async ownership(): Promise<ShardOwnership> {
    const results = await this.query<RowDataPacket[][]>(STATEMENTS.ownership.sql, undefined);
    const slots: number[] = [];
    for (const r of results[1]) slots.push(Number(r.slot), Number(r.state), Number(r.epoch), r.peer === null ? -1 : Number(r.peer));
    return {
      shardIndex: results[0].length === 0 ? null : Number(results[0][0].shard_index),
      slots,
      peers: results[2].map((r) => [Number(r.shard_index), String(r.url)] as [number, string]),
      progress:
        results[3].length === 0
          ? null
          : {
              state: results[3][0].state,
              slotsTotal: Number(results[3][0].slots_total),
              slotsDone: Number(results[3][0].slots_done),
              rowsCopied: Number(results[3][0].rows_copied),
              startedAt: Number(results[3][0].started_at),
              updatedAt: Number(results[3][0].updated_at),
              pauseP99Ms: Number(results[3][0].pause_p99_ms),
            },
    };
  }

  async movedTo(slots: number[]): Promise<Map<number, number>> {
    const rows = await this.query<RowDataPacket[]>(STATEMENTS.movedTo.sql(slots.length), slots);
    return new Map(rows.map((r) => [Number(r.slot), Number(r.peer)]));
  }

  async fillSlots(limit: number): Promise<number> {
    const rows = await this.query<RowDataPacket[]>(STATEMENTS.unslottedPage.sql, [UNSLOTTED, limit]);
    if (rows.length === 0) return 0;
    const params: unknown[] = [];
    for (const r of rows) params.push(r.k, slotOf(r.k as Buffer));
    for (const r of rows) params.push(r.k);
    await this.query(STATEMENTS.fillSlots.sql(rows.length), params);
    return rows.length;
  }

  /**
   * Reads the whole served set and its epoch, once at a time, in the background (a read batch
   * that found the epoch moved, or none cached yet, has already checked its own slots).
   */
  private loadServed(): void {
    if (this.servedLoading) return;
    // While a move changes kv_slots every few hundred ms, a reload (the whole served set, up to
    // 16,384 rows) would be stale again at once: at most one a second; reads meanwhile check
    // their own slots, as they did before the cache existed.
    const now = performance.now();
    if (now - this.servedLoadedAt < SERVED_RELOAD_MS) return;
    this.servedLoadedAt = now;
    this.servedLoading = true;
    this.query<RowDataPacket[]>(STATEMENTS.servedSlots.sql, undefined)
      .then((rows) => {
        const epoch = Number(rows[0]?.ep);
        const slots = new Set<number>();
        for (const r of rows) if (r.slot !== null) slots.add(Number(r.slot));
        // Epochs only grow: never replace a newer set with an older one read concurrently.
        if (Number.isFinite(epoch) && (this.served === null || epoch >= this.served.epoch)) this.served = { epoch, slots };
      })
      .catch(() => undefined) // the next read batch tries again; reads stay correct meanwhile
      .finally(() => (this.servedLoading = false));
  }

  async readLive(keys: Buffer[], slots: number[], ctl?: TxControl): Promise<ReadResult> {
    const cached = this.served;
    if (cached !== null) {
      const fast = await this.readRows(STATEMENTS.readLiveEpoch.sql(keys.length), keys, ctl);
      if (Number(fast[0]?.ep) === cached.epoch) {
        this.readPaths.epoch++;
        return { rows: liveRows(fast), served: cached.slots };
      }
      // kv_slots changed since the set was read: check this batch's own slots, and reload.
      if (this.served === cached) this.served = null;
    }
    this.loadServed();
    this.readPaths.slots++;
    const rows = await this.readRows(STATEMENTS.readLive.sql(keys.length, slots.length), [...slots, ...keys], ctl);
    const served = new Set<number>();
    const list = rows[0]?.served as string | null | undefined;
    if (list) for (const x of String(list).split(',')) served.add(Number(x));
    return { rows: liveRows(rows), served };
  }

  /**
   * The served set read now (servedSlots), also kept as the cache when it is newer than the
   * cached one. For scans, which need the whole set (reads only need their slots' rows).
   */
  private async readServed(ctl: TxControl | undefined): Promise<ServedSet> {
    const rows = await this.readRows(STATEMENTS.servedSlots.sql, [], ctl);
    const set: ServedSet = { epoch: Number(rows[0]?.ep), slots: new Set() };
    for (const r of rows) if (r.slot !== null) set.slots.add(Number(r.slot));
    if (Number.isFinite(set.epoch) && (this.served === null || set.epoch >= this.served.epoch)) this.served = set;
    return set;
  }

  /**
   * A statement whose results carry kv_slots_epoch.n (the `ep` row), paired with the served set
   * of that epoch: the cached set when it matches, else one read now; when that is newer still
   * (a flip in between), the statement runs again. The same rule as readLive: a served set is
   * used only with rows read at its epoch. At most SCAN_EPOCH_ATTEMPTS rounds (a move flips a
   * range in milliseconds), then KV_SERVED_SET_MOVING (the gateway retries the page).
   */
  private async withServedSet(sql: string, params: unknown[], ctl: TxControl | undefined): Promise<{ rows: RowDataPacket[]; served: ServedSet }> {
    for (let attempt = 1; ; attempt++) {
      const rows = await this.readRows(sql, params, ctl);
      let ep = NaN;
      for (const r of rows) if (r.ep !== null && r.ep !== undefined) ep = Number(r.ep);
      let served = this.served;
      if (served === null || served.epoch !== ep) served = await this.readServed(ctl);
      if (served.epoch === ep) return { rows, served };
      if (attempt >= SCAN_EPOCH_ATTEMPTS) throw new StoreError('KV_SERVED_SET_MOVING', `the served set changed during ${attempt} reads of a scan`);
    }
  }

  async scanRange(q: ScanRequest, end: Buffer | null, ctl?: TxControl): Promise<ScanResult> {
    const params: unknown[] = [Buffer.from(q.prefix)];
    if (q.after !== null) params.push(Buffer.from(q.after));
    if (end !== null) params.push(end);
    params.push(q.limit);
    const variant = (q.after !== null ? 1 : 0) | (end !== null ? 2 : 0) | (q.values ? 4 : 0);
    const { rows, served } = await this.withServedSet(STATEMENTS.scanRange.sql(variant), params, ctl);
    const out: ScanRow[] = [];
    for (const r of rows) {
      if (r.k === null) continue;
      out.push({ k: r.k as Buffer, expires_at: r.expires_at === null ? null : Number(r.expires_at), len: q.values ? Number(r.len) : undefined });
    }
    // MariaDB and MySQL return the ordered part of a UNION ALL in its order, but SQL does not
    // promise it; the page's upTo and byte cut depend on it (at most limit rows: cheap).
    out.sort((a, b) => Buffer.compare(a.k, b.k));
    return { rows: out, served };
  }

  async readValues(keys: Buffer[], ctl?: TxControl): Promise<Map<string, { v: Buffer; expires_at: number | null }>> {
    const out = new Map<string, { v: Buffer; expires_at: number | null }>();
    if (keys.length === 0) return out;
    const rows = await this.readRows(STATEMENTS.scanValues.sql(keys.length), keys, ctl);
    for (const r of rows) out.set((r.k as Buffer).toString('latin1'), { v: r.v as Buffer, expires_at: r.expires_at === null ? null : Number(r.expires_at) });
    return out;
  }

  async countBySlot(ctl?: TxControl): Promise<CountResult> {
    const { rows, served } = await this.withServedSet(STATEMENTS.countBySlot.sql, [], ctl);
    const counts = new Map<number, number>();
    for (const r of rows) {
      if (r.slot === null) continue;
      const slot = Number(r.slot);
      counts.set(slot, (counts.get(slot) ?? 0) + Number(r.c));
    }
    return { counts, served };
  }

  /** One read statement on one pooled connection, cut by `ctl` when its batch is abandoned. */
  private async readRows(sql: string, params: unknown[], ctl: TxControl | undefined): Promise<RowDataPacket[]> {
    const conn = await this.acquire();
    if (ctl !== undefined) {
      if (ctl.abandoned) {
        conn.release();
        throw abandonedError();
      }
      ctl.cut = () => destroyHard(conn);
    }
    try {
      const [rows] = await conn.query<RowDataPacket[]>({ sql: formatSql(sql, params), timeout: this.timeout });
      conn.release();
      return rows;
    } catch (err) {
      this.suspect(err);
      if (isConnectionFatal(err)) destroyHard(conn);
      else conn.release();
      throw err;
    } finally {
      if (ctl !== undefined) ctl.cut = null;
    }
  }

  async transact(
    sortedKeys: Buffer[],
    sortedSlots: number[],
    decide: Decide,
    ctl: TxControl = newTxControl(),
    recheck?: Recheck,
    withValues = false,
  ): Promise<void> {
    // One attempt: a COMMIT of an earlier attempt that failed was answered (rolled back).
    ctl.phase = 'work';
    const node = this.selector === null ? 0 : this.selector.writer;
    const conn: PoolConnection = await this.acquire();
    if (ctl.abandoned) {
      conn.release();
      throw abandonedError();
    }
    ctl.cut = () => destroyHard(conn);
    let broken = false;
    try {
      const [results] = await conn.query<RowDataPacket[][]>({
        sql: formatSql((withValues ? STATEMENTS.lockBatchValues : STATEMENTS.lockBatch).sql(sortedKeys.length, sortedSlots.length), [...sortedSlots, ...sortedKeys]),
        timeout: this.timeout,
      });
      const slotStates: SlotStates = new Map();
      for (const r of results[1]) slotStates.set(Number(r.slot), Number(r.state));
      const lockedRows = results[2];
      const now = Number(results[3][0].now_ms);
      const issuedBelow = Number(results[3][0].next_version);
      const locked = new Map<string, LockedRow>();
      for (const r of lockedRows) {
        const row: LockedRow = { version: Number(r.version), expiresAt: r.expires_at === null ? null : Number(r.expires_at) };
        if (withValues) row.value = r.v as Buffer;
        locked.set((r.k as Buffer).toString('latin1'), row);
      }
      const m = await decide(locked, now, issuedBelow, slotStates);
      // Each statement formatted on its own (sql-format caches per template), joined by ';'.
      let sql = '';
      if (m.inserts.length > 0) sql += formatSql(STATEMENTS.insertBatch.sql(m.inserts.length), rowParams(m.inserts)) + ';';
      if (m.upserts.length > 0) sql += formatSql(STATEMENTS.upsertBatch.sql(m.upserts.length), rowParams(m.upserts)) + ';';
      if (m.ttlUpdates.length > 0) {
        const params: unknown[] = [];
        for (const t of m.ttlUpdates) params.push(t[0], t[1]);
        for (const t of m.ttlUpdates) params.push(t[0]);
        sql += formatSql(STATEMENTS.ttlBatch.sql(m.ttlUpdates.length), params) + ';';
      }
      if (m.deletes.length > 0) sql += formatSql(STATEMENTS.deleteBatch.sql(m.deletes.length), m.deletes) + ';';
      if (m.changed !== undefined && m.changed.length > 0) {
        const params: unknown[] = [];
        for (const c of m.changed) params.push(c[0], c[1]);
        sql += formatSql(STATEMENTS.logChanges.sql(m.changed.length), params) + ';';
      }
      const feed = m.feed;
      if (feed !== undefined && feed.length > 0) sql += formatSql(STATEMENTS.feedInsert.sql(feed.length), feedParams(feed, now)) + ';';
      if (m.inserts.length > 0 && recheck !== undefined) {
        // Nothing is committed yet: an error here rolls back and may be retried.
        const [res] = await conn.query<RowDataPacket[][]>({ sql: sql + STATEMENTS.readSeq.sql(1), timeout: this.timeout });
        const fix = await recheck(Number(res[res.length - 1][0].next_version));
        sql = fix !== null && fix.upserts.length > 0 ? formatSql(STATEMENTS.upsertBatch.sql(fix.upserts.length), rowParams(fix.upserts)) + ';' : '';
        if (fix !== null && feed !== undefined && feed.length > 0 && fix.feed !== undefined) {
          const firstId = (res[res.length - 2] as unknown as ResultSetHeader).insertId;
          const pairs: unknown[] = [];
          const olds: number[] = [];
          for (let i = 0; i < feed.length; i++) {
            if (feed[i][1] === fix.feed[i][1] || olds.includes(feed[i][1])) continue;
            pairs.push(feed[i][1], fix.feed[i][1]);
            olds.push(feed[i][1]);
          }
          if (olds.length > 0) sql += formatSql(STATEMENTS.feedRenumber.sql(olds.length), [...pairs, firstId, ...olds]) + ';';
        }
      }
      if (sql.length > 0) await conn.query({ sql: sql.slice(0, -1), timeout: this.timeout });
      // The last moment to give up cleanly: past this line the server may commit.
      if (ctl.abandoned) throw abandonedError();
      ctl.phase = 'commit';
      ctl.threadId = conn.threadId;
      ctl.connectedAt = (conn.connection as unknown as { kvConnectedAt?: number }).kvConnectedAt ?? 0;
      const doubt = `${ctl.threadId}:${ctl.connectedAt}`;
      if (this.selector !== null) {
        this.commitNode.set(doubt, node);
        if (this.commitNode.size > 1024) this.commitNode.delete(this.commitNode.keys().next().value!);
      }
      await conn.query({ sql: 'COMMIT', timeout: this.timeout });
      this.commitNode.delete(doubt);
    } catch (err) {
      this.suspect(err);
      broken = isConnectionFatal(err) || ctl.abandoned;
      if (!broken) {
        try {
          await conn.query({ sql: 'ROLLBACK', timeout: this.timeout });
        } catch {
          broken = true;
        }
      }
      throw err;
    } finally {
      ctl.cut = null;
      if (broken) destroyHard(conn);
      else conn.release();
    }
  }

  async settle(threadId: number, connectedAt: number): Promise<boolean> {
    if (this.selector !== null) {
      const key = `${threadId}:${connectedAt}`;
      const node = this.commitNode.get(key);
      this.commitNode.delete(key);
      // The COMMIT ran on a node that is no longer the writer: thread ids are per node, so it
      // cannot be looked up (or KILLed) here. Settled anyway: the write-set was either certified
      // (then every node applies it, in order) or it can never commit, because a commit there
      // must pass certification, which orders it against anything written since; a late one
      // conflicting with a later write to its key is aborted, never applied after it.
      if (node !== undefined && node !== this.selector.writer) return true;
    }
    const conn = await this.acquire(PROBE_TIMEOUT_MS);
    try {
      const [up] = await conn.query<RowDataPacket[]>({ sql: STATEMENTS.uptime.sql, timeout: PROBE_TIMEOUT_MS });
      const uptimeMs = Number(up[0]?.Value ?? up[0]?.VALUE) * 1000;
      // Started after that connection was made: the connection died with the old server, and
      // InnoDB recovery decided its transaction. (Thread ids restart after a restart, so KILL
      // by id could hit an unrelated connection.)
      if (connectedAt > 0 && uptimeMs + 1500 < Date.now() - connectedAt) {
        conn.release();
        return true;
      }
      try {
        await conn.query({ sql: STATEMENTS.killConnection.sql, timeout: PROBE_TIMEOUT_MS }, [threadId]);
      } catch (err) {
        if ((err as { code?: string }).code !== 'ER_NO_SUCH_THREAD') throw err;
      }
      const [rows] = await conn.query<RowDataPacket[]>({ sql: STATEMENTS.threadAlive.sql, timeout: PROBE_TIMEOUT_MS }, [threadId]);
      conn.release();
      return Number(rows[0].n) === 0;
    } catch (err) {
      if (isConnectionFatal(err)) destroyHard(conn);
      else conn.release();
      throw err;
    }
  }

  async reap(keys: Buffer[]): Promise<number> {
    const res = await this.query<ResultSetHeader>(STATEMENTS.reapBatch.sql(keys.length), keys);
    return res.affectedRows;
  }

  async reapWithFeed(keys: Buffer[]): Promise<number> {
    const conn = await this.acquire();
    try {
      const [res] = await conn.query<ResultSetHeader[]>({ sql: formatSql(STATEMENTS.reapFeedBatch.sql(keys.length), [...keys, ...keys]), timeout: this.timeout });
      conn.release();
      return res[5].affectedRows;
    } catch (err) {
      this.suspect(err);
      // A statement failed inside the transaction (a lock wait timeout rolls back only the
      // statement): never leave it open on a pooled connection.
      let broken = isConnectionFatal(err);
      if (!broken) await conn.query({ sql: 'ROLLBACK', timeout: this.timeout }).catch(() => (broken = true));
      if (broken) destroyHard(conn);
      else conn.release();
      throw err;
    }
  }

  async feedHead(window: number): Promise<FeedHead> {
    const rows = await this.query<RowDataPacket[]>(STATEMENTS.feedHead.sql, []);
    const max = rows[0].m === null ? 0 : Number(rows[0].m);
    const trimmed = Number(rows[0].t ?? 0);
    const from = Math.max(trimmed, max - window);
    const ids = max > from ? await this.query<RowDataPacket[]>(STATEMENTS.feedIdsIn.sql, [from, max]) : [];
    return { max, trimmed, from, present: ids.map((r) => Number(r.id)) };
  }

  async feedTail(after: number, holes: number[], limit: number): Promise<FeedRow[]> {
    const res = await this.query<RowDataPacket[] | RowDataPacket[][]>(STATEMENTS.feedTail.sql(holes.length), [after, limit, ...holes]);
    if (holes.length === 0) return feedRows(res as RowDataPacket[]);
    const [tail, filled] = res as RowDataPacket[][];
    return feedRows(filled).concat(feedRows(tail));
  }

  async feedRange(after: number, upto: number, limit: number): Promise<{ rows: FeedRow[]; trimmed: number }> {
    const rows = await this.query<RowDataPacket[]>(STATEMENTS.feedRange.sql, [after, upto, limit]);
    let trimmed = 0;
    const data: RowDataPacket[] = [];
    for (const r of rows) {
      if (Number(r.type) === 255) trimmed = Number(r.id);
      else data.push(r);
    }
    return { rows: feedRows(data).sort((a, b) => a[0] - b[0]), trimmed };
  }

  async feedFill(ids: number[]): Promise<void> {
    await this.query(STATEMENTS.feedFill.sql(ids.length), ids);
  }

  async feedTrim(now: number, limits: FeedRetention): Promise<number> {
    const rows = await this.query<RowDataPacket[]>(STATEMENTS.feedStats.sql, [now - limits.retentionMs]);
    const r = rows[0];
    if (r.lo === null) return 0;
    const lo = Number(r.lo);
    const hi = Number(r.hi);
    // Rows are counted as the id span (exact on one server; an overestimate under Galera's
    // auto_increment_increment, which then keeps fewer rows than allowed, never more).
    const rowBytes = Number(r.klen ?? 0) + FEED_ROW_OVERHEAD_BYTES;
    const keep = Math.min(limits.maxRows, Math.floor(limits.maxBytes / rowBytes));
    let upto = Math.max(hi - keep, r.old === null ? 0 : Number(r.old));
    if (upto < lo) return 0;
    upto = Math.min(upto, lo + FEED_TRIM_SPAN - 1);
    await this.query(STATEMENTS.feedTrimMark.sql, [upto]);
    const res = await this.query<ResultSetHeader>(STATEMENTS.feedTrimPage.sql, [upto, FEED_TRIM_PAGE]);
    return res.affectedRows;
  }

  async reserveVersionBlock(size: number, above: number): Promise<number> {
    // GREATEST keeps versions above rows restored from a backup taken after the counter's.
    const results = await this.query<RowDataPacket[][]>(STATEMENTS.reserveVersions.sql, [above, size]);
    return Number(results[1][0].end_version) - size;
  }

  async now(): Promise<number> {
    // The health probe of a group: re-decide the writer first, so a dead writer is replaced
    // rather than the whole shard reported down.
    if (this.selector !== null) await this.selector.refresh();
    const rows = await this.query<RowDataPacket[]>(STATEMENTS.probe.sql, undefined, Math.min(this.timeout, PROBE_TIMEOUT_MS), PROBE_TIMEOUT_MS);
    if (Number(rows[0].ro) === 1) {
      // A demoted primary or a replica during a failover: it answers, but must not take writes.
      // Reporting it as down keeps the shard from flapping between "probe ok" and failed writes.
      throw new StoreError('KV_SHARD_READ_ONLY', 'shard is read-only (failover in progress, or the URL names a replica)');
    }
    return Number(rows[0].now_ms);
  }

  async scanDueWindow(afterTs: number, uptoTs: number, limit: number): Promise<DueRow[]> {
    const rows = await this.query<RowDataPacket[]>(STATEMENTS.dueWindow.sql, [afterTs, uptoTs, limit]);
    return normalizeDue(rows);
  }

  async scanDueTies(ts: number, afterKey: Buffer, limit: number): Promise<DueRow[]> {
    const rows = await this.query<RowDataPacket[]>(STATEMENTS.dueTies.sql, [ts, afterKey, limit]);
    return normalizeDue(rows);
  }

  async scanOverdue(limit: number): Promise<DueRow[]> {
    const rows = await this.query<RowDataPacket[]>(STATEMENTS.overdue.sql, [limit]);
    return normalizeDue(rows);
  }

  /**
   * The expirer lease: one row in kv_lease, taken when free or expired and renewed by its holder,
   * with the expiry on the shard's clock (NOW(3) of the writer node). A replicated row, unlike
   * GET_LOCK (which Galera does not replicate), so there is one holder per shard group whichever
   * node each gateway talks to; two gateways racing through two nodes conflict in certification
   * and one gets ER_LOCK_DEADLOCK (reported as "not taken" by the expirer's error path).
   * FOUND_ROWS (mysql2's default) makes affectedRows count matched rows, so a renewal within the
   * same millisecond still reports 1.
   */
  async tryExpirerLock(): Promise<boolean> {
    const res = await this.query<ResultSetHeader>(
      STATEMENTS.takeLease.sql,
      [this.leaseHolder, this.opts.leaseMs ?? 6000, this.leaseHolder],
      Math.min(this.timeout, 3000),
    );
    return res.affectedRows === 1;
  }

  async releaseExpirerLock(): Promise<void> {
    // Best effort: a lease not released expires by itself after leaseMs.
    const w = this.selector === null ? 0 : this.selector.writer;
    const pool = w >= 0 ? this.pools[w] : null;
    if (!pool) return;
    await pool
      .query({ sql: STATEMENTS.releaseLease.sql, timeout: 2000 }, [this.leaseHolder])
      .catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.releaseExpirerLock();
    await this.selector?.stop();
    await Promise.all(this.pools.map((p) => p?.end().catch(() => undefined)));
  }
}

function normalizeDue(rows: RowDataPacket[]): DueRow[] {
  for (const r of rows) r.expires_at = Number(r.expires_at);
  return rows as DueRow[];
}

/**
 * Out of the pool and its socket closed at once. mysql2's destroy() only half-closes (FIN), which
 * a hung or black-holed peer never completes, and it never answers the statement in flight: the
 * caller must not wait for that statement (the actor races it against the op deadline).
 */
function destroyHard(conn: PoolConnection): void {
  conn.destroy();
  (conn.connection as unknown as { stream?: Socket }).stream?.destroy();
}

function codedError(code: string, message: string): Error {
  const err = new Error(message);
  (err as { code?: string }).code = code;
  return err;
}

/** The actor gave up on this batch (op deadline): nothing further is sent, COMMIT never. */
function abandonedError(): StoreError {
  return new StoreError('KV_ABANDONED', 'batch abandoned at the op deadline');
}
