/**
 * Tests that the shard store's locking statements (src/shard-actor/mysql-store/statements.ts) lock
 * only their own keys' rows, on a real shard and whatever plan the optimizer would prefer: the
 * premise of "one actor cannot deadlock" (DESIGN.md §7, steps 3 and 5). One actor runs write
 * transactions and reaps on disjoint keys at once; none may wait for a row of another's keys.
 * The tables are small and shaped so that MariaDB 10.11 left to itself picks the plans that
 * broke this (both seen as a deadlock with one gateway in contention.test.ts):
 *   - reapBatch through kv_expires_at (fewer rows overdue than the batch lists): it locked another
 *     key's overdue row, index entry first, and deadlocked with the write giving it a new expiry;
 *   - deleteBatch as a full table scan (20 keys of 100 rows): it waited for the rows of another
 *     write transaction, which waited for its rows in turn.
 * Each check holds one transaction open between its locking read and its writes (inside
 * `decide`, as a slow actor would) and asserts that the other statement finishes without ever
 * being in LOCK WAIT (information_schema), then that both commit and InnoDB saw no deadlock.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql2 from 'mysql2/promise';
import { MAX_REAP_KEYS, type RowMutations } from '../../src/shard-actor/shard-store';
import { MysqlShardStore } from '../../src/shard-actor/mysql-store/mysql-shard-store';
import { STATEMENTS } from '../../src/shard-actor/mysql-store/statements';
import { slotOf } from '../../src/protocol/slot-map';
import { startTestServer, type TestServer } from '../helpers/mysql';
import { innodbDeadlocks } from '../helpers/innodb';
import { sleep } from '../helpers/wait';

let mysql: TestServer;
before(async () => {
  mysql = await startTestServer();
});
after(() => mysql?.stop());

const noMutations = (): RowMutations => ({ inserts: [], upserts: [], ttlUpdates: [], deletes: [] });
const key = (s: string): Buffer => Buffer.from(s);
/** The sorted slots of `keys`, as the actor passes them with a write batch. */
const slotsOf = (keys: Buffer[]): number[] => [...new Set(keys.map((k) => slotOf(k)))].sort((x, y) => x - y);

/** A fresh shard holding `rows` ([key, expires_at]), statistics up to date, and a store on it. */
async function shard(rows: Array<[string, number | null]>): Promise<{ url: string; store: MysqlShardStore }> {
  const url = await mysql.createDatabase();
  const store = new MysqlShardStore({ url, poolSize: 4, queryTimeoutMs: 30_000 });
  after(() => store.close());
  await store.init();
  await store.bootstrap({ shard: 0, shardCount: 1, slotRanges: '[[0,16383]]' });
  const conn = await mysql2.createConnection({ uri: url });
  try {
    await conn.query('INSERT INTO kv (k, v, version, expires_at, slot) VALUES ?', [rows.map(([k, e], i) => [key(k), 'v', i + 1, e, slotOf(key(k))])]);
    await conn.query('ANALYZE TABLE kv');
  } finally {
    await conn.end();
  }
  return { url, store };
}

/** A write transaction held open after its locking read, until release(); then it applies `mutations`. */
function heldTransaction(store: MysqlShardStore, keys: Buffer[], mutations: RowMutations): { locked: Promise<void>; release: () => void; done: Promise<void> } {
  let onLocked!: () => void;
  let release!: () => void;
  const locked = new Promise<void>((r) => (onLocked = r));
  const released = new Promise<void>((r) => (release = r));
  const done = store.transact([...keys].sort(Buffer.compare), slotsOf(keys), async () => {
    onLocked();
    await released;
    return mutations;
  });
  // If the transaction fails before it locked anything, `locked` must not hang the test.
  done.catch(() => onLocked());
  return { locked, release, done };
}

/** Resolves 'done' once `p` settles, or 'lock wait' as soon as a transaction on the server waits for a row lock. */
async function finishesWithoutWaiting(url: string, p: Promise<unknown>): Promise<'done' | 'lock wait'> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  const conn = await mysql2.createConnection({ uri: url });
  try {
    for (;;) {
      if (settled) return 'done';
      const [rows] = await conn.query("SELECT COUNT(*) AS n FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'");
      if (Number((rows as Array<{ n: number }>)[0].n) > 0) return settled ? 'done' : 'lock wait';
      await sleep(5);
    }
  } finally {
    await conn.end();
  }
}

test('a reap locks only its own keys: it neither waits for nor deadlocks with a write giving another overdue key a new expiry', async (t) => {
  const now = Date.now();
  // 100 keys due in a minute, and two overdue: hot-w (being written) is due before hot-r (being reaped).
  const rows: Array<[string, number | null]> = Array.from({ length: 100 }, (_, i) => [`warm-${i}`, i % 3 === 0 ? null : now + 60_000 + i]);
  rows.push(['hot-w', now - 2000], ['hot-r', now - 1000]);
  const { url, store } = await shard(rows);
  const deadlocksBefore = await innodbDeadlocks(url);

  const write = heldTransaction(store, [key('hot-w')], { ...noMutations(), upserts: [[key('hot-w'), Buffer.from('v2'), 1000, now + 60_000]] });
  t.after(() => write.release());
  await write.locked;
  // The reap lists keys that are gone too (deleted, or rewritten by another gateway): more keys than overdue rows.
  const reap = store.reap(['hot-r', 'gone-1', 'gone-2', 'gone-3', 'gone-4', 'gone-5'].map(key));
  assert.equal(await finishesWithoutWaiting(url, reap), 'done', 'the reap waited for the row lock of hot-w, a key it does not reap');
  assert.equal(await reap, 1);
  write.release();
  await write.done;
  assert.equal((await innodbDeadlocks(url)) - deadlocksBefore, 0, 'InnoDB deadlocks');
});

test('write transactions on disjoint keys that delete them never wait for each other (a small table)', async (t) => {
  const rows: Array<[string, number | null]> = Array.from({ length: 100 }, (_, i) => [`k${String(i).padStart(3, '0')}`, null]);
  const { url, store } = await shard(rows);
  const deadlocksBefore = await innodbDeadlocks(url);
  const keysFrom = (first: number): Buffer[] => Array.from({ length: 20 }, (_, i) => key(`k${String(first + i).padStart(3, '0')}`));
  const a = keysFrom(10);
  const b = keysFrom(50);

  const first = heldTransaction(store, a, { ...noMutations(), deletes: a });
  t.after(() => first.release());
  await first.locked;
  const second = store.transact(b, slotsOf(b), () => ({ ...noMutations(), deletes: b }));
  assert.equal(await finishesWithoutWaiting(url, second), 'done', "deleting 20 keys waited for the row locks of another transaction's keys");
  await second;
  first.release();
  await first.done;
  assert.equal((await innodbDeadlocks(url)) - deadlocksBefore, 0, 'InnoDB deadlocks');
  const conn = await mysql2.createConnection({ uri: url });
  try {
    const [left] = await conn.query('SELECT COUNT(*) AS n FROM kv');
    assert.equal(Number((left as Array<{ n: number }>)[0].n), 60, 'rows left after deleting 40 of 100');
  } finally {
    await conn.end();
  }
});

test('the largest reap statement the actor sends is point lookups on the primary key, not a join over a list of its keys', async () => {
  // MariaDB turns an IN list of in_predicate_conversion_threshold (1000) values or more into a join
  // with a table of those values (at 2000 keys: 30% more time per row, and a plan this file's
  // tests do not cover); the actor sends at most MAX_REAP_KEYS keys per reap.
  const now = Date.now();
  const rows: Array<[string, number | null]> = Array.from({ length: 2000 }, (_, i) => [`r-${i}`, i % 2 === 0 ? now - 1000 : now + 60_000]);
  const { url } = await shard(rows);
  const conn = await mysql2.createConnection({ uri: url });
  try {
    const keys = Array.from({ length: MAX_REAP_KEYS }, (_, i) => key(`r-${i * 3}`));
    const [plan] = await conn.query(`EXPLAIN ${STATEMENTS.reapBatch.sql(keys.length)}`, keys);
    const steps = (plan as Array<{ table: string; type: string; key: string | null }>).map((r) => `${r.table}:${r.type}:${r.key}`);
    assert.deepEqual(steps, ['kv:range:PRIMARY'], `plan of a ${keys.length}-key reap`);
  } finally {
    await conn.end();
  }
});
