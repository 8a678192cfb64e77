/**
 * Tests the Redis door's counters, string and TTL commands past GET/SET
 * (src/gateway/resp/string-commands.ts, the actor's incr/append/getdel/getex ops) with ioredis, as
 * applications call them: Redis's replies and exact error texts, TTLs kept or set, and increments
 * through two gateways on the same shards with none lost.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Redis from 'ioredis';
import { startTestStore, type TestStore } from '../helpers/store';

let store: TestStore;
let redis: Redis;
let second: Redis;
before(async () => {
  store = await startTestStore({ shards: 2 });
  const other = await store.startAnotherGateway();
  redis = new Redis({ port: store.server.redisPort!, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
  second = new Redis({ port: other.redisPort!, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
  await redis.connect();
  await second.connect();
});
after(async () => {
  redis?.disconnect();
  second?.disconnect();
  await store?.close();
});

test('INCR, DECR, INCRBY, DECRBY: create at 0, keep the TTL, answer integers past 2^53', async () => {
  assert.equal(await redis.incr('c:a'), 1);
  assert.equal(await redis.incrby('c:a', 41), 42);
  assert.equal(await redis.decr('c:a'), 41);
  assert.equal(await redis.decrby('c:a', 50), -9);
  assert.equal(await redis.get('c:a'), '-9');
  await redis.set('c:ttl', '10', 'EX', 100);
  assert.equal(await redis.incr('c:ttl'), 11);
  const ttl = await redis.ttl('c:ttl');
  assert.ok(ttl > 90 && ttl <= 100, `INCR keeps the TTL, got ${ttl}`);
  await redis.set('c:big', '9007199254740993');
  // ioredis parses an integer reply into a Number: 18014398509481986 arrives as 2^54, the nearest double; GET below checks the exact value.
  assert.equal(await redis.call('INCRBY', 'c:big', '9007199254740993'), 2 ** 54);
  assert.equal(await redis.get('c:big'), '18014398509481986', 'exact past 2^53');
});

test('counter errors are Redis’s own texts and write nothing', async () => {
  await redis.set('c:text', 'abc');
  await assert.rejects(redis.incr('c:text'), /^ReplyError: ERR value is not an integer or out of range$/);
  for (const bad of [' 1', '+1', '01', '-0', '1.5', '']) {
    await redis.set('c:bad', bad);
    await assert.rejects(redis.incr('c:bad'), /ERR value is not an integer or out of range/, JSON.stringify(bad));
  }
  await redis.set('c:max', '9223372036854775807');
  await assert.rejects(redis.incr('c:max'), /^ReplyError: ERR increment or decrement would overflow$/);
  assert.equal(await redis.get('c:max'), '9223372036854775807');
  await redis.set('c:min', '-9223372036854775808');
  await assert.rejects(redis.decr('c:min'), /ERR increment or decrement would overflow/);
  await assert.rejects(redis.call('INCRBY', 'c:a', 'x'), /ERR value is not an integer or out of range/);
  await assert.rejects(redis.call('DECRBY', 'c:a', '-9223372036854775808'), /ERR decrement would overflow/);
  await assert.rejects(redis.call('INCR'), /ERR wrong number of arguments for 'incr' command/);
  assert.equal(await redis.get('c:text'), 'abc');
});

test('INCRBYFLOAT prints as Redis does and refuses what is not a number', async () => {
  await redis.set('f:a', '10.50');
  assert.equal(await redis.incrbyfloat('f:a', 0.1), '10.6');
  assert.equal(await redis.incrbyfloat('f:a', -5), '5.6');
  await redis.set('f:b', '5.0e3');
  assert.equal(await redis.call('INCRBYFLOAT', 'f:b', '2.0e2'), '5200');
  assert.equal(await redis.call('INCRBYFLOAT', 'f:c', '0.1'), '0.1');
  assert.equal(await redis.call('INCRBYFLOAT', 'f:c', '0.2'), '0.3');
  await redis.set('f:text', 'x');
  await assert.rejects(redis.incrbyfloat('f:text', 1), /^ReplyError: ERR value is not a valid float$/);
  await assert.rejects(redis.call('INCRBYFLOAT', 'f:a', 'abc'), /ERR value is not a valid float/);
  await redis.set('f:huge', '1e308');
  await assert.rejects(redis.call('INCRBYFLOAT', 'f:huge', '1e308'), /ERR increment would produce NaN or Infinity/);
});

test('APPEND, STRLEN, GETRANGE, GETDEL, GETSET, SETNX, SETEX, PSETEX, TYPE, TIME', async () => {
  assert.equal(await redis.append('s:a', 'Hello'), 5);
  assert.equal(await redis.append('s:a', ' World'), 11);
  assert.equal(await redis.get('s:a'), 'Hello World');
  assert.equal(await redis.strlen('s:a'), 11);
  assert.equal(await redis.strlen('s:none'), 0);
  assert.equal(await redis.getrange('s:a', 0, 4), 'Hello');
  assert.equal(await redis.getrange('s:a', -5, -1), 'World');
  assert.equal(await redis.getrange('s:a', 5, 100), ' World');
  assert.equal(await redis.getrange('s:a', 10, 2), '');
  assert.equal(await redis.type('s:a'), 'string');
  assert.equal(await redis.type('s:none'), 'none');
  assert.equal(await redis.getdel('s:a'), 'Hello World');
  assert.equal(await redis.getdel('s:a'), null);
  assert.equal(await redis.exists('s:a'), 0);
  assert.equal(await redis.getset('s:g', 'one'), null);
  assert.equal(await redis.getset('s:g', 'two'), 'one');
  assert.equal(await redis.setnx('s:n', '1'), 1);
  assert.equal(await redis.setnx('s:n', '2'), 0);
  assert.equal(await redis.get('s:n'), '1');
  assert.equal(await redis.setex('s:e', 100, 'v'), 'OK');
  assert.ok((await redis.ttl('s:e')) > 90);
  assert.equal(await redis.psetex('s:p', 100_000, 'v'), 'OK');
  assert.ok((await redis.pttl('s:p')) > 90_000);
  await assert.rejects(redis.setex('s:e', 0, 'v'), /ERR invalid expire time in 'setex' command/);
  const [sec, usec] = (await redis.time()).map(Number);
  assert.ok(Math.abs(Number(sec) - Date.now() / 1000) < 5 && Number(usec) < 1_000_000);
});

test('GETEX sets, clears or keeps the TTL; EXAT in the past deletes and answers the value', async () => {
  await redis.set('x:a', 'v');
  assert.equal(await redis.getex('x:a', 'EX', 100), 'v');
  assert.ok((await redis.ttl('x:a')) > 90);
  assert.equal(await redis.getex('x:a'), 'v');
  assert.ok((await redis.ttl('x:a')) > 90, 'no option: TTL unchanged');
  assert.equal(await redis.getex('x:a', 'PERSIST'), 'v');
  assert.equal(await redis.ttl('x:a'), -1);
  assert.equal(await redis.getex('x:a', 'PXAT', Date.now() + 100_000), 'v');
  assert.ok((await redis.pttl('x:a')) > 90_000);
  assert.equal(await redis.getex('x:a', 'EXAT', 1), 'v');
  assert.equal(await redis.exists('x:a'), 0);
  assert.equal(await redis.getex('x:none', 'EX', 10), null);
  await assert.rejects(redis.call('GETEX', 'x:a', 'EX', '10', 'PERSIST'), /ERR syntax error/);
});

test('EXPIRE NX/XX/GT/LT, EXPIREAT, PEXPIREAT, EXPIRETIME, SET EXAT/PXAT', async () => {
  await redis.set('t:a', 'v');
  assert.equal(await redis.call('EXPIRE', 't:a', '100', 'XX'), 0, 'XX: no TTL yet');
  assert.equal(await redis.call('EXPIRE', 't:a', '100', 'GT'), 0, 'GT: no TTL counts as infinite');
  assert.equal(await redis.call('EXPIRE', 't:a', '100', 'NX'), 1);
  assert.equal(await redis.call('EXPIRE', 't:a', '200', 'NX'), 0);
  assert.equal(await redis.call('EXPIRE', 't:a', '50', 'GT'), 0);
  assert.equal(await redis.call('EXPIRE', 't:a', '200', 'GT'), 1);
  assert.equal(await redis.call('EXPIRE', 't:a', '300', 'LT'), 0);
  assert.equal(await redis.call('EXPIRE', 't:a', '150', 'LT'), 1);
  const ttl = await redis.ttl('t:a');
  assert.ok(ttl > 140 && ttl <= 150, `${ttl}`);
  const at = Math.floor(Date.now() / 1000) + 1000;
  assert.equal(await redis.expireat('t:a', at), 1);
  const et = Number(await redis.call('EXPIRETIME', 't:a'));
  assert.ok(Math.abs(et - at) <= 2, `EXPIRETIME ${et} vs ${at}`);
  assert.ok(Math.abs(Number(await redis.call('PEXPIRETIME', 't:a')) - at * 1000) <= 2000);
  assert.equal(await redis.call('EXPIRETIME', 't:none'), -2);
  await redis.set('t:p', 'v');
  assert.equal(await redis.call('EXPIRETIME', 't:p'), -1);
  assert.equal(await redis.pexpireat('t:p', Date.now() - 1000), 1, 'a past time deletes');
  assert.equal(await redis.exists('t:p'), 0);
  assert.equal(await redis.set('t:s', 'v', 'PXAT', Date.now() + 100_000), 'OK');
  assert.ok((await redis.pttl('t:s')) > 90_000);
  assert.equal(await redis.set('t:s', 'v', 'EXAT', 1), 'OK');
  assert.equal(await redis.exists('t:s'), 0, 'SET with a past EXAT leaves no key');
  await assert.rejects(redis.call('EXPIRE', 't:a', '10', 'GT', 'LT'), /ERR GT and LT options at the same time are not compatible/);
});

test('COMMAND knows the new commands, with their arity', async () => {
  const info = (await redis.call('COMMAND', 'INFO', 'incr', 'expire', 'getex')) as Array<[string, number]>;
  assert.deepEqual(
    info.map((e) => [e[0], e[1]]),
    [
      ['incr', 2],
      ['expire', -3],
      ['getex', -2],
    ],
  );
});

test('INCR through two gateways at once: no increment lost, every reply a distinct count', async () => {
  const perClient = 150;
  const clients = [redis, second, redis.duplicate(), second.duplicate()];
  const replies: number[] = [];
  await Promise.all(
    clients.map(async (c) => {
      const p = c.pipeline();
      for (let i = 0; i < perClient; i++) p.incr('hot:counter');
      for (const [err, n] of (await p.exec())!) {
        assert.equal(err, null);
        replies.push(n as number);
      }
    }),
  );
  for (const c of clients.slice(2)) c.disconnect();
  const total = clients.length * perClient;
  assert.equal(await redis.get('hot:counter'), String(total));
  assert.equal(new Set(replies).size, total, 'each increment saw its own value');
  assert.equal(Math.max(...replies), total);
});

test('GETSET racing through two gateways: each value written is answered as the old value exactly once', async () => {
  await redis.set('race:gs', 'start');
  const olds = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? redis : second).getset('race:gs', `v${i}`)));
  const last = (await redis.get('race:gs'))!;
  // The writes form one chain: every value but the last was replaced exactly once, and 'start' once.
  assert.deepEqual([...olds, last].sort(), ['start', ...Array.from({ length: 40 }, (_, i) => `v${i}`)].sort());
});

test('APPEND and GETDEL racing through two gateways: every append kept, GETDEL answers each value once', async () => {
  await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? redis : second).append('race:log', `${String(i).padStart(2, '0')},`)));
  const log = (await redis.get('race:log'))!;
  assert.equal(log.length, 40 * 3);
  assert.deepEqual(
    log.split(',').filter(Boolean).sort(),
    Array.from({ length: 40 }, (_, i) => String(i).padStart(2, '0')),
  );
  for (let i = 0; i < 20; i++) await redis.set(`race:gd${i}`, String(i));
  const got = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? redis : second).getdel(`race:gd${i % 20}`)));
  for (let i = 0; i < 20; i++) {
    const mine = [got[i], got[i + 20]];
    assert.deepEqual(
      mine.filter((v) => v !== null),
      [String(i)],
      `key ${i}: exactly one GETDEL got the value`,
    );
  }
});
