/**
 * Tests the size limits of src/gateway/http-api.ts end to end on a real store: keys up to 1024
 * bytes (414 above, counted in bytes after percent-decoding), values up to the configured
 * maxValueBytes (413 above, declared or streamed), including the largest supported configuration,
 * 16 MiB, with a 16 MiB value written and read back byte for byte. Nothing over a limit is written.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { startHttpTestStore, closeHttpTestStore, type TestStore } from '../helpers/store';
import { HttpClient, assertError, etagVersion, kvPath, ttlPath } from '../helpers/http-client';
import { MAX_KEY_BYTES, MAX_SUPPORTED_VALUE_BYTES } from '../../src/config/config';

const MiB = 1024 * 1024;

let store: TestStore;
let client: HttpClient;
before(async () => ({ store, http: client } = await startHttpTestStore({ shards: 2 })));
after(() => closeHttpTestStore({ store, http: client }));

/** PUT with a chunked body (no Content-Length), so only the streamed size can trip the limit. */
function putChunked(port: number, path: string, parts: Buffer[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'PUT', path, headers: { 'transfer-encoding': 'chunked' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    // The server may answer 413 and close before the whole body is sent.
    req.on('error', (err) =>
      (err as NodeJS.ErrnoException).code === 'EPIPE' || (err as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(err),
    );
    for (const p of parts) req.write(p);
    req.end();
  });
}

test('the limits are the documented ones', () => {
  assert.equal(MAX_KEY_BYTES, 1024);
  assert.equal(MAX_SUPPORTED_VALUE_BYTES, 16 * MiB);
  assert.equal(store.config.maxValueBytes, MiB, 'default value limit');
});

test('a 1024-byte key works on every route', async () => {
  for (const key of [Buffer.alloc(1024, 'k'), crypto.randomBytes(1024)]) {
    assert.equal((await client.put(key, 'long key')).status, 201);
    const got = await client.get(key);
    assert.equal(got.status, 200);
    assert.equal(got.text(), 'long key');
    assert.equal((await client.request('PUT', ttlPath(key, 'ttl=60'))).status, 200);
    assert.equal((await client.request('GET', ttlPath(key))).status, 200);
    assert.equal((await client.request('DELETE', ttlPath(key))).status, 200);
    assert.equal((await client.del(key)).status, 204);
  }
});

test('a 1025-byte key is 414 KV_ERR_KEY_TOO_LONG on every route and writes nothing', async () => {
  // 1023 ASCII bytes and one 2-byte character: 1024 characters, 1025 bytes.
  const keys = [Buffer.alloc(1025, 'k'), crypto.randomBytes(1025), Buffer.from('k'.repeat(1023) + 'é', 'utf8'), Buffer.alloc(5000, 'k')];
  for (const key of keys) {
    assertError(await client.put(key, 'x'), 414, 'KV_ERR_KEY_TOO_LONG');
    assertError(await client.get(key), 414, 'KV_ERR_KEY_TOO_LONG');
    assertError(await client.del(key), 414, 'KV_ERR_KEY_TOO_LONG');
    assertError(await client.request('PUT', ttlPath(key, 'ttl=1')), 414, 'KV_ERR_KEY_TOO_LONG');
    assertError(await client.request('GET', ttlPath(key)), 414, 'KV_ERR_KEY_TOO_LONG');
    assertError(await client.request('DELETE', ttlPath(key)), 414, 'KV_ERR_KEY_TOO_LONG');
  }
  // The 1024-byte prefix is a valid key, and it was not written by any of the above.
  assertError(await client.get(keys[0].subarray(0, 1024)), 404, 'KV_ERR_NOT_FOUND');
});

test('a value of exactly the limit (1 MiB) is stored and read back; one byte more is 413 and writes nothing', async () => {
  const value = crypto.randomBytes(MiB);
  const put = await client.put('limit/at', value);
  assert.equal(put.status, 201);
  const got = await client.get('limit/at');
  assert.equal(got.status, 200);
  assert.ok(got.body.equals(value), 'value differs');

  assertError(await client.put('limit/at', crypto.randomBytes(MiB + 1)), 413, 'KV_ERR_VALUE_TOO_LARGE');
  assertError(await client.put('limit/over', Buffer.alloc(MiB + 1)), 413, 'KV_ERR_VALUE_TOO_LARGE');
  assertError(await client.put('limit/over', Buffer.alloc(4 * MiB)), 413, 'KV_ERR_VALUE_TOO_LARGE');
  const after = await client.get('limit/at');
  assert.equal(etagVersion(after), etagVersion(put), 'a rejected value replaced the stored one');
  assert.ok(after.body.equals(value));
  assertError(await client.get('limit/over'), 404, 'KV_ERR_NOT_FOUND');
});

test('a streamed (chunked) value is held to the same limit', async () => {
  const half = Buffer.alloc(MiB / 2, 'a');
  const ok = await putChunked(store.port, kvPath('limit/chunked'), [half, half]);
  assert.equal(ok.status, 201, ok.body);
  assert.equal((await client.get('limit/chunked')).body.length, MiB);

  const over = await putChunked(store.port, kvPath('limit/chunked-over'), [half, half, Buffer.from('!')]);
  assert.equal(over.status, 413, over.body);
  assert.equal(JSON.parse(over.body).error.code, 'KV_ERR_VALUE_TOO_LARGE');
  assertError(await client.get('limit/chunked-over'), 404, 'KV_ERR_NOT_FOUND');
  const overExisting = await putChunked(store.port, kvPath('limit/chunked'), [half, half, half]);
  assert.equal(overExisting.status, 413);
  assert.equal((await client.get('limit/chunked')).body.length, MiB, 'a rejected value replaced the stored one');
});

test('after a 413 the client can go on using its keep-alive connections', async () => {
  const refused = await client.put('limit/after', Buffer.alloc(MiB + 1));
  assertError(refused, 413, 'KV_ERR_VALUE_TOO_LARGE');
  assert.equal(refused.headers.connection, 'close', 'the unread body ends the connection, and the reply says so');
  for (let i = 0; i < 5; i++) assert.equal((await client.put('limit/after', `v${i}`)).status, i === 0 ? 201 : 200);
});

test('a configured limit below the default is enforced at that size', async () => {
  const gateway = await store.startAnotherGateway({ maxValueBytes: 10 });
  const small = new HttpClient(gateway.port);
  try {
    assert.equal((await small.put('limit/ten', '0123456789')).status, 201);
    assertError(await small.put('limit/ten', '0123456789A'), 413, 'KV_ERR_VALUE_TOO_LARGE');
    assert.equal((await small.get('limit/ten')).text(), '0123456789');
  } finally {
    small.close();
  }
});

test('with maxValueBytes = 16 MiB (the largest supported) a 16 MiB value is written and read back exactly', async () => {
  // 16 MiB travels as 32 MiB of hex SQL: on a loaded 2-core machine that can outlast the default
  // 5 s op deadline, which would then rightly answer 503. Raise it with the value limit (README).
  const gateway = await store.startAnotherGateway({ maxValueBytes: MAX_SUPPORTED_VALUE_BYTES, opDeadlineMs: 30_000 });
  const big = new HttpClient(gateway.port);
  try {
    const value = crypto.randomBytes(16 * MiB);
    const put = await big.put('limit/16mib', value);
    assert.equal(put.status, 201, put.text());
    const got = await big.get('limit/16mib');
    assert.equal(got.status, 200);
    assert.equal(got.body.length, value.length);
    assert.ok(got.body.equals(value), '16 MiB value differs after the round trip');
    // Replace it with another 16 MiB value (an upsert of a large row), then read it through the first gateway.
    const second = crypto.randomBytes(16 * MiB);
    assert.equal((await big.put('limit/16mib', second)).status, 200);
    assert.ok((await client.get('limit/16mib')).body.equals(second));

    assertError(await big.put('limit/16mib-over', Buffer.alloc(16 * MiB + 1)), 413, 'KV_ERR_VALUE_TOO_LARGE');
    assertError(await big.get('limit/16mib-over'), 404, 'KV_ERR_NOT_FOUND');
    assert.equal((await big.del('limit/16mib')).status, 204);
  } finally {
    big.close();
  }
});
