/**
 * Memory is bounded by bytes, not only by operation count: PUT values waiting for a shard count
 * against KVSQL_QUEUE_BYTES, and past it the gateway answers 503 KV_ERR_OVERLOADED with Retry-After
 * at once, while the earlier PUTs are still pending; the refused value is never written. Held
 * waiting here by a real row lock taken in MySQL by the test (test/helpers/row-lock).
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { startHttpTestStore, closeHttpTestStore, type TestStore } from '../helpers/store';
import { holdRowLock, lockWaiters } from '../helpers/row-lock';
import { HttpClient, assertError, etagVersion } from '../helpers/http-client';
import { waitFor } from '../helpers/wait';

let store: TestStore;
let client: HttpClient;
before(async () => ({ store, http: client } = await startHttpTestStore({ shards: 1, config: { queueBytes: 1024 * 1024 } })));
after(() => closeHttpTestStore({ store, http: client }));

/** A request whose settlement can be checked without awaiting it. */
function tracked<T>(p: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  const promise = p.finally(() => (done = true));
  return { promise, settled: () => done };
}

test('PUT values over KVSQL_QUEUE_BYTES waiting on one shard get 503 at once and write nothing; the held ones commit after', async () => {
  assert.equal((await client.put('locked', 'x')).status, 201);
  const KiB400 = 400 * 1024;
  const [v1, v2, v3] = [1, 2, 3].map((b) => Buffer.alloc(KiB400, b));
  const lock = await holdRowLock(store, 'locked');
  after(() => lock.release());

  const first = tracked(client.put('locked', v1));
  await waitFor(async () => (await lockWaiters(store, 0)) >= 1, { timeoutMs: 5000, message: 'the first PUT never reached the lock' });
  const second = tracked(client.put('locked', v2));
  await waitFor(() => store.server.pool.queueDepths()[0] === 2, { timeoutMs: 5000, message: 'the second PUT never queued' });

  // 800 KiB are waiting; 400 KiB more would pass the 1 MiB budget.
  const third = await client.put('locked', v3);
  assertError(third, 503, 'KV_ERR_OVERLOADED');
  assert.equal(third.headers['retry-after'], '1');
  assert.ok(!first.settled() && !second.settled(), 'the 503 came while the first two PUTs were still pending');
  assert.equal(store.server.pool.queueDepths()[0], 2, 'the refused PUT was never queued');

  await lock.release();
  const r1 = await first.promise;
  const r2 = await second.promise;
  assert.equal(r1.status, 200, r1.text());
  assert.equal(r2.status, 200, r2.text());
  assert.ok(etagVersion(r2) > etagVersion(r1));

  // The last acknowledged value is stored; the refused one never was.
  const got = await client.get('locked');
  assert.ok(got.body.equals(v2), `stored value starts with byte ${got.body[0]}, expected 2 (the refused PUT wrote 3)`);
  assert.equal(etagVersion(got), etagVersion(r2));
  const conn = await mysql.createConnection({ uri: store.urls[0] });
  try {
    const [rows] = await conn.query('SELECT COUNT(*) AS n FROM kv WHERE LOCATE(?, v) > 0', [Buffer.alloc(16, 3)]);
    assert.equal(Number((rows as Array<{ n: number }>)[0].n), 0, 'a row holds bytes of the refused value');
  } finally {
    await conn.end();
  }

  const later = await client.put('locked', Buffer.alloc(KiB400, 4));
  assert.equal(later.status, 200, 'the budget is released once the writes are answered');
});
