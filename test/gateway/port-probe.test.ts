/**
 * A busy HTTP port is refused at start (src/gateway/port-probe.ts), though uWebSockets.js would
 * share it (SO_REUSEPORT): through the real CLI, a second store on a running store's port exits
 * non-zero before it starts anything; in process, startServer refuses a port another server
 * listens on. (A TLS reload sharing the gateway's own port: test/gateway/tls.test.ts.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { pickFreePort } from '../../src/embedded/local-mysqld';
import { startTestServer, type TestServer } from '../helpers/mysql';
import { startTestStore } from '../helpers/store';
import { cliEnv, runCli, startCliStore } from '../helpers/cli';

let mysql: TestServer;
before(async () => (mysql = await startTestServer()));
after(() => mysql?.stop());

test("a second store on a running store's HTTP port exits non-zero at once, saying the port is in use", async () => {
  const shards = await mysql.createDatabase();
  const port = await pickFreePort();
  const first = await startCliStore(
    cliEnv({ KVSQL_SHARDS: shards, KVSQL_PORT: String(port), KVSQL_REDIS_PORT: String(await pickFreePort()), KVSQL_LOG_LEVEL: 'info' }),
  );
  after(() => first.stop());

  const second = await runCli(
    [],
    cliEnv({ KVSQL_SHARDS: shards, KVSQL_PORT: String(port), KVSQL_REDIS_PORT: String(await pickFreePort()), KVSQL_LOG_LEVEL: 'info' }),
    30_000,
  );
  assert.equal(second.code, 1, second.out.slice(-2000));
  assert.match(
    second.out,
    new RegExp(`^kvsql: cannot listen on 127\\.0\\.0\\.1:${port} \\(KVSQL_PORT\\): the port is in use by another process.*--port=`, 'm'),
  );
  assert.doesNotMatch(second.out, /kvsql listening/);
  assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
  assert.equal(await first.stop(), 0);
});

test('startServer refuses an explicit port another server listens on; the first keeps it', async () => {
  const port = await pickFreePort();
  const store = await startTestStore({ mysql, shards: 1, config: { port } });
  after(() => store.close());
  assert.equal(store.port, port);
  await assert.rejects(store.startAnotherGateway({ port, redisPort: 0 }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'KVSQL_PORT_IN_USE');
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port} \\(KVSQL_PORT\\)`));
    return true;
  });
  assert.equal((await fetch(`${store.base}/healthz`)).status, 200);
});
