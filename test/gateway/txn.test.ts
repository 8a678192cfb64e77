/**
 * Tests transactions on the HTTP and WebSocket doors (POST /v1/txn, op 13, the client's txn())
 * against a real store: compares on version, existence and absence choose the list that runs;
 * every op answers as alone; keys on two shards are refused (KV_ERR_CROSS_SHARD) with nothing
 * written; bad bodies are 400 with nothing written; a token needs the right for every key; and
 * compare-and-swap through two gateways loses no update.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, KvClientError, type KvClient } from '../../src/index';
import { onShard0, onShard1 } from '../helpers/shard-keys';
import { startTestStore, type TestStore } from '../helpers/store';

let store: TestStore;
let base: string;
let secondBase: string;
let client: KvClient;
let client2: KvClient;
before(async () => {
  store = await startTestStore({ shards: 2 });
  const second = await store.startAnotherGateway();
  base = `http://127.0.0.1:${store.port}`;
  secondBase = `http://127.0.0.1:${second.port}`;
  client = createClient(`ws://127.0.0.1:${store.port}/v1/ws`);
  client2 = createClient(`ws://127.0.0.1:${second.port}/v1/ws`);
});
after(async () => {
  await client?.close();
  await client2?.close();
  await store?.close();
});

async function txn(body: unknown, at = base): Promise<{ status: number; json: any }> {
  const r = await fetch(`${at}/v1/txn`, {
    method: 'POST',
    body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { 'Content-Type': 'application/json' },
  });
  return { status: r.status, json: await r.json() };
}
const b64 = (s: string) => Buffer.from(s).toString('base64');

test('HTTP: compares choose the list; every op answers as its own route does', async () => {
  const [a, b, n] = onShard0('h:txn:', 3);
  const first = await txn({
    compare: [{ key: a, exists: false }],
    success: [
      { op: 'put', key: a, value: 'one', ttl: 100 },
      { op: 'incr', key: n, by: '5' },
      { op: 'get', key: a },
      { op: 'ttl', key: a },
      { op: 'del', key: b },
    ],
    failure: [{ op: 'get', key: a }],
  });
  assert.equal(first.status, 200);
  assert.equal(first.json.succeeded, true);
  const [put, incr, get, ttl, del] = first.json.results;
  assert.equal(put.status, 201);
  assert.equal(incr.value, '5');
  assert.deepEqual([get.status, Buffer.from(get.value, 'base64').toString(), get.version], [200, 'one', put.version]);
  assert.ok(ttl.ttl > 99 && ttl.ttl <= 100 && ttl.version === put.version);
  assert.equal(del.status, 404);
  // Now a exists at put.version: the compare fails, the failure list runs, nothing else.
  const second = await txn({ compare: [{ key: a, exists: false }], success: [{ op: 'put', key: a, value: 'two' }], failure: [{ op: 'get', key: a }] });
  assert.equal(second.json.succeeded, false);
  assert.equal(Buffer.from(second.json.results[0].value, 'base64').toString(), 'one');
  // A compare-and-swap on the version, through another gateway.
  const cas = await txn({ compare: [{ key: a, version: put.version }], success: [{ op: 'put', key: a, valueBase64: b64('three') }] }, secondBase);
  assert.equal(cas.json.succeeded, true);
  const stale = await txn({ compare: [{ key: a, version: put.version }], success: [{ op: 'put', key: a, value: 'four' }] });
  assert.deepEqual(stale.json, { succeeded: false, results: [] });
  assert.equal(await (await fetch(`${base}/v1/kv/${a}`)).text(), 'three');
});

test('HTTP: an op’s error is its own result; keys on two shards and bad bodies are refused whole', async () => {
  const [a, b] = onShard0('h:txnerr:', 2);
  await fetch(`${base}/v1/kv/${a}`, { method: 'PUT', body: 'text' });
  const r = await txn({
    success: [
      { op: 'incr', key: a },
      { op: 'put', key: b, value: 'ok' },
    ],
  });
  assert.equal(r.status, 200);
  assert.equal(r.json.results[0].status, 409);
  assert.equal(r.json.results[0].error.code, 'KV_ERR_NOT_INTEGER');
  assert.equal(r.json.results[1].status, 201);
  const far = onShard1('h:txnerr:far:');
  const cross = await txn({
    success: [
      { op: 'put', key: a, value: 'x' },
      { op: 'put', key: far, value: 'y' },
    ],
  });
  assert.equal(cross.status, 400);
  assert.equal(cross.json.error.code, 'KV_ERR_CROSS_SHARD');
  assert.equal((await fetch(`${base}/v1/kv/${far}`)).status, 404, 'nothing written');
  for (const [body, code] of [
    ['not json', 'KV_ERR_BAD_REQUEST'],
    [{ success: [{ op: 'put', key: a }] }, 'KV_ERR_BAD_REQUEST'],
    [{ success: [{ op: 'nope', key: a }] }, 'KV_ERR_UNKNOWN_OP'],
    [{ compare: [{ key: a }] }, 'KV_ERR_BAD_REQUEST'],
    [{ compare: [{ key: a, version: 0 }] }, 'KV_ERR_BAD_REQUEST'],
    [{ success: [{ op: 'get' }] }, 'KV_ERR_BAD_KEY'],
    [{ success: [{ op: 'expire', key: a }] }, 'KV_ERR_BAD_TTL'],
    [{ other: [] }, 'KV_ERR_BAD_REQUEST'],
  ] as const) {
    const bad = await txn(body);
    assert.equal(bad.status, 400, JSON.stringify(body));
    assert.equal(bad.json.error.code, code, JSON.stringify(body));
  }
  assert.equal((await fetch(`${base}/v1/txn`)).status, 405);
  assert.equal((await txn({})).json.succeeded, true, 'an empty transaction succeeds');
});

test('WebSocket client: txn() with compares, per-op results and errors, and CROSS_SHARD', async () => {
  const [a, n] = onShard0('w:txn:', 2);
  const created = await client.txn({
    compare: [{ key: a, exists: false }],
    success: [
      { op: 'put', key: a, value: 'v1' },
      { op: 'incr', key: n, by: 2n },
      { op: 'get', key: a },
      { op: 'pttl', key: a },
    ],
  });
  assert.equal(created.succeeded, true);
  const [put, incr, get, ttl] = created.results as [any, any, any, any];
  assert.equal(put.created, true);
  assert.equal(incr.value, 2n);
  assert.equal(get.value.toString(), 'v1');
  assert.deepEqual(ttl, { ttlMs: null, expiresAt: null });
  const again = await client2.txn({ compare: [{ key: a, version: put.version }], success: [{ op: 'del', key: a }], failure: [{ op: 'get', key: a }] });
  assert.deepEqual(again.results, [true]);
  const gone = await client.txn({ compare: [{ key: a, exists: true }], success: [{ op: 'get', key: a }], failure: [{ op: 'get', key: a }] });
  assert.deepEqual(gone, { succeeded: false, results: [null] });
  await client.put(a, 'text');
  const mixed = await client.txn({
    success: [
      { op: 'incr', key: a },
      { op: 'getdel', key: a },
    ],
  });
  assert.ok(mixed.results[0] instanceof KvClientError && mixed.results[0].code === 'KV_ERR_NOT_INTEGER');
  assert.equal((mixed.results[1] as any).value.toString(), 'text');
  await assert.rejects(
    client.txn({
      success: [
        { op: 'put', key: a, value: 'x' },
        { op: 'put', key: onShard1('w:txn:far:'), value: 'y' },
      ],
    }),
    (e: KvClientError) => e.code === 'KV_ERR_CROSS_SHARD',
  );
  await assert.rejects(client.txn({ success: [{ op: 'nope' as 'get', key: a }] }), (e: KvClientError) => e.code === 'KV_ERR_UNKNOWN_OP');
});

test('compare-and-swap through two gateways and both doors loses no update', async () => {
  const [k] = onShard0('cas:txn:', 1);
  await client.put(k, '0');
  const viaWs = async (c: KvClient) => {
    for (;;) {
      const cur = (await c.get(k))!;
      const r = await c.txn({ compare: [{ key: k, version: cur.version }], success: [{ op: 'put', key: k, value: String(Number(cur.value.toString()) + 1) }] });
      if (r.succeeded) return;
    }
  };
  const viaHttp = async (at: string) => {
    for (;;) {
      const g = await fetch(`${at}/v1/kv/${k}`);
      const version = Number(g.headers.get('etag')!.replace(/"/g, ''));
      const v = Number(await g.text());
      const r = await txn({ compare: [{ key: k, version }], success: [{ op: 'put', key: k, value: String(v + 1) }] }, at);
      if (r.json.succeeded) return;
    }
  };
  const per = 25;
  await Promise.all([
    (async () => {
      for (let i = 0; i < per; i++) await viaWs(client);
    })(),
    (async () => {
      for (let i = 0; i < per; i++) await viaWs(client2);
    })(),
    (async () => {
      for (let i = 0; i < per; i++) await viaHttp(base);
    })(),
    (async () => {
      for (let i = 0; i < per; i++) await viaHttp(secondBase);
    })(),
  ]);
  assert.equal((await client.get(k))!.value.toString(), String(4 * per));
});
