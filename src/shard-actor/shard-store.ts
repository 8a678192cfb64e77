/**
 * Owns every SQL statement the actor sends to its MySQL shard, and the shard's connection pool.
 * Relies on mysql2 and sql/schema.sql. Must not decide anything: which rows change and how is the
 * write plan's job; when to run is the actor's.
 *
 * Statements are built once per batch size and cached (one text per size, so the server's parser
 * and mysql2's formatter see a small, fixed set). The shard's clock decides expiry: every read and
 * every write transaction evaluates NOW(3) on the server (session time zone +00:00), so gateways
 * with skewed clocks still agree on which keys are live.
 *
 * A write transaction is two round trips:
 *   1. START TRANSACTION; SELECT ... WHERE k IN (sorted keys) ORDER BY k FOR UPDATE; SELECT now
 *   2. INSERT ... ON DUPLICATE KEY UPDATE ...; UPDATE ... CASE ...; DELETE ...; COMMIT
 * READ COMMITTED takes no gap locks, so only existing rows in the batch are locked, in key order.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import type { Pool, PoolConnection, RowDataPacket, ResultSetHeader } from 'mysql2/promise';
import { SERVED_STATES, SLOT_MOVED, slotOf, type ShardOwnership } from '../protocol/slot-map';
import { migrateSchema, seedSlots, UNSLOTTED } from './schema-migration';

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
}

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
  /** Where slots this shard moved away went: slot -> the new owner's index (a routing hint). */
  movedTo(slots: number[]): Promise<Map<number, number>>;
  /** Fill `slot` of up to `limit` rows written before the column existed; returns how many. */
  fillSlots(limit: number): Promise<number>;
  readLive(keys: Buffer[], slots: number[]): Promise<ReadResult>;
  /**
   * One attempt of one transaction. Errors thrown while committing carry `kvPhase = 'commit'`.
   * `decide` also gets kv_seq's counter as committed when the rows were locked: every version
   * issued on this shard by then, by any gateway, is below it, and the state of every slot in
   * `sortedSlots`, share-locked. Keys in `logKeys` (returned by decide: keys of slots being
   * copied away) are recorded in kv_slot_changes in the same transaction.
   */
  transact(
    sortedKeys: Buffer[],
    sortedSlots: number[],
    decide: (locked: Map<string, LockedRow>, now: number, issuedBelow: number, slots: SlotStates) => Promise<RowMutations> | RowMutations,
  ): Promise<void>;
  /** Reserve `size` versions, all above `above`; returns the first. */
  reserveVersionBlock(size: number, above: number): Promise<number>;
  /** Delete those of `keys` whose row is still expired now (autocommit); returns how many. */
  reap(keys: Buffer[]): Promise<number>;
  /** The shard's clock, in unix ms. Doubles as the health probe: a read-only server fails it. */
  now(): Promise<number>;
  scanDueWindow(afterTs: number, uptoTs: number, limit: number): Promise<DueRow[]>;
  scanDueTies(ts: number, afterKey: Buffer, limit: number): Promise<DueRow[]>;
  scanOverdue(limit: number): Promise<DueRow[]>;
  /** Try to become this shard's expirer: GET_LOCK on a dedicated connection. */
  tryExpirerLock(): Promise<boolean>;
  releaseExpirerLock(): Promise<void>;
  close(): Promise<void>;
}

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
  /** Slots share-locked first (ascending), then rows (ascending): one lock order for all (§7). */
  lockBatch: new Statements2(
    'lockBatch',
    (n, n2) =>
      `START TRANSACTION; SELECT slot, state FROM kv_slots WHERE slot IN (${placeholders(n2, '?')}) ORDER BY slot LOCK IN SHARE MODE; ` +
      `SELECT k, version, expires_at FROM kv WHERE k IN (${placeholders(n, '?')}) ORDER BY k FOR UPDATE; ` +
      `SELECT ${NOW_MS} AS now_ms, (SELECT next_version FROM kv_seq WHERE id = 1) AS next_version`,
  ),
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
  deleteBatch: new Statements('deleteBatch', (n) => `DELETE FROM kv WHERE k IN (${placeholders(n, '?')})`),
  /** The expirer's delete: one statement, each row re-checked under its lock. */
  reapBatch: new Statements('reapBatch', (n) => `DELETE FROM kv WHERE k IN (${placeholders(n, '?')}) AND expires_at <= ${NOW_MS}`),
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
  poolSize: number;
  queryTimeoutMs: number;
}

export class MysqlShardStore implements ShardStore {
  private readonly pool: Pool;
  private lockConn: mysql.Connection | null = null;
  private readonly timeout: number;

  constructor(private readonly opts: StoreOptions) {
    this.timeout = opts.queryTimeoutMs;
    this.pool = mysql.createPool({
      uri: opts.url,
      connectionLimit: opts.poolSize,
      maxIdle: opts.poolSize,
      waitForConnections: true,
      queueLimit: 0, // the actor bounds work in flight; the pool never holds more than that
      multipleStatements: true,
      connectTimeout: 3000,
      enableKeepAlive: true,
      supportBigNumbers: true,
      bigNumberStrings: false,
    });
    // Every connection: READ COMMITTED (no gap locks) and UTC so NOW(3) maps 1:1 to unix time.
    // With a callback: an error here (server shutting down, KILL) must not be an unhandled
    // 'error' event, which would end the worker; the broken connection is dropped instead.
    type CoreConn = { query(sql: string, cb: (err: Error | null) => void): void; destroy(): void };
    (this.pool as unknown as { pool: { on(ev: string, cb: (c: CoreConn) => void): void } }).pool.on('connection', (conn) =>
      conn.query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; SET SESSION time_zone = '+00:00'", (err) => {
        if (err) conn.destroy();
      }),
    );
  }

  async init(): Promise<number | null> {
    const conn = await this.pool.getConnection();
    try {
      for (const sql of schemaStatements()) await conn.query({ sql, timeout: 60_000 });
      await migrateSchema(conn);
      const [rows] = await conn.query<RowDataPacket[]>('SELECT shard_index, slots_seeded FROM kv_shard WHERE id = 1');
      if (rows.length === 0) return null;
      // A data dir from before kv_slots: its slots are the ranges it was created with.
      if (Number(rows[0].slots_seeded) === 0) await seedSlots(conn);
      return Number(rows[0].shard_index);
    } finally {
      conn.release();
    }
  }

  async bootstrap(identity: ShardIdentity): Promise<void> {
    const conn = await this.pool.getConnection();
    try {
      await conn.query(
        'INSERT IGNORE INTO kv_shard (id, shard_index, shard_count, slot_ranges, created_at, slots_seeded) VALUES (1, ?, ?, ?, ?, 0)',
        [identity.shard, identity.shardCount, identity.slotRanges, Date.now()],
      );
      const [rows] = await conn.query<RowDataPacket[]>('SELECT shard_index, shard_count, slot_ranges FROM kv_shard WHERE id = 1');
      const row = rows[0];
      if (row.shard_index !== identity.shard || row.slot_ranges !== identity.slotRanges) {
        // Two gateways created the store at once with different shard lists.
        const err = new Error(
          `shard ${identity.shard} was created as shard ${row.shard_index} of ${row.shard_count} with slots ${row.slot_ranges}; ` +
            `this gateway maps slots ${identity.slotRanges} to it. Refusing to start: keys would be served from the wrong shard. ` +
            'Use the same shard list (and count) as when the data was written.',
        );
        (err as { code?: string }).code = 'KV_SHARD_IDENTITY_MISMATCH';
        throw err;
      }
      await seedSlots(conn);
    } finally {
      conn.release();
    }
  }

  async ownership(): Promise<ShardOwnership> {
    const [results] = await this.pool.query<RowDataPacket[][]>({
      sql:
        'SELECT shard_index FROM kv_shard WHERE id = 1; SELECT slot, state, epoch, peer FROM kv_slots; SELECT shard_index, url FROM kv_peers; ' +
        'SELECT state, slots_total, slots_done, rows_copied, started_at, updated_at, pause_p99_ms FROM kv_move_progress WHERE id = 1',
      timeout: this.timeout,
    });
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
    const [rows] = await this.pool.query<RowDataPacket[]>(
      { sql: `SELECT slot, peer FROM kv_slots WHERE slot IN (${placeholders(slots.length, '?')}) AND state = ${SLOT_MOVED}`, timeout: this.timeout },
      slots,
    );
    return new Map(rows.map((r) => [Number(r.slot), Number(r.peer)]));
  }

  async fillSlots(limit: number): Promise<number> {
    const [rows] = await this.pool.query<RowDataPacket[]>({ sql: 'SELECT k FROM kv WHERE slot = ? ORDER BY k LIMIT ?', timeout: this.timeout }, [UNSLOTTED, limit]);
    if (rows.length === 0) return 0;
    const params: unknown[] = [];
    for (const r of rows) params.push(r.k, slotOf(r.k as Buffer));
    for (const r of rows) params.push(r.k);
    await this.pool.query(
      { sql: `UPDATE kv SET slot = CASE k ${new Array(rows.length).fill('WHEN ? THEN ?').join(' ')} END WHERE k IN (${placeholders(rows.length, '?')}) AND slot = ${UNSLOTTED}`, timeout: this.timeout },
      params,
    );
    return rows.length;
  }

  async readLive(keys: Buffer[], slots: number[]): Promise<ReadResult> {
    const [rows] = await this.pool.query<RowDataPacket[]>({ sql: STATEMENTS.readLive.sql(keys.length, slots.length), timeout: this.timeout }, [...slots, ...keys]);
    const served = new Set<number>();
    const list = rows[0]?.served as string | null | undefined;
    if (list) for (const x of String(list).split(',')) served.add(Number(x));
    const live: LiveRow[] = [];
    for (const r of rows) if (r.k !== null) live.push(r as LiveRow);
    return { rows: live, served };
  }

  async transact(
    sortedKeys: Buffer[],
    sortedSlots: number[],
    decide: (locked: Map<string, LockedRow>, now: number, issuedBelow: number, slots: SlotStates) => Promise<RowMutations> | RowMutations,
  ): Promise<void> {
    const conn: PoolConnection = await this.pool.getConnection();
    let broken = false;
    try {
      const [results] = await conn.query<RowDataPacket[][]>(
        { sql: STATEMENTS.lockBatch.sql(sortedKeys.length, sortedSlots.length), timeout: this.timeout },
        [...sortedSlots, ...sortedKeys],
      );
      const slotStates: SlotStates = new Map();
      for (const r of results[1]) slotStates.set(Number(r.slot), Number(r.state));
      const lockedRows = results[2];
      const now = Number(results[3][0].now_ms);
      const issuedBelow = Number(results[3][0].next_version);
      const locked = new Map<string, LockedRow>();
      for (const r of lockedRows) {
        locked.set((r.k as Buffer).toString('latin1'), { version: Number(r.version), expiresAt: r.expires_at === null ? null : Number(r.expires_at) });
      }
      const m = await decide(locked, now, issuedBelow, slotStates);
      let sql = '';
      const params: unknown[] = [];
      if (m.inserts.length > 0) {
        sql += STATEMENTS.insertBatch.sql(m.inserts.length) + ';';
        for (const u of m.inserts) params.push(u[0], u[1], u[2], u[3], slotOf(u[0]));
      }
      if (m.upserts.length > 0) {
        sql += STATEMENTS.upsertBatch.sql(m.upserts.length) + ';';
        for (const u of m.upserts) params.push(u[0], u[1], u[2], u[3], slotOf(u[0]));
      }
      if (m.ttlUpdates.length > 0) {
        sql += STATEMENTS.ttlBatch.sql(m.ttlUpdates.length) + ';';
        for (const t of m.ttlUpdates) params.push(t[0], t[1]);
        for (const t of m.ttlUpdates) params.push(t[0]);
      }
      if (m.deletes.length > 0) {
        sql += STATEMENTS.deleteBatch.sql(m.deletes.length) + ';';
        for (const d of m.deletes) params.push(d);
      }
      if (m.changed !== undefined && m.changed.length > 0) {
        sql += STATEMENTS.logChanges.sql(m.changed.length) + ';';
        for (const c of m.changed) params.push(c[0], c[1]);
      }
      try {
        await conn.query({ sql: sql + 'COMMIT', timeout: this.timeout }, params);
      } catch (err) {
        (err as { kvPhase?: string }).kvPhase = 'commit';
        throw err;
      }
    } catch (err) {
      broken = isConnectionFatal(err);
      if (!broken) {
        try {
          await conn.query({ sql: 'ROLLBACK', timeout: this.timeout });
        } catch {
          broken = true;
        }
      }
      throw err;
    } finally {
      if (broken) conn.destroy();
      else conn.release();
    }
  }

  async reap(keys: Buffer[]): Promise<number> {
    const [res] = await this.pool.query<ResultSetHeader>({ sql: STATEMENTS.reapBatch.sql(keys.length), timeout: this.timeout }, keys);
    return res.affectedRows;
  }

  async reserveVersionBlock(size: number, above: number): Promise<number> {
    // Autocommit, outside any data transaction: the counter row is locked for one statement only.
    // GREATEST keeps versions above rows restored from a backup taken after the counter's.
    const [results] = await this.pool.query<RowDataPacket[][]>(
      {
        sql: 'UPDATE kv_seq SET next_version = LAST_INSERT_ID(GREATEST(next_version, ? + 1) + ?) WHERE id = 1; SELECT LAST_INSERT_ID() AS end_version',
        timeout: this.timeout,
      },
      [above, size],
    );
    return Number(results[1][0].end_version) - size;
  }

  async now(): Promise<number> {
    const [rows] = await this.pool.query<RowDataPacket[]>({ sql: `SELECT ${NOW_MS} AS now_ms, @@read_only AS ro`, timeout: Math.min(this.timeout, 3000) });
    if (Number(rows[0].ro) === 1) {
      // A demoted primary or a replica during a failover: it answers, but must not take writes.
      // Reporting it as down keeps the shard from flapping between "probe ok" and failed writes.
      const err = new Error('shard is read-only (failover in progress, or the URL names a replica)');
      (err as { code?: string }).code = 'ER_OPTION_PREVENTS_STATEMENT';
      throw err;
    }
    return Number(rows[0].now_ms);
  }

  async scanDueWindow(afterTs: number, uptoTs: number, limit: number): Promise<DueRow[]> {
    const [rows] = await this.pool.query<RowDataPacket[]>(
      { sql: 'SELECT k, expires_at FROM kv WHERE expires_at > ? AND expires_at <= ? ORDER BY expires_at, k LIMIT ?', timeout: this.timeout },
      [afterTs, uptoTs, limit],
    );
    return normalizeDue(rows);
  }

  async scanDueTies(ts: number, afterKey: Buffer, limit: number): Promise<DueRow[]> {
    const [rows] = await this.pool.query<RowDataPacket[]>(
      { sql: 'SELECT k, expires_at FROM kv WHERE expires_at = ? AND k > ? ORDER BY k LIMIT ?', timeout: this.timeout },
      [ts, afterKey, limit],
    );
    return normalizeDue(rows);
  }

  async scanOverdue(limit: number): Promise<DueRow[]> {
    const [rows] = await this.pool.query<RowDataPacket[]>(
      { sql: `SELECT k, expires_at FROM kv WHERE expires_at <= ${NOW_MS} ORDER BY expires_at LIMIT ?`, timeout: this.timeout },
      [limit],
    );
    return normalizeDue(rows);
  }

  async tryExpirerLock(): Promise<boolean> {
    if (this.lockConn === null) {
      const conn = await mysql.createConnection({ uri: this.opts.url, connectTimeout: 3000, enableKeepAlive: true });
      conn.on('error', () => {
        // The server released the lock with the connection; the next tryExpirerLock reconnects.
        if (this.lockConn === conn) this.lockConn = null;
      });
      this.lockConn = conn;
    }
    try {
      const [rows] = await this.lockConn.query<RowDataPacket[]>({
        sql: "SELECT GET_LOCK(CONCAT('kvsql-expirer:', DATABASE()), 0) AS got",
        timeout: 3000,
      });
      return Number(rows[0].got) === 1;
    } catch (err) {
      this.lockConn?.destroy();
      this.lockConn = null;
      throw err;
    }
  }

  async releaseExpirerLock(): Promise<void> {
    const conn = this.lockConn;
    this.lockConn = null;
    if (conn) await conn.end().catch(() => conn.destroy());
  }

  async close(): Promise<void> {
    await this.releaseExpirerLock();
    await this.pool.end().catch(() => undefined);
  }
}

function normalizeDue(rows: RowDataPacket[]): DueRow[] {
  for (const r of rows) r.expires_at = Number(r.expires_at);
  return rows as DueRow[];
}

function isConnectionFatal(err: unknown): boolean {
  const e = err as { fatal?: boolean; code?: string };
  return e?.fatal === true || e?.code === 'PROTOCOL_CONNECTION_LOST' || e?.code === 'PROTOCOL_SEQUENCE_TIMEOUT';
}
