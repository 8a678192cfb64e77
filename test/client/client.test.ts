/**
 * Tests src/client against a real store (real MySQL, real gateway on port 0): every op with
 * string and binary keys and values, TTL / keepTtl / ifAbsent / ifVersion, errors from the server
 * and from local validation, pipelining 10,000 ops on one connection, and close().
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, KvClientError, type KvClient } from '../../src/index';
import { startTestStore, type TestStore } from '../helpers/store';
import { sleep } from '../helpers/wait';

const SERVER_MAX_VALUE = 64 * 1024;

let store!: TestStore;
let client!: KvClient;
before(async () => {
  // queueWaitMs 0: the pipelining test sends 10,000 ops at once and checks that every reply is
  // matched to its request; on a loaded machine that burst is more than 500 ms of shard work, and
  // the time bound (KVSQL_QUEUE_WAIT_MS) would rightly refuse part of it.
  store = await startTestStore({ config: { maxValueBytes: SERVER_MAX_VALUE, queueWaitMs: 0 } });
  // The client's limit is above the server's so the server's own check can be seen.
  client = createClient(`ws://127.0.0.1:${store.port}/v1/ws`, { maxValueBytes: 2 * SERVER_MAX_VALUE });
});
after(async () => {
  await client?.close();
  await store?.close();
});

/** Asserts `p` rejects with a KvClientError of `code` (and `status`, when given). */
async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp, status?: number): Promise<KvClientError> {
  let caught: unknown;
  await assert.rejects(p, (e) => {
    caught = e;
    return true;
  });
  assert.ok(caught instanceof KvClientError, `a KvClientError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (message) assert.match(caught.message, message);
  if (status !== undefined) assert.equal(caught.status, status);
  return caught;
}

test('put, get, del with string keys and values', async () => {
  const put = await client.put('c-str', 'héllo wörld');
  assert.equal(put.created, true);
  assert.equal(put.expiresAt, null);
  assert.ok(Number.isSafeInteger(put.version) && put.version > 0);
  const got = await client.get('c-str');
  assert.ok(got);
  assert.ok(Buffer.isBuffer(got.value));
  assert.equal(got.value.toString('utf8'), 'héllo wörld');
  assert.equal(got.version, put.version);
  assert.equal(got.expiresAt, null);
  const again = await client.put('c-str', 'second');
  assert.equal(again.created, false);
  assert.ok(again.version > put.version);
  assert.equal(await client.del('c-str'), true);
  assert.equal(await client.get('c-str'), null);
  assert.equal(await client.del('c-str'), false);
});

test('binary keys and values keep every byte; a string key is its UTF-8 bytes', async () => {
  const key = Uint8Array.from([0, 1, 0xfe, 0xff, 0x2f, 0x25]);
  const value = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) value[i] = i;
  await client.put(key, value);
  assert.deepEqual((await client.get(key))?.value, value);
  assert.equal(await client.get(Uint8Array.from([0, 1, 0xfe, 0xff, 0x2f])), null, 'a prefix is another key');

  await client.put('ключ-é', Uint8Array.from([9, 8, 7]));
  const viaBytes = await client.get(Buffer.from('ключ-é', 'utf8'));
  assert.deepEqual([...viaBytes!.value], [9, 8, 7]);

  await client.put('c-empty-value', '');
  assert.equal((await client.get('c-empty-value'))?.value.length, 0, 'an empty value is a value');

  const big = Buffer.alloc(SERVER_MAX_VALUE, 0xab);
  await client.put('c-big', big);
  assert.ok((await client.get('c-big'))?.value.equals(big));
});

test('TTLs are milliseconds: put ttl, pttl(), pexpire, persist, keepTtl', async () => {
  const t0 = Date.now();
  const put = await client.put('c-ttl', 'v', { ttl: 60_000 });
  assert.ok(put.expiresAt !== null && Math.abs(put.expiresAt - t0 - 60_000) < 5000, `expiresAt ${put.expiresAt}`);
  const ttl = await client.pttl('c-ttl');
  assert.ok(ttl && ttl.ttlMs !== null && ttl.ttlMs > 50_000 && ttl.ttlMs <= 60_000, JSON.stringify(ttl));
  assert.equal(ttl.expiresAt, put.expiresAt);

  const kept = await client.put('c-ttl', 'v2', { keepTtl: true });
  assert.equal(kept.expiresAt, put.expiresAt, 'keepTtl keeps the expiry');
  const cleared = await client.put('c-ttl', 'v3');
  assert.equal(cleared.expiresAt, null, 'a put without ttl clears it');
  assert.deepEqual(await client.pttl('c-ttl'), { ttlMs: null, expiresAt: null });

  const expiresAt = await client.pexpire('c-ttl', 30_000);
  assert.ok(expiresAt !== null && Math.abs(expiresAt - Date.now() - 30_000) < 5000);
  assert.equal((await client.get('c-ttl'))?.expiresAt, expiresAt);
  assert.equal(await client.persist('c-ttl'), true);
  assert.deepEqual(await client.pttl('c-ttl'), { ttlMs: null, expiresAt: null });

  assert.equal(await client.pexpire('c-ttl-missing', 1000), null);
  assert.equal(await client.persist('c-ttl-missing'), false);
  assert.equal(await client.pttl('c-ttl-missing'), null);
});

test('a key expires after its ttl', async () => {
  // 1.5 s: long enough that a loaded machine still reads it back before expiry, short for a test.
  const sent = Date.now();
  await client.put('c-short', 'v', { ttl: 1500 });
  assert.ok(await client.get('c-short'));
  await sleep(sent + 1600 - Date.now());
  assert.equal(await client.get('c-short'), null);
  assert.equal((await client.put('c-short', 'again', { ifAbsent: true })).created, true, 'an expired key counts as absent');
});

test('ifAbsent and ifVersion: a failed precondition rejects with KV_ERR_PRECONDITION_FAILED (412)', async () => {
  const first = await client.put('c-cas', 'one', { ifAbsent: true });
  assert.equal(first.created, true);
  await rejectsWith(client.put('c-cas', 'two', { ifAbsent: true }), 'KV_ERR_PRECONDITION_FAILED', /^put: precondition failed$/, 412);

  await rejectsWith(client.put('c-cas', 'two', { ifVersion: first.version + 1 }), 'KV_ERR_PRECONDITION_FAILED', undefined, 412);
  const second = await client.put('c-cas', 'two', { ifVersion: first.version });
  assert.ok(second.version > first.version);
  assert.equal((await client.get('c-cas'))?.value.toString(), 'two');

  await rejectsWith(client.del('c-cas', { ifVersion: first.version }), 'KV_ERR_PRECONDITION_FAILED', /^del: precondition failed$/, 412);
  assert.ok(await client.get('c-cas'), 'still there');
  assert.equal(await client.del('c-cas', { ifVersion: second.version }), true);
  assert.equal(await client.del('c-cas', { ifVersion: second.version }), false, 'absent is false, not a precondition failure');
  await rejectsWith(client.put('c-cas', 'x', { ifVersion: second.version }), 'KV_ERR_PRECONDITION_FAILED', undefined, 412);
});

test('errors from the server carry its code, status and message', async () => {
  const e = await rejectsWith(client.put('c-too-big', Buffer.alloc(SERVER_MAX_VALUE + 1)), 'KV_ERR_VALUE_TOO_LARGE', undefined, 413);
  assert.equal(e.message, `put: value is ${SERVER_MAX_VALUE + 1} bytes, the limit is ${SERVER_MAX_VALUE}`);
  assert.equal(await client.get('c-too-big'), null);
});

test("bad input is refused locally with the server's codes and messages; nothing is sent", async () => {
  const cases: Array<[() => Promise<unknown>, string, RegExp]> = [
    [() => client.get(''), 'KV_ERR_BAD_KEY', /^get: key must not be empty$/],
    [() => client.get(new Uint8Array(0)), 'KV_ERR_BAD_KEY', /must not be empty/],
    [() => client.get('k'.repeat(1025)), 'KV_ERR_KEY_TOO_LONG', /^get: key is 1025 bytes, the limit is 1024$/],
    [() => client.get('é'.repeat(513)), 'KV_ERR_KEY_TOO_LONG', /key is 1026 bytes/],
    [() => client.get(42 as unknown as string), 'KV_ERR_BAD_KEY', /key must be a string or Uint8Array, got number/],
    [() => client.put('k', null as unknown as string), 'KV_ERR_BAD_REQUEST', /value must be a string or Uint8Array/],
    [() => client.put('k', Buffer.alloc(2 * SERVER_MAX_VALUE + 1)), 'KV_ERR_VALUE_TOO_LARGE', /the limit is 131072/],
    [() => client.put('k', 'v', { ttl: 0 }), 'KV_ERR_BAD_TTL', /ttl must be positive/],
    [() => client.put('k', 'v', { ttl: 1.5 }), 'KV_ERR_BAD_TTL', /ttl must be positive/],
    [() => client.put('k', 'v', { ttl: 11 * 365 * 24 * 3600 * 1000 }), 'KV_ERR_BAD_TTL', /at most 10 years/],
    [() => client.put('k', 'v', { ttl: 10, keepTtl: true }), 'KV_ERR_BAD_REQUEST', /ttl and keepTtl: true contradict each other/],
    [() => client.put('k', 'v', { ifAbsent: true, ifVersion: 1 }), 'KV_ERR_BAD_REQUEST', /send ifAbsent or ifVersion, not both/],
    [() => client.put('k', 'v', { ttlMs: 5 } as never), 'KV_ERR_BAD_REQUEST', /unknown put option "ttlMs"/],
    [() => client.del('k', { ifVersion: -1 }), 'KV_ERR_BAD_REQUEST', /ifVersion must be an integer/],
    [() => client.pexpire('k', -5), 'KV_ERR_BAD_TTL', /^expire: ttl must be positive, got -5$/],
  ];
  for (const [call, code, message] of cases) await rejectsWith(call(), code, message);
  assert.equal(client.queued + client.inflight, 0);
  assert.throws(() => createClient('ws://127.0.0.1:1/v1/ws', { maxInflght: 3 } as never), /unknown client option "maxInflght"/);
  assert.throws(() => createClient('ws://127.0.0.1:1/v1/ws', { timeoutMs: 0 }), /timeoutMs must be a positive integer/);
});

test('a fractional TTL is refused locally as "whole milliseconds"; nothing is sent', async () => {
  await rejectsWith(client.put('k', 'v', { ttl: 1.5 }), 'KV_ERR_BAD_TTL', /^put: ttl must be positive whole milliseconds, got 1\.5 /, 400);
  await rejectsWith(client.pexpire('k', 2500.25), 'KV_ERR_BAD_TTL', /^expire: ttl must be positive whole milliseconds, got 2500\.25 /, 400);
  assert.equal(client.queued + client.inflight, 0);
  // Integers are unchanged: 1 ms is the smallest TTL.
  assert.ok((await client.put('c-ttl-whole', 'v', { ttl: 1500 })).expiresAt !== null);
});

test('a wrong WebSocket path (404 at the upgrade) fails the ops at once, not at their timeout', async () => {
  const wrong = createClient(`ws://127.0.0.1:${store.port}/v1/wss`, { timeoutMs: 30_000 });
  after(() => wrong.close());
  const started = Date.now();
  await rejectsWith(
    wrong.get('k'),
    'KV_ERR_ROUTE_NOT_FOUND',
    /Unexpected server response: 404: no WebSocket API at ws:\/\/127\.0\.0\.1:\d+\/v1\/wss \(kvsql serves it at \/v1\/ws\)/,
    404,
  );
  assert.ok(Date.now() - started < 5000, `failed after ${Date.now() - started} ms`);
});

test('pipelining: 10,000 ops on one connection, every result matched to its request', async () => {
  const n = 10_000;
  let maxInflight = 0;
  const sampler = setInterval(() => (maxInflight = Math.max(maxInflight, client.inflight)), 1);
  after(() => clearInterval(sampler));
  const started = Date.now();
  // Puts of distinct values, issued in one tick; every third key binary.
  const key = (i: number) => (i % 3 === 0 ? Buffer.from(`c-pipe-${i}`) : `c-pipe-${i}`);
  const puts = await Promise.all(Array.from({ length: n }, (_, i) => client.put(key(i), `value-${i}-${'x'.repeat(i % 50)}`)));
  assert.ok(puts.every((p) => p.created));
  const gets = await Promise.all(Array.from({ length: n }, (_, i) => client.get(key(i))));
  for (let i = 0; i < n; i++) {
    assert.equal(gets[i]?.value.toString(), `value-${i}-${'x'.repeat(i % 50)}`, `get ${i}`);
    assert.equal(gets[i]?.version, puts[i].version, `version ${i}`);
  }
  // Mixed ops in one batch, each answered as its own kind.
  const mixed = await Promise.all(
    Array.from({ length: n }, (_, i) => {
      switch (i % 4) {
        case 0:
          return client.del(key(i));
        case 1:
          return client.pttl(key(i));
        case 2:
          return client.get(`c-pipe-missing-${i}`);
        default:
          return client.pexpire(key(i), 60_000);
      }
    }),
  );
  for (let i = 0; i < n; i++) {
    const r = mixed[i];
    if (i % 4 === 0) assert.equal(r, true);
    else if (i % 4 === 1) assert.deepEqual(r, { ttlMs: null, expiresAt: null });
    else if (i % 4 === 2) assert.equal(r, null);
    else assert.ok(typeof r === 'number' && r > Date.now());
  }
  clearInterval(sampler);
  assert.ok(maxInflight <= 1024, `at most maxInflight on the wire, saw ${maxInflight}`);
  assert.ok(maxInflight > 1, 'ops were pipelined');
  assert.equal(client.queued + client.inflight, 0);
  assert.ok(Date.now() - started < 20_000);
});

test('close() rejects what is pending with KV_ERR_CLIENT_CLOSED, and later calls too', async () => {
  const c = createClient(`ws://127.0.0.1:${store.port}/v1/ws`);
  await c.put('c-close', 'v'); // connected
  const pending = Promise.allSettled(Array.from({ length: 100 }, (_, i) => c.get(`c-close-${i}`)));
  await c.close();
  for (const r of await pending) {
    assert.equal(r.status, 'rejected');
    const e = (r as PromiseRejectedResult).reason as KvClientError;
    assert.equal(e.code, 'KV_ERR_CLIENT_CLOSED');
    assert.equal(e.status, 499);
    assert.match(e.message, /^get: the client was closed before a reply$/);
  }
  await rejectsWith(c.get('c-close'), 'KV_ERR_CLIENT_CLOSED', /the client is closed/);
  assert.equal(c.connected, false);
  await c.close(); // idempotent
});
