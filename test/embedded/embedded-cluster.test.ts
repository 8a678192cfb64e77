/**
 * The embedded cluster (src/embedded/embedded-cluster.ts) as a new user meets it, through the
 * real CLI: `--replicas=3` from a checkout under a mode-700 directory (as under /root) serves, and
 * its data dir is locked like a single server's; a busy embedded MySQL port fails the start before
 * any server starts, with one line that names the port and the setting that moves the shards,
 * first and last in the output, and no /tmp/kvsql-tmp-* folder left behind.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { isPortFree, pickFreePort, tmpDirFor } from '../../src/embedded/local-mysqld';
import { cliEnv, runCli, startCliStore } from '../helpers/cli';

test('a busy embedded MySQL port: exit 1, the first and last line say which port and how to move the shards, nothing left in /tmp', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-busy-'));
  after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  after(() => holder.close());
  const base = (holder.address() as net.AddressInfo).port; // shard 0's port; shard 1's (base+1) may be free

  const res = await runCli(
    [],
    cliEnv({
      KVSQL_DATA_DIR: dataDir,
      KVSQL_EMBEDDED_SHARDS: '2',
      KVSQL_EMBEDDED_BASE_PORT: String(base),
      KVSQL_PORT: String(await pickFreePort()),
      KVSQL_REDIS_PORT: 'off',
      KVSQL_LOG_LEVEL: 'info',
    }),
    60_000,
  );
  assert.equal(res.code, 1, res.out.slice(-2000));
  // stderr: the logs are on stdout, as JSON lines, before it.
  const lines = res.err.trim().split('\n');
  const said = new RegExp(
    `^kvsql: the embedded MySQL shards did not start: embedded MySQL ports? [0-9, ]*\\b${base}\\b.* in use by another process\\. Stop it, or move the embedded shards to free ports with --embedded-base-port=N`,
  );
  assert.match(lines[0], said, res.out);
  assert.match(lines[lines.length - 1], said, 'the last line says it too');
  assert.ok(lines.length <= 3, `a short message, not a page of server log:\n${res.err}`);
  assert.doesNotMatch(res.out, /mariadbd pid \d+ ready|initialised/, 'no server was started or initialised');
  for (const shard of ['shard-0', 'shard-1'])
    assert.equal(fs.existsSync(tmpDirFor(path.join(dataDir, shard))), false, `${tmpDirFor(path.join(dataDir, shard))} left behind`);
});

/** A base port whose embedded ports (1 shard of 3 nodes: SQL base..base+2, Galera base+1000..base+1008) are free now. */
async function freeGaleraBase(): Promise<number> {
  for (;;) {
    const base = await pickFreePort();
    if (base > 64000) continue;
    const ports = [0, 1, 2, ...Array.from({ length: 9 }, (_, k) => 1000 + k)].map((d) => base + d);
    if ((await Promise.all(ports.map(isPortFree))).every(Boolean)) return base;
  }
}

test('--replicas=3 from a checkout under a mode-700 directory serves; a second store on its data dir is refused', async () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-home-')); // mode 700, like /root
  after(() => fs.rmSync(home, { recursive: true, force: true }));
  const dataDir = path.join(home, 'kvsql', 'data');
  const settings = (port: number) => ({
    KVSQL_DATA_DIR: dataDir,
    KVSQL_REPLICAS: '3',
    KVSQL_EMBEDDED_SHARDS: '1',
    KVSQL_PORT: String(port),
    KVSQL_REDIS_PORT: 'off',
    KVSQL_LOG_LEVEL: 'info',
  });
  const base = String(await freeGaleraBase());
  const port = await pickFreePort();
  const store = await startCliStore(cliEnv({ ...settings(port), KVSQL_EMBEDDED_BASE_PORT: base }), 300_000);
  after(() => store.stop());
  assert.equal((await fetch(`http://127.0.0.1:${port}/v1/kv/ha`, { method: 'PUT', body: 'yes' })).status, 201);
  assert.equal(await (await fetch(`http://127.0.0.1:${port}/v1/kv/ha`)).text(), 'yes');

  const second = await runCli([], cliEnv({ ...settings(await pickFreePort()), KVSQL_EMBEDDED_BASE_PORT: base }), 60_000);
  assert.equal(second.code, 1, second.out.slice(-2000));
  assert.match(second.err, new RegExp(`in use by pid ${store.pid}\\b`));
  assert.equal(await (await fetch(`http://127.0.0.1:${port}/v1/kv/ha`)).text(), 'yes', 'the first store still serves');
  assert.equal(await store.stop(), 0);
});
