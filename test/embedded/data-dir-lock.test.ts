/**
 * One store per embedded data dir (src/embedded/data-dir-lock.ts), through the real CLI: a second
 * store on a running store's data dir refuses at start naming the holder's pid, and kills
 * nothing; a lock left by a dead store is taken over; a MySQL server this store did not start,
 * found on the data dir, is left alone and the start refused.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { isAlive, pickFreePort, startLocalMysqld } from '../../src/embedded/local-mysqld';
import { LOCK_FILE, lockDataDir } from '../../src/embedded/data-dir-lock';
import { cliEnv, runCli, startCliStore } from '../helpers/cli';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-lock-'));
  dirs.push(dir);
  return dir;
}

async function storeEnv(dataDir: string, basePort: number): Promise<NodeJS.ProcessEnv> {
  return cliEnv({
    KVSQL_DATA_DIR: dataDir,
    KVSQL_EMBEDDED_SHARDS: '1',
    KVSQL_EMBEDDED_BASE_PORT: String(basePort),
    KVSQL_PORT: String(await pickFreePort()),
    KVSQL_REDIS_PORT: String(await pickFreePort()),
    KVSQL_LOG_LEVEL: 'info',
  });
}

const mysqldPid = (dataDir: string): number => Number(fs.readFileSync(path.join(dataDir, 'shard-0', 'mysqld.pid'), 'utf8').trim());

test("a second store on a running store's data dir refuses at start, naming its pid, and kills nothing", async () => {
  const dataDir = tempDir();
  const basePort = await pickFreePort();
  const firstEnv = await storeEnv(dataDir, basePort);
  const first = await startCliStore(firstEnv);
  after(() => first.stop());
  const serverPid = mysqldPid(dataDir);

  // Same data dir and embedded ports, its own HTTP and Redis ports: as in the report.
  const second = await runCli([], await storeEnv(dataDir, basePort), 30_000);
  assert.notEqual(second.code, 0, second.out);
  assert.notEqual(second.code, null, `still running after 30 s:\n${second.out.slice(-2000)}`);
  assert.match(second.out, new RegExp(`data dir ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} in use by pid ${first.pid}\\b`));
  assert.doesNotMatch(second.out, /stopping it|mariadbd pid \d+ ready/, 'it touched no server');

  assert.equal(mysqldPid(dataDir), serverPid);
  assert.ok(isAlive(serverPid), "the first store's mariadbd still runs");
  assert.equal((await fetch(`http://127.0.0.1:${firstEnv.KVSQL_PORT}/readyz`)).status, 200);
  assert.doesNotMatch(first.output(), /exited unexpectedly/);
  assert.equal(JSON.parse(fs.readFileSync(path.join(dataDir, LOCK_FILE), 'utf8')).pid, first.pid);

  assert.equal(await first.stop(), 0);
  assert.equal(fs.existsSync(path.join(dataDir, LOCK_FILE)), false, 'a clean stop removes the lock');
});

test('a lock left by a store that died is taken over', async () => {
  const dataDir = tempDir();
  const dead = spawn(process.execPath, ['-e', '']);
  await new Promise((r) => dead.once('exit', r));
  fs.writeFileSync(path.join(dataDir, LOCK_FILE), `${JSON.stringify({ pid: dead.pid, started: '1' })}\n`);

  const store = await startCliStore(await storeEnv(dataDir, await pickFreePort()));
  after(() => store.stop());
  assert.equal(JSON.parse(fs.readFileSync(path.join(dataDir, LOCK_FILE), 'utf8')).pid, store.pid);
  assert.equal(await store.stop(), 0);
  assert.equal(fs.existsSync(path.join(dataDir, LOCK_FILE)), false);
});

test('a MySQL server this store did not start, running on the data dir, is left alone and the start refused', async () => {
  const dataDir = tempDir();
  const foreign = await startLocalMysqld({ dataDir: path.join(dataDir, 'shard-0'), port: 0, database: 'kvsql', bufferPoolMb: 64 });
  after(() => foreign.stop());

  const res = await runCli([], await storeEnv(dataDir, await pickFreePort()), 30_000);
  assert.notEqual(res.code, 0, res.out);
  assert.notEqual(res.code, null, `still running after 30 s:\n${res.out.slice(-2000)}`);
  assert.match(res.out, new RegExp(`in use by a MySQL server this store did not start \\(pid ${foreign.pid}\\b.*kill ${foreign.pid}`));
  assert.ok(isAlive(foreign.pid));
  const conn = await mysql.createConnection({ uri: foreign.url });
  await conn.end();
  assert.equal(fs.existsSync(path.join(dataDir, LOCK_FILE)), false, 'the refused store released its lock');
});

test('one process cannot take a data dir twice (two clusters in one process); released, it can', () => {
  const dataDir = tempDir();
  const lock = lockDataDir(dataDir);
  assert.throws(
    () => lockDataDir(dataDir),
    (err: Error & { code?: string; pid?: number }) => err.code === 'KVSQL_DATA_DIR_IN_USE' && err.pid === process.pid,
  );
  lock.release();
  assert.equal(fs.existsSync(path.join(dataDir, LOCK_FILE)), false);
  lockDataDir(dataDir).release();
});
