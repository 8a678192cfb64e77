/**
 * Owns the text of every SQL statement the shard store sends (COMMIT and ROLLBACK aside), each
 * named for logs, built once per batch size and cached: one text per size, so the server's parser
 * and mysql2's formatter see a small, fixed set. Relies on the schema (sql/schema.sql and
 * schema-migration.ts) and the slot and feed constants of src/protocol. Pure: no connection, no
 * I/O; must not format parameters (sql-format.ts does, at the call).
 *
 * The shard's clock decides expiry: every read and every write transaction evaluates NOW(3) on
 * the server (NOW_MS; session time zone +00:00), so gateways with skewed clocks still agree on
 * which keys are live.
 */
import { HASH_TAGS, SERVED_STATES, SLOT_IMPORTING, SLOT_MOVED } from '../../protocol/slot-map';
import { FEED_EXPIRED, FEED_FILLER } from '../../protocol/feed';
import { UNSLOTTED } from '../schema-migration';

/** The server's NOW(3) as unix ms, the one clock of every expiry decision (rows store unix ms). */
export const NOW_MS = 'CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)';

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
  scanValues: new Statements(
    'scanValues',
    (n) => `SELECT k, v, expires_at FROM kv WHERE k IN (${placeholders(n, '?')}) AND (expires_at IS NULL OR expires_at > ${NOW_MS})`,
  ),
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
  logChanges: new Statements(
    'logChanges',
    (n) => `INSERT INTO kv_slot_changes (slot, k, n) VALUES ${placeholders(n, '(?,?,1)')} ON DUPLICATE KEY UPDATE n = n + 1`,
  ),
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
    (n) =>
      `UPDATE kv_feed SET version = CASE version ${new Array(n).fill('WHEN ? THEN ?').join(' ')} END WHERE id >= ? AND version IN (${placeholders(n, '?')})`,
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
  feedFill: new Statements(
    'feedFill',
    (n) => `INSERT IGNORE INTO kv_feed (id, k, version, at, type, expires_at) VALUES ${placeholders(n, `(?, '', 0, 0, ${FEED_FILLER}, NULL)`)}`,
  ),
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
  shardRow: fixed('shardRow', 'SELECT shard_index, slots_seeded, hash_rule FROM kv_shard WHERE id = 1'),
  insertIdentity: fixed(
    'insertIdentity',
    `INSERT IGNORE INTO kv_shard (id, shard_index, shard_count, slot_ranges, created_at, slots_seeded, hash_rule) VALUES (1, ?, ?, ?, ?, 0, ${HASH_TAGS})`,
  ),
  identity: fixed('identity', 'SELECT shard_index, shard_count, slot_ranges, hash_rule FROM kv_shard WHERE id = 1'),
  ownership: fixed(
    'ownership',
    'SELECT shard_index, hash_rule FROM kv_shard WHERE id = 1; SELECT slot, state, epoch, peer FROM kv_slots; SELECT shard_index, url FROM kv_peers; ' +
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
