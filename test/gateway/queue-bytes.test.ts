/**
 * Memory is bounded by bytes, not only by operation count: PUT values waiting for a shard count
 * against KVSQL_QUEUE_BYTES, and past it the gateway answers 503 KV_ERR_OVERLOADED with Retry-After
 * at once. Held waiting here by a real row lock taken in MySQL by the test.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { startTestStore, type TestStore } from '../helpers/store';

let store: TestStore;
before(async () => {
  store = await startTestStore({ shards: 1, config: { queueBytes: 1024 * 1024 } });
});
after(() => store.close());

test('PUT values over KVSQL_QUEUE_BYTES waiting on one shard get 503, the others commit', async () => {
  assert.equal((await fetch(`${store.base}/v1/kv/locked`, { method: 'PUT', body: 'x' })).status, 201);
  const conn = await mysql.createConnection({ uri: store.urls[0] });
  try {
    await conn.query('START TRANSACTION');
    await conn.query("SELECT * FROM kv WHERE k = 'locked' FOR UPDATE");
    const big = Buffer.alloc(400 * 1024, 7);
    const first = fetch(`${store.base}/v1/kv/locked`, { method: 'PUT', body: big });
    await new Promise((r) => setTimeout(r, 200));
    const second = fetch(`${store.base}/v1/kv/locked`, { method: 'PUT', body: big });
    await new Promise((r) => setTimeout(r, 200));
    const third = await fetch(`${store.base}/v1/kv/locked`, { method: 'PUT', body: big });
    assert.equal(third.status, 503);
    assert.equal(third.headers.get('retry-after'), '1');
    assert.equal(((await third.json()) as { error: { code: string } }).error.code, 'KV_ERR_OVERLOADED');
    await conn.query('COMMIT');
    assert.equal((await first).status, 200);
    assert.equal((await second).status, 200);
  } finally {
    await conn.end();
  }
  const after = await fetch(`${store.base}/v1/kv/locked`, { method: 'PUT', body: Buffer.alloc(400 * 1024, 1) });
  assert.equal(after.status, 200, 'the budget is released once the writes are answered');
});
