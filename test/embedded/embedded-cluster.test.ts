/**
 * A start of the embedded cluster (src/embedded/embedded-cluster.ts) that cannot have its ports,
 * as a new user meets it: through the real CLI, a busy embedded MySQL port fails the start before
 * any server starts, with one line that names the port and the setting that moves the shards,
 * first and last in the output, and no /tmp/kvsql-tmp-* folder left behind.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pickFreePort, tmpDirFor } from '../../src/embedded/local-mysqld';
import { cliEnv, runCli } from '../helpers/cli';

test('a busy embedded MySQL port: exit 1, the first and last line say which port and how to move the shards, nothing left in /tmp', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-busy-'));
  after(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  after(() => holder.close());
  const base = (holder.address() as net.AddressInfo).port; // shard 0's port; shard 1's (base+1) may be free

  const res = await runCli([], cliEnv({ KVSQL_DATA_DIR: dataDir, KVSQL_EMBEDDED_SHARDS: '2', KVSQL_EMBEDDED_BASE_PORT: String(base), KVSQL_PORT: String(await pickFreePort()), KVSQL_REDIS_PORT: 'off', KVSQL_LOG_LEVEL: 'info' }), 60_000);
  assert.equal(res.code, 1, res.out.slice(-2000));
  // stderr: the logs are on stdout, as JSON lines, before it.
  const lines = res.err.trim().split('\n');
  const said = new RegExp(`^kvsql: the embedded MySQL shards did not start: embedded MySQL ports? [0-9, ]*\\b${base}\\b.* in use by another process\\. Stop it, or move the embedded shards to free ports with --embedded-base-port=N`);
  assert.match(lines[0], said, res.out);
  assert.match(lines[lines.length - 1], said, 'the last line says it too');
  assert.ok(lines.length <= 3, `a short message, not a page of server log:\n${res.err}`);
  assert.doesNotMatch(res.out, /mariadbd pid \d+ ready|initialised/, 'no server was started or initialised');
  for (const shard of ['shard-0', 'shard-1']) assert.equal(fs.existsSync(tmpDirFor(path.join(dataDir, shard))), false, `${tmpDirFor(path.join(dataDir, shard))} left behind`);
});
