/**
 * Tests conditional writes through src/gateway/http-api.ts on a real store: `If-None-Match: *`
 * (create only when absent or expired), `If-Match: "<version>"` on PUT and DELETE, 412 on a
 * failed precondition with nothing written, and 400 for conditions the API does not support.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHttpTestStore, closeHttpTestStore, type TestStore } from '../helpers/store';
import { HttpClient, assertError, etagVersion, type HttpReply } from '../helpers/http-client';
import { waitFor } from '../helpers/wait';

let store: TestStore;
let http: HttpClient;
before(async () => ({ store, http } = await startHttpTestStore({ shards: 2 })));
after(() => closeHttpTestStore({ store, http }));

const IF_ABSENT = { 'if-none-match': '*' };
const ifMatch = (v: number | string) => ({ 'if-match': typeof v === 'number' ? `"${v}"` : v });

/** The key still has exactly this value and version. */
async function assertUnchanged(key: string, value: string, version: number): Promise<void> {
  const got = await http.get(key);
  assert.equal(got.status, 200);
  assert.equal(got.text(), value);
  assert.equal(etagVersion(got), version);
}

test('If-None-Match: * creates an absent key (201) and is 412 on a live one, which keeps its value', async () => {
  const created = await http.put('cond/absent', 'first', '', IF_ABSENT);
  assert.equal(created.status, 201);
  const v = etagVersion(created);
  assertError(await http.put('cond/absent', 'second', '', IF_ABSENT), 412, 'KV_ERR_PRECONDITION_FAILED');
  await assertUnchanged('cond/absent', 'first', v);
  // After a delete the key is absent again.
  assert.equal((await http.del('cond/absent')).status, 204);
  const again = await http.put('cond/absent', 'third', '', IF_ABSENT);
  assert.equal(again.status, 201);
  assert.ok(etagVersion(again) > v);
});

test('If-None-Match: * treats an expired key as absent', async () => {
  await http.put('cond/expired', 'old', 'ttl=0.3');
  assertError(await http.put('cond/expired', 'early', '', IF_ABSENT), 412, 'KV_ERR_PRECONDITION_FAILED');
  await waitFor(async () => (await http.get('cond/expired')).status === 404, { timeoutMs: 3000 });
  const r = await http.put('cond/expired', 'new', '', IF_ABSENT);
  assert.equal(r.status, 201);
  assert.equal((await http.get('cond/expired')).text(), 'new');
});

test('If-None-Match: * with ttl creates with the TTL', async () => {
  const r = await http.put('cond/absent-ttl', 'x', 'ttl=30', IF_ABSENT);
  assert.equal(r.status, 201);
  assert.match(String(r.headers['x-expires-at']), /^\d+$/);
});

test('only one of many concurrent If-None-Match: * creates wins', async () => {
  const replies = await Promise.all(Array.from({ length: 12 }, (_, i) => http.put('cond/race', `w${i}`, '', IF_ABSENT)));
  const winners = replies.filter((r) => r.status === 201);
  assert.equal(winners.length, 1, replies.map((r) => r.status).join(','));
  for (const r of replies) if (r.status !== 201) assertError(r, 412, 'KV_ERR_PRECONDITION_FAILED');
  const i = replies.indexOf(winners[0]);
  await assertUnchanged('cond/race', `w${i}`, etagVersion(winners[0]));
});

test('If-Match with the current version replaces (200, new ETag); a stale or made-up version is 412', async () => {
  const v1 = etagVersion(await http.put('cond/match', 'one'));
  const ok = await http.put('cond/match', 'two', '', ifMatch(v1));
  assert.equal(ok.status, 200);
  const v2 = etagVersion(ok);
  assert.ok(v2 > v1);
  assertError(await http.put('cond/match', 'stale', '', ifMatch(v1)), 412, 'KV_ERR_PRECONDITION_FAILED');
  assertError(await http.put('cond/match', 'future', '', ifMatch(v2 + 1000)), 412, 'KV_ERR_PRECONDITION_FAILED');
  await assertUnchanged('cond/match', 'two', v2);
  // The ETag exactly as a GET returned it works as the tag.
  const got = await http.get('cond/match');
  const three = await http.put('cond/match', 'three', '', { 'if-match': String(got.headers.etag) });
  assert.equal(three.status, 200);
});

test('If-Match on an absent or expired key is 412 and creates nothing', async () => {
  assertError(await http.put('cond/match-absent', 'x', '', ifMatch(1)), 412, 'KV_ERR_PRECONDITION_FAILED');
  assertError(await http.get('cond/match-absent'), 404, 'KV_ERR_NOT_FOUND');

  const put = await http.put('cond/match-expired', 'x', 'ttl=0.3');
  const v = etagVersion(put);
  await waitFor(async () => (await http.get('cond/match-expired')).status === 404, { timeoutMs: 3000 });
  assertError(await http.put('cond/match-expired', 'y', '', ifMatch(v)), 412, 'KV_ERR_PRECONDITION_FAILED');
  assertError(await http.get('cond/match-expired'), 404, 'KV_ERR_NOT_FOUND');
});

test('If-Match keeps ttl and keepttl semantics', async () => {
  const v1 = etagVersion(await http.put('cond/match-ttl', 'a', 'ttl=60'));
  const at = Number((await http.get('cond/match-ttl')).headers['x-expires-at']);
  const kept = await http.put('cond/match-ttl', 'b', 'keepttl=true', ifMatch(v1));
  assert.equal(kept.status, 200);
  assert.equal(Number(kept.headers['x-expires-at']), at);
  const cleared = await http.put('cond/match-ttl', 'c', '', ifMatch(etagVersion(kept)));
  assert.equal(cleared.status, 200);
  assert.equal(cleared.headers['x-expires-at'], undefined);
});

test('DELETE with If-Match: 204 on the current version; 412 on another, and the key stays', async () => {
  const v = etagVersion(await http.put('cond/del', 'x'));
  assertError(await http.del('cond/del', ifMatch(v + 1)), 412, 'KV_ERR_PRECONDITION_FAILED');
  await assertUnchanged('cond/del', 'x', v);
  assert.equal((await http.del('cond/del', ifMatch(v))).status, 204);
  assertError(await http.get('cond/del'), 404, 'KV_ERR_NOT_FOUND');
  // Absent: nothing to delete, whatever the tag.
  assertError(await http.del('cond/del', ifMatch(v)), 404, 'KV_ERR_NOT_FOUND');
});

test('If-Match: * on PUT writes only an existing key (Redis SET XX); 412 says the key is absent', async () => {
  const absent = await http.put('cond/star', 'x', '', { 'if-match': '*' });
  assertError(absent, 412, 'KV_ERR_PRECONDITION_FAILED');
  assert.match(absent.json().error.message, /absent/);
  assert.equal(absent.headers.etag, undefined, 'no current version to report');
  assertError(await http.get('cond/star'), 404, 'KV_ERR_NOT_FOUND');
  const v = etagVersion(await http.put('cond/star', 'one', 'ttl=100'));
  const replaced = await http.put('cond/star', 'two', 'keepttl=true', { 'if-match': '*' });
  assert.equal(replaced.status, 200);
  assert.ok(etagVersion(replaced) > v);
  assert.ok(replaced.headers['x-expires-at'], 'keepttl still applies');
  assert.equal((await http.get('cond/star')).text(), 'two');
});

test('a 412 carries the current ETag, so a compare-and-set loop needs no extra GET', async () => {
  const v = etagVersion(await http.put('cond/cas', 'x'));
  const stale = await http.put('cond/cas', 'y', '', ifMatch(v + 1000));
  assertError(stale, 412, 'KV_ERR_PRECONDITION_FAILED');
  assert.equal(stale.headers.etag, `"${v}"`);
  const exists = await http.put('cond/cas', 'y', '', IF_ABSENT);
  assert.equal(exists.headers.etag, `"${v}"`);
  const del = await http.del('cond/cas', ifMatch(v + 1));
  assert.equal(del.status, 412);
  assert.equal(del.headers.etag, `"${v}"`);
  // The loop: retry with the tag from the 412.
  const ok = await http.put('cond/cas', 'z', '', { 'if-match': stale.headers.etag as string });
  assert.equal(ok.status, 200);
  const gone = await http.put('cond/cas-absent', 'y', '', ifMatch(5));
  assertError(gone, 412, 'KV_ERR_PRECONDITION_FAILED');
  assert.match(gone.json().error.message, /absent/);
});

test('conditions the API does not support are 400 and write nothing', async () => {
  const v = etagVersion(await http.put('cond/bad', 'x'));
  const cases: Array<[string, () => Promise<HttpReply>]> = [
    ['both headers', () => http.put('cond/bad', 'y', '', { 'if-none-match': '*', 'if-match': `"${v}"` })],
    ['If-None-Match with a tag', () => http.put('cond/bad', 'y', '', { 'if-none-match': `"${v}"` })],
    ['If-None-Match on DELETE', () => http.del('cond/bad', IF_ABSENT)],
    ['weak tag', () => http.put('cond/bad', 'y', '', ifMatch(`W/"${v}"`))],
    ['two tags', () => http.put('cond/bad', 'y', '', ifMatch(`"${v}", "${v + 1}"`))],
    ['not a number', () => http.put('cond/bad', 'y', '', ifMatch('"abc"'))],
    ['negative', () => http.put('cond/bad', 'y', '', ifMatch('"-1"'))],
    ['too large', () => http.put('cond/bad', 'y', '', ifMatch('"99999999999999999999"'))],
    ['star on DELETE', () => http.del('cond/bad', { 'if-match': '*' })],
  ];
  for (const [name, send] of cases) {
    const r = await send();
    assert.equal(r.status, 400, `${name}: ${r.status} ${r.text()}`);
    assertError(r, 400, 'KV_ERR_BAD_REQUEST');
  }
  await assertUnchanged('cond/bad', 'x', v);
});
