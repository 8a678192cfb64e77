/**
 * KVSQL_QUEUE_LIMIT bounds the operations outstanding per shard by count: held in flight by a row
 * lock taken in MySQL by the test (test/helpers/row-lock), the limit+1-th op on that shard gets
 * 503 KV_ERR_OVERLOADED with Retry-After at once, reads and writes alike, while the other shard
 * serves; the held ops complete, in order, once the lock goes, and the refused ones wrote nothing.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startHttpTestStore, closeHttpTestStore, keyOnShard, type TestStore } from '../helpers/store';
import { holdRowLock } from '../helpers/row-lock';
import { HttpClient, assertError, etagVersion } from '../helpers/http-client';
import { waitFor } from '../helpers/wait';

const LIMIT = 4;
let store: TestStore;
let client: HttpClient;
before(async () => ({ store, http: client } = await startHttpTestStore({ shards: 2, config: { queueLimit: LIMIT } }, 32)));
after(() => closeHttpTestStore({ store, http: client }));

const keyOn = keyOnShard;

test(`the ${LIMIT + 1}-th op outstanding on a shard gets 503 with Retry-After at once; the held ones complete afterwards`, async () => {
  const held = keyOn(0, 'held-');
  const other0 = keyOn(0, 'other-');
  const on1 = keyOn(1, 'free-');
  assert.equal((await client.put(held, 'start')).status, 201);
  assert.equal((await client.put(other0, 'other')).status, 201);
  const lock = await holdRowLock(store, held);
  after(() => lock.release());

  const writes = Array.from({ length: LIMIT }, (_, i) => client.put(held, `held ${i}`));
  await waitFor(() => store.server.pool.queueDepths()[0] === LIMIT, {
    timeoutMs: 5000,
    message: () => `queue depth ${store.server.pool.queueDepths()[0]}, expected ${LIMIT}`,
  });

  const started = Date.now();
  const refusedPut = await client.put(other0, 'refused');
  const refusedGet = await client.get(other0);
  const refusedNew = await client.put(keyOn(0, 'new-'), 'refused');
  for (const r of [refusedPut, refusedGet, refusedNew]) {
    assertError(r, 503, 'KV_ERR_OVERLOADED');
    assert.equal(r.headers['retry-after'], '1');
  }
  assert.ok(Date.now() - started < 2000, `refusals took ${Date.now() - started} ms: they must not wait for the queue`);
  assert.equal(store.server.pool.queueDepths()[0], LIMIT, 'refused ops were never queued');
  // The other shard's queue is its own.
  assert.equal((await client.put(on1, 'free')).status, 201);
  assert.equal((await client.get(on1)).text(), 'free');

  await lock.release();
  const done = await Promise.all(writes);
  for (const r of done) assert.equal(r.status, 200, r.text());
  const versions = done.map(etagVersion);
  assert.equal(new Set(versions).size, LIMIT, 'each held write got its own version');
  // Sent in order on separate connections: they apply in arrival order, the last one wins.
  const final = await client.get(held);
  assert.equal(etagVersion(final), Math.max(...versions));
  assert.match(final.text(), /^held \d$/);
  // The refused ops wrote nothing.
  assert.equal((await client.get(other0)).text(), 'other');
  assertError(await client.get(keyOn(0, 'new-')), 404, 'KV_ERR_NOT_FOUND');
  assert.equal(store.server.pool.queueDepths()[0], 0);
});
