/**
 * Tests the /v1/kv routes of src/gateway/http-api.ts against a real store (real MySQL, gateway on
 * port 0): create/replace/read/delete and their statuses, ETags, binary keys and values (every
 * byte value), how the path becomes a key, versions (strictly increasing, never repeated after a
 * delete and re-create, also across gateways), and the 405/404 answers for wrong methods/routes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHttpTestStore, closeHttpTestStore, type TestStore } from '../helpers/store';
import { HttpClient, assertError, etagVersion, kvPath, rawRequest } from '../helpers/http-client';

let store: TestStore;
let http: HttpClient;
before(async () => ({ store, http } = await startHttpTestStore({ shards: 2 })));
after(() => closeHttpTestStore({ store, http }));

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

test('PUT creates with 201, replaces with 200, both with an ETag; GET returns the raw bytes of the last write', async () => {
  const created = await http.put('kv/basic', 'one');
  assert.equal(created.status, 201);
  const v1 = etagVersion(created);
  assert.deepEqual(created.json(), { version: v1, expiresAt: null });
  assert.equal(created.headers['x-expires-at'], undefined);

  const replaced = await http.put('kv/basic', 'two');
  assert.equal(replaced.status, 200);
  const v2 = etagVersion(replaced);
  assert.ok(v2 > v1, `replace version ${v2} not above ${v1}`);

  const got = await http.get('kv/basic');
  assert.equal(got.status, 200);
  assert.equal(got.headers.etag, `"${v2}"`);
  assert.equal(got.headers['content-type'], 'application/octet-stream');
  assert.equal(got.headers['x-expires-at'], undefined, 'no TTL, so no X-Expires-At');
  assert.equal(got.text(), 'two');
});

test('GET and DELETE of a key never written are 404 KV_ERR_NOT_FOUND', async () => {
  assertError(await http.get('kv/never'), 404, 'KV_ERR_NOT_FOUND');
  assertError(await http.del('kv/never'), 404, 'KV_ERR_NOT_FOUND');
});

test('DELETE of a live key is 204 without a body; the key is then 404 and a second DELETE is 404', async () => {
  assert.equal((await http.put('kv/del', 'x')).status, 201);
  const deleted = await http.del('kv/del');
  assert.equal(deleted.status, 204);
  assert.equal(deleted.body.length, 0);
  assertError(await http.get('kv/del'), 404, 'KV_ERR_NOT_FOUND');
  assertError(await http.del('kv/del'), 404, 'KV_ERR_NOT_FOUND');
});

test('an empty value is a value: stored (201) and read back as zero bytes', async () => {
  const put = await http.put('kv/empty', '');
  assert.equal(put.status, 201);
  const got = await http.get('kv/empty');
  assert.equal(got.status, 200);
  assert.equal(got.body.length, 0);
  assert.equal(got.headers['content-length'], '0');
});

test('a key holding all 256 byte values and a value holding all 256 byte values round-trip exactly', async () => {
  const value = Buffer.concat([ALL_BYTES, Buffer.from(ALL_BYTES).reverse(), ALL_BYTES]);
  assert.equal((await http.put(ALL_BYTES, value)).status, 201);
  const got = await http.get(ALL_BYTES);
  assert.equal(got.status, 200);
  assert.ok(got.body.equals(value), 'value bytes differ');
  // Same key through lower-case hex escapes: the same bytes, so the same key.
  const lower = '/v1/kv/' + [...ALL_BYTES].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
  const again = await http.request('GET', lower);
  assert.equal(again.status, 200);
  assert.ok(again.body.equals(value));
  // Not the same key as its text form or a prefix of it.
  assertError(await http.get(ALL_BYTES.subarray(0, 255)), 404, 'KV_ERR_NOT_FOUND');
});

test('each of the 256 one-byte keys is its own key', async () => {
  const keys = Array.from({ length: 256 }, (_, b) => Buffer.from([b]));
  const puts = await Promise.all(keys.map((k, b) => http.put(k, Buffer.from([b, 255 - b]))));
  for (const [b, r] of puts.entries()) assert.equal(r.status, 201, `byte ${b}: ${r.status} ${r.text()}`);
  const gets = await Promise.all(keys.map((k) => http.get(k)));
  for (const [b, r] of gets.entries()) {
    assert.equal(r.status, 200, `byte ${b}`);
    assert.deepEqual([...r.body], [b, 255 - b], `byte ${b}`);
  }
  const dels = await Promise.all(keys.map((k) => http.del(k)));
  for (const r of dels) assert.equal(r.status, 204);
});

test('the key is the percent-decoded rest of the path: a literal / and %2F name the same key', async () => {
  assert.equal((await http.request('PUT', '/v1/kv/dir/sub/leaf', { body: 'slashes' })).status, 201);
  const encoded = await http.request('GET', '/v1/kv/dir%2Fsub%2fleaf');
  assert.equal(encoded.status, 200);
  assert.equal(encoded.text(), 'slashes');
  // A leading and a trailing slash are key bytes too.
  assert.equal((await http.request('PUT', '/v1/kv//lead/', { body: 'edge' })).status, 201);
  assert.equal((await http.get('/lead/')).text(), 'edge');
  assertError(await http.get('lead'), 404, 'KV_ERR_NOT_FOUND');
  // Unreserved characters encoded or not are the same bytes.
  assert.equal((await http.request('PUT', '/v1/kv/AbC', { body: 'abc' })).status, 201);
  assert.equal((await http.request('GET', '/v1/kv/%41b%43')).text(), 'abc');
  // Case matters in keys.
  assertError(await http.request('GET', '/v1/kv/abc'), 404, 'KV_ERR_NOT_FOUND');
});

test('non-ASCII sent unencoded counts as its UTF-8 bytes (the same key as percent-encoded UTF-8)', async () => {
  const text = 'ké😀/日本';
  const raw = await rawRequest(
    store.port,
    Buffer.concat([
      Buffer.from('PUT /v1/kv/'),
      Buffer.from(text, 'utf8'),
      Buffer.from(' HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nConnection: close\r\n\r\nutf8'),
    ]),
  );
  assert.match(raw, /^HTTP\/1\.1 201 /);
  const got = await http.get(Buffer.from(text, 'utf8'));
  assert.equal(got.status, 200);
  assert.equal(got.text(), 'utf8');
});

test('bytes that are not UTF-8 sent unencoded are refused (400), not stored under a mangled key', async () => {
  // The server cannot see these bytes (the HTTP layer replaces them with U+FFFD), so two
  // different raw keys would otherwise collide on one stored key.
  const raw = await rawRequest(
    store.port,
    Buffer.concat([
      Buffer.from('PUT /v1/kv/bin'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from(' HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx'),
    ]),
  );
  assert.match(raw, /^HTTP\/1\.1 400 /);
  assert.match(raw, /KV_ERR_BAD_KEY/);
  assertError(await http.get(Buffer.from([0x62, 0x69, 0x6e, 0xff, 0xfe])), 404, 'KV_ERR_NOT_FOUND');
  assertError(await http.get('bin\ufffd\ufffd'), 404, 'KV_ERR_NOT_FOUND');
});

test('versions strictly increase per key and are never reused after DELETE and re-create', async () => {
  const key = 'kv/versions';
  const seen: number[] = [];
  for (let round = 0; round < 4; round++) {
    const created = await http.put(key, `r${round}-a`);
    assert.equal(created.status, 201, 're-create after delete is a create');
    seen.push(etagVersion(created));
    const replaced = await http.put(key, `r${round}-b`);
    assert.equal(replaced.status, 200);
    seen.push(etagVersion(replaced));
    assert.equal(etagVersion(await http.get(key)), seen[seen.length - 1]);
    assert.equal((await http.del(key)).status, 204);
  }
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1], `versions not strictly increasing: ${seen.join(', ')}`);
});

test("a second gateway on the same shards continues above the first one's versions, and back", async () => {
  const key = 'kv/two-gateways';
  const first = etagVersion(await http.put(key, 'from-1'));
  const other = await store.startAnotherGateway();
  const http2 = new HttpClient(other.port);
  try {
    const second = await http2.put(key, 'from-2');
    assert.equal(second.status, 200);
    assert.ok(etagVersion(second) > first);
    assert.equal((await http2.del(key)).status, 204);
    const third = await http.put(key, 'from-1-again');
    assert.equal(third.status, 201);
    assert.ok(etagVersion(third) > etagVersion(second), 'version reused after a delete through another gateway');
    assert.equal((await http2.get(key)).text(), 'from-1-again');
  } finally {
    http2.close();
  }
});

test('versions of different keys are independent of each other but each still only grows', async () => {
  const keys = ['kv/va', 'kv/vb', 'kv/vc', 'kv/vd'];
  const last = new Map<string, number>();
  for (let i = 0; i < 5; i++) {
    const replies = await Promise.all(keys.map((k) => http.put(k, `${i}`)));
    replies.forEach((r, j) => {
      const v = etagVersion(r);
      assert.ok(v > (last.get(keys[j]) ?? 0));
      last.set(keys[j], v);
    });
  }
});

test('a known route with another method is 405 with Allow; HEAD gets the headers and no body', async () => {
  for (const [method, path] of [
    ['PATCH', kvPath('x')],
    ['OPTIONS', '/v1/ttl/x'],
    ['POST', '/v1/ttl/x'],
    ['POST', '/v1/kv'],
  ] as const) {
    // A body the server does not read: it says Connection: close, so the agent never reuses a
    // socket the server is closing (the next request would fail with "socket hang up").
    const r = await http.request(method, path, { body: 'ignored', headers: { 'content-length': '7' } });
    assertError(r, 405, 'KV_ERR_METHOD_NOT_ALLOWED');
    assert.equal(r.headers.allow, path.startsWith('/v1/kv/') ? 'GET, HEAD, PUT, POST, DELETE' : 'GET, PUT, DELETE', `${method} ${path}`);
    assert.equal(r.headers.connection, 'close');
    const bare = await http.request(method, path);
    assertError(bare, 405, 'KV_ERR_METHOD_NOT_ALLOWED');
    assert.equal(bare.headers.connection, undefined, 'no body, so the connection stays open');
  }
  // A HEAD reply with a body would corrupt the connection: the next reply must still parse.
  const head = await http.request('HEAD', '/v1/ttl/x');
  assert.equal(head.status, 405);
  assert.equal(head.headers.allow, 'GET, PUT, DELETE');
  assert.equal(head.body.length, 0);
  const headUnknown = await http.request('HEAD', '/nowhere');
  assert.equal(headUnknown.status, 404);
  const raw = await rawRequest(store.port, 'HEAD /v1/ttl/x HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n');
  const [first, second] = raw.split(/\r\n\r\n/);
  assert.match(first, /^HTTP\/1\.1 405 /);
  assert.match(second, /^HTTP\/1\.1 200 /, `HEAD left a body on the connection: ${JSON.stringify(raw)}`);
});

test('HEAD /v1/kv/{key}: the status and headers of GET, Content-Length of the value, no body', async () => {
  const put = await http.put('kv/head', 'twelve bytes', 'ttl=100');
  const head = await http.request('HEAD', kvPath('kv/head'));
  assert.equal(head.status, 200);
  assert.equal(head.headers.etag, put.headers.etag);
  assert.equal(head.headers['x-expires-at'], put.headers['x-expires-at']);
  assert.equal(head.headers['content-type'], 'application/octet-stream');
  assert.equal(head.headers['content-length'], '12');
  assert.equal(head.body.length, 0);
  const missing = await http.request('HEAD', kvPath('kv/head-missing'));
  assert.equal(missing.status, 404);
  assert.equal(missing.body.length, 0);
  const bad = await http.request('HEAD', kvPath('x'.repeat(1025)));
  assert.equal(bad.status, 414);
  assert.equal(bad.body.length, 0);
  // The connection is still good for the next request (no stray body on it).
  assert.equal((await http.get('kv/head')).text(), 'twelve bytes');
});

test('GET and DELETE with a body they ignore are still answered', async () => {
  assert.equal((await http.put('kv/with-body', 'v')).status, 201);
  const got = await http.request('GET', kvPath('kv/with-body'), { body: 'ignored', headers: { 'content-length': '7' } });
  assert.equal(got.status, 200);
  assert.equal(got.text(), 'v');
  const chunked = await http.request('DELETE', kvPath('kv/with-body'), { body: 'ignored', headers: { 'transfer-encoding': 'chunked' } });
  assert.equal(chunked.status, 204);
  assertError(await http.get('kv/with-body'), 404, 'KV_ERR_NOT_FOUND');
});

test('an unknown route is 404 KV_ERR_ROUTE_NOT_FOUND, not a key lookup', async () => {
  assertError(await http.request('GET', '/v1/keys/x'), 404, 'KV_ERR_ROUTE_NOT_FOUND');
  assertError(await http.request('GET', '/'), 404, 'KV_ERR_ROUTE_NOT_FOUND');
  assertError(await http.request('PUT', '/v2/kv/x', { body: 'x' }), 404, 'KV_ERR_ROUTE_NOT_FOUND');
});
