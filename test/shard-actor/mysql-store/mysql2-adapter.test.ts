/**
 * Tests src/shard-actor/mysql-store/mysql2-adapter.ts against a real MySQL: each function that
 * reaches into mysql2's private fields still does what the store relies on with the mysql2
 * version installed. A mysql2 upgrade that moves those fields fails here first.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';
import { connectedAtOf, destroyAllSockets, destroyHard, onNewConnection, stampConnectedAt } from '../../../src/shard-actor/mysql-store/mysql2-adapter';
import { startTestServer, type TestServer } from '../../helpers/mysql';
import { waitFor } from '../../helpers/wait';

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

/** A pool whose new connections' sockets are collected, and which runs `setup` on each. */
async function hookedPool(size: number, setup = 'SET @kv_adapter = 1') {
  const pool = mysql.createPool({ uri: await server.createDatabase(), connectionLimit: size, multipleStatements: true });
  after(() => pool.end().catch(() => undefined));
  const sockets: Socket[] = [];
  onNewConnection(pool, (conn) => {
    sockets.push(conn.stream as Socket);
    stampConnectedAt(conn, 1234);
    conn.query(setup, (err) => {
      if (err) conn.destroy();
    });
  });
  return { pool, sockets };
}

/** Server threads of `ids` still connected, as another connection sees them. */
async function threadsAlive(ids: number[]): Promise<number> {
  const conn = await mysql.createConnection({ uri: server.url('mysql') });
  try {
    const [rows] = await conn.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID IN (?)', [ids]);
    return Number(rows[0].n);
  } finally {
    await conn.end();
  }
}

test('onNewConnection runs its hook once per new connection, with its socket, before the connection is handed out', async () => {
  const { pool, sockets } = await hookedPool(2);
  const a = await pool.getConnection();
  const b = await pool.getConnection();
  assert.equal(sockets.length, 2);
  for (const s of sockets) assert.equal(typeof s.remotePort, 'number', 'the hook did not get a socket');
  const [rows] = await a.query<RowDataPacket[]>('SELECT @kv_adapter AS v');
  assert.equal(Number(rows[0].v), 1, 'the hook ran its statement before the connection was handed out');
  assert.equal(connectedAtOf(a), 1234);
  a.release();
  b.release();
  (await pool.getConnection()).release();
  assert.equal(sockets.length, 2, 'a reused connection ran the hook again');
});

test('connectedAtOf is 0 for a connection nobody stamped', async () => {
  const pool = mysql.createPool({ uri: await server.createDatabase(), connectionLimit: 1 });
  after(() => pool.end().catch(() => undefined));
  const conn = await pool.getConnection();
  assert.equal(connectedAtOf(conn), 0);
  conn.release();
});

test('destroyHard closes the socket at once, takes the connection out of the pool, and the server drops its thread', async () => {
  const { pool, sockets } = await hookedPool(1);
  const conn = await pool.getConnection();
  const thread = conn.threadId;
  destroyHard(conn);
  assert.equal(sockets[0].destroyed, true, 'the socket was only half-closed');
  await waitFor(async () => (await threadsAlive([thread])) === 0, {
    timeoutMs: 10_000,
    intervalMs: 100,
    message: 'the server drops the thread',
    ignoreErrors: true,
  });
  const next = await pool.getConnection();
  assert.notEqual(next.threadId, thread, 'the destroyed connection went back to the pool');
  assert.equal(sockets.length, 2);
  next.release();
});

test('destroyAllSockets fails the statements in flight at once, with the error given, on every connection of the pool', async () => {
  const { pool, sockets } = await hookedPool(2);
  const busy = await pool.getConnection();
  const idle = await pool.getConnection();
  idle.release();
  const threads = [busy.threadId, idle.threadId];
  const sleeping = busy.query('SELECT SLEEP(20)').then(
    () => null,
    (err: unknown) => err,
  );
  await waitFor(
    async () => {
      const c = await mysql.createConnection({ uri: server.url('mysql') });
      try {
        const sql = "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ? AND INFO LIKE 'SELECT SLEEP%'";
        const [rows] = await c.query<RowDataPacket[]>(sql, [busy.threadId]);
        return Number(rows[0].n) === 1;
      } finally {
        await c.end();
      }
    },
    { timeoutMs: 10_000, intervalMs: 100, message: 'the statement runs', ignoreErrors: true },
  );
  const cause = Object.assign(new Error('switched away'), { code: 'PROTOCOL_CONNECTION_LOST' });
  const cutAt = Date.now();
  destroyAllSockets(pool, cause);
  const err = (await sleeping) as { code?: string } | null;
  assert.ok(err !== null, 'the statement in flight was not failed');
  assert.equal(err.code, 'PROTOCOL_CONNECTION_LOST');
  assert.ok(Date.now() - cutAt < 2000, `the statement failed ${Date.now() - cutAt} ms after the cut, not at once`);
  assert.equal(sockets.length, 2);
  for (const s of sockets) assert.equal(s.destroyed, true, 'a socket of the pool stayed open');
  // The server notices a closed client within SLEEP only every few seconds (MariaDB: 5 s).
  await waitFor(async () => (await threadsAlive(threads)) === 0, {
    timeoutMs: 15_000,
    intervalMs: 100,
    message: 'the server drops both threads',
    ignoreErrors: true,
  });
});
