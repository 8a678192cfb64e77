/**
 * Tests the read path's ownership check through kv_slots_epoch (mysql-store/reads.ts, readLive): once the
 * store has read the served set, read batches check one epoch row instead of their slots' rows,
 * and a change of the served set made as the mover makes it (kv_slots and BUMP_SLOTS_EPOCH in one
 * transaction) is seen by the very next read: a slot moved away is refused, a slot taken over is
 * served. Row triggers of an earlier build are dropped at init.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql2 from 'mysql2/promise';
import { MysqlShardStore } from '../../src/shard-actor/mysql-store/mysql-shard-store';
import { BUMP_SLOTS_EPOCH } from '../../src/shard-actor/schema-migration';
import { slotOf, SLOT_MOVED, SLOT_OWNED, SLOT_IMPORTING } from '../../src/protocol/slot-map';
import { startTestServer, type TestServer } from '../helpers/mysql';
import { waitFor } from '../helpers/wait';

let mysql: TestServer;
before(async () => {
  mysql = await startTestServer();
});
after(() => mysql?.stop());

test('reads check the epoch row once the served set is known, and see every change of the served set at once', async () => {
  const url = await mysql.createDatabase();
  const store = new MysqlShardStore({ url, poolSize: 4, queryTimeoutMs: 30_000 });
  after(() => store.close());
  await store.init();
  await store.bootstrap({ shard: 0, shardCount: 1, slotRanges: '[[0,16383]]' });
  const conn = await mysql2.createConnection({ uri: url, multipleStatements: true });
  after(() => conn.end());
  /** A change of the served set as the mover makes one: the rows and the epoch in one transaction. */
  const change = (sql: string, params: unknown[]) => conn.query(`START TRANSACTION; ${sql}; ${BUMP_SLOTS_EPOCH}; COMMIT`, params);

  const key = Buffer.from('epoch-key');
  const slot = slotOf(key);
  await conn.query('INSERT INTO kv (k, v, version, expires_at, slot) VALUES (?, ?, 1, NULL, ?)', [key, Buffer.from('v1'), slot]);

  // The first read checks its slots and loads the served set in the background.
  const first = await store.readLive([key], [slot]);
  assert.ok(first.served.has(slot));
  assert.equal(first.rows.length, 1);
  await waitFor(
    async () => {
      await store.readLive([key], [slot]);
      return store.readPaths.epoch > 0;
    },
    { timeoutMs: 10_000, intervalMs: 100, message: 'reads through the epoch', ignoreErrors: true },
  );

  // The slot moves away: the next read must not serve it (its row is still here until cleanup).
  await change(`UPDATE kv_slots SET state = ${SLOT_MOVED}, peer = 1 WHERE slot = ?`, [slot]);
  const moved = await store.readLive([key], [slot]);
  assert.equal(moved.served.has(slot), false, 'a read right after the move still served the slot');

  // Taken over again (importing, then owned): served from the read after the flip.
  await change(`UPDATE kv_slots SET state = ${SLOT_IMPORTING} WHERE slot = ?`, [slot]);
  assert.equal((await store.readLive([key], [slot])).served.has(slot), false);
  await change(`UPDATE kv_slots SET state = ${SLOT_OWNED}, peer = NULL WHERE slot = ?`, [slot]);
  const back = await store.readLive([key], [slot]);
  assert.ok(back.served.has(slot));
  assert.deepEqual(back.rows[0].v, Buffer.from('v1'));

  // Deleting the slot's row (no row = not owned) is a change too.
  const fastBefore = store.readPaths.epoch;
  await change('DELETE FROM kv_slots WHERE slot = ?', [slot]);
  assert.equal((await store.readLive([key], [slot])).served.has(slot), false);
  // Once the set is reloaded, reads go through the epoch again, and still refuse the slot.
  await waitFor(
    async () => {
      await store.readLive([key], [slot]);
      return store.readPaths.epoch > fastBefore;
    },
    { timeoutMs: 10_000, intervalMs: 100, message: 'reads through the epoch again', ignoreErrors: true },
  );
  assert.equal((await store.readLive([key], [slot])).served.has(slot), false);

  // Row triggers an earlier build created are dropped at init (they made the mover's range
  // statements ~20 µs per slot slower); reads stay exact without them.
  await conn.query('CREATE TRIGGER kv_slots_epoch_upd AFTER UPDATE ON kv_slots FOR EACH ROW UPDATE kv_slots_epoch SET n = n + 1 WHERE id = 1');
  const again = new MysqlShardStore({ url, poolSize: 2, queryTimeoutMs: 30_000 });
  after(() => again.close());
  await again.init();
  const [n] = await conn.query<mysql2.RowDataPacket[]>(
    "SELECT COUNT(*) AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'kv_slots'",
  );
  assert.equal(Number(n[0].n), 0);
});
