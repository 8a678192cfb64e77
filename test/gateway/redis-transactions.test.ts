/**
 * Tests the Redis door's transactions (src/gateway/resp/transactions.ts, the actor's txn op) with
 * ioredis and node-redis, as applications use them: MULTI/EXEC replies, EXECABORT, an error inside
 * EXEC, WATCH answered nil after a write through another gateway or an expiry, MSET and MSETNX
 * all or nothing, CROSSSLOT for keys on two shards; and, under concurrency through two gateways,
 * that no transaction is ever seen half applied and that WATCH loses no update.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Redis from 'ioredis';
import { createClient, WatchError } from 'redis';
import { onShard0, onShard1 } from '../helpers/shard-keys';
import { startTestStore, type TestStore } from '../helpers/store';
import { sleep } from '../helpers/wait';

let store: TestStore;
let redis: Redis;
let second: Redis;
let third: Redis;
before(async () => {
  store = await startTestStore({ shards: 2 });
  const other = await store.startAnotherGateway();
  const connect = async (port: number): Promise<Redis> => {
    const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
    await r.connect();
    return r;
  };
  redis = await connect(store.server.redisPort!);
  second = await connect(other.redisPort!);
  third = await connect(other.redisPort!);
});
after(async () => {
  redis?.disconnect();
  second?.disconnect();
  third?.disconnect();
  await store?.close();
});

test('MULTI/EXEC answers every queued command in order, reads seeing the writes before them', async () => {
  const [a, b] = onShard0('t:basic:', 2);
  const res = await redis.multi().set(a, '1').incr(a).get(a).del(b).set(b, 'x', 'EX', 100).ttl(b).ping().exec();
  assert.deepEqual(res, [
    [null, 'OK'],
    [null, 2],
    [null, '2'],
    [null, 0],
    [null, 'OK'],
    [null, 100],
    [null, 'PONG'],
  ]);
  assert.equal(await second.get(a), '2');
});

test('an error inside EXEC is that command’s reply; the others still apply, as in Redis', async () => {
  const [a, b] = onShard0('t:err:', 2);
  await redis.set(a, 'text');
  const res = await redis.multi().incr(a).set(b, 'ok').exec();
  assert.ok(res![0][0] instanceof Error && /ERR value is not an integer/.test(res![0][0].message));
  assert.deepEqual(res![1], [null, 'OK']);
  assert.equal(await redis.get(b), 'ok');
});

test('a command refused while queued aborts EXEC whole (EXECABORT); nothing is applied', async () => {
  const [a] = onShard0('t:abort:', 1);
  await redis.del(a);
  const r = new Redis({ port: store.server.redisPort!, host: '127.0.0.1', maxRetriesPerRequest: 0 });
  try {
    assert.equal(await r.call('MULTI'), 'OK');
    assert.equal(await r.call('SET', a, '1'), 'QUEUED');
    await assert.rejects(r.call('SET', a), /wrong number of arguments/);
    await assert.rejects(r.call('NOSUCHCOMMAND'), /unknown command/);
    await assert.rejects(r.call('EXEC'), /^ReplyError: EXECABORT Transaction discarded because of previous errors\.$/);
    assert.equal(await r.get(a), null);
    await assert.rejects(r.call('EXEC'), /ERR EXEC without MULTI/);
    await assert.rejects(r.call('DISCARD'), /ERR DISCARD without MULTI/);
    await r.call('MULTI');
    await assert.rejects(r.call('MULTI'), /ERR MULTI calls can not be nested/);
    await assert.rejects(r.call('WATCH', a), /ERR WATCH inside MULTI is not allowed/);
    assert.equal(await r.call('SET', a, '2'), 'QUEUED');
    assert.equal(await r.call('DISCARD'), 'OK');
    assert.equal(await r.get(a), null, 'DISCARD applies nothing');
  } finally {
    r.disconnect();
  }
});

test('WATCH: EXEC answers nil when a watched key was written, deleted or created through another gateway', async () => {
  const [a, b] = onShard0('t:watch:', 2);
  await redis.set(a, '1');
  await redis.del(b);
  // Unchanged: applies.
  await redis.watch(a, b);
  assert.deepEqual(await redis.multi().set(a, '2').exec(), [[null, 'OK']]);
  // Written elsewhere between WATCH and EXEC: nil, nothing applied.
  await redis.watch(a);
  await second.set(a, 'other');
  assert.equal(await redis.multi().set(a, 'mine').exec(), null);
  assert.equal(await redis.get(a), 'other');
  // Created elsewhere (it was absent when watched): nil.
  await redis.watch(b);
  await second.set(b, 'created');
  assert.equal(await redis.multi().set(b, 'mine').exec(), null);
  // Deleted elsewhere: nil.
  await redis.watch(a);
  await second.del(a);
  assert.equal(await redis.multi().set(a, 'mine').exec(), null);
  assert.equal(await redis.get(a), null);
  // EXEC forgets the watches; UNWATCH too.
  await redis.watch(b);
  await redis.unwatch();
  await second.set(b, 'again');
  assert.deepEqual(await redis.multi().set(b, 'mine').exec(), [[null, 'OK']]);
});

test('WATCH: a watched key that expires before EXEC makes EXEC answer nil', async () => {
  const [a] = onShard0('t:watchttl:', 1);
  await redis.set(a, 'v', 'PX', 150);
  await redis.watch(a);
  await sleep(300);
  assert.equal(await redis.multi().set(a, 'mine').exec(), null);
});

test('MSET and MSETNX are all or nothing; keys on two shards are refused with CROSSSLOT, nothing written', async () => {
  const [a, b, c] = onShard0('t:mset:', 3);
  await redis.del(a, b, c);
  assert.equal(await redis.mset(a, '1', b, '2'), 'OK');
  assert.deepEqual(await second.mget(a, b), ['1', '2']);
  assert.equal(await redis.msetnx(b, 'x', c, 'y'), 0, 'b exists: nothing is set');
  assert.equal(await redis.get(c), null);
  assert.equal(await redis.msetnx(c, 'y', c, 'z'), 1);
  assert.equal(await redis.get(c), 'z', 'the last value of a key given twice wins');
  const far = onShard1('t:mset:far:');
  await assert.rejects(redis.mset(a, 'changed', far, 'v'), /^ReplyError: CROSSSLOT Keys in request don't hash to the same shard/);
  assert.equal(await redis.get(a), '1');
  assert.equal(await redis.get(far), null);
  await assert.rejects(redis.multi().set(a, 'x').set(far, 'y').exec(), /CROSSSLOT/);
  assert.equal(await redis.get(a), '1');
});

test('isolation: concurrent transfers through two gateways never show a half-applied transaction', async () => {
  const [a, b] = onShard0('t:iso:', 2);
  await redis.mset(a, '1000', b, '1000');
  let stop = false;
  const transfers = [redis, second].map(async (r) => {
    for (let i = 0; i < 150; i++) await r.multi().decrby(a, 3).incrby(b, 3).exec();
  });
  let reads = 0;
  const reader = (async () => {
    while (!stop) {
      const res = await third.multi().get(a).get(b).exec();
      assert.equal(Number(res![0][1]) + Number(res![1][1]), 2000, `a half-applied transfer was visible: ${JSON.stringify(res)}`);
      reads++;
    }
  })();
  await Promise.all(transfers);
  stop = true;
  await reader;
  assert.deepEqual(await redis.mget(a, b), [String(1000 - 900), String(1000 + 900)]);
  assert.ok(reads > 0);
});

test('WATCH as optimistic locking: no update lost between two gateways (node-redis and ioredis)', async () => {
  const [k] = onShard0('t:cas:', 1);
  await redis.set(k, '0');
  const nr = createClient({ socket: { port: store.server.redisPort!, host: '127.0.0.1' } });
  await nr.connect();
  const ioInc = async (r: Redis): Promise<number> => {
    for (let attempt = 0; ; attempt++) {
      await r.watch(k);
      const v = Number(await r.get(k));
      const res = await r
        .multi()
        .set(k, String(v + 1))
        .exec();
      if (res !== null) return attempt;
    }
  };
  const nrInc = async (): Promise<number> => {
    for (let attempt = 0; ; attempt++) {
      try {
        // A dedicated connection (this loop is its only user), as node-redis's README shows.
        await nr.watch(k);
        const v = Number(await nr.get(k));
        await nr
          .multi()
          .set(k, String(v + 1))
          .exec();
        return attempt;
      } catch (err) {
        if (!(err instanceof WatchError)) throw err;
      }
    }
  };
  const per = 40;
  const loops = [redis, second].map(async (r) => {
    for (let i = 0; i < per; i++) await ioInc(r);
  });
  loops.push(
    (async () => {
      for (let i = 0; i < per; i++) await nrInc();
    })(),
  );
  await Promise.all(loops);
  await nr.quit();
  assert.equal(await redis.get(k), String(3 * per));
});
