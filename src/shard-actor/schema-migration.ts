/**
 * Owns a shard's schema: the statements of sql/schema.sql (schemaStatements), and upgrading
 * tables written by an older kvsql, at every start, online and idempotently (several gateways may
 * start at once). Relies on mysql2 and sql/schema.sql having been applied first (CREATE ... IF NOT
 * EXISTS: new tables appear, old ones keep their shape). Must not touch rows of kv except through
 * the actor's paged `fillSlots`.
 *
 *   kv.slot column      ALTER TABLE ... ADD COLUMN, DEFAULT 65535 (= not computed yet)
 *                       INSTANT on MySQL 8.0.29+ and MariaDB 10.4+: no table copy, no lock wait
 *   kv.kv_slot index    ALTER TABLE ... ADD INDEX (slot, k), ALGORITHM=INPLACE, LOCK=NONE: built
 *                       online while reads and writes go on (takes time on a big table)
 *   kv_shard.slots_seeded, then kv_slots seeded from kv_shard.slot_ranges (once)
 *   kv_shard.hash_rule  ADD COLUMN, DEFAULT 0 (= whole keys: the rule the old rows were stored by)
 *
 *   kv_slots_epoch      created by schema.sql; BUMP_SLOTS_EPOCH runs in every transaction that
 *                       changes which slots are served. Row triggers of an earlier build dropped.
 *
 * Rows with slot = 65535 are filled by the actor in pages after start (MySQL has no CRC16); the
 * mover refuses to move a slot of a shard that still has such rows. Reads and writes do not need
 * the column: ownership is checked on the slot the actor computes from the key.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PoolConnection, RowDataPacket } from 'mysql2/promise';

const SCHEMA_PATH = join(__dirname, '..', '..', '..', 'sql', 'schema.sql');

/** sql/schema.sql as statements (CREATE ... IF NOT EXISTS), comments dropped, in file order. */
export function schemaStatements(): string[] {
  return readFileSync(SCHEMA_PATH, 'utf8')
    .split(/;\s*\n/)
    .map((s) => s.replace(/^\s*--.*$/gm, '').trim())
    .filter((s) => s.length > 0);
}

export const UNSLOTTED = 65535;

/** ER_DUP_FIELDNAME, ER_DUP_KEYNAME: another gateway applied the same change first. */
const ALREADY_DONE = new Set([1060, 1061]);

async function hasColumn(conn: PoolConnection, table: string, column: string): Promise<boolean> {
  const [rows] = await conn.query<RowDataPacket[]>(
    'SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?',
    [table, column],
  );
  return rows.length > 0;
}

async function hasIndex(conn: PoolConnection, table: string, index: string): Promise<boolean> {
  const [rows] = await conn.query<RowDataPacket[]>(
    'SELECT 1 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = ?',
    [table, index],
  );
  return rows.length > 0;
}

async function alter(conn: PoolConnection, sql: string): Promise<void> {
  try {
    // An index build on a large table takes a while; it is online, so no short timeout.
    await conn.query({ sql, timeout: 24 * 3600_000 });
  } catch (err) {
    if (!ALREADY_DONE.has(Number((err as { errno?: number }).errno))) throw err;
  }
}

/** Bring an older shard's tables to the current shape. Returns what was changed (for the log). */
export async function migrateSchema(conn: PoolConnection): Promise<string[]> {
  const done: string[] = [];
  if (!(await hasColumn(conn, 'kv', 'slot'))) {
    await alter(conn, `ALTER TABLE kv ADD COLUMN slot SMALLINT UNSIGNED NOT NULL DEFAULT ${UNSLOTTED}`);
    done.push('kv.slot');
  }
  if (!(await hasIndex(conn, 'kv', 'kv_slot'))) {
    await alter(conn, 'ALTER TABLE kv ADD INDEX kv_slot (slot, k), ALGORITHM=INPLACE, LOCK=NONE');
    done.push('kv.kv_slot');
  }
  if (!(await hasColumn(conn, 'kv_shard', 'slots_seeded'))) {
    await alter(conn, 'ALTER TABLE kv_shard ADD COLUMN slots_seeded TINYINT UNSIGNED NOT NULL DEFAULT 0');
    done.push('kv_shard.slots_seeded');
  }
  if (!(await hasColumn(conn, 'kv_shard', 'hash_rule'))) {
    // DEFAULT 0: a store created before hash tags keeps hashing whole keys (its rows' slots).
    await alter(conn, 'ALTER TABLE kv_shard ADD COLUMN hash_rule TINYINT UNSIGNED NOT NULL DEFAULT 0');
    done.push('kv_shard.hash_rule');
  }
  return done;
}

/**
 * Every transaction that changes which slots a shard serves runs this statement in it (seedSlots,
 * the mover's two flips), so that a read seeing kv_slots_epoch.n unchanged knows kv_slots still
 * serves the set the store cached with it (mysql-store/reads.ts, readLive). One statement per transaction,
 * not a trigger per row: a row trigger made each of the mover's range statements ~20 µs per slot
 * slower (16,384 rows: 0.32-0.45 s against 0.08 s), which lengthened the write pause of a fence.
 */
export const BUMP_SLOTS_EPOCH = 'UPDATE kv_slots_epoch SET n = n + 1 WHERE id = 1';

/** Row triggers an earlier build of kvsql created on kv_slots: dropped (see BUMP_SLOTS_EPOCH). */
const OLD_TRIGGERS = ['kv_slots_epoch_ins', 'kv_slots_epoch_upd', 'kv_slots_epoch_del'];

export async function dropEpochTriggers(conn: PoolConnection): Promise<void> {
  for (const name of OLD_TRIGGERS) {
    // Harmless when kept (they only bump the epoch more often): an account without the TRIGGER
    // privilege leaves them.
    await conn.query(`DROP TRIGGER IF EXISTS ${name}`).catch(() => undefined);
  }
}

/**
 * Fill kv_slots from kv_shard.slot_ranges, once per shard (slots_seeded guards it, under the
 * kv_shard row's lock, so two gateways starting together seed once and a shard that later moved
 * all its slots away is never re-seeded).
 */
export async function seedSlots(conn: PoolConnection): Promise<void> {
  await conn.query('START TRANSACTION');
  try {
    const [rows] = await conn.query<RowDataPacket[]>('SELECT slot_ranges, slots_seeded FROM kv_shard WHERE id = 1 FOR UPDATE');
    if (rows.length === 1 && Number(rows[0].slots_seeded) === 0) {
      const ranges = JSON.parse(String(rows[0].slot_ranges)) as Array<[number, number]>;
      const slots: number[] = [];
      for (const [first, last] of ranges) for (let s = first; s <= last; s++) slots.push(s);
      const now = Date.now();
      for (let i = 0; i < slots.length; i += 2000) {
        const page = slots.slice(i, i + 2000);
        await conn.query(
          `INSERT IGNORE INTO kv_slots (slot, state, epoch, peer, updated_at) VALUES ${page.map(() => '(?, 1, 1, NULL, ?)').join(',')}`,
          page.flatMap((s) => [s, now]),
        );
      }
      await conn.query('UPDATE kv_shard SET slots_seeded = 1 WHERE id = 1');
      await conn.query(BUMP_SLOTS_EPOCH);
    }
    await conn.query('COMMIT');
  } catch (err) {
    await conn.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
