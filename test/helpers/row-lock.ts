/**
 * Owns holding a key's row lock from outside the store, so a test can keep writes to that key in
 * flight for as long as it likes: a separate MySQL connection on the key's shard runs
 * `SELECT ... FOR UPDATE` in an open transaction; the store's write to the key waits in InnoDB
 * until release(). Relies on the test store's slot map and shard URLs. The row must exist (a lock
 * on an absent key would be a gap lock, which blocks neighbouring inserts too).
 *
 * Keep a hold shorter than the shard's innodb_lock_wait_timeout (50 s by default) and than
 * KVSQL_QUERY_TIMEOUT_MS, or the held write fails and is retried.
 */
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import type { TestStore } from './store';

export interface RowLock {
  /** The connection holding the lock (e.g. for its thread id). */
  conn: mysql.Connection;
  /** Shard index of the key. */
  shard: number;
  /** COMMIT and disconnect: the waiting writes proceed. Idempotent. */
  release(): Promise<void>;
}

export async function holdRowLock(store: TestStore, key: string | Uint8Array): Promise<RowLock> {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : Buffer.from(key);
  const shard = store.server.pool.shardOf(bytes);
  const conn = await mysql.createConnection({ uri: store.urls[shard] });
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    await conn.query('COMMIT').catch(() => undefined);
    await conn.end().catch(() => undefined);
  };
  try {
    await conn.query('START TRANSACTION');
    const [rows] = await conn.query('SELECT k FROM kv WHERE k = ? FOR UPDATE', [bytes]);
    assert.equal((rows as unknown[]).length, 1, `holdRowLock: key ${JSON.stringify(bytes.toString('latin1'))} has no row to lock`);
  } catch (err) {
    await release();
    throw err;
  }
  return { conn, shard, release };
}

/**
 * Threads of the shard's MySQL waiting for a row lock right now (information_schema). Two views,
 * because neither sees every wait: INNODB_TRX lists transactions in LOCK WAIT, but MariaDB reads
 * a row matched by primary-key equality as a "const table" while optimizing (PROCESSLIST state
 * "Statistics") and waits for its lock there without the transaction showing in INNODB_TRX; so
 * the store's locking read (`lockBatch`) still running is counted too.
 */
export async function lockWaiters(store: TestStore, shard: number): Promise<number> {
  const conn = await mysql.createConnection({ uri: store.urls[shard] });
  try {
    const [trx] = await conn.query("SELECT COUNT(*) AS n FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'");
    const [reads] = await conn.query(
      "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT k, version, expires_at FROM kv WHERE k IN %FOR UPDATE%'",
    );
    return Math.max(Number((trx as Array<{ n: number }>)[0].n), Number((reads as Array<{ n: number }>)[0].n));
  } finally {
    await conn.end();
  }
}
