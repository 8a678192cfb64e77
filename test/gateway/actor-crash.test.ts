/**
 * A shard actor that dies (a bug, an OOM in its worker) must not hang callers or take the gateway
 * down: what it held is answered at once (a write 500 KV_ERR_OUTCOME_UNKNOWN without Retry-After,
 * since its COMMIT may have been sent; a read 503 KV_ERR_SHARD_UNAVAILABLE), its keys get 503 while it is away, and a new actor
 * takes over by itself. The other shard never notices. Writes are held in flight by a row lock
 * taken in MySQL by the test (test/helpers/row-lock), so the worker dies with them inside MySQL.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { keyOnShard, startTestStore, type TestStore } from '../helpers/store';
import { holdRowLock, lockWaiters } from '../helpers/row-lock';
import { HttpClient, assertError } from '../helpers/http-client';
import { waitFor } from '../helpers/wait';

let store: TestStore;
before(async () => {
  store = await startTestStore({ shards: 2 });
});
after(() => store.close());

test('a crashed actor is replaced; its keys get 503 meanwhile, the other shard keeps serving', async () => {
  const k0 = keyOnShard(0, 'crash-a-');
  const k1 = keyOnShard(1, 'crash-b-');
  assert.equal((await fetch(`${store.base}/v1/kv/${k0}`, { method: 'PUT', body: 'zero' })).status, 201);
  assert.equal((await fetch(`${store.base}/v1/kv/${k1}`, { method: 'PUT', body: 'one' })).status, 201);

  await store.server.pool.workerOf(0).terminate();
  const during = await fetch(`${store.base}/v1/kv/${k0}`);
  assert.equal(during.status, 503);
  assert.equal(during.headers.get('retry-after'), '1');
  assert.equal(((await during.json()) as { error: { code: string } }).error.code, 'KV_ERR_SHARD_UNAVAILABLE');
  assert.equal(await (await fetch(`${store.base}/v1/kv/${k1}`)).text(), 'one');

  let status = 0;
  await waitFor(
    async () => {
      const r = await fetch(`${store.base}/v1/kv/${k0}`);
      status = r.status;
      if (status === 200) {
        assert.equal(await r.text(), 'zero', 'committed data is still there');
        return true;
      }
      await r.arrayBuffer();
      return false;
    },
    { timeoutMs: 10_000, intervalMs: 100, message: () => `the shard serves again by itself (last status ${status})` },
  );
  assert.equal((await fetch(`${store.base}/readyz`)).status, 200);
});

test('writes in flight when the actor dies are answered KV_ERR_OUTCOME_UNKNOWN (reads SHARD_UNAVAILABLE) at once, and were not applied', async () => {
  const client = new HttpClient(store.port, 16);
  after(() => client.close());
  const held = keyOnShard(0, 'crash-held-');
  const queued = keyOnShard(0, 'crash-queued-');
  assert.equal((await client.put(held, 'before')).status, 201);
  assert.equal((await client.put(queued, 'before')).status, 201);
  const lock = await holdRowLock(store, held);
  after(() => lock.release());

  // Two writes to the held key: the first waits inside MySQL on the lock (its transaction open),
  // the second waits behind it in the actor's per-key queue. A read of the held key waits too.
  const inMysql = client.put(held, 'in mysql');
  await waitFor(async () => (await lockWaiters(store, lock.shard)) >= 1, { timeoutMs: 5000, message: 'the write never reached the lock' });
  const behind = client.put(held, 'behind');
  const read = client.get(held);
  const ttl = client.request('PUT', `/v1/ttl/${held}?ttl=60`);
  await waitFor(() => store.server.pool.queueDepths()[0] === 4, { timeoutMs: 5000, message: () => `queue depth ${store.server.pool.queueDepths()[0]}` });

  const started = Date.now();
  await store.server.pool.workerOf(0).terminate();
  const [a, b, r, t] = await Promise.all([inMysql, behind, read, ttl]);
  assert.ok(Date.now() - started < 2000, `in-flight ops were answered after ${Date.now() - started} ms`);
  for (const w of [a, b, t]) {
    assertError(w, 500, 'KV_ERR_OUTCOME_UNKNOWN');
    assert.equal(w.headers['retry-after'], undefined, 'maybe applied: no retry hint');
  }
  assertError(r, 503, 'KV_ERR_SHARD_UNAVAILABLE');

  // The dead worker's connection went with it: once the lock is released nothing it held
  // commits (its COMMIT was never sent), so "unknown" resolves to "not applied" here.
  await lock.release();
  await waitFor(async () => (await client.get(held)).status === 200, { timeoutMs: 10_000, intervalMs: 100, message: 'shard 0 never came back' });
  const got = await client.get(held);
  assert.equal(got.text(), 'before');
  assert.equal(got.headers['x-expires-at'], undefined, 'the TTL of the dead worker was not applied');
  assert.equal((await client.get(queued)).text(), 'before');
  assert.equal((await client.put(held, 'after')).status, 200);
});

test('/readyz: one shard down is 200 "degraded"; every shard down is 503', async () => {
  await store.server.pool.workerOf(0).terminate();
  const one = await fetch(`${store.base}/readyz`);
  assert.equal(one.status, 200);
  const body = (await one.json()) as { status: string; up: number; down: Array<{ shard: number }> };
  assert.equal(body.status, 'degraded');
  assert.deepEqual(
    body.down.map((d) => d.shard),
    [0],
  );
  await store.server.pool.workerOf(1).terminate();
  // Both actors are restarted a second after they died; until then nothing can be served.
  const all = await fetch(`${store.base}/readyz`);
  assert.equal(all.status, 503);
  assert.equal(((await all.json()) as { status: string }).status, 'unavailable');
  const status = async () => ((await (await fetch(`${store.base}/readyz`)).json()) as { status: string }).status;
  await waitFor(async () => (await status()) === 'ready', { timeoutMs: 15_000, intervalMs: 100, message: '/readyz says ready again' });
  assert.equal(((await (await fetch(`${store.base}/readyz`)).json()) as { status: string }).status, 'ready');
});
