/**
 * Tests listing keys on every door against a real store of 2 shards (gateway/key-lister.ts and
 * its doors): HTTP GET /v1/kv (byte order across shards, pages, prefixes, binary keys, values,
 * bad input), the WebSocket list op through the client (list, listAll), the Redis door's SCAN
 * (ioredis scanStream unchanged), KEYS, DBSIZE, RANDOMKEY and COMMAND; expired keys never listed;
 * a listing continued through another gateway while slots move to a new shard, with no key
 * missed or repeated; token rights per prefix on all three doors; 503 with Retry-After when the
 * shards are down.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import WebSocket from 'ws';
import { pack, unpack } from 'msgpackr';
import { startTestStore, type TestStore } from '../helpers/store';
import { HttpClient, assertError } from '../helpers/http-client';
import { makeToken, writeTokenFile, bearer } from '../helpers/tokens';
import { createClient, type KvClient } from '../../src/client';
import { SlotMap } from '../../src/protocol/slot-map';
import { ShardSet } from '../../src/admin/shard-set';
import { planRebalance } from '../../src/admin/rebalance';
import { runUnits } from '../../src/admin/commands';
import { DEFAULT_MOVE_OPTIONS } from '../../src/admin/slot-mover';
import type { Server } from '../../src/gateway/server';
import { sleep } from '../helpers/wait';

let store: TestStore;
let http: HttpClient;
let redis: Redis;
let client: KvClient;
/** Live keys written by the suite, as latin1 strings (byte order = latin1 order). */
const live = new Set<string>();

const keyText = (k: string): string => {
  let out = '';
  for (const b of Buffer.from(k, 'latin1'))
    out += /[A-Za-z0-9\-._~/:@]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
};
/** A listed key's text back to its bytes (as a latin1 string): %XX is a byte, the rest ASCII. */
const fromText = (t: string): string => t.replace(/%([0-9A-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
const pct = (k: string): string => [...Buffer.from(k, 'latin1')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
const sorted = (keys: Iterable<string>): string[] => [...keys].sort((a, b) => Buffer.compare(Buffer.from(a, 'latin1'), Buffer.from(b, 'latin1')));
const withPrefix = (p: string): string[] => sorted([...live].filter((k) => k.startsWith(p)));

async function put(key: string, value: string, query = ''): Promise<void> {
  const r = await http.request('PUT', `/v1/kv/${pct(key)}${query ? `?${query}` : ''}`, { body: value });
  assert.ok(r.status === 201 || r.status === 200, r.text());
}

/** Every key of `prefix` through HTTP pages of `limit`, decoded from the JSON; checks each page. */
async function httpListAll(c: HttpClient, prefix: string, limit: number): Promise<string[]> {
  const got: string[] = [];
  let after: string | null = null;
  for (let pages = 0; pages < 10_000; pages++) {
    const r = await c.request('GET', `/v1/kv?prefix=${pct(prefix)}&limit=${limit}${after === null ? '' : `&after=${after}`}`);
    assert.equal(r.status, 200, r.text());
    const body = r.json() as { keys: string[]; next: string | null };
    assert.ok(body.keys.length <= limit);
    for (const k of body.keys) got.push(fromText(k));
    if (body.next === null) return got;
    after = body.next;
  }
  throw new Error('too many pages');
}

before(async () => {
  // Expiry off: expired rows stay in the table, so "never listed" is the scan's own filter.
  store = await startTestStore({ shards: 2, config: { expiry: false } });
  http = new HttpClient(store.port);
  redis = new Redis({ port: store.server.redisPort!, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
  await redis.connect();
  client = createClient(`ws://127.0.0.1:${store.port}/v1/ws`);
  const writes: Array<Promise<void>> = [];
  for (let i = 0; i < 120; i++) {
    const k = `ls/a/${String(i).padStart(3, '0')}`;
    live.add(k);
    writes.push(put(k, `va${i}`));
  }
  for (let i = 0; i < 40; i++) {
    const k = `ls/b/${i}`;
    live.add(k);
    writes.push(put(k, `vb${i}`, i % 2 === 0 ? 'ttl=3600' : ''));
  }
  // Binary keys: every byte class, and keys that only differ past a zero byte.
  for (const k of ['ls/bin/\x00', 'ls/bin/\x00\x00', 'ls/bin/\xff', 'ls/bin/ \t+&=%?#', 'ls/bin/\x7f\x80']) {
    live.add(k);
    writes.push(put(k, 'bin'));
  }
  // Expired: written with a short TTL (rows stay: expiry is off).
  for (let i = 0; i < 30; i++) writes.push(put(`ls/a/${String(i).padStart(3, '0')}x`, 'gone', 'ttl=0.05'));
  await Promise.all(writes);
  await sleep(100);
});
after(async () => {
  redis?.disconnect();
  await client?.close();
  http?.close();
  await store?.close();
});

test('HTTP: every key of a prefix from both shards, in byte order, in pages with a stateless cursor; expired keys never', async () => {
  const map = SlotMap.even(2);
  const want = withPrefix('ls/a/');
  assert.ok(want.some((k) => map.shardOf(Buffer.from(k)) === 0) && want.some((k) => map.shardOf(Buffer.from(k)) === 1), 'keys on both shards');
  for (const limit of [1, 7, 1000]) assert.deepEqual(await httpListAll(http, 'ls/a/', limit), want, `limit ${limit}`);
  // The expired rows are still in the tables.
  assert.ok((await store.rowCount()) >= live.size + 30);
  // The whole store, one page; and a cursor from one gateway continued on another.
  assert.deepEqual(await httpListAll(http, '', 1000), sorted(live));
  const other = await store.startAnotherGateway();
  const c2 = new HttpClient(other.port);
  try {
    const first = (await http.request('GET', '/v1/kv?prefix=ls/a/&limit=50')).json();
    const second = (await c2.request('GET', `/v1/kv?prefix=ls/a/&limit=100&after=${first.next}`)).json();
    assert.deepEqual([...first.keys, ...second.keys], want.map(keyText));
    assert.equal(second.next, null);
  } finally {
    c2.close();
  }
});

test('HTTP: keys as path text (%XX but unreserved, /, :, @), usable as `after` and as the key path; values=1 in base64 with expiresAt', async () => {
  const r = await http.request('GET', `/v1/kv?prefix=ls/bin/&values=1`);
  assert.equal(r.status, 200);
  const body = r.json() as { keys: string[]; values: string[]; expiresAt: Array<number | null>; next: string | null };
  assert.deepEqual(body.keys, withPrefix('ls/bin/').map(keyText));
  assert.deepEqual(body.keys.slice(0, 2), ['ls/bin/%00', 'ls/bin/%00%00']);
  assert.ok(body.keys.includes('ls/bin/%20%09%2B%26%3D%25%3F%23'));
  assert.deepEqual(
    body.values.map((v) => Buffer.from(v, 'base64').toString()),
    body.keys.map(() => 'bin'),
  );
  assert.deepEqual(
    body.expiresAt,
    body.keys.map(() => null),
  );
  assert.equal(body.next, null);
  for (const k of body.keys) assert.equal((await http.request('GET', `/v1/kv/${k}`)).text(), 'bin', k);
  const after = (await http.request('GET', `/v1/kv?prefix=ls/bin/&after=${body.keys[2]}`)).json();
  assert.deepEqual(after.keys, body.keys.slice(3));
  // TTLs: half of ls/b/ have one.
  const b = (await http.request('GET', '/v1/kv?prefix=ls/b/&values=1&limit=1000')).json();
  for (let i = 0; i < b.keys.length; i++) {
    const n = Number(b.keys[i].slice(5));
    assert.equal(Buffer.from(b.values[i], 'base64').toString(), `vb${n}`);
    assert.equal(b.expiresAt[i] === null, n % 2 === 1, b.keys[i]);
  }
});

test('HTTP: bad input is a 4xx JSON error', async () => {
  const bad: Array<[string, number, string]> = [
    ['limit=0', 400, 'KV_ERR_BAD_REQUEST'],
    ['limit=1001', 400, 'KV_ERR_BAD_REQUEST'],
    ['limit=x', 400, 'KV_ERR_BAD_REQUEST'],
    ['limit=-1', 400, 'KV_ERR_BAD_REQUEST'],
    ['values=maybe', 400, 'KV_ERR_BAD_REQUEST'],
    ['cursor=1', 400, 'KV_ERR_BAD_REQUEST'],
    ['limit=1&limit=2', 400, 'KV_ERR_BAD_REQUEST'],
    ['prefix=%ZZ', 400, 'KV_ERR_BAD_KEY'],
    [`prefix=${'a'.repeat(1025)}`, 414, 'KV_ERR_KEY_TOO_LONG'],
    [`after=${'a'.repeat(1025)}`, 414, 'KV_ERR_KEY_TOO_LONG'],
  ];
  for (const [q, status, code] of bad) assertError(await http.request('GET', `/v1/kv?${q}`), status, code);
  assertError(await http.request('POST', '/v1/kv'), 405, 'KV_ERR_METHOD_NOT_ALLOWED');
  assertError(await http.request('PUT', '/v1/kv', { body: 'x' }), 400, 'KV_ERR_BAD_KEY');
});

test('WebSocket: the client lists pages and iterates every key; values and TTLs; bad options are refused', async () => {
  const page = await client.list({ prefix: 'ls/a/', limit: 10 });
  assert.deepEqual(
    page.items.map((i) => i.key.toString()),
    withPrefix('ls/a/').slice(0, 10),
  );
  assert.equal(page.next!.toString(), withPrefix('ls/a/')[9]);
  const all: string[] = [];
  for await (const item of client.listAll({ prefix: 'ls/', limit: 13 })) all.push(item.key.toString('latin1'));
  assert.deepEqual(all, withPrefix('ls/'));
  const withValues = await client.list({ prefix: Buffer.from('ls/b/'), values: true, limit: 1000 });
  for (const item of withValues.items) {
    const n = Number(item.key.toString().slice(5));
    assert.equal(item.value!.toString(), `vb${n}`);
    assert.equal(item.expiresAt === null, n % 2 === 1);
  }
  assert.equal(withValues.next, null);
  await assert.rejects(client.list({ limit: 0 }), { code: 'KV_ERR_BAD_REQUEST' });
  // The server checks too (a client that does not): a raw frame.
  const ws = new WebSocket(`ws://127.0.0.1:${store.port}/v1/ws`);
  await new Promise((r) => ws.once('open', r));
  // Replies come in as many frames as the server's flushes: collect until all three are in.
  const byId = new Map<number, [number, number, unknown, unknown]>();
  const replies = new Promise<void>((resolve) =>
    ws.on('message', (d: Buffer) => {
      for (const r of unpack(d) as Array<[number, number, unknown, unknown]>) byId.set(r[0], r);
      if (byId.size === 3) resolve();
    }),
  );
  ws.send(
    pack([
      [1, 12, 'ls/', { limit: 5000 }],
      [2, 12, 'ls/', { sort: 'desc' }],
      [3, 12, 'ls/a/', { limit: 2, after: 'ls/a/000' }],
    ]),
  );
  await replies;
  ws.close();
  assert.equal(byId.get(1)![1], 400);
  assert.equal((byId.get(1)![2] as { code: string }).code, 'KV_ERR_BAD_REQUEST');
  assert.equal(byId.get(2)![1], 400);
  assert.deepEqual(
    (byId.get(3)![2] as Buffer[]).map((k) => Buffer.from(k).toString()),
    ['ls/a/001', 'ls/a/002'],
  );
});

test('Redis: ioredis scanStream unchanged, SCAN cursors, MATCH, COUNT, TYPE', async () => {
  const seen: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const s = redis.scanStream({ match: 'ls/a/0*', count: 7 });
    s.on('data', (keys: string[]) => seen.push(...keys));
    s.on('end', resolve);
    s.on('error', reject);
  });
  assert.deepEqual(sorted(seen), withPrefix('ls/a/0'));
  assert.equal(new Set(seen).size, seen.length, 'no key twice');
  // By hand: "0" starts, an opaque cursor continues, "0" ends.
  let cursor = '0';
  const all: string[] = [];
  let calls = 0;
  do {
    const [next, keys] = (await redis.call('SCAN', cursor, 'MATCH', 'ls/*', 'COUNT', '25')) as [string, string[]];
    all.push(...keys);
    cursor = next;
    calls++;
  } while (cursor !== '0');
  assert.ok(calls > 3);
  assert.deepEqual(
    all,
    withPrefix('ls/').map((k) => Buffer.from(k, 'latin1').toString()),
  );
  const matched = (await redis.call('SCAN', '0', 'MATCH', 'ls/b/?', 'COUNT', '1000')) as [string, string[]];
  assert.deepEqual(sorted(matched[1]), sorted(withPrefix('ls/b/').filter((k) => k.length === 'ls/b/0'.length)));
  assert.deepEqual(await redis.call('SCAN', '0', 'TYPE', 'hash'), ['0', []]);
  const typed = (await redis.call('SCAN', '0', 'MATCH', 'ls/b/1?', 'TYPE', 'string', 'COUNT', '1000')) as [string, string[]];
  assert.equal(typed[1].length, 10);
  await assert.rejects(redis.call('SCAN', 'abc'), /invalid cursor/);
  await assert.rejects(redis.call('SCAN', '0', 'COUNT', '0'), /syntax error/);
  await assert.rejects(redis.call('SCAN', '0', 'COUNT', 'x'), /not an integer/);
  await assert.rejects(redis.call('SCAN', '0', 'MATCH'), /syntax error/);
  await assert.rejects(redis.call('SCAN'), /wrong number of arguments/);
});

test('Redis: KEYS, DBSIZE (expired rows not counted), RANDOMKEY, and the COMMAND table', async () => {
  assert.deepEqual(sorted(await redis.keys('ls/b/*')), withPrefix('ls/b/'));
  assert.deepEqual(sorted(await redis.keys('ls/a/00[0-2]')), ['ls/a/000', 'ls/a/001', 'ls/a/002']);
  assert.deepEqual(await redis.keys('nothing:*'), []);
  const total = (await httpListAll(http, '', 1000)).length;
  assert.equal(await redis.dbsize(), total);
  assert.ok((await store.rowCount()) > total, 'expired rows are in the tables, not in DBSIZE');
  const picked = new Set<string>();
  for (let i = 0; i < 10; i++) picked.add((await redis.randomkey())!);
  for (const k of picked) assert.ok((await http.request('GET', `/v1/kv/${pct(Buffer.from(k).toString('latin1'))}`)).status === 200, k);
  const info = (await redis.call('COMMAND', 'INFO', 'scan', 'keys', 'dbsize', 'randomkey')) as Array<[string, number]>;
  assert.deepEqual(
    info.map((e) => [e[0], e[1]]),
    [
      ['scan', -2],
      ['keys', 2],
      ['dbsize', 1],
      ['randomkey', 1],
    ],
  );
  await assert.rejects(redis.call('DBSIZE', 'x'), /wrong number of arguments/);
});

test('a listing continued through another gateway while slots move to a new shard: no key missed, none twice', async () => {
  const writes: Array<Promise<void>> = [];
  for (let i = 0; i < 600; i++) {
    const k = `mv/${String(i).padStart(4, '0')}`;
    live.add(k);
    writes.push(put(k, 'm'));
  }
  await Promise.all(writes);
  const want = withPrefix('mv/');
  // A gateway started with the two original shards only: it meets the third through kv_peers.
  const second: Server = await store.startAnotherGateway();
  const c2 = new HttpClient(second.port);
  const third: Server = await store.startAnotherGateway();
  const c3 = new HttpClient(third.port);
  const newUrl = await store.mysql.createDatabase();
  const set = await ShardSet.open(store.urls);
  try {
    await set.lockMovers();
    await set.addShard(newUrl);
    await set.publishPeers();
    // Both gateways meet the new shard now (starting its actor takes about a second on this
    // machine; a gateway meets it by itself when a page finds slots no shard it knows serves).
    await store.server.pool.refreshMap();
    await second.pool.refreshMap();
    const units = planRebalance(await set.slotRows(), [...set.members.keys()], new Set(), 128).slice(0, 8);
    let moved = false;
    const mover = runUnits(set, units, () => undefined, {}, { ...DEFAULT_MOVE_OPTIONS, pageRows: 5 }).then(() => {
      moved = true;
      moveMs = Date.now() - moveStarted;
    });
    // Page through both gateways in turn while the ranges move.
    const got: string[] = [];
    let after: string | null = null;
    let pages = 0;
    let whileMoving = 0;
    const took: number[] = [];
    const moveStarted = Date.now();
    let moveMs = 0;
    do {
      if (!moved) whileMoving++;
      const c = pages % 2 === 0 ? http : c2;
      const t0 = Date.now();
      const r = await c.request('GET', `/v1/kv?prefix=mv/&limit=9${after === null ? '' : `&after=${after}`}`);
      assert.equal(r.status, 200, r.text());
      const body = r.json() as { keys: string[]; next: string | null };
      got.push(...body.keys);
      after = body.next;
      pages++;
      took.push(Date.now() - t0);
      if (!moved) await sleep(5);
    } while (after !== null);
    await mover;
    assert.ok(whileMoving >= 8, `only ${whileMoving} of ${pages} pages were asked while the ranges moved (${moveMs} ms); page ms: ${took.join(' ')}`);
    assert.deepEqual(got, want, 'every key once, in order');
    // After the moves, through both gateways; and through a third, started before the new
    // shard existed, that meets it only now: its first page finds slots no shard it knows serves.
    assert.deepEqual(await httpListAll(c2, 'mv/', 1000), want);
    assert.deepEqual(await httpListAll(http, 'mv/', 7), want);
    assert.deepEqual(await httpListAll(c3, 'mv/', 1000), want);
    assert.equal(await redis.dbsize(), (await httpListAll(http, '', 1000)).length);
  } finally {
    await set.close();
    c2.close();
    c3.close();
  }
});

test('token rights: a listing needs a read grant on its prefix (or a shorter one) on every door; refused, not narrowed', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-list-auth-'));
  const file = path.join(dir, 'tokens.jsonl');
  const rA = makeToken('r-a', [{ rights: ['read'], prefixes: ['a/'] }]);
  const wA = makeToken('w-a', [{ rights: ['write'], prefixes: ['a/'] }]);
  const all = makeToken('all', [{ rights: ['read', 'write'], prefixes: [''] }]);
  writeTokenFile(file, [rA, wA, all]);
  const s = await startTestStore({ mysql: store.mysql, config: { authFile: file, authFailuresPerMinute: 100_000 } });
  const c = new HttpClient(s.port);
  const r = new Redis({ port: s.server.redisPort!, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, enableReadyCheck: false });
  r.on('error', () => undefined);
  const wsA = createClient(`ws://127.0.0.1:${s.port}/v1/ws`, { token: rA.token });
  try {
    for (const k of ['a/1', 'a/2', 'b/1']) assert.equal((await c.request('PUT', `/v1/kv/${k}`, { body: 'x', headers: bearer(all) })).status, 201);
    const ok = await c.request('GET', '/v1/kv?prefix=a/', { headers: bearer(rA) });
    assert.deepEqual(ok.json().keys, ['a/1', 'a/2']);
    assert.equal((await c.request('GET', '/v1/kv?prefix=a/1', { headers: bearer(rA) })).status, 200);
    assertError(await c.request('GET', '/v1/kv?prefix=b/', { headers: bearer(rA) }), 403, 'KV_ERR_FORBIDDEN');
    assertError(await c.request('GET', '/v1/kv', { headers: bearer(rA) }), 403, 'KV_ERR_FORBIDDEN');
    assertError(await c.request('GET', '/v1/kv?prefix=a', { headers: bearer(rA) }), 403, 'KV_ERR_FORBIDDEN');
    assertError(await c.request('GET', '/v1/kv?prefix=a/', { headers: bearer(wA) }), 403, 'KV_ERR_FORBIDDEN');
    assertError(await c.request('GET', '/v1/kv?prefix=a/'), 401, 'KV_ERR_UNAUTHORIZED');
    assert.equal((await c.request('GET', '/v1/kv', { headers: bearer(all) })).json().keys.length, 3);
    // WebSocket.
    assert.deepEqual(
      (await wsA.list({ prefix: 'a/' })).items.map((i) => i.key.toString()),
      ['a/1', 'a/2'],
    );
    await assert.rejects(wsA.list({ prefix: 'b/' }), { code: 'KV_ERR_FORBIDDEN' });
    await assert.rejects(wsA.list(), { code: 'KV_ERR_FORBIDDEN' });
    // Redis: MATCH's literal prefix is what is checked.
    await r.connect();
    await assert.rejects(r.call('SCAN', '0'), /NOAUTH/);
    await r.call('AUTH', rA.token);
    assert.deepEqual(await r.call('SCAN', '0', 'MATCH', 'a/*', 'COUNT', '100'), ['0', ['a/1', 'a/2']]);
    await assert.rejects(r.call('SCAN', '0'), /NOPERM/);
    await assert.rejects(r.call('SCAN', '0', 'MATCH', '*/1'), /NOPERM/);
    assert.deepEqual(await r.call('KEYS', 'a/*'), ['a/1', 'a/2']);
    await assert.rejects(r.call('KEYS', '*'), /NOPERM/);
    await assert.rejects(r.call('DBSIZE'), /NOPERM/);
    await assert.rejects(r.call('RANDOMKEY'), /NOPERM/);
    await r.call('AUTH', all.token);
    assert.equal(await r.call('DBSIZE'), 3);
  } finally {
    r.disconnect();
    await wsA.close();
    c.close();
    await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('shards down: a listing is answered 503 KV_ERR_SHARD_UNAVAILABLE with Retry-After within the op deadline; SCAN is TRYAGAIN', async (t) => {
  const s = await startTestStore({ shards: 2, config: { opDeadlineMs: 2000 } });
  t.after(() => s.close());
  const c = new HttpClient(s.port);
  t.after(() => c.close());
  const r = new Redis({ port: s.server.redisPort!, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
  r.on('error', () => undefined);
  t.after(() => r.disconnect());
  await r.connect();
  assert.equal((await c.request('PUT', '/v1/kv/d/1', { body: 'x' })).status, 201);
  assert.deepEqual((await c.request('GET', '/v1/kv?prefix=d/')).json().keys, ['d/1']);
  if (!s.mysql.canRestart) return t.skip('the test MySQL cannot be killed');
  await s.mysql.kill();
  const t0 = Date.now();
  const down = await c.request('GET', '/v1/kv?prefix=d/');
  assert.ok(Date.now() - t0 < 2000 + 500, `answered in ${Date.now() - t0} ms`);
  assertError(down, 503, 'KV_ERR_SHARD_UNAVAILABLE');
  assert.equal(down.headers['retry-after'], '1');
  await assert.rejects(r.call('SCAN', '0'), /TRYAGAIN/);
  await assert.rejects(r.call('DBSIZE'), /TRYAGAIN/);
});
