/**
 * Tests that src/gateway/http-api.ts refuses bad input at the edge: every invalid TTL, empty keys,
 * broken percent-encoding, unknown or contradictory query parameters. Each is a 4xx with a stable
 * KV_ERR_* code (never a 500), and none writes anything: the shards' row count and an existing
 * key's value, version and TTL are checked after every batch of rejected requests.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHttpTestStore, closeHttpTestStore, type TestStore } from '../helpers/store';
import { HttpClient, assertError, etagVersion, kvPath, ttlPath, type HttpReply } from '../helpers/http-client';

let store: TestStore;
let http: HttpClient;
before(async () => ({ store, http } = await startHttpTestStore({ shards: 2 })));
after(() => closeHttpTestStore({ store, http }));

/**
 * Sends each request, expects the status and code, then checks nothing was written: the row count
 * is the same and the witness key still has its value, version and (absent) TTL.
 */
async function expectRejected(status: number, code: string, requests: Array<[string, string, string?]>): Promise<void> {
  const witness = await http.put('witness', 'original');
  const version = etagVersion(witness);
  const before = await store.rowCount();
  for (const [method, path, body] of requests) {
    const r: HttpReply = await http.request(method, path, body === undefined ? {} : { body });
    assert.ok(r.status < 500, `${method} ${path}: ${r.status} ${r.text()}`);
    assert.equal(r.status, status, `${method} ${path}: ${r.status} ${r.text()}`);
    assertError(r, status, code);
  }
  assert.equal(await store.rowCount(), before, 'a rejected request wrote a row');
  const got = await http.get('witness');
  assert.equal(got.text(), 'original');
  assert.equal(etagVersion(got), version, 'a rejected request changed the witness');
  assert.equal(got.headers['x-expires-at'], undefined, 'a rejected request set a TTL on the witness');
}

const BAD_TTLS = [
  '0',
  '0.0',
  '000',
  '-1',
  '-0.5',
  'NaN',
  'nan',
  'Infinity',
  '-Infinity',
  'abc',
  '1e3',
  '1E3',
  '0x10',
  '1,5',
  '1.2.3',
  '+1',
  '%201',
  '1%20',
  '',
  '.',
  '315360000.001',
  '315360001',
  '99999999999999999999999999',
  '1'.padEnd(400, '0'),
];

test('an invalid ttl on PUT /v1/kv is 400 KV_ERR_BAD_TTL and writes nothing', async () => {
  await expectRejected(400, 'KV_ERR_BAD_TTL', [
    ...BAD_TTLS.map((t): [string, string, string] => ['PUT', kvPath('witness', `ttl=${t}`), 'changed']),
    ...BAD_TTLS.map((t): [string, string, string] => ['PUT', kvPath(`bad-ttl-${t.slice(0, 20)}`, `ttl=${t}`), 'new']),
  ]);
});

test('an invalid ttl on PUT /v1/ttl is 400 KV_ERR_BAD_TTL and changes no TTL', async () => {
  await expectRejected(400, 'KV_ERR_BAD_TTL', [...BAD_TTLS.map((t): [string, string] => ['PUT', ttlPath('witness', `ttl=${t}`)]), ['PUT', ttlPath('witness')]]);
});

test('the largest ttl, 10 years, is accepted; one millisecond more is not', async () => {
  const ok = await http.put('ttl-10y', 'x', 'ttl=315360000');
  assert.equal(ok.status, 201, ok.text());
  assert.equal((await http.request('PUT', ttlPath('ttl-10y', 'ttl=315360000'))).status, 200);
  assertError(await http.put('ttl-10y', 'x', 'ttl=315360000.001'), 400, 'KV_ERR_BAD_TTL');
});

test('an empty key is 400 KV_ERR_BAD_KEY on every route and method', async () => {
  const requests: Array<[string, string, string?]> = [];
  for (const path of ['/v1/kv/', '/v1/kv', '/v1/ttl/', '/v1/ttl', '/v1/kv/?ttl=5']) {
    // GET /v1/kv (no slash) lists keys (README, Listing keys): not an empty key.
    if (path !== '/v1/kv') requests.push(['GET', path]);
    requests.push(['DELETE', path], ['PUT', path, 'x']);
  }
  await expectRejected(400, 'KV_ERR_BAD_KEY', requests);
});

test('broken percent-encoding in the key is 400 KV_ERR_BAD_KEY', async () => {
  const requests: Array<[string, string, string?]> = [];
  for (const key of ['%zz', '%2', 'abc%', '%%41', 'a%g0', '%0']) {
    requests.push(['PUT', `/v1/kv/${key}`, 'x'], ['GET', `/v1/kv/${key}`], ['DELETE', `/v1/kv/${key}`], ['PUT', `/v1/ttl/${key}?ttl=1`]);
  }
  await expectRejected(400, 'KV_ERR_BAD_KEY', requests);
});

test('unknown, malformed or contradictory query parameters are 400 KV_ERR_BAD_REQUEST', async () => {
  await expectRejected(400, 'KV_ERR_BAD_REQUEST', [
    ['PUT', kvPath('witness', 'tll=5'), 'typo'],
    ['PUT', kvPath('witness', 'ttl=5&keepttl=true'), 'both'],
    ['PUT', kvPath('witness', 'keepttl=maybe'), 'x'],
    ['PUT', kvPath('witness', 'keepttl=yes'), 'x'],
    ['PUT', kvPath('witness', 'ttl=%zz'), 'x'],
    ['GET', kvPath('witness', 'ttl=5')],
    ['DELETE', kvPath('witness', 'version=3')],
    ['GET', ttlPath('witness', 'x=1')],
    ['DELETE', ttlPath('witness', 'ttl=1')],
    ['PUT', ttlPath('witness', 'ttl=1&keepttl=true')],
  ]);
});

test('no rejected request above was answered with a 5xx (metrics agree)', async () => {
  const metrics = (await http.request('GET', '/metrics')).text();
  assert.doesNotMatch(metrics, /kvsql_requests_total\{[^}]*status="5\d\d"\}/);
  assert.match(metrics, /kvsql_requests_total\{api="http",op="put",status="400"\} \d+/);
});
