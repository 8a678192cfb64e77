/**
 * Tests a shard whose MySQL dies, end to end: two shards on two separate MySQL servers behind one
 * gateway (src/gateway/server.ts, shard-pool, src/shard-actor/health.ts probing). Killing
 * one server makes its keys answer 503 with Retry-After and /readyz "degraded" (still 200) naming the shard, while
 * the other shard's keys keep working; after a restart the shard comes back by itself, data intact.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { configFrom } from '../../src/config/config';
import { createLogger, startServer, type Server } from '../../src/gateway/server';
import { keyOnShard } from '../helpers/store';
import { startTestServer, type TestServer } from '../helpers/mysql';
import { HttpClient, assertError, etagVersion, ttlPath, type HttpReply } from '../helpers/http-client';
import { waitFor } from '../helpers/wait';

const mysqls: TestServer[] = [];
let server: Server | undefined;
let http: HttpClient;
let canRestart = true;

/** A key of each shard, found by the same slot map the gateway uses. */
const K0 = keyOnShard(0, 'down-');
const K1 = keyOnShard(1, 'down-');

before(async () => {
  mysqls.push(...(await Promise.all([startTestServer(), startTestServer()])));
  canRestart = mysqls.every((m) => m.canRestart);
  const urls = [await mysqls[0].createDatabase(), await mysqls[1].createDatabase()];
  const config = configFrom({ port: 0, redisPort: 0, logLevel: process.env.KVSQL_TEST_LOG_LEVEL ?? 'silent' });
  server = await startServer(config, urls, createLogger(config.logLevel));
  http = new HttpClient(server.port);
});
after(async () => {
  http?.close();
  await server?.close();
  await Promise.all(mysqls.map((m) => m.stop()));
});

/**
 * Exactly `code`: 503 with Retry-After for KV_ERR_SHARD_UNAVAILABLE; 500 without Retry-After for
 * KV_ERR_OUTCOME_UNKNOWN (maybe applied: no retry hint). A read never has an unknown outcome (it
 * changes nothing), and an op refused because its shard is known to be down was never sent to
 * MySQL, so both must say KV_ERR_SHARD_UNAVAILABLE; only a write that may have reached MySQL may
 * say KV_ERR_OUTCOME_UNKNOWN.
 */
function assertUnavailable(r: HttpReply, what: string, code: 'KV_ERR_SHARD_UNAVAILABLE' | 'KV_ERR_OUTCOME_UNKNOWN' = 'KV_ERR_SHARD_UNAVAILABLE'): void {
  const unknown = code === 'KV_ERR_OUTCOME_UNKNOWN';
  assert.equal(r.status, unknown ? 500 : 503, `${what}: ${r.status} ${r.text()}`);
  assert.equal(r.headers['retry-after'], unknown ? undefined : '1', `${what}: Retry-After`);
  assert.equal(r.json().error.code, code, `${what}: ${r.text()}`);
}

let v0 = 0;

test('both shards serve while both servers run', async (t) => {
  if (!canRestart) return t.skip('KVSQL_TEST_MYSQL_URL: one shared server, cannot kill one shard');
  const p0 = await http.put(K0, 'zero');
  const p1 = await http.put(K1, 'one');
  assert.equal(p0.status, 201);
  assert.equal(p1.status, 201);
  v0 = etagVersion(p0);
  assert.equal((await http.request('GET', '/readyz')).status, 200);
});

test('killing shard 0\'s server: its keys get 503 with Retry-After, /readyz stays 200 "degraded" naming it, shard 1 still works', async (t) => {
  if (!canRestart) return t.skip('KVSQL_TEST_MYSQL_URL: one shared server, cannot kill one shard');
  await mysqls[0].kill();

  // The first request after the crash discovers it (after the actor's retries): still a 503.
  assertUnavailable(await http.get(K0), 'first GET after the kill');
  // One shard down does not make the gateway unready: it still serves shard 1's keys.
  await waitFor(async () => (await http.request('GET', '/readyz')).json().status === 'degraded', { timeoutMs: 5000, message: '/readyz never said degraded' });
  const readyz = await http.request('GET', '/readyz');
  assert.equal(readyz.status, 200);
  const body = readyz.json();
  assert.equal(body.up, 1);
  assert.equal(body.shards, 2);
  assert.deepEqual(
    body.down.map((d: { shard: number }) => d.shard),
    [0],
    `down: ${readyz.text()}`,
  );
  assert.equal(body.down[0].error?.code, 'KV_ERR_SHARD_UNAVAILABLE');

  // Every route on a shard-0 key: 503 at once (the shard is known to be down).
  const started = Date.now();
  assertUnavailable(await http.get(K0), 'GET');
  assertUnavailable(await http.put(K0, 'lost?'), 'PUT');
  assertUnavailable(await http.del(K0), 'DELETE');
  assertUnavailable(await http.request('GET', ttlPath(K0)), 'GET ttl');
  assertUnavailable(await http.request('PUT', ttlPath(K0, 'ttl=5')), 'PUT ttl');
  assertUnavailable(await http.request('DELETE', ttlPath(K0)), 'DELETE ttl');
  assert.ok(Date.now() - started < 1000, 'a down shard must answer fast, not after timeouts');

  // Shard 1 is unaffected.
  const got = await http.get(K1);
  assert.equal(got.status, 200);
  assert.equal(got.text(), 'one');
  assert.equal((await http.put(K1, 'one again')).status, 200);
  assert.equal((await http.del(K1)).status, 204);
  assert.equal((await http.put(K1, 'one')).status, 201);

  // Bad input is still a 4xx, even for a key on the down shard.
  assertError(await http.put(K0, 'x', 'ttl=-1'), 400, 'KV_ERR_BAD_TTL');

  const metrics = (await http.request('GET', '/metrics')).text();
  assert.match(metrics, /kvsql_shard_up\{shard="0"\} 0/);
  assert.match(metrics, /kvsql_shard_up\{shard="1"\} 1/);
});

test('after a restart shard 0 serves again by itself within a few seconds, with its data', async (t) => {
  if (!canRestart) return t.skip('KVSQL_TEST_MYSQL_URL: one shared server, cannot kill one shard');
  await mysqls[0].restart();
  const started = Date.now();
  await waitFor(async () => (await http.get(K0)).status === 200, {
    timeoutMs: 8000,
    intervalMs: 100,
    message: () => `shard 0 not serving ${Date.now() - started} ms after its server restarted`,
  });
  const got = await http.get(K0);
  assert.equal(got.text(), 'zero', 'the committed value survived the crash');
  assert.equal(etagVersion(got), v0);
  assert.equal((await http.request('GET', '/readyz')).status, 200);
  const put = await http.put(K0, 'zero again');
  assert.equal(put.status, 200);
  assert.ok(etagVersion(put) > v0, 'versions keep increasing after the crash');
  assert.equal((await http.get(K1)).text(), 'one');
});
