/**
 * Tests TTLs through the HTTP API of src/gateway/http-api.ts on a real store: `PUT ?ttl=` (ms
 * precision, X-Expires-At), expiry (404 after the deadline, never before), `keepttl`, PUT without
 * ttl clearing a TTL, and the /v1/ttl routes (set, read, remove; 404 for absent or expired keys).
 * TTLs are 300-800 ms and expiry is polled, so the suite stays fast.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHttpTestStore, closeHttpTestStore, type TestStore } from '../helpers/store';
import { HttpClient, assertError, etagVersion, ttlPath } from '../helpers/http-client';
import { measureShardClock, watchExpiry, type ShardClock } from '../helpers/shard-clock';
import { sleep } from '../helpers/wait';

let store: TestStore;
let http: HttpClient;
let clock: ShardClock;
before(async () => {
  ({ store, http } = await startHttpTestStore({ shards: 2 }));
  clock = await measureShardClock(store.urls[0]); // both shards are databases on one server
});
after(() => closeHttpTestStore({ store, http }));

/**
 * Reads `key` back to back through its expiry instant `expiresAt` (shard ms): no 200 for a read
 * that began at or after it on the shard's clock, no 404 for one that ended before it, and a 404
 * within 3 s (test/helpers/shard-clock).
 */
async function waitExpired(key: string, expiresAt: number): Promise<void> {
  assert.equal(typeof expiresAt, 'number', `${key}: expiresAt`);
  await watchExpiry(() => http.get(key), expiresAt, clock, key);
}

const expiresAtHeader = (r: { headers: Record<string, unknown> }): number => {
  const h = r.headers['x-expires-at'];
  assert.match(String(h), /^\d+$/, `X-Expires-At ${h}`);
  return Number(h);
};

test('PUT ?ttl sets an expiry: X-Expires-At and JSON expiresAt agree, GET shows it, the key is 404 after it and not before', async () => {
  const t0 = Date.now();
  const put = await http.put('ttl/basic', 'soon', 'ttl=0.5');
  const t1 = Date.now();
  assert.equal(put.status, 201);
  const expiresAt = expiresAtHeader(put);
  assert.equal(put.json().expiresAt, expiresAt);
  // The shard's clock is this machine's clock here; allow a few ms for rounding.
  assert.ok(expiresAt >= t0 + 500 - 5 && expiresAt <= t1 + 500 + 5, `expiresAt ${expiresAt - t0} ms after the request`);

  const got = await http.get('ttl/basic');
  assert.equal(got.status, 200);
  assert.equal(expiresAtHeader(got), expiresAt);
  assert.equal(got.text(), 'soon');

  // Live until the deadline (with a margin for the request's own latency) ...
  while (Date.now() < expiresAt - 60) {
    assert.equal((await http.get('ttl/basic')).status, 200, `expired ${expiresAt - Date.now()} ms early`);
    await sleep(40);
  }
  // ... and gone soon after it, with every route agreeing.
  await waitExpired('ttl/basic', expiresAt);
  assert.ok(Date.now() >= expiresAt);
  assertError(await http.request('GET', ttlPath('ttl/basic')), 404, 'KV_ERR_NOT_FOUND');
  assertError(await http.request('PUT', ttlPath('ttl/basic', 'ttl=10')), 404, 'KV_ERR_NOT_FOUND');
  assertError(await http.request('DELETE', ttlPath('ttl/basic')), 404, 'KV_ERR_NOT_FOUND');
  assertError(await http.del('ttl/basic'), 404, 'KV_ERR_NOT_FOUND');
});

test('ttl takes decimal seconds with millisecond precision', async () => {
  for (const [text, ms] of [
    ['1.2345', 1235], // rounded up to the next millisecond
    ['0.001', 1],
    ['.75', 750],
    ['2.', 2000],
    ['0.0001', 1], // a positive TTL never rounds down to 0
  ] as const) {
    const t0 = Date.now();
    const r = await http.put(`ttl/precision-${text}`, 'x', `ttl=${text}`);
    const t1 = Date.now();
    assert.equal(r.status, 201, `ttl=${text}: ${r.text()}`);
    const at = expiresAtHeader(r);
    assert.ok(at >= t0 + ms - 5 && at <= t1 + ms + 5, `ttl=${text}: expiresAt is ${at - t0} ms after the request, want ~${ms}`);
  }
});

test('a PUT without ttl removes an earlier TTL; a new ttl replaces it', async () => {
  const first = await http.put('ttl/cleared', 'a', 'ttl=0.3');
  assert.equal(first.status, 201);
  const second = await http.put('ttl/cleared', 'b');
  assert.equal(second.status, 200);
  assert.equal(second.headers['x-expires-at'], undefined);
  assert.equal(second.json().expiresAt, null);
  await sleep(500);
  const got = await http.get('ttl/cleared');
  assert.equal(got.status, 200, 'the TTL was not removed');
  assert.equal(got.text(), 'b');
  assert.equal(got.headers['x-expires-at'], undefined);

  const longer = await http.put('ttl/cleared', 'c', 'ttl=100');
  const shorter = await http.put('ttl/cleared', 'd', 'ttl=0.3');
  assert.ok(expiresAtHeader(shorter) < expiresAtHeader(longer), 'a later ttl replaces the earlier one');
  await waitExpired('ttl/cleared', expiresAtHeader(shorter));
});

test('keepttl=true keeps the current TTL while replacing the value; without a TTL it stays without', async () => {
  const first = await http.put('ttl/keep', 'a', 'ttl=0.6');
  const expiresAt = expiresAtHeader(first);
  const kept = await http.put('ttl/keep', 'b', 'keepttl=true');
  assert.equal(kept.status, 200);
  assert.equal(expiresAtHeader(kept), expiresAt);
  const got = await http.get('ttl/keep');
  assert.equal(got.text(), 'b');
  assert.equal(expiresAtHeader(got), expiresAt);
  await waitExpired('ttl/keep', expiresAt);
  assert.ok(Date.now() >= expiresAt - 5);

  // On a key without a TTL, and on an absent (here: expired) key, keepttl means "no TTL".
  const created = await http.put('ttl/keep', 'c', 'keepttl=true');
  assert.equal(created.status, 201, 'an expired key is re-created');
  assert.equal(created.headers['x-expires-at'], undefined);
  const again = await http.put('ttl/keep', 'd', 'keepttl=1');
  assert.equal(again.status, 200);
  assert.equal(again.headers['x-expires-at'], undefined);
  // keepttl=false is the default behaviour.
  await http.put('ttl/keep', 'e', 'ttl=50');
  const dropped = await http.put('ttl/keep', 'f', 'keepttl=false');
  assert.equal(dropped.headers['x-expires-at'], undefined);
});

test('an expired key is re-created with 201 and a version above the expired one', async () => {
  const first = await http.put('ttl/recreate', 'a', 'ttl=0.3');
  const v1 = etagVersion(first);
  await waitExpired('ttl/recreate', expiresAtHeader(first));
  const again = await http.put('ttl/recreate', 'b');
  assert.equal(again.status, 201);
  assert.ok(etagVersion(again) > v1);
});

test('GET /v1/ttl reports seconds left and expiresAt, or nulls without a TTL; 404 when absent', async () => {
  await http.put('ttl/read', 'x', 'ttl=300');
  const r = await http.request('GET', ttlPath('ttl/read'));
  assert.equal(r.status, 200);
  const body = r.json();
  assert.equal(typeof body.ttl, 'number');
  assert.ok(body.ttl > 299 && body.ttl <= 300, `ttl ${body.ttl}`);
  assert.equal(body.expiresAt, expiresAtHeader(await http.get('ttl/read')));

  await http.put('ttl/read-none', 'x');
  const none = await http.request('GET', ttlPath('ttl/read-none'));
  assert.equal(none.status, 200);
  assert.deepEqual(none.json(), { ttl: null, expiresAt: null });

  assertError(await http.request('GET', ttlPath('ttl/read-absent')), 404, 'KV_ERR_NOT_FOUND');
});

test('PUT /v1/ttl sets the TTL of a live key without touching its value or version', async () => {
  const put = await http.put('ttl/expire', 'kept value');
  const version = etagVersion(put);
  const t0 = Date.now();
  const r = await http.request('PUT', ttlPath('ttl/expire', 'ttl=0.4'));
  assert.equal(r.status, 200);
  const { expiresAt } = r.json();
  assert.equal(typeof expiresAt, 'number');
  assert.ok(expiresAt >= t0 + 400 - 5 && expiresAt <= Date.now() + 400 + 5);
  const got = await http.get('ttl/expire');
  assert.equal(got.text(), 'kept value');
  assert.equal(etagVersion(got), version, 'setting a TTL is not a new version of the value');
  assert.equal(expiresAtHeader(got), expiresAt);
  await waitExpired('ttl/expire', expiresAt);
  assertError(await http.request('PUT', ttlPath('ttl/expire', 'ttl=5')), 404, 'KV_ERR_NOT_FOUND');
  assertError(await http.request('PUT', ttlPath('ttl/expire-absent', 'ttl=5')), 404, 'KV_ERR_NOT_FOUND');
  assertError(await http.get('ttl/expire-absent'), 404, 'KV_ERR_NOT_FOUND'); // and did not create it
});

test('PUT /v1/ttl can shorten and lengthen a TTL', async () => {
  await http.put('ttl/change', 'x', 'ttl=0.3');
  const longer = await http.request('PUT', ttlPath('ttl/change', 'ttl=60'));
  assert.equal(longer.status, 200);
  await sleep(500);
  assert.equal((await http.get('ttl/change')).status, 200, 'lengthened TTL not applied');
  const shorter = await http.request('PUT', ttlPath('ttl/change', 'ttl=0.3'));
  assert.equal(shorter.status, 200);
  assert.ok(shorter.json().expiresAt < longer.json().expiresAt);
  await waitExpired('ttl/change', shorter.json().expiresAt);
});

test('PUT /v1/ttl without a ttl is 400 KV_ERR_BAD_TTL and leaves the key alone', async () => {
  await http.put('ttl/required', 'x');
  for (const path of [ttlPath('ttl/required'), ttlPath('ttl/required', 'ttl='), ttlPath('ttl/required', 'keepttl=true')]) {
    const r = await http.request('PUT', path);
    assert.equal(r.status, 400, `${path}: ${r.status} ${r.text()}`);
  }
  assertError(await http.request('PUT', ttlPath('ttl/required')), 400, 'KV_ERR_BAD_TTL');
  await sleep(50);
  const got = await http.get('ttl/required');
  assert.equal(got.status, 200, 'the key must not have been expired');
  assert.equal(got.headers['x-expires-at'], undefined);
});

test('DELETE /v1/ttl removes the TTL (200) so the key outlives it; 404 when absent or expired', async () => {
  await http.put('ttl/persist', 'x', 'ttl=0.3');
  const r = await http.request('DELETE', ttlPath('ttl/persist'));
  assert.equal(r.status, 200);
  assert.deepEqual(r.json(), { expiresAt: null });
  await sleep(500);
  const got = await http.get('ttl/persist');
  assert.equal(got.status, 200, 'the key expired although its TTL was removed');
  assert.equal(got.headers['x-expires-at'], undefined);
  assert.deepEqual((await http.request('GET', ttlPath('ttl/persist'))).json(), { ttl: null, expiresAt: null });
  // On a key that has no TTL it is still 200.
  assert.equal((await http.request('DELETE', ttlPath('ttl/persist'))).status, 200);

  assertError(await http.request('DELETE', ttlPath('ttl/persist-absent')), 404, 'KV_ERR_NOT_FOUND');
  const late = await http.put('ttl/persist-late', 'x', 'ttl=0.3');
  await waitExpired('ttl/persist-late', expiresAtHeader(late));
  assertError(await http.request('DELETE', ttlPath('ttl/persist-late')), 404, 'KV_ERR_NOT_FOUND');
  assertError(await http.get('ttl/persist-late'), 404, 'KV_ERR_NOT_FOUND'); // not revived
});

test('DELETE of a key with a TTL before it expires is 204; after it expires it is 404', async () => {
  await http.put('ttl/del', 'x', 'ttl=60');
  assert.equal((await http.del('ttl/del')).status, 204);
  const short = await http.put('ttl/del', 'x', 'ttl=0.3');
  await waitExpired('ttl/del', expiresAtHeader(short));
  assertError(await http.del('ttl/del'), 404, 'KV_ERR_NOT_FOUND');
});
