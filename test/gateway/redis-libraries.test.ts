/**
 * Tests the Redis door with the libraries applications put on it, used unchanged as their READMEs
 * show: node-redis (the `redis` package: commands, automatic pipelining, counters, scanIterator)
 * and connect-redis with express-session (get, set with a TTL, touch, destroy, length, ids, all,
 * clear).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, type RedisClientType } from 'redis';
import type * as ConnectRedis from 'connect-redis';
import type { SessionData } from 'express-session';
import { startTestStore, type TestStore } from '../helpers/store';

let store: TestStore;
let client: RedisClientType;
let RedisStore: typeof ConnectRedis.RedisStore;
before(async () => {
  // connect-redis is ESM only (exports has no "require"); tsc's CommonJS output would turn a plain
  // import() into require(), so the import is made at run time.
  const esm = new Function('s', 'return import(s)') as (s: string) => Promise<typeof ConnectRedis>;
  ({ RedisStore } = await esm('connect-redis'));
  store = await startTestStore({ shards: 2 });
  client = createClient({ url: `redis://127.0.0.1:${store.server.redisPort}` });
  client.on('error', () => undefined);
  await client.connect();
});
after(async () => {
  await client?.quit();
  await store?.close();
});

test('node-redis: strings, TTLs, counters, and 500 commands pipelined in one tick', async () => {
  assert.equal(await client.set('nr:a', 'v', { expiration: { type: 'EX', value: 100 } }), 'OK');
  assert.equal(await client.get('nr:a'), 'v');
  assert.ok((await client.ttl('nr:a')) > 90);
  assert.equal(await client.incrBy('nr:n', 5), 5);
  assert.equal(await client.decr('nr:n'), 4);
  assert.equal(await client.getDel('nr:n'), '4');
  assert.equal(await client.setNX('nr:nx', '1'), 1);
  assert.equal(await client.setNX('nr:nx', '2'), 0);
  const replies = await Promise.all(Array.from({ length: 500 }, (_, i) => client.incr(`nr:p${i % 5}`)));
  for (let k = 0; k < 5; k++) {
    const mine = replies.filter((_, i) => i % 5 === k);
    assert.deepEqual(
      mine,
      Array.from({ length: 100 }, (_, j) => j + 1),
      'per-key order within a pipeline',
    );
  }
  assert.deepEqual(await client.mGet(['nr:p0', 'nr:none']), ['100', null]);
});

test('node-redis scanIterator lists every key of a prefix once, across shards', async () => {
  const keys = Array.from({ length: 120 }, (_, i) => `scan:${String(i).padStart(3, '0')}`);
  await Promise.all(keys.map((k) => client.set(k, 'x')));
  await client.set('other:1', 'x');
  const seen: string[] = [];
  for await (const batch of client.scanIterator({ MATCH: 'scan:*', COUNT: 25 })) seen.push(...batch);
  assert.deepEqual([...seen].sort(), keys);
});

test('connect-redis with express-session: get, set with TTL, touch, destroy, length, ids, all, clear', async () => {
  const sessions = new RedisStore({ client, prefix: 'sess:' });
  const call = <T>(fn: (cb: (err: unknown, v?: T) => void) => void): Promise<T | undefined> =>
    new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));
  const sess = (user: string): SessionData =>
    ({ cookie: { originalMaxAge: 60_000, expires: new Date(Date.now() + 60_000) } as SessionData['cookie'], user }) as SessionData & { user: string };
  for (const id of ['a', 'b', 'c']) await call((cb) => sessions.set(id, sess(`user-${id}`), cb));
  const got = (await call<SessionData>((cb) => sessions.get('a', cb))) as SessionData & { user: string };
  assert.equal(got.user, 'user-a');
  const ttl = await client.ttl('sess:a');
  assert.ok(ttl > 50 && ttl <= 60, `the session's TTL follows its cookie, got ${ttl}`);
  await call((cb) =>
    sessions.touch('a', { cookie: { originalMaxAge: 120_000, expires: new Date(Date.now() + 120_000) } as SessionData['cookie'] } as SessionData, cb),
  );
  assert.ok((await client.ttl('sess:a')) > 100, 'touch extends the TTL');
  assert.equal(await call<number>((cb) => sessions.length(cb)), 3);
  assert.deepEqual((await call<string[]>((cb) => sessions.ids(cb)))!.sort(), ['a', 'b', 'c']);
  const all = (await call<Array<SessionData & { id: string; user: string }>>((cb) => sessions.all(cb)))!;
  assert.deepEqual(all.map((s) => `${s.id}=${s.user}`).sort(), ['a=user-a', 'b=user-b', 'c=user-c']);
  await call((cb) => sessions.destroy('b', cb));
  assert.equal(await call((cb) => sessions.get('b', cb)), null);
  assert.equal(await call<number>((cb) => sessions.length(cb)), 2);
  await call((cb) => sessions.clear(cb));
  assert.equal(await call<number>((cb) => sessions.length(cb)), 0);
  assert.equal(await client.get('scan:000'), 'x', 'clear removed only the sessions');
});
