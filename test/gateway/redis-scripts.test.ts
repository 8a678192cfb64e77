/**
 * Tests the Redis door's scripts (src/gateway/resp/scripts.ts, the actor's Lua sandbox and
 * script-session.ts) as applications use them: EVAL and EVALSHA with ioredis (defineCommand's
 * NOSCRIPT fallback), Redis's conversions, errors and refusals (an undeclared key, a write from
 * EVAL_RO, keys on two shards, a script over its time budget rolled back); redlock v5 (acquire,
 * contention, extend, release) and rate-limiter-flexible's RateLimiterRedis, unchanged, through
 * two gateways; and a counter script that loses no increment under concurrency.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type Redis from 'ioredis';
import Redlock from 'redlock';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { onShard0, onShard1 } from '../helpers/shard-keys';
import { startRedisPair, type RedisPair } from '../helpers/redis-pair';

let pair: RedisPair;
let redis: Redis;
let second: Redis;
before(async () => {
  pair = await startRedisPair();
  ({ redis, second } = pair);
});
after(() => pair?.close());

test('EVAL: Redis’s conversions both ways, KEYS and ARGV, writes applied', async () => {
  const [k] = onShard0('s:conv:', 1);
  assert.equal(await redis.eval('return 3.99', 0), 3, 'numbers are truncated to integers');
  assert.deepEqual(await redis.eval('return {1, "two", {3}, nil, 5}', 0), [1, 'two', [3]], 'an array stops at the first nil');
  assert.equal(await redis.eval("return {ok='FINE'}", 0), 'FINE');
  await assert.rejects(redis.eval("return {err='MYERR broken'}", 0), /^ReplyError: MYERR broken/);
  assert.equal(await redis.eval('return redis.call("set", KEYS[1], ARGV[1])', 1, k, 'v1'), 'OK');
  assert.equal(await redis.eval('return redis.call("get", KEYS[1])', 1, k), 'v1');
  assert.equal(await redis.eval('return redis.call("get", KEYS[1]) == false', 1, onShard0('s:conv:none:', 1)[0]), 1, 'a missing key is false in Lua');
  assert.deepEqual(
    await redis.eval(
      'local a = redis.call("incrby", KEYS[1], 5); local b = redis.call("incr", KEYS[1]); return {a, b, redis.call("strlen", KEYS[1])}',
      1,
      onShard0('s:conv:n:', 1)[0],
    ),
    [5, 6, 1],
  );
  // pcall hands the error to the script as a table; returned, it is the script's error reply.
  assert.equal(await redis.eval('local e = redis.pcall("incr", KEYS[1]); return e.err', 1, k), 'ERR value is not an integer or out of range');
  await assert.rejects(redis.eval('return redis.pcall("incr", KEYS[1])', 1, k), /^ReplyError: ERR value is not an integer/);
  assert.equal(await second.get(k), 'v1');
});

test('EVALSHA: NOSCRIPT until loaded on that gateway; ioredis defineCommand falls back to EVAL', async () => {
  const [k] = onShard0('s:sha:', 1);
  const sha = (await redis.script('LOAD', 'return redis.call("get", KEYS[1])')) as string;
  assert.match(sha, /^[0-9a-f]{40}$/);
  assert.deepEqual(await redis.script('EXISTS', sha, '0'.repeat(40)), [1, 0]);
  await redis.set(k, 'x');
  assert.equal(await redis.evalsha(sha, 1, k), 'x');
  await assert.rejects(second.evalsha(sha, 1, k), /^ReplyError: NOSCRIPT No matching script\. Please use EVAL\.$/);
  second.defineCommand('getViaScript', { numberOfKeys: 1, lua: 'return redis.call("get", KEYS[1])' });
  assert.equal(await (second as Redis & { getViaScript(k: string): Promise<string> }).getViaScript(k), 'x');
  assert.equal(await redis.script('FLUSH'), 'OK');
  await assert.rejects(redis.evalsha(sha, 1, k), /NOSCRIPT/);
});

test('refusals: an undeclared key, a write from EVAL_RO, keys on two shards, bad numkeys', async () => {
  const [k, other] = onShard0('s:ref:', 2);
  await assert.rejects(redis.eval('return redis.call("get", KEYS[1] .. "x")', 1, k), /not in its KEYS/);
  await assert.rejects(redis.call('EVAL_RO', 'return redis.call("set", KEYS[1], "x")', '1', k), /Write commands are not allowed from read-only scripts/);
  assert.equal(await redis.call('EVAL_RO', 'return redis.call("exists", KEYS[1])', '1', other), 0);
  await assert.rejects(redis.eval('return 1', 2, k, onShard1('s:ref:far:')), /^ReplyError: CROSSSLOT/);
  await assert.rejects(redis.call('EVAL', 'return 1', '-1'), /Number of keys can't be negative/);
  await assert.rejects(redis.call('EVAL', 'return 1', '2', 'a'), /Number of keys can't be greater than number of args/);
  await assert.rejects(redis.eval('return redis.call("nosuch")', 0), /Unknown Redis command called from script/);
  await assert.rejects(redis.eval('this is not lua', 0), /ERR Error compiling script/);
});

test('a script over its time budget is stopped and leaves nothing; a script that raises keeps earlier writes (as Redis)', async () => {
  const [k] = onShard0('s:budget:', 1);
  await redis.set(k, 'before');
  await assert.rejects(redis.eval('redis.call("set", KEYS[1], "during"); while true do end', 1, k), /ERR Script stopped: it ran past its time budget/);
  assert.equal(await redis.get(k), 'before', 'rolled back');
  await assert.rejects(redis.eval('redis.call("set", KEYS[1], "kept"); error("boom")', 1, k), /boom/);
  assert.equal(await redis.get(k), 'kept');
  // The shard keeps serving, and the key is free again.
  assert.equal(await redis.eval('return redis.call("get", KEYS[1])', 1, k), 'kept');
});

test('GETEX from a script: EX, PERSIST, PXAT, an EXAT already past deletes and answers the value; EVAL_RO refuses it', async () => {
  const [k] = onShard0('s:getex:', 1);
  await redis.set(k, 'v');
  const getex = (...opts: Array<string | number>) => redis.eval(`return redis.call('getex', KEYS[1], unpack(ARGV))`, 1, k, ...opts);
  assert.equal(await getex('EX', 100), 'v');
  assert.ok((await redis.pttl(k)) > 90_000);
  assert.equal(await getex('PERSIST'), 'v');
  assert.equal(await redis.pttl(k), -1);
  assert.equal(await getex('PXAT', Date.now() + 50_000), 'v');
  assert.ok((await redis.pttl(k)) > 40_000);
  assert.equal(await getex(), 'v', 'no option: a plain GET');
  await assert.rejects(getex('EX', 10, 'PERSIST'), /ERR syntax error/);
  await assert.rejects(getex('EX', 'x'), /ERR value is not an integer or out of range/);
  await assert.rejects(getex('EX', 0), /ERR invalid expire time in 'getex' command/);
  await assert.rejects(redis.call('EVAL_RO', "return redis.call('getex', KEYS[1], 'PERSIST')", 1, k), /Write commands are not allowed from read-only scripts/);
  assert.equal(await getex('EXAT', 1), 'v');
  assert.equal(await redis.exists(k), 0);
  assert.equal(await getex('EX', 10), null, 'a missing key');
});

test('SET with an EXAT already past from a script deletes the key, as the door does; with GET or NX it is refused', async () => {
  const [k] = onShard0('s:setpast:', 1);
  await redis.set(k, 'old');
  const set = (...opts: Array<string | number>) => redis.eval(`return redis.call('set', KEYS[1], 'new', unpack(ARGV))`, 1, k, ...opts);
  await assert.rejects(set('EXAT', 1, 'GET'), /ERR kvsql does not support SET with NX, XX or GET and an EXAT\/PXAT in the past/);
  assert.equal(await redis.get(k), 'old', 'refused: nothing written');
  assert.equal(await set('PXAT', Date.now() - 1000), 'OK');
  assert.equal(await redis.exists(k), 0, 'set and expired at once: never stored with a TTL');
  await redis.set(k, 'door');
  assert.equal(await redis.set(k, 'x', 'EXAT', 1), 'OK');
  assert.equal(await redis.exists(k), 0, 'the door answers the same');
  // EXPIRE with a time past and a condition: refused by both, the key kept.
  await redis.set(k, 'kept', 'PX', 60_000);
  const refusedPast = /ERR kvsql does not support EXPIRE with NX, XX, GT or LT and a time in the past/;
  await assert.rejects(redis.eval(`return redis.call('expire', KEYS[1], -1, 'NX')`, 1, k), refusedPast);
  await assert.rejects(redis.call('EXPIRE', k, -1, 'NX'), refusedPast);
  assert.equal(await redis.get(k), 'kept');
});

test('a counter script from two gateways loses no increment', async () => {
  const [k] = onShard0('s:count:', 1);
  const lua = 'local v = tonumber(redis.call("get", KEYS[1]) or "0"); redis.call("set", KEYS[1], v + 1); return v + 1';
  await Promise.all(
    [redis, second].map(async (r) => {
      for (let i = 0; i < 100; i++) await r.eval(lua, 1, k);
    }),
  );
  assert.equal(await redis.get(k), '200');
});

test('redlock v5: acquire, contention, extend, release, through two gateways', async () => {
  const [resource] = onShard0('lock:', 1);
  const a = new Redlock([redis], { retryCount: 0 });
  const b = new Redlock([second], { retryCount: 0 });
  const lock = await a.acquire([resource], 2000);
  await assert.rejects(b.acquire([resource], 2000), /unable to achieve a quorum|ExecutionError/i, 'held elsewhere');
  const extended = await lock.extend(5000);
  const pttl = await second.pttl(resource);
  assert.ok(pttl > 3000 && pttl <= 5000, `extended to 5 s, pttl ${pttl}`);
  await extended.release();
  assert.equal(await redis.exists(resource), 0);
  const again = await b.acquire([resource], 1000);
  await again.release();
});

test('rate-limiter-flexible RateLimiterRedis: points counted across two gateways, then refused', async () => {
  const opts = { points: 5, duration: 60, keyPrefix: `rl${Date.now()}` };
  const one = new RateLimiterRedis({ storeClient: redis, ...opts });
  const two = new RateLimiterRedis({ storeClient: second, ...opts });
  const results = [];
  for (let i = 0; i < 5; i++) results.push(await (i % 2 === 0 ? one : two).consume('user1'));
  assert.deepEqual(
    results.map((r) => r.remainingPoints),
    [4, 3, 2, 1, 0],
  );
  await assert.rejects(
    (async () => one.consume('user1'))(),
    (r: { remainingPoints?: number; msBeforeNext?: number }) => r.remainingPoints === 0 && r.msBeforeNext! > 0,
  );
  const fresh = await two.consume('user2');
  assert.equal(fresh.remainingPoints, 4);
  assert.ok(fresh.msBeforeNext > 59_000 && fresh.msBeforeNext <= 60_000);
});

test('time arguments: the Redis door and redis.call give the same error texts (Redis’s, and kvsql’s 10-year limit)', async () => {
  const [k] = onShard0('s:times:', 1);
  await redis.set(k, 'v');
  // The error redis.pcall hands the script, for the command with KEYS[1] as its first argument.
  const script = 'local r = redis.pcall(ARGV[1], KEYS[1], unpack(ARGV, 2)); if type(r) == "table" and r.err then return r.err end; return "no error"';
  const invalid = (cmd: string) => `ERR invalid expire time in '${cmd}' command`;
  const notInteger = 'ERR value is not an integer or out of range';
  const tooLong = /^ERR KV_ERR_BAD_TTL ttl must be at most 10 years/;
  const cases: Array<[string[], string | RegExp]> = [
    [['set', 'v', 'EX', '0'], invalid('set')],
    [['set', 'v', 'PX', '-5'], invalid('set')],
    [['set', 'v', 'EXAT', '0'], invalid('set')],
    [['set', 'v', 'EX', 'soon'], notInteger],
    [['set', 'v', 'EX', '9223372036854775807'], invalid('set')],
    [['set', 'v', 'EX', '999999999999'], tooLong],
    [['set', 'v', 'PXAT', '99999999999999999'], tooLong],
    [['setex', '0', 'v'], invalid('setex')],
    [['psetex', '1.5', 'v'], notInteger],
    [['psetex', '999999999999999', 'v'], tooLong],
    [['expire', 'abc'], notInteger],
    [['expire', '9223372036854775807'], invalid('expire')],
    [['pexpire', '9223372036854775807'], invalid('pexpire')],
    [['expire', '999999999999'], tooLong],
    [['pexpireat', '99999999999999999'], tooLong],
    [['expire', 'abc', 'SOMETIMES'], 'ERR Unsupported option SOMETIMES'],
  ];
  for (const [args, want] of cases) {
    const [cmd, ...rest] = args;
    const door = await redis.call(cmd, k, ...rest).then(
      () => 'no error',
      (e: Error) => e.message,
    );
    const inScript = (await redis.eval(script, 1, k, cmd, ...rest)) as string;
    const what = `${cmd} ${rest.join(' ')}`;
    if (typeof want === 'string') assert.equal(door, want, `door: ${what}`);
    else assert.match(door, want, `door: ${what}`);
    assert.equal(inScript, door, `script: ${what}`);
  }
  assert.equal(await redis.get(k), 'v', 'nothing was written or expired');
  assert.equal(await redis.ttl(k), -1);
});
