/**
 * Tests the message-framing rules of src/gateway/http-framing.ts (framingProblem, RFC 9112 §6)
 * over a raw socket against a real store: an ambiguous body length (two Content-Length lines, an
 * empty one, Transfer-Encoding other than a single `chunked`, both headers) is 400
 * KV_ERR_BAD_REQUEST with `Connection: close` on every route, and the bytes a smuggling proxy would have forwarded as
 * a second request are never run; what uWebSockets.js refuses itself (negative or non-numeric
 * Content-Length, Content-Length with Transfer-Encoding) is a close without a reply. Nothing is
 * written by any of them: the shards' rows are counted.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHttpTestStore, closeHttpTestStore, type TestStore } from '../helpers/store';
import { HttpClient, assertError, rawRequest } from '../helpers/http-client';

let store: TestStore;
let client: HttpClient;
before(async () => ({ store, http: client } = await startHttpTestStore({ shards: 2 })));
after(() => closeHttpTestStore({ store, http: client }));

/** A second request hidden in the body: run only if the server took the shorter length. */
const SMUGGLED = 'PUT /v1/kv/smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nS';

/** Parses every reply in `raw` (the whole conversation up to the close). */
function replies(raw: string): Array<{ status: number; headers: Record<string, string>; body: string }> {
  const out: Array<{ status: number; headers: Record<string, string>; body: string }> = [];
  let rest = raw;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    assert.ok(end > 0, `unparsable reply: ${JSON.stringify(rest.slice(0, 200))}`);
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
    const length = Number(headers['content-length'] ?? 0);
    out.push({ status: Number(statusLine.split(' ')[1]), headers, body: rest.slice(end + 4, end + 4 + length) });
    rest = rest.slice(end + 4 + length);
  }
  return out;
}

/** Sends `head` + body on a fresh socket; expects exactly one reply, 400 BAD_REQUEST, and a close. */
async function expectRefused(head: string, body: string, why: RegExp): Promise<void> {
  const raw = await rawRequest(store.port, `${head}\r\n\r\n${body}`);
  const all = replies(raw);
  assert.equal(all.length, 1, `expected one reply (the rest of the body must not run as a request): ${raw}`);
  const [r] = all;
  assert.equal(r.status, 400, raw);
  assert.equal(r.headers.connection, 'close', raw);
  assert.match(r.headers['content-type'], /application\/json/);
  const err = JSON.parse(r.body).error;
  assert.equal(err.code, 'KV_ERR_BAD_REQUEST', raw);
  assert.match(err.message, why);
}

const ROUTES = [
  'PUT /v1/kv/framed',
  'GET /v1/kv/framed',
  'DELETE /v1/kv/framed',
  'PUT /v1/ttl/framed?ttl=5',
  'GET /v1/ttl/framed',
  'DELETE /v1/ttl/framed',
  'PATCH /v1/kv/framed',
  'PUT /v1/kv',
  'GET /healthz',
  'GET /readyz',
  'GET /metrics',
  'GET /v1/slots',
  'GET /v1/noop',
  'POST /nowhere',
  'GET /v1/ws',
];

test('two Content-Length headers with different values are refused on every route', async () => {
  const before = await store.rowCount();
  for (const route of ROUTES) {
    // The body is as long as the first line says: nothing is pipelined behind it, so a 400 comes back.
    await expectRefused(`${route} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5`, 'abc', /2 Content-Length headers/);
    await expectRefused(`${route} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 3`, '', /2 Content-Length headers/);
  }
  assert.equal(await store.rowCount(), before, 'a refused request wrote a row');
  assertError(await client.get('framed'), 404, 'KV_ERR_NOT_FOUND');
});

test('a smuggling attempt (a second request hidden behind the shorter Content-Length) never runs: the connection closes', async () => {
  const before = await store.rowCount();
  for (const route of ROUTES) {
    // A proxy honouring the longer line forwards value + SMUGGLED as one body; uWS takes the
    // shorter one, so SMUGGLED arrives as a pipelined request behind the refusal.
    const body = `abc${SMUGGLED}`;
    for (const [first, second] of [
      [3, body.length],
      [body.length, 3],
    ]) {
      const raw = await rawRequest(store.port, `${route} HTTP/1.1\r\nHost: x\r\nContent-Length: ${first}\r\nContent-Length: ${second}\r\n\r\n${body}`);
      // At most the 400 (uWS drops a connection that pipelines behind a pending reply), never a second reply.
      const all = replies(raw);
      assert.ok(all.length <= 1, `${route}: the smuggled request was answered: ${raw}`);
      if (all.length === 1) assert.equal(all[0].status, 400, raw);
    }
    const raw = await rawRequest(store.port, `${route} HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n${SMUGGLED}`);
    assert.ok(replies(raw).length <= 1, `${route}: the smuggled request was answered: ${raw}`);
  }
  assert.equal(await store.rowCount(), before, 'a refused or smuggled request wrote a row');
  assertError(await client.get('smuggled'), 404, 'KV_ERR_NOT_FOUND');
  assertError(await client.get('framed'), 404, 'KV_ERR_NOT_FOUND');
});

test('duplicate identical Content-Length headers are refused too (RFC 9110 §8.6 allows either; uWS refuses "3, 3")', async () => {
  const before = await store.rowCount();
  await expectRefused('PUT /v1/kv/framed HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3', 'abc', /2 Content-Length headers/);
  await expectRefused('PUT /v1/kv/framed HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\nContent-Length: 0', '', /3 Content-Length headers/);
  assert.equal(await store.rowCount(), before);
});

test('an empty Content-Length (which uWS reads as no body) is refused, alone or before a real one', async () => {
  const before = await store.rowCount();
  await expectRefused('PUT /v1/kv/framed HTTP/1.1\r\nHost: x\r\nContent-Length:', '', /Content-Length must be a non-negative decimal integer/);
  await expectRefused('GET /v1/kv/framed HTTP/1.1\r\nHost: x\r\nContent-Length: \r\nContent-Length: 3', 'abc', /2 Content-Length headers/);
  assert.equal(await store.rowCount(), before);
  assertError(await client.get('smuggled'), 404, 'KV_ERR_NOT_FOUND');
});

test('Transfer-Encoding other than one "chunked" is refused: codings, duplicates, empty, identity', async () => {
  const before = await store.rowCount();
  const chunked = `3\r\nabc\r\n0\r\n\r\n`;
  for (const route of ['PUT /v1/kv/framed', 'GET /v1/kv/framed', 'GET /healthz']) {
    await expectRefused(`${route} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked`, chunked, /Transfer-Encoding must be "chunked"/);
    await expectRefused(`${route} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked`, chunked, /2 Transfer-Encoding headers/);
    await expectRefused(`${route} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\nTransfer-Encoding: chunked`, chunked, /2 Transfer-Encoding headers/);
    await expectRefused(`${route} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:`, '', /Transfer-Encoding must be "chunked"/);
    await expectRefused(`${route} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity`, '', /Transfer-Encoding must be "chunked"/);
  }
  // An empty Content-Length slips past uWS's own CL+TE check: still refused.
  await expectRefused(
    'PUT /v1/kv/framed HTTP/1.1\r\nHost: x\r\nContent-Length:\r\nTransfer-Encoding: chunked',
    chunked,
    /Content-Length and Transfer-Encoding together/,
  );
  assert.equal(await store.rowCount(), before);
  assertError(await client.get('framed'), 404, 'KV_ERR_NOT_FOUND');
});

test('what uWebSockets.js refuses itself is a close with no reply: CL with TE, negative, non-numeric, list, over 2^63', async () => {
  const before = await store.rowCount();
  const heads = [
    'Content-Length: 3\r\nTransfer-Encoding: chunked',
    'Transfer-Encoding: chunked\r\nContent-Length: 0',
    'Content-Length: -1',
    'Content-Length: abc',
    'Content-Length: +3',
    'Content-Length: 3, 3',
    'Content-Length: 0x3',
    'Content-Length: 99999999999999999999999',
  ];
  for (const h of heads) {
    const raw = await rawRequest(store.port, `PUT /v1/kv/framed HTTP/1.1\r\nHost: x\r\n${h}\r\n\r\n3\r\nabc\r\n0\r\n\r\n`);
    assert.equal(raw, '', `${h}: expected a close without a reply, got ${JSON.stringify(raw)}`);
  }
  assert.equal(await store.rowCount(), before);
  assertError(await client.get('framed'), 404, 'KV_ERR_NOT_FOUND');
});

test('well-framed bodies still work: one Content-Length, one chunked (any case), a GET with Content-Length: 0', async () => {
  let raw = await rawRequest(store.port, 'PUT /v1/kv/framed-ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc');
  assert.equal(replies(raw)[0].status, 201, raw);
  raw = await rawRequest(store.port, 'PUT /v1/kv/framed-ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n');
  assert.equal(replies(raw)[0].status, 200, raw);
  raw = await rawRequest(store.port, 'GET /v1/kv/framed-ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
  const got = replies(raw);
  assert.equal(got[0].status, 200, raw);
  assert.equal(got[0].body, 'de');
});
