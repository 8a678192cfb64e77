/**
 * During a failover the old primary turns read-only before the endpoint moves. The probe treats a
 * read-only shard as down (503 for its keys, /readyz names it) instead of flapping between a good
 * probe and failing writes; it serves again by itself once the server is writable.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { startTestStore, type TestStore } from '../helpers/store';

let store: TestStore;
before(async () => {
  store = await startTestStore({ shards: 1 });
});
after(async () => {
  await setReadOnly(false).catch(() => undefined);
  await store.close();
});

async function setReadOnly(on: boolean): Promise<void> {
  const conn = await mysql.createConnection({ uri: store.urls[0] });
  try {
    await conn.query(`SET GLOBAL read_only = ${on ? 1 : 0}`);
  } finally {
    await conn.end();
  }
}

async function eventually(what: string, cond: () => Promise<boolean>, ms = 8000): Promise<void> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > ms) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('a read-only shard is reported down, and comes back when writable', async () => {
  assert.equal((await fetch(`${store.base}/v1/kv/ro-key`, { method: 'PUT', body: 'v' })).status, 201);
  await setReadOnly(true);
  // The probe runs after an error or every second while down; a write error is not needed.
  await eventually('shard down', async () => {
    const r = await fetch(`${store.base}/v1/kv/ro-key`, { method: 'PUT', body: 'v2' });
    await r.arrayBuffer();
    return r.status === 503 || (await fetch(`${store.base}/readyz`)).status === 503;
  });
  await eventually('readyz 503', async () => (await fetch(`${store.base}/readyz`)).status === 503);
  await setReadOnly(false);
  await eventually('shard back', async () => (await fetch(`${store.base}/readyz`)).status === 200);
  const r = await fetch(`${store.base}/v1/kv/ro-key`, { method: 'PUT', body: 'v3' });
  assert.equal(r.status, 200);
});
