/**
 * Tests src/embedded/local-mysqld.ts against a real server: data survives a graceful restart and
 * a crash, a server still running on the data dir is never stopped (the second start is refused),
 * a parent killed by SIGKILL does not leave its server running, and a busy port fails the start
 * with a plain reason and nothing left in /tmp. Also the test helper's createDatabase, which every suite uses.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { startLocalMysqld, tmpDirFor, type LocalMysqld } from '../../src/embedded/local-mysqld';
import { startTestServer } from '../helpers/mysql';
import { waitFor } from '../helpers/wait';

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-test-'));
}

async function query<T = unknown>(url: string, sql: string, params: unknown[] = []): Promise<T> {
  const conn = await mysql.createConnection({ uri: url });
  try {
    const [rows] = await conn.query(sql, params);
    return rows as T;
  } finally {
    await conn.end();
  }
}

async function readValue(server: LocalMysqld, k: string): Promise<string | undefined> {
  const rows = await query<Array<{ v: string }>>(server.url, 'SELECT v FROM kv WHERE k = ?', [k]);
  return rows[0]?.v;
}

/** Linux: a zombie (exited, not yet reaped by init) is as dead as a missing pid. */
function processRunning(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

// One server for the tests below, which run in order and build on each other's rows.
const dataDir = tempDir();
let server!: LocalMysqld; // set by before(); undefined only if it failed
before(async () => {
  server = await startLocalMysqld({ dataDir, port: 0, database: 'kvsql', bufferPoolMb: 64 });
});
after(async () => {
  await server?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

test('starts a fresh server on a free port and creates the database', async () => {
  assert.match(server.url, /^mysql:\/\/root@127\.0\.0\.1:\d+\/kvsql$/);
  assert.ok(server.pid > 0);
  await query(server.url, 'CREATE TABLE kv (k VARCHAR(64) PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB');
  await query(server.url, "INSERT INTO kv VALUES ('a', 'one')");
  const [settings] = await query<Array<Record<string, unknown>>>(
    server.url,
    'SELECT @@innodb_flush_log_at_trx_commit AS flush, @@bind_address AS bind, @@character_set_server AS cs',
  );
  assert.deepEqual(settings, { flush: 1, bind: '127.0.0.1', cs: 'utf8mb4' });
});

test('data survives stop() + restart() on the same port', async () => {
  const { port } = server;
  await server.stop();
  assert.equal(server.pid, 0);
  await assert.rejects(query(server.url, 'SELECT 1'));
  await server.restart();
  assert.equal(server.port, port);
  assert.equal(await readValue(server, 'a'), 'one');
});

test('a committed row survives kill() (SIGKILL) + restart()', async () => {
  await query(server.url, "INSERT INTO kv VALUES ('b', 'two')");
  await server.kill();
  await server.restart();
  assert.equal(await readValue(server, 'a'), 'one');
  assert.equal(await readValue(server, 'b'), 'two');
});

test('a second start on the data dir of a running server is refused, naming its pid, and stops nothing', async () => {
  const pid = server.pid;
  await assert.rejects(startLocalMysqld({ dataDir, port: 0, database: 'kvsql', bufferPoolMb: 64 }), (err: Error) => {
    assert.match(err.message, new RegExp(`in use by a MySQL server this store did not start \\(pid ${pid}\\b.*stop it \\(kill ${pid}\\)`));
    return true;
  });
  assert.ok(processRunning(pid), 'the running server was left alone');
  assert.equal(server.pid, pid);
  assert.equal(await readValue(server, 'a'), 'one');
});

test('a port another process listens on: the start fails saying so, and leaves nothing in /tmp', async (t) => {
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  t.after(() => holder.close());
  const port = (holder.address() as net.AddressInfo).port;
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  await assert.rejects(startLocalMysqld({ dataDir: dir, port, database: 'kvsql', bufferPoolMb: 64 }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'KVSQL_MYSQL_PORT_IN_USE');
    assert.equal(err.message.split('\n')[0], `MySQL port 127.0.0.1:${port} is in use by another process`);
    return true;
  });
  assert.equal(fs.existsSync(tmpDirFor(path.resolve(dir))), false, "the server's --tmpdir was removed");
});

test(
  'a parent killed with SIGKILL does not leave its server running',
  { skip: !fs.existsSync('/usr/bin/setpriv') && !fs.existsSync('/bin/setpriv') },
  async (t) => {
    const dir = tempDir();
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const modulePath = path.join(__dirname, '../../src/embedded/local-mysqld.js');
    const script =
      `require(${JSON.stringify(modulePath)}).startLocalMysqld({ dataDir: ${JSON.stringify(dir)}, port: 0, database: 'kvsql', bufferPoolMb: 64 })` +
      '.then((s) => { console.log(s.pid); setInterval(() => {}, 1000); }, (e) => { console.error(e); process.exit(1); });';
    const parent = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => parent.kill('SIGKILL'));
    const serverPid = await new Promise<number>((resolve, reject) => {
      parent.stdout.once('data', (chunk: Buffer) => resolve(Number.parseInt(chunk.toString(), 10)));
      parent.once('exit', (code) => reject(new Error(`parent exited with ${code} before starting the server`)));
    });
    assert.ok(processRunning(serverPid));
    parent.kill('SIGKILL');
    await waitFor(() => !processRunning(serverPid), { timeoutMs: 5000, intervalMs: 50, message: () => `server ${serverPid} outlived its parent` });
    // The crashed dir is usable again, and this stop() clears what the crash left outside it.
    const again = await startLocalMysqld({ dataDir: dir, port: 0, database: 'kvsql', bufferPoolMb: 64 });
    await again.stop();
  },
);

test('startTestServer().createDatabase() gives each caller its own empty database', async (t) => {
  const testServer = await startTestServer();
  t.after(() => testServer.stop());
  const first = await testServer.createDatabase();
  const second = await testServer.createDatabase();
  assert.notEqual(first, second);
  await query(first, 'CREATE TABLE t (id INT PRIMARY KEY)');
  const tables = await query<unknown[]>(second, 'SHOW TABLES');
  assert.equal(tables.length, 0);
  if (testServer.canRestart) {
    await query(first, 'INSERT INTO t VALUES (1)');
    await testServer.restart();
    assert.deepEqual(await query(first, 'SELECT id FROM t'), [{ id: 1 }]);
  }
});
