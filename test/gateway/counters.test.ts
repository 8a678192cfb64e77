/**
 * Tests counters and getdel on the HTTP and WebSocket doors against a real store: POST
 * /v1/kv/{key}?incr=N (JSON, the value as a string), the client's incr / incrByFloat / getdel,
 * the same key counted through HTTP, WebSocket and a second gateway with no increment lost, and
 * the errors (409 for a value that is not a number, 400 for a bad increment), nothing written.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, KvClientError, type KvClient } from '../../src/index';
import { startTestStore, type TestStore } from '../helpers/store';

let store: TestStore;
let secondBase: string;
let client: KvClient;
let client2: KvClient;
before(async () => {
  store = await startTestStore({ shards: 2 });
  const second = await store.startAnotherGateway();
  secondBase = `http://127.0.0.1:${second.port}`;
  client = createClient(`ws://127.0.0.1:${store.port}/v1/ws`);
  client2 = createClient(`ws://127.0.0.1:${second.port}/v1/ws`);
});
after(async () => {
  await client?.close();
  await client2?.close();
  await store?.close();
});

async function post(base: string, path: string, body?: string): Promise<{ status: number; json: any; headers: Headers }> {
  const r = await fetch(`${base}${path}`, { method: 'POST', body });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null, headers: r.headers };
}

test('HTTP POST ?incr=N: 201 creates at N, 200 adds; the value is a JSON string, exact past 2^53', async () => {
  const a = await post(store.base, '/v1/kv/h:count?incr=5');
  assert.equal(a.status, 201);
  assert.equal(a.json.value, '5');
  assert.equal(a.headers.get('etag'), `"${a.json.version}"`);
  const b = await post(store.base, '/v1/kv/h:count?incr=-7');
  assert.equal(b.status, 200);
  assert.equal(b.json.value, '-2');
  assert.ok(b.json.version > a.json.version);
  assert.equal(await (await fetch(`${store.base}/v1/kv/h:count`)).text(), '-2');
  await fetch(`${store.base}/v1/kv/h:big`, { method: 'PUT', body: '9223372036854775000' });
  assert.equal((await post(store.base, '/v1/kv/h:big?incr=800')).json.value, '9223372036854775800');
  const over = await post(store.base, '/v1/kv/h:big?incr=8');
  assert.equal(over.status, 409);
  assert.equal(over.json.error.code, 'KV_ERR_OVERFLOW');
  const f = await post(store.base, '/v1/kv/h:f?incr=1.25&float=1');
  assert.equal(f.json.value, '1.25');
});

test('HTTP incr keeps the TTL; errors are 4xx with codes and write nothing', async () => {
  await fetch(`${store.base}/v1/kv/h:ttl?ttl=100`, { method: 'PUT', body: '1' });
  const r = await post(store.base, '/v1/kv/h:ttl?incr=1');
  assert.ok(r.json.expiresAt !== null && r.json.expiresAt > Date.now() + 90_000);
  await fetch(`${store.base}/v1/kv/h:text`, { method: 'PUT', body: 'abc' });
  const notInt = await post(store.base, '/v1/kv/h:text?incr=1');
  assert.equal(notInt.status, 409);
  assert.equal(notInt.json.error.code, 'KV_ERR_NOT_INTEGER');
  assert.equal(await (await fetch(`${store.base}/v1/kv/h:text`)).text(), 'abc');
  for (const [q, msg] of [
    ['', /incr query parameter is required/],
    ['?incr=1.5', /incr must be a signed 64-bit integer/],
    ['?incr=x&float=1', /finite decimal number/],
    ['?incr=1&by=2', /unknown query parameter "by"/],
  ] as const) {
    const bad = await post(store.base, `/v1/kv/h:bad${q}`);
    assert.equal(bad.status, 400, q);
    assert.equal(bad.json.error.code, 'KV_ERR_BAD_REQUEST');
    assert.match(bad.json.error.message, msg);
  }
  const withBody = await post(store.base, '/v1/kv/h:bad?incr=1', 'body');
  assert.equal(withBody.status, 400);
  assert.equal((await fetch(`${store.base}/v1/kv/h:bad`)).status, 404, 'nothing written by refused requests');
});

test('WebSocket client: incr (bigint), incrByFloat, getdel; errors as KvClientError', async () => {
  const a = await client.incr('w:count');
  assert.deepEqual([a.value, a.created], [1n, true]);
  const b = await client.incr('w:count', 9n);
  assert.deepEqual([b.value, b.created], [10n, false]);
  assert.equal((await client.incr('w:count', -20)).value, -10n);
  assert.equal((await client.incrByFloat('w:f', 2.5)).value, 2.5);
  assert.equal((await client.incrByFloat('w:f', 0.1)).value, 2.6);
  await client.put('w:text', 'x');
  await assert.rejects(client.incr('w:text'), (e) => e instanceof KvClientError && e.code === 'KV_ERR_NOT_INTEGER' && e.status === 409);
  await assert.rejects(client.incr('w:count', 1.5), (e) => e instanceof KvClientError && e.code === 'KV_ERR_BAD_REQUEST');
  const g = await client.getdel('w:count');
  assert.equal(g?.value.toString(), '-10');
  assert.equal(await client.getdel('w:count'), null);
  assert.equal(await client.get('w:count'), null);
});

test('one counter through HTTP, WebSocket and two gateways at once: no increment lost', async () => {
  const n = 60;
  const calls: Array<Promise<bigint>> = [];
  for (let i = 0; i < n; i++) {
    calls.push(client.incr('mix:count').then((r) => r.value));
    calls.push(client2.incr('mix:count').then((r) => r.value));
    const base = i % 2 === 0 ? store.base : secondBase;
    calls.push(post(base, '/v1/kv/mix:count?incr=1').then((r) => BigInt(r.json.value)));
  }
  const seen = await Promise.all(calls);
  assert.equal(new Set(seen.map(String)).size, 3 * n, 'every increment saw its own value');
  assert.equal((await client.get('mix:count'))?.value.toString(), String(3 * n));
});
