/**
 * Tests src/shard-actor/mysql-errors.ts with errors a real MariaDB and mysql2 produce (never
 * hand-made driver errors): which are retried, which mean the shard is gone, which are bugs, the
 * KV_ERR_* code each becomes, and which leave a connection unusable. The StoreErrors kvsql raises
 * itself are classified by type.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { classify, isConnectionFatal, StoreError, toKvError } from '../../src/shard-actor/mysql-errors';
import { pickFreePort } from '../../src/embedded/local-mysqld';
import { startTestServer, type TestServer } from '../helpers/mysql';

let server: TestServer;
let url: string;

before(async () => {
  server = await startTestServer();
  url = await server.createDatabase();
  const c = await mysql.createConnection(url);
  await c.query('CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB');
  await c.query('INSERT INTO t VALUES (1, 0), (2, 0)');
  await c.end();
});
after(() => server.stop());

async function connect(t: { after(fn: () => unknown): void }): Promise<mysql.Connection> {
  const c = await mysql.createConnection(url);
  t.after(() => c.destroy());
  return c;
}

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  assert.fail('expected the statement to fail');
}

test('a duplicate key is retried (another gateway created the key) and maps to overloaded if it persists', async (t) => {
  const c = await connect(t);
  const err = await errorOf(c.query('INSERT INTO t VALUES (1, 1)'));
  assert.equal((err as { code: string }).code, 'ER_DUP_ENTRY');
  assert.equal(classify(err), 'retry');
  assert.equal(toKvError(err, 3).code, 'KV_ERR_OVERLOADED');
});

test('a lock wait timeout is retried', async (t) => {
  const a = await connect(t);
  const b = await connect(t);
  await a.query('START TRANSACTION');
  await a.query('SELECT * FROM t WHERE id = 1 FOR UPDATE');
  await b.query('SET SESSION innodb_lock_wait_timeout = 1');
  const err = await errorOf(b.query('UPDATE t SET v = 1 WHERE id = 1'));
  await a.query('ROLLBACK');
  assert.equal((err as { code: string }).code, 'ER_LOCK_WAIT_TIMEOUT');
  assert.equal(classify(err), 'retry');
});

test('a deadlock is retried', async (t) => {
  const a = await connect(t);
  const b = await connect(t);
  await a.query('START TRANSACTION');
  await b.query('START TRANSACTION');
  await a.query('SELECT * FROM t WHERE id = 1 FOR UPDATE');
  await b.query('SELECT * FROM t WHERE id = 2 FOR UPDATE');
  // Opposite order: one of the two is chosen as the victim.
  const results = await Promise.allSettled([a.query('SELECT * FROM t WHERE id = 2 FOR UPDATE'), b.query('SELECT * FROM t WHERE id = 1 FOR UPDATE')]);
  await a.query('ROLLBACK');
  await b.query('ROLLBACK');
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(failed.length, 1);
  assert.equal(failed[0].reason.code, 'ER_LOCK_DEADLOCK');
  assert.equal(classify(failed[0].reason), 'retry');
});

test('a connection killed by the server and a refused connection mean the shard is unavailable', async (t) => {
  const victim = await connect(t);
  const killer = await connect(t);
  await killer.query(`KILL CONNECTION ${victim.threadId}`);
  const lost = await errorOf(victim.query('SELECT 1'));
  assert.equal(classify(lost), 'connection');
  assert.equal(toKvError(lost, 0).code, 'KV_ERR_SHARD_UNAVAILABLE');

  const port = await pickFreePort(); // nothing listens there
  const refused = await errorOf(mysql.createConnection({ host: '127.0.0.1', port, user: 'root', connectTimeout: 2000 }));
  assert.equal((refused as { code: string }).code, 'ECONNREFUSED');
  assert.equal(classify(refused), 'connection');
});

test('a statement the server rejects (a bug, not a fault) is fatal and maps to an internal error', async (t) => {
  const c = await connect(t);
  const err = await errorOf(c.query('SELECT no_such_column FROM t'));
  assert.equal((err as { code: string }).code, 'ER_BAD_FIELD_ERROR');
  assert.equal(classify(err), 'fatal');
  const kv = toKvError(err, 1);
  assert.equal(kv.code, 'KV_ERR_INTERNAL');
  assert.match(kv.message, /ER_BAD_FIELD_ERROR/);
});

test('a statement that timed out leaves its connection unusable; a refused statement does not', async (t) => {
  const c = await connect(t);
  const timedOut = await errorOf(c.query({ sql: 'SELECT SLEEP(5)', timeout: 100 }));
  assert.equal((timedOut as { code: string }).code, 'PROTOCOL_SEQUENCE_TIMEOUT');
  assert.equal(classify(timedOut), 'connection');
  assert.equal(isConnectionFatal(timedOut), true);
  const c2 = await connect(t);
  const dup = await errorOf(c2.query('INSERT INTO t VALUES (1, 1)'));
  assert.equal(isConnectionFatal(dup), false);
});

test("an ended pool's 'Pool is closed.' (no code, no fatal flag) means the shard is unavailable", async () => {
  const pool = mysql.createPool(url);
  await pool.end();
  const err = await errorOf(pool.getConnection());
  assert.equal((err as { code?: string }).code, undefined);
  assert.equal(classify(err), 'connection');
});

test('the conditions kvsql detects itself are classified by type', () => {
  assert.equal(classify(new StoreError('KV_ABANDONED', 'x')), 'connection');
  assert.equal(isConnectionFatal(new StoreError('KV_ABANDONED', 'x')), true);
  for (const code of ['KV_ACQUIRE_TIMEOUT', 'KV_NO_WRITER_NODE', 'KV_SHARD_READ_ONLY'] as const) {
    assert.equal(classify(new StoreError(code, 'x')), 'connection', code);
    assert.equal(isConnectionFatal(new StoreError(code, 'x')), false, code);
    assert.equal(toKvError(new StoreError(code, 'x'), 2).code, 'KV_ERR_SHARD_UNAVAILABLE', code);
  }
  assert.equal(classify(new StoreError('KV_VERSIONS_MOVED', 'x')), 'retry');
  const mismatch = new StoreError('KV_SHARD_IDENTITY_MISMATCH', 'x');
  assert.equal(classify(mismatch), 'fatal');
  assert.match(toKvError(mismatch, 0).message, /KV_SHARD_IDENTITY_MISMATCH/);
});
