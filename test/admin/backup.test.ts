/**
 * Tests src/admin/backup.ts, restore.ts, binlog-archive.ts and the `kvsql backup|restore|binlog`
 * commands against a real MariaDB that keeps a binlog as the embedded shards do (binlogArgs), two
 * shards as two databases on it, and two gateways in this process:
 *   - a backup taken while both gateways write: after the data is destroyed and restored, every
 *     write acknowledged before the backup began is there with its version, nothing written after
 *     it ended is, and every row is a write that was really sent; expired keys are never returned
 *     and are reaped; TTLs survive;
 *   - point-in-time recovery to a time T between two known writes: exactly the writes before T;
 *   - a backup killed with SIGKILL leaves nothing that verify or restore accepts; the CLI backs
 *     up, lists, verifies (also by a scratch restore) and restores into new embedded shards;
 *   - refused while a slot move is mid-way or a mover runs.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';
import { binlogArgs, pickFreePort, startLocalMysqld, type LocalMysqld } from '../../src/embedded/local-mysqld';
import { findMysqlBinary, ensureMysqlBinary } from '../../src/embedded/mysql-binary';
import { configFrom } from '../../src/config/config';
import { createLogger, startServer, type Server } from '../../src/gateway/server';
import { takeBackup } from '../../src/admin/backup';
import { restoreBackup, verifyBackup } from '../../src/admin/restore';
import { archiveBinlogs } from '../../src/admin/binlog-archive';
import { listBackups, readManifest } from '../../src/admin/backup-format';
import { HttpClient, etagVersion } from '../helpers/http-client';
import { CLI, cliEnv, runCli } from '../helpers/cli';
import { sleep, waitFor } from '../helpers/wait';

let server: LocalMysqld;
let admin: mysql.Connection;
let work: string;
let dbCount = 0;

before(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-backup-test-'));
  const binary = findMysqlBinary() ?? (await ensureMysqlBinary(() => undefined));
  const dataDir = path.join(work, 'mysql');
  server = await startLocalMysqld({ dataDir, port: 0, database: 'kvsql', bufferPoolMb: 64, binary, extraArgs: binlogArgs(binary) });
  admin = await mysql.createConnection(server.url);
});
after(async () => {
  await admin?.end();
  await server?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

/** `n` new empty databases on the server; their URLs. */
async function databases(n: number): Promise<string[]> {
  const urls: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = `b${++dbCount}`;
    await admin.query(`CREATE DATABASE ${name}`);
    urls.push(server.url.replace(/\/kvsql$/, `/${name}`));
  }
  return urls;
}

/** Drops and recreates the databases: the store's data destroyed. */
async function destroy(urls: string[]): Promise<void> {
  for (const u of urls) {
    const db = new URL(u).pathname.slice(1);
    await admin.query(`DROP DATABASE ${db}`);
    await admin.query(`CREATE DATABASE ${db}`);
  }
}

interface Gateways {
  servers: Server[];
  clients: HttpClient[];
  close(): Promise<void>;
}

async function gateways(urls: string[], n: number): Promise<Gateways> {
  const config = configFrom({ port: 0, redisPort: null, logLevel: 'silent' });
  const servers: Server[] = [];
  for (let i = 0; i < n; i++) servers.push(await startServer(config, urls, createLogger('silent')));
  const clients = servers.map((s) => new HttpClient(s.port));
  return {
    servers,
    clients,
    async close() {
      for (const c of clients) c.close();
      for (const s of servers) await s.close();
    },
  };
}

async function put(c: HttpClient, key: string, value: string, query = ''): Promise<number> {
  const r = await c.put(key, value, query);
  assert.ok(r.status === 200 || r.status === 201, `PUT ${key}: ${r.status} ${r.text()}`);
  return Number(r.json().version);
}

async function rowsOf(url: string, where = '1'): Promise<number> {
  const [rows] = await admin.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM ${new URL(url).pathname.slice(1)}.kv WHERE ${where}`);
  return Number(rows[0].n);
}

test('a backup under load from two gateways restores every write acknowledged before it, with its version, and none never sent', async () => {
  const urls = await databases(2);
  const g = await gateways(urls, 2);
  const before: Map<string, number> = new Map();
  // Acknowledged before the backup begins.
  for (let i = 0; i < 200; i++) before.set(`pre:${i}`, await put(g.clients[i % 2], `pre:${i}`, `pre-value-${i}`));
  await put(g.clients[0], 'ttl:short', 'gone soon', 'ttl=1');
  await put(g.clients[1], 'ttl:long', 'stays', 'ttl=3600');
  const longExpiry = (await g.clients[0].get('ttl:long')).headers['x-expires-at'];

  // A running load: each key written in sequence by one loop, every attempt recorded (value ->
  // version once acknowledged), with the time it was sent and answered.
  interface Attempt {
    value: string;
    sentAt: number;
    ackedAt: number | null;
    version: number | null;
  }
  const attempts = new Map<string, Attempt[]>();
  let running = true;
  const loops = Array.from({ length: 8 }, async (_, w) => {
    for (let n = 0; running; n++) {
      const key = `load:${w}:${n % 25}`;
      const a: Attempt = { value: `${key}#${n}`, sentAt: Date.now(), ackedAt: null, version: null };
      (attempts.get(key) ?? attempts.set(key, []).get(key)!).push(a);
      const r = await g.clients[w % 2].put(key, a.value);
      if (r.status === 200 || r.status === 201) {
        a.version = Number(r.json().version);
        a.ackedAt = Date.now();
      }
    }
  });
  await sleep(300);
  const backupStart = Date.now();
  const { dir, manifest } = await takeBackup(urls, path.join(work, 'backups'));
  const backupEnd = Date.now();
  await sleep(300);
  running = false;
  await Promise.all(loops);
  for (let i = 0; i < 50; i++) await put(g.clients[0], `post:${i}`, 'after the backup');
  await g.close();

  assert.equal(manifest.shards.length, 2);
  for (const s of manifest.shards) assert.ok(s.binlog !== null && /^binlog\.\d+$/.test(s.binlog.file), 'binlog position recorded');
  assert.equal(manifest.slotMap.ranges.length, 2);
  await verifyBackup(dir);
  assert.equal(manifest.shards.reduce((n, s) => n + s.rows, 0) >= 202, true);

  await destroy(urls);
  const r = await restoreBackup(dir, urls);
  assert.equal(
    r.rows,
    manifest.shards.reduce((n, s) => n + s.rows, 0),
  );

  const g2 = await gateways(urls, 1);
  try {
    const c = g2.clients[0];
    for (const [key, version] of before) {
      const got = await c.get(key);
      assert.equal(got.status, 200, key);
      assert.equal(got.text(), `pre-value-${key.slice(4)}`);
      assert.equal(etagVersion(got), version, `${key} keeps its version`);
    }
    for (let i = 0; i < 50; i++) assert.equal((await c.get(`post:${i}`)).status, 404, 'written after the backup ended');
    for (const [key, list] of attempts) {
      const got = await c.get(key);
      // The last write acknowledged before the backup began must be there or be overtaken by a
      // later one; whatever is there was sent before the backup ended, and if it was acknowledged
      // it carries the acknowledged version.
      const lastBefore = list.filter((a) => a.ackedAt !== null && a.ackedAt < backupStart).pop();
      if (got.status === 404) {
        assert.equal(lastBefore, undefined, `${key}: acknowledged before the backup, missing after restore`);
        continue;
      }
      const value = got.text();
      const a = list.find((x) => x.value === value);
      assert.ok(a !== undefined, `${key}: restored value ${value} was never sent`);
      assert.ok(a.sentAt <= backupEnd, `${key}: ${value} was sent after the backup ended`);
      if (a.version !== null) assert.equal(etagVersion(got), a.version, `${key}: version of ${value}`);
      if (lastBefore !== undefined) assert.ok(etagVersion(got) >= lastBefore.version!, `${key}: older than the last write acknowledged before the backup`);
    }
    // Expiry after restore: the short-TTL key expired in the backup; never returned, and reaped.
    assert.equal((await c.get('ttl:short')).status, 404);
    const long = await c.get('ttl:long');
    assert.equal(long.status, 200);
    assert.equal(long.headers['x-expires-at'], longExpiry, 'the TTL survives the restore');
    await waitFor(async () => (await rowsOf(urls[0], "k = 'ttl:short'")) + (await rowsOf(urls[1], "k = 'ttl:short'")) === 0, {
      timeoutMs: 15_000,
      intervalMs: 200,
      message: 'the expired row is reaped after the restore',
    });
  } finally {
    await g2.close();
  }
});

test('point-in-time recovery to T between two known writes: exactly the writes before T, with their versions and TTLs', async () => {
  const urls = await databases(2);
  const g = await gateways(urls, 1);
  const c = g.clients[0];
  const versions = new Map<string, { value: string; version: number }>();
  const write = async (key: string, value: string, query = '') => versions.set(key, { value, version: await put(c, key, value, query) });
  for (let i = 0; i < 40; i++) await write(`a:${i}`, `a${i}`);
  const { dir } = await takeBackup(urls, path.join(work, 'pitr-backups'));
  // After the backup, before T: new keys, an overwrite, a delete, a TTL.
  for (let i = 0; i < 40; i++) await write(`b:${i}`, `b${i}`);
  await write('a:0', 'a0 overwritten before T');
  assert.equal((await c.request('DELETE', '/v1/kv/a%3A1')).status, 204);
  versions.delete('a:1');
  await write('b:ttl', 'with a ttl', 'ttl=3600');
  const ttlBefore = (await c.get('b:ttl')).headers['x-expires-at'];
  // T: the next whole second (binlog times have 1 s resolution); the later writes come after it.
  const T = Math.ceil((Date.now() + 1) / 1000) * 1000;
  while (Date.now() < T + 50) await sleep(20);
  const afterT = new Map(versions);
  for (let i = 0; i < 40; i++) await put(c, `c:${i}`, `c${i}`);
  await put(c, 'a:2', 'a2 overwritten after T');
  assert.equal((await c.request('DELETE', '/v1/kv/b%3A3')).status, 204);
  await g.close();
  const archive = path.join(work, 'archive');
  const archived = await archiveBinlogs(urls, archive);
  assert.equal(archived.size, 1, 'both shards share one server: one archive directory');

  // Into other, empty databases (the binlog's database names are rewritten).
  const targets = await databases(2);
  await assert.rejects(restoreBackup(dir, targets, { at: T }), /--binlogs/);
  await restoreBackup(dir, targets, { at: T, binlogs: archive });
  const g2 = await gateways(targets, 1);
  try {
    const c2 = g2.clients[0];
    for (const [key, { value, version }] of afterT) {
      const got = await c2.get(key);
      assert.equal(got.status, 200, `${key} was written before T`);
      assert.equal(got.text(), value, key);
      assert.equal(etagVersion(got), version, `${key} version`);
    }
    assert.equal((await c2.get('a:1')).status, 404, 'deleted before T');
    for (let i = 0; i < 40; i++) assert.equal((await c2.get(`c:${i}`)).status, 404, `c:${i} was written after T`);
    assert.equal((await c2.get('a:2')).text(), 'a2', 'the overwrite after T is not replayed');
    assert.equal((await c2.get('b:3')).status, 200, 'the delete after T is not replayed');
    assert.equal((await c2.get('b:ttl')).headers['x-expires-at'], ttlBefore, 'TTL as it was');
  } finally {
    await g2.close();
  }
  // Later than the archive covers: refused rather than silently short.
  await assert.rejects(restoreBackup(dir, await databases(2), { at: Date.now() + 60_000, binlogs: archive }), /covers commits up to/);
});

test('a backup killed with SIGKILL is refused by verify and restore; the CLI backs up, lists, verifies and restores into new embedded shards', async () => {
  const urls = await databases(2);
  const g = await gateways(urls, 1);
  const big = 'x'.repeat(8000);
  await Promise.all(
    Array.from({ length: 8 }, async (_, w) => {
      for (let i = w; i < 4000; i += 8) await put(g.clients[0], `big:${i}`, big);
    }),
  );
  await g.close();
  const env = cliEnv({ KVSQL_SHARDS: urls.join(',') });
  const parent = path.join(work, 'cli-backups');

  // Killed as soon as its snapshots are open, while it copies 32 MB.
  const child = spawn(process.execPath, [CLI, 'backup', '--to', parent], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  const killed = new Promise<void>((resolve) => {
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
      if (/shard 1: snapshot at/.test(err)) child.kill('SIGKILL');
    });
    child.once('close', () => resolve());
  });
  await killed;
  assert.equal(child.signalCode, 'SIGKILL', `the backup finished before it could be killed: ${err}`);
  const [partial] = listBackups(parent);
  assert.equal(partial.manifest, null, 'no manifest');
  await assert.rejects(verifyBackup(partial.dir), /no backup\.json/);
  await assert.rejects(restoreBackup(partial.dir, await databases(2)), /no backup\.json|no complete backup/);
  await assert.rejects(restoreBackup(parent, await databases(2)), /no complete backup/);
  const verifyPartial = await runCli(['backup', 'verify', partial.dir], env);
  assert.notEqual(verifyPartial.code, 0);

  const made = await runCli(['backup', '--to', parent], env);
  assert.equal(made.code, 0, made.out);
  const dir = made.out.trim().split('\n').pop()!;
  assert.ok(fs.existsSync(path.join(dir, 'backup.json')), made.out);
  const list = await runCli(['backup', 'list', parent], env);
  assert.equal(list.code, 0, list.out);
  assert.match(list.out, /INCOMPLETE/);
  assert.match(list.out, /2 shards {2}4000 rows/);
  const verified = await runCli(['backup', 'verify', dir, '--scratch'], env);
  assert.equal(verified.code, 0, verified.out);
  assert.match(verified.out, /row counts match/);

  // Into a new embedded data dir: the command starts the embedded shards, fills them, stops them.
  const embedded = path.join(work, 'embedded-data');
  const restored = await runCli(
    ['restore', '--from', parent],
    cliEnv({ KVSQL_DATA_DIR: embedded, KVSQL_EMBEDDED_BASE_PORT: String(await pickFreePort()) }),
    180_000,
  );
  assert.equal(restored.code, 0, restored.out);
  assert.match(restored.out, /restored 4000 rows/);
  let total = 0;
  for (const i of [0, 1]) {
    const shard = await startLocalMysqld({ dataDir: path.join(embedded, `shard-${i}`), port: 0, database: 'kvsql', bufferPoolMb: 64 });
    try {
      const c = await mysql.createConnection(shard.url);
      const [n] = await c.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM kv');
      total += Number(n[0].n);
      await c.end();
    } finally {
      await shard.stop();
    }
  }
  assert.equal(total, 4000);

  // A damaged file: its checksum no longer matches.
  const rows = path.join(dir, 'shard-0.rows');
  const fd = fs.openSync(rows, 'r+');
  fs.writeSync(fd, Buffer.from([0x42]), 0, 1, 100);
  fs.closeSync(fd);
  await assert.rejects(verifyBackup(dir), /sha256/);
  await assert.rejects(restoreBackup(dir, await databases(2)), /sha256/);

  // Non-empty targets are refused, before anything is written.
  await assert.rejects(restoreBackup(path.join(work, 'backups'), urls), /not empty/);
  assert.equal(readManifest(dir).shards.length, 2);
});

test('a backup is refused while a slot move is mid-way or a mover runs; values of 1 MiB and binary keys round-trip', async () => {
  const urls = await databases(2);
  const g = await gateways(urls, 1);
  await put(g.clients[0], 'k', 'v');
  // Values larger than the row reader's 1 MiB chunks, and a key of every byte value.
  const big = Array.from({ length: 4 }, (_, i) => Buffer.alloc(1024 * 1024, i + 1));
  for (let i = 0; i < big.length; i++) assert.equal((await g.clients[0].put(`big:${i}`, big[i])).status, 201);
  const binaryKey = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  assert.equal((await g.clients[0].put(binaryKey, Buffer.from([0, 255, 10, 13]))).status, 201);
  await g.close();
  const db0 = new URL(urls[0]).pathname.slice(1);
  const [slot] = await admin.query<RowDataPacket[]>(`SELECT MIN(slot) AS s FROM ${db0}.kv_slots`);
  await admin.query(`UPDATE ${db0}.kv_slots SET state = 2, peer = 1 WHERE slot = ?`, [slot[0].s]);
  await assert.rejects(takeBackup(urls, path.join(work, 'refused')), /mid-move/);
  await admin.query(`UPDATE ${db0}.kv_slots SET state = 1, peer = NULL WHERE slot = ?`, [slot[0].s]);
  const mover = await mysql.createConnection(urls[0]);
  try {
    await mover.query("SELECT GET_LOCK(CONCAT('kvsql-mover:', DATABASE()), 0)");
    await assert.rejects(takeBackup(urls, path.join(work, 'refused')), /another mover/);
  } finally {
    await mover.end();
  }
  const { dir } = await takeBackup(urls, path.join(work, 'refused'));
  await verifyBackup(dir);
  const targets = await databases(2);
  await restoreBackup(dir, targets);
  const g2 = await gateways(targets, 1);
  try {
    for (let i = 0; i < big.length; i++) assert.ok((await g2.clients[0].get(`big:${i}`)).body.equals(big[i]), `big:${i}`);
    assert.deepEqual([...(await g2.clients[0].get(binaryKey)).body], [0, 255, 10, 13]);
  } finally {
    await g2.close();
  }
});
