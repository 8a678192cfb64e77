/**
 * Crash recovery of the embedded default (src/embedded, LocalMysqldProcess.onExit): kill -9 of a
 * running store's embedded mariadbd; the store starts it again by itself (a log line says so), and
 * the shard's keys serve again, acknowledged data intact, without restarting the gateway.
 * stop() and kill() through the API stay down (tests and shutdown rely on that).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedCluster, type EmbeddedCluster } from '../../src/embedded/embedded-cluster';
import { findMysqlBinary } from '../../src/embedded/mysql-binary';
import { configFrom } from '../../src/config/config';
import { createLogger, startServer, type Server } from '../../src/gateway/server';
import { HttpClient } from '../helpers/http-client';
import { sleep, waitFor } from '../helpers/wait';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-autorestart-'));
let cluster: EmbeddedCluster | undefined;
let server: Server | undefined;
let http: HttpClient | undefined;
after(async () => {
  http?.close();
  await server?.close();
  await cluster?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

test('kill -9 of an embedded mariadbd: the store restarts it and its keys serve again, data intact', async (t) => {
  if (findMysqlBinary() === null) return t.skip('no local MySQL/MariaDB binary: the embedded cluster would use containers');
  const logs: string[] = [];
  cluster = await startEmbeddedCluster({ shards: 1, dataDir, basePort: 0, log: (m) => logs.push(m) });
  const config = configFrom({ port: 0, redisPort: 0, logLevel: process.env.KVSQL_TEST_LOG_LEVEL ?? 'silent', opDeadlineMs: 2000 });
  server = await startServer(config, cluster.urls, createLogger(config.logLevel));
  http = new HttpClient(server.port);
  for (let i = 0; i < 20; i++) assert.equal((await http.put(`ar-${i}`, `v${i}`)).status, 201);

  const pid = cluster.shards[0].pid;
  assert.ok(pid > 0);
  process.kill(pid, 'SIGKILL');
  const killedAt = Date.now();

  // While it is down: a 503 with Retry-After, never a hang.
  const during = await http.get('ar-0');
  assert.ok(during.status === 200 || during.status === 503, `${during.status}`);

  await waitFor(() => cluster!.shards[0].pid > 0 && cluster!.shards[0].pid !== pid, {
    timeoutMs: 15_000,
    intervalMs: 50,
    message: 'mariadbd was not started again',
  });
  assert.ok(
    logs.some((l) => /exited unexpectedly \(code null, signal SIGKILL\); restarting in \d+ ms/.test(l)),
    `no crash log line in:\n${logs.join('\n')}`,
  );
  await waitFor(async () => (await http!.get('ar-0')).status === 200, { timeoutMs: 15_000, intervalMs: 100, message: 'keys never served again' });
  t.diagnostic(`serving again ${Date.now() - killedAt} ms after kill -9`);
  for (let i = 0; i < 20; i++) assert.equal((await http.get(`ar-${i}`)).text(), `v${i}`, 'acknowledged writes survived the crash');
  assert.equal((await http.put('ar-0', 'after')).status, 200);
  assert.equal((await http.request('GET', '/readyz')).status, 200);

  // A stop through the API is not a crash: it stays down.
  await cluster.shards[0].kill();
  await sleep(1500);
  assert.equal(cluster.shards[0].pid, 0, 'kill() through the API must not be undone');
});
