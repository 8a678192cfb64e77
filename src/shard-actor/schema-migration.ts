/**
 * Owns upgrading a shard's tables written by an older kvsql, at every start, online and
 * idempotently (several gateways may start at once). Relies on mysql2 and sql/schema.sql having
 * been applied first (CREATE ... IF NOT EXISTS: new tables appear, old ones keep their shape).
 * Must not touch rows of kv except through the actor's paged `fillSlots`.
 *
 *   kv.slot column      ALTER TABLE ... ADD COLUMN, DEFAULT 65535 (= not computed yet)
 *                       INSTANT on MySQL 8.0.29+ and MariaDB 10.4+: no table copy, no lock wait
 *   kv.kv_slot index    ALTER TABLE ... ADD INDEX (slot, k), ALGORITHM=INPLACE, LOCK=NONE: built
 *                       online while reads and writes go on (takes time on a big table)
 *   kv_shard.slots_seeded, then kv_slots seeded from kv_shard.slot_ranges (once)
 *
 *   kv_slots triggers   kv_slots_epoch_{ins,upd,del}: bump kv_slots_epoch.n in the transaction of
 *                       every change to kv_slots, whoever makes it (a mover of any version, a
 *                       hand edit). Where the account may not create triggers (MySQL with binary
 *                       logging and no SUPER or log_bin_trust_function_creators), reads keep
 *                       checking their slots' rows in every statement; nothing else depends on it.
 *
 * Rows with slot = 65535 are filled by the actor in pages after start (MySQL has no CRC16); the
 * mover refuses to move a slot of a shard that still has such rows. Reads and writes do not need
 * the column: ownership is checked on the slot the actor computes from the key.
 */
import type { PoolConnection, RowDataPacket } from 'mysql2/promise';

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
  return done;
}

const EPOCH_TRIGGERS = [
  ['kv_slots_epoch_ins', 'INSERT'],
  ['kv_slots_epoch_upd', 'UPDATE'],
  ['kv_slots_epoch_del', 'DELETE'],
] as const;
/** ER_TRG_ALREADY_EXISTS: another gateway created it first. */
const TRIGGER_EXISTS = 1359;

/**
 * Makes sure every change to kv_slots bumps kv_slots_epoch.n in its own transaction. Returns
 * whether all three triggers exist (then a read may trust an epoch it saw with the served set);
 * false, with the reason, when they cannot be created here.
 */
export async function ensureSlotsEpoch(conn: PoolConnection): Promise<{ ok: boolean; why?: string }> {
  const [rows] = await conn.query<RowDataPacket[]>(
    "SELECT TRIGGER_NAME AS name FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'kv_slots'",
  );
  const have = new Set(rows.map((r) => String(r.name)));
  for (const [name, event] of EPOCH_TRIGGERS) {
    if (have.has(name)) continue;
    try {
      await conn.query(`CREATE TRIGGER ${name} AFTER ${event} ON kv_slots FOR EACH ROW UPDATE kv_slots_epoch SET n = n + 1 WHERE id = 1`);
    } catch (err) {
      if (Number((err as { errno?: number }).errno) === TRIGGER_EXISTS) continue;
      return { ok: false, why: (err as Error).message };
    }
  }
  return { ok: true };
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
    }
    await conn.query('COMMIT');
  } catch (err) {
    await conn.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
