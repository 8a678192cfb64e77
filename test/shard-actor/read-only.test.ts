/**
 * During a failover the old primary turns read-only before the endpoint moves. The probe treats a
 * read-only shard as down (503 for its keys, /readyz names it) instead of flapping between a good
 * probe and failing writes; it serves again by itself once the server is writable.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { startTestStore, type TestStore } from '../helpers/store';
import { waitFor } from '../helpers/wait';

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

async function errorCode(r: Response): Promise<string | undefined> {
  const text = await r.text();
  try {
    return JSON.parse(text).error?.code;
  } catch {
    return `(not JSON: ${text.slice(0, 80)})`;
  }
}

test('a read-only shard is reported down, refuses writes with 503 SHARD_UNAVAILABLE, and comes back when writable with nothing applied meanwhile', async () => {
  const created = await fetch(`${store.base}/v1/kv/ro-key`, { method: 'PUT', body: 'v' });
  assert.equal(created.status, 201);
  const version = created.headers.get('etag');
  await setReadOnly(true);
  // The probe (every 5 s while up) sees @@read_only and marks the shard down. (A write is not
  // guaranteed to fail first: the test connects as root, and read_only does not bind a user
  // with SUPER / READ ONLY ADMIN; the probe is what catches a failover for such a user.)
  await waitFor(async () => (await fetch(`${store.base}/readyz`)).status === 503, { timeoutMs: 8000, intervalMs: 100, message: 'readyz 503' });
  const readyz = (await (await fetch(`${store.base}/readyz`)).json()) as { down: Array<{ shard: number; error: { code: string } }> };
  assert.deepEqual(
    readyz.down.map((d) => d.shard),
    [0],
  );
  assert.equal(readyz.down[0].error.code, 'KV_ERR_SHARD_UNAVAILABLE');
  // While down, writes and reads are refused at once with 503 SHARD_UNAVAILABLE: never sent to
  // MySQL, so the outcome is known (not applied), and never a 500.
  for (const [method, body] of [
    ['PUT', 'v2'],
    ['GET', undefined],
    ['DELETE', undefined],
  ] as const) {
    const r = await fetch(`${store.base}/v1/kv/ro-key`, { method, body });
    assert.equal(r.status, 503, method);
    assert.equal(r.headers.get('retry-after'), '1');
    assert.equal(await errorCode(r), 'KV_ERR_SHARD_UNAVAILABLE', method);
  }

  await setReadOnly(false);
  await waitFor(async () => (await fetch(`${store.base}/readyz`)).status === 200, { timeoutMs: 8000, intervalMs: 100, message: 'shard back' });
  const got = await fetch(`${store.base}/v1/kv/ro-key`);
  assert.equal(got.status, 200);
  assert.equal(await got.text(), 'v', 'the refused write was not applied');
  assert.equal(got.headers.get('etag'), version);
  const r = await fetch(`${store.base}/v1/kv/ro-key`, { method: 'PUT', body: 'v3' });
  assert.equal(r.status, 200);
});
