/**
 * Tests the change feed end to end against a real store (real MySQL, gateways on port 0): the
 * kv_feed rows written with each change (shard-actor), the tailer and hub (ordering, holes,
 * resume), and the doors: the client's watch() over WebSocket, SSE on GET /v1/watch with
 * Last-Event-ID, auth prefix filtering, a slow watcher cut off with its cursor, and an expired
 * cursor.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import mysql2 from 'mysql2/promise';
import WebSocket from 'ws';
import Redis from 'ioredis';
import { Packr } from 'msgpackr';
import { createClient, type KvClient } from '../../src/index';
import type { WatchEvent } from '../../src/client/watch';
import { decodeReplyFrame } from '../../src/protocol/ws-client-codec';
import { keyOnShard, startTestStore, type TestStore } from '../helpers/store';
import { startTestServer, type TestServer } from '../helpers/mysql';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeToken, writeTokenFile } from '../helpers/tokens';
import { sleep, waitFor } from '../helpers/wait';

let mysql!: TestServer;
let store!: TestStore;
let client!: KvClient;
const url = (port: number): string => `ws://127.0.0.1:${port}/v1/ws`;

before(async () => {
  mysql = await startTestServer();
  store = await startTestStore({ mysql, config: { expiryTickMs: 20 } });
  client = createClient(url(store.port));
});
after(async () => {
  await client?.close();
  await store?.close();
  await mysql?.stop();
});

/** Collects a watch's events until `pred` holds. */
async function collect(it: AsyncIterableIterator<WatchEvent>, pred: (events: WatchEvent[]) => boolean, timeoutMs = 15_000): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  const deadline = Date.now() + timeoutMs;
  while (!pred(events)) {
    const left = deadline - Date.now();
    if (left <= 0)
      throw new Error(`timed out with ${events.length} events: ${JSON.stringify(events.slice(-5).map((e) => [e.type, e.key.toString(), e.version]))}`);
    const r = await Promise.race([it.next(), new Promise<null>((resolve) => setTimeout(() => resolve(null), left))]);
    if (r === null) continue;
    if (r.done) break;
    events.push(r.value);
  }
  return events;
}

test('every kind of change appears in its key feed, in order, with its version', async () => {
  const w = client.watch('kinds:');
  await w.ready;
  const p = await client.put('kinds:a', 'x');
  const i = await client.incr('kinds:n', 5);
  await client.pexpire('kinds:a', 60_000);
  await client.persist('kinds:a');
  await client.del('kinds:a');
  await client.put('other:a', 'not watched');
  const events = await collect(w, (e) => e.length >= 5);
  w.close();
  const a = events.filter((e) => e.key.toString() === 'kinds:a').map((e) => [e.type, e.version]);
  assert.deepEqual(a, [
    ['put', p.version],
    ['expire', p.version],
    ['persist', p.version],
    ['del', p.version],
  ]);
  const n = events.filter((e) => e.key.toString() === 'kinds:n');
  assert.deepEqual(
    n.map((e) => [e.type, e.version]),
    [['put', i.version]],
  );
  assert.ok(events.every((e) => !e.key.toString().startsWith('other:')));
});

test('concurrent writers: every acknowledged write is in the feed, in version order per key', async () => {
  const w = client.watch('conc:');
  await w.ready;
  const writers = await Promise.all([0, 1, 2, 3].map(() => Promise.resolve(createClient(url(store.port)))));
  const acked = new Map<string, number[]>();
  await Promise.all(
    writers.map(async (c, wi) => {
      for (let round = 0; round < 60; round++) {
        const batch = [];
        for (let k = 0; k < 8; k++) {
          const key = `conc:${(k + wi + round) % 12}`;
          batch.push(c.put(key, `${wi}-${round}`).then((r) => acked.set(key, [...(acked.get(key) ?? []), r.version])));
        }
        await Promise.all(batch);
      }
    }),
  );
  const total = [...acked.values()].reduce((n, v) => n + v.length, 0);
  const events = await collect(w, (e) => e.length >= total, 30_000);
  w.close();
  for (const c of writers) await c.close();
  const seen = new Map<string, number[]>();
  for (const e of events) seen.set(e.key.toString(), [...(seen.get(e.key.toString()) ?? []), e.version]);
  for (const [key, versions] of acked) {
    const got = seen.get(key) ?? [];
    assert.deepEqual(
      [...got].sort((a, b) => a - b),
      got,
      `${key}: events in version order`,
    );
    assert.deepEqual(new Set(got), new Set(versions), `${key}: every acknowledged write appears`);
  }
  assert.equal(events.length, total, 'no event twice, none unapplied');
});

test('an expired key yields exactly one expired event', async () => {
  const w = client.watch('exp:');
  await w.ready;
  const versions = new Map<string, number>();
  for (let i = 0; i < 50; i++) versions.set(`exp:${i}`, (await client.put(`exp:${i}`, 'v', { ttl: 200 })).version);
  const events = await collect(w, (e) => e.filter((x) => x.type === 'expired').length >= 50, 20_000);
  // Let any duplicate arrive.
  const more = await collect(w, () => false, 1500).catch(() => []);
  w.close();
  const expired = [...events, ...more].filter((e) => e.type === 'expired');
  assert.equal(expired.length, 50);
  for (const e of expired) assert.equal(e.version, versions.get(e.key.toString()));
  assert.equal(new Set(expired.map((e) => e.key.toString())).size, 50);
  for (const e of events.filter((x) => x.type === 'put')) assert.ok(e.expiresAt !== null);
});

test('resuming from a cursor after a gateway restart loses nothing', async () => {
  const other = await startTestStore({ mysql, shards: 2, config: {} }).catch(() => null);
  // Its own store on the same MySQL: restart its gateway between two watches.
  assert.ok(other !== null);
  try {
    let c = createClient(url(other.port));
    const w = c.watch('res:');
    await w.ready;
    for (let i = 0; i < 20; i++) await c.put(`res:${i % 5}`, `a${i}`);
    const first = await collect(w, (e) => e.length >= 10);
    const cursor = first[9].cursor;
    w.close();
    await c.close();
    // Restart: a new gateway process-equivalent on the same shards; the old one stops.
    const g2 = await other.startAnotherGateway({ port: 0, redisPort: 0 });
    await other.server.close();
    c = createClient(url(g2.port));
    for (let i = 20; i < 30; i++) await c.put(`res:${i % 5}`, `a${i}`);
    const w2 = c.watch('res:', { from: cursor });
    const rest = await collect(w2, (e) => e.length >= 20);
    w2.close();
    await c.close();
    // Everything after the 10th event, in order per key; (shard, seq) would also dedupe repeats.
    const values = rest.map((e) => `${e.key}:${e.version}`);
    const expected = first.slice(10).map((e) => `${e.key}:${e.version}`);
    for (const v of expected) assert.ok(values.includes(v), `${v} after resume`);
    assert.equal(rest.filter((e) => e.type === 'put').length, 20);
  } finally {
    await other.close().catch(() => undefined);
  }
});

test('a cursor older than retention gets KV_ERR_CURSOR_EXPIRED', async () => {
  const w = client.watch('ret:');
  await w.ready;
  await client.put('ret:1', 'a');
  const [e] = await collect(w, (x) => x.length >= 1);
  w.close();
  // A change after the cursor, then trim past it by hand (as the retention step does: mark, then delete).
  await client.put('ret:1', 'b');
  const conns = await Promise.all(store.urls.map((uri) => mysql2.createConnection({ uri })));
  for (const c of conns) {
    const [rows] = await c.query('SELECT COALESCE(MAX(id), 0) AS m FROM kv_feed');
    await c.query('UPDATE kv_feed_trim SET upto = ? WHERE id = 1', [(rows as Array<{ m: number }>)[0].m]);
    await c.end();
  }
  await client.put('ret:1', 'c');
  // On another gateway (this one's ring still holds the events, so it could serve them).
  const g2 = await store.startAnotherGateway({ port: 0, redisPort: 0 });
  const c2 = createClient(url(g2.port));
  const w2 = c2.watch('ret:', { from: e.cursor });
  await assert.rejects(w2.next(), (err: { code?: string }) => err.code === 'KV_ERR_CURSOR_EXPIRED');
  w2.close();
  await c2.close();
});

test('SSE: events with id = cursor, and Last-Event-ID resumes', async () => {
  const read = (headers: Record<string, string>, until: (text: string) => boolean): Promise<string> =>
    new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: store.port, path: '/v1/watch?prefix=sse%3A', headers }, (res) => {
        assert.equal(res.statusCode, 200);
        assert.match(String(res.headers['content-type']), /text\/event-stream/);
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
          if (until(text)) {
            req.destroy();
            resolve(text);
          }
        });
      });
      req.on('error', (err) => (err.message.includes('aborted') || (err as { code?: string }).code === 'ECONNRESET' ? undefined : reject(err)));
    });
  const p1 = read({}, (t) => (t.match(/event: put/g) ?? []).length >= 3);
  await sleep(300);
  for (let i = 0; i < 3; i++) await client.put(`sse:${i}`, 'v');
  const text = await p1;
  const ids = [...text.matchAll(/id: (\S+)\nevent: put\ndata: (.*)\n/g)];
  assert.equal(ids.length, 3);
  assert.equal(JSON.parse(ids[0][2]).key, 'sse:0');
  // Resume after the first event: the other two come again, then a new one (at least once: the
  // first may come again too; across shards in any order).
  await client.put('sse:3', 'v');
  const keysOf = (t: string) => [...t.matchAll(/event: put\ndata: (.*)\n/g)].map((m) => JSON.parse(m[1]).key as string);
  const text2 = await read({ 'Last-Event-ID': ids[0][1] }, (t) => ['sse:1', 'sse:2', 'sse:3'].every((k) => keysOf(t).includes(k)));
  const keys = keysOf(text2);
  assert.ok(
    keys.every((k) => ['sse:0', 'sse:1', 'sse:2', 'sse:3'].includes(k)),
    keys.join(),
  );
});

test('a watcher that does not read is cut off with its cursor', async () => {
  const packr = new Packr({ useRecords: false, moreTypes: false });
  const slow = await startTestStore({ mysql, config: { feedWatcherBufferBytes: 64 * 1024 } });
  try {
    const ws = new WebSocket(url(slow.port));
    await new Promise((r) => ws.once('open', r));
    const replies: unknown[][] = [];
    ws.on('message', (d: Buffer) => replies.push(...(decodeReplyFrame(d) as unknown[][])));
    ws.send(packr.pack([[7, 15, 'slow:', { from: 'now' }]]));
    await waitFor(() => replies.some((r) => r[1] === 200), { timeoutMs: 5000, intervalMs: 20, message: 'the watch is open' });
    // Stop reading: the socket's buffers fill.
    (ws as unknown as { _socket: { pause(): void } })._socket.pause();
    // About 20 MB of events (1 KB keys): more than the kernel's socket buffers take.
    const writers = [0, 1, 2, 3].map(() => createClient(url(slow.port)));
    const long = 'k'.repeat(1000);
    await Promise.all(
      writers.map(async (c, wi) => {
        for (let round = 0; round < 50 && !replies.some((r) => r[1] === 503); round++) {
          await Promise.all(Array.from({ length: 100 }, (_, i) => c.put(`slow:${long}${wi}-${round * 100 + i}`, 'v')));
        }
      }),
    );
    for (const c of writers) await c.close();
    (ws as unknown as { _socket: { resume(): void } })._socket.resume();
    let cut: unknown[] | undefined;
    await waitFor(() => (cut = replies.find((r) => r[0] === 7 && r[1] === 503)) !== undefined, { timeoutMs: 10_000, intervalMs: 50, message: 'cut off' });
    assert.ok(cut !== undefined, 'cut off');
    const err = cut[2] as { code: string; cursor: string };
    assert.equal(err.code, 'KV_ERR_WATCH_TOO_SLOW');
    assert.ok(err.cursor.length > 0);
    ws.close();
  } finally {
    await slow.close();
  }
});

test('auth: a token may watch only prefixes it may read', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-feed-'));
  const file = path.join(dir, 'tokens');
  const readerToken = makeToken('reader', [{ rights: ['read'], prefixes: ['pub:'] }]);
  const adminToken = makeToken('all', [{ rights: ['read', 'write'], prefixes: [''] }]);
  writeTokenFile(file, [readerToken, adminToken]);
  const secured = await startTestStore({ mysql, config: { authFile: file } });
  try {
    const reader = createClient(url(secured.port), { token: readerToken.token });
    const writer = createClient(url(secured.port), { token: adminToken.token });
    const refused = reader.watch('priv:');
    await assert.rejects(refused.next(), (err: { code?: string }) => err.code === 'KV_ERR_FORBIDDEN');
    const all = reader.watch('');
    await assert.rejects(all.next(), (err: { code?: string }) => err.code === 'KV_ERR_FORBIDDEN');
    const w = reader.watch('pub:');
    await w.ready;
    await writer.put('priv:1', 'secret');
    await writer.put('pub:1', 'hello');
    const events = await collect(w, (e) => e.length >= 1);
    assert.deepEqual(
      events.map((e) => e.key.toString()),
      ['pub:1'],
    );
    w.close();
    await reader.close();
    await writer.close();
  } finally {
    await secured.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('retention: rows past the row bound and the time bound are trimmed in pages, and the trim mark moves', async () => {
  const small = await startTestStore({ mysql, shards: 1, config: { feedMaxRows: 1000, feedRetentionMs: 3000, expiryTickMs: 20 } });
  try {
    const c = createClient(url(small.port));
    for (let round = 0; round < 30; round++) await Promise.all(Array.from({ length: 100 }, (_, i) => c.put(`trim:${i}`, `${round}`)));
    await c.close();
    const conn = await mysql2.createConnection({ uri: small.urls[0] });
    try {
      const count = async () => {
        const [[r]] = (await conn.query('SELECT COUNT(*) AS n, (SELECT upto FROM kv_feed_trim WHERE id = 1) AS upto FROM kv_feed')) as unknown as [
          [{ n: number; upto: number }],
        ];
        return { n: Number(r.n), upto: Number(r.upto) };
      };
      let now = await count();
      await waitFor(async () => (now = await count()).n <= 1000, { timeoutMs: 15_000, intervalMs: 200, message: () => `rows kept: ${now.n}` });
      assert.ok(now.upto >= 2000, `trim mark: ${now.upto}`);
      // The time bound: nothing is written any more, so after 3 s everything goes.
      await waitFor(async () => (now = await count()).n === 0, {
        timeoutMs: 15_000,
        intervalMs: 200,
        message: () => `rows left after the time bound: ${now.n}`,
      });
    } finally {
      await conn.end();
    }
  } finally {
    await small.close();
  }
});

test('the hub interface other doors use (Redis keyspace notifications): Redis event names, created, ttl', async () => {
  const hub = store.server.feed!;
  const got: Array<{ event: string; key: string; created: boolean; ttl: boolean; type: string }> = [];
  let failed: unknown = null;
  const sub = hub.subscribe(
    { prefix: Buffer.from('hub:'), from: 'now' },
    { onEvent: (e) => got.push({ event: e.event, key: e.key.toString(), created: e.created, ttl: e.ttl, type: e.type }), onError: (err) => (failed = err) },
  );
  await hub.ready(sub);
  await client.put('hub:a', 'x', { ttl: 60_000 });
  await client.put('hub:a', 'y', { keepTtl: true });
  await client.incr('hub:n', 2);
  await client.incrByFloat('hub:n', 0.5);
  await client.getdel('hub:n');
  await waitFor(() => got.length >= 5, { timeoutMs: 10_000, intervalMs: 20, message: () => `5 events, got ${got.length}` });
  sub.unsubscribe();
  assert.equal(failed, null);
  assert.deepEqual(got, [
    { event: 'set', key: 'hub:a', created: true, ttl: true, type: 'put' },
    { event: 'set', key: 'hub:a', created: false, ttl: false, type: 'put' },
    { event: 'incrby', key: 'hub:n', created: true, ttl: false, type: 'put' },
    { event: 'incrbyfloat', key: 'hub:n', created: false, ttl: false, type: 'put' },
    { event: 'del', key: 'hub:n', created: false, ttl: false, type: 'del' },
  ]);
});

test('Redis door: keyspace notifications come from the feed: writes of every door, and expired', async () => {
  const r = new Redis({ port: store.server.redisPort!, maxRetriesPerRequest: 1 });
  const sub = new Redis({ port: store.server.redisPort!, maxRetriesPerRequest: 1 });
  // One shard: the feed orders events per shard (keys on two shards may arrive either way round).
  const [ws, n, rk] = ['rk:ws', 'rk:n', 'rk:redis'].map((p) => keyOnShard(0, p));
  try {
    await r.config('SET', 'notify-keyspace-events', 'KEA');
    const got: string[] = [];
    sub.on('pmessage', (_p: string, ch: string, msg: string) => {
      if (msg.startsWith('rk:')) got.push(`${ch} ${msg}`);
    });
    await sub.psubscribe('__keyevent@0__:*');
    await sleep(300); // the hub's watch starts on the first subscriber
    await client.put(ws, 'x'); // the WebSocket door
    await client.incr(n, 1);
    await r.set(rk, 'y', 'PX', 150); // this door: set, then expire; later expired
    await waitFor(() => got.includes(`__keyevent@0__:expired ${rk}`), {
      timeoutMs: 10_000,
      intervalMs: 50,
      message: () => `the expired event, got ${JSON.stringify(got)}`,
    });
    assert.deepEqual(got, [
      `__keyevent@0__:set ${ws}`,
      `__keyevent@0__:incrby ${n}`,
      `__keyevent@0__:set ${rk}`,
      `__keyevent@0__:expire ${rk}`,
      `__keyevent@0__:expired ${rk}`,
    ]);
  } finally {
    await r.config('SET', 'notify-keyspace-events', '');
    r.disconnect();
    sub.disconnect();
  }
});

test("a transaction's writes are in the feed, in op order per key", async () => {
  const a = keyOnShard(0, 'tx:a');
  const n = keyOnShard(0, 'tx:n');
  const w = client.watch('tx:');
  await w.ready;
  await client.txn({
    success: [
      { op: 'put', key: a, value: 'v' },
      { op: 'incr', key: n, by: 2n },
      { op: 'del', key: a },
    ],
  });
  const events = await collect(w, (e) => e.length >= 3);
  w.close();
  assert.deepEqual(
    events.map((e) => [e.type, e.key.toString()]),
    [
      ['put', a],
      ['del', a],
      ['put', n],
    ],
  );
});
