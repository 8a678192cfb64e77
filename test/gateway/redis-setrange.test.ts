/**
 * Tests SETRANGE on the Redis door (src/gateway/resp/string-commands.ts, protocol/setrange.ts, the
 * actor's setrange op in write-plan.ts) with ioredis: Redis's semantics (overwrite, zero-padding,
 * TTL kept, an empty value that creates nothing), Redis's exact errors and the store's value
 * limit, atomicity under concurrent writers through two gateways, and the same command inside
 * MULTI/EXEC and from a script.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type Redis from 'ioredis';
import { onShard0 } from '../helpers/shard-keys';
import { startRedisPair, type RedisPair } from '../helpers/redis-pair';

/** A small value limit, so the store's limit and Redis's 512 MiB are told apart cheaply. */
const MAX_VALUE = 64 * 1024;

let pair: RedisPair;
let redis: Redis;
let second: Redis;
before(async () => {
  pair = await startRedisPair({ maxValueBytes: MAX_VALUE });
  ({ redis, second } = pair);
});
after(() => pair?.close());

test('SETRANGE overwrites in place, zero-pads a new key and past the end, keeps the TTL', async () => {
  await redis.set('sr:a', 'Hello World', 'EX', 100);
  assert.equal(await redis.setrange('sr:a', 6, 'Redis'), 11);
  assert.equal(await redis.get('sr:a'), 'Hello Redis');
  const ttl = await redis.ttl('sr:a');
  assert.ok(ttl > 90 && ttl <= 100, `the TTL is kept, got ${ttl}`);
  assert.equal(await redis.setrange('sr:new', 6, 'Redis'), 11);
  assert.deepEqual(await redis.getBuffer('sr:new'), Buffer.from('\0\0\0\0\0\0Redis', 'latin1'));
  assert.equal(await redis.ttl('sr:new'), -1);
  assert.equal(await redis.setrange('sr:a', 13, Buffer.from([0xff, 0x00])), 15);
  assert.deepEqual(await redis.getBuffer('sr:a'), Buffer.concat([Buffer.from('Hello Redis\0\0'), Buffer.from([0xff, 0x00])]));
  assert.equal(await second.strlen('sr:a'), 15, 'the other gateway reads what was written');
});

test('SETRANGE with an empty value writes nothing: 0 and no key when absent, the length when present', async () => {
  assert.equal(await redis.setrange('sr:none', 5, ''), 0);
  assert.equal(await redis.exists('sr:none'), 0, 'nothing created');
  assert.equal(await redis.setrange('sr:none', 600 * 1024 * 1024, ''), 0, 'no length check without bytes to write (as Redis)');
  await redis.set('sr:e', 'abc');
  assert.equal(await redis.setrange('sr:e', 10, ''), 3);
  assert.equal(await redis.get('sr:e'), 'abc');
});

test('SETRANGE errors: Redis’s texts for the offset and 512 MiB, the store’s limit past KVSQL_MAX_VALUE_BYTES; nothing written', async () => {
  await redis.set('sr:err', 'abc');
  await assert.rejects(redis.setrange('sr:err', -1, 'x'), /^ReplyError: ERR offset is out of range$/);
  await assert.rejects(redis.call('SETRANGE', 'sr:err', 'x', 'y'), /^ReplyError: ERR value is not an integer or out of range$/);
  await assert.rejects(redis.call('SETRANGE', 'sr:err', '1'), /ERR wrong number of arguments for 'setrange' command/);
  await assert.rejects(redis.setrange('sr:err', 512 * 1024 * 1024, 'x'), /^ReplyError: ERR string exceeds maximum allowed size \(proto-max-bulk-len\)$/);
  await assert.rejects(redis.setrange('sr:err', 512 * 1024 * 1024 - 1, 'x'), /KV_ERR_VALUE_TOO_LARGE/, 'within Redis’s limit, past the store’s');
  await assert.rejects(redis.setrange('sr:err', MAX_VALUE, 'x'), /KV_ERR_VALUE_TOO_LARGE/);
  assert.equal(await redis.get('sr:err'), 'abc');
  assert.equal(await redis.setrange('sr:err', MAX_VALUE - 1, 'x'), MAX_VALUE, 'exactly the limit is accepted');
  await redis.set('sr:text', 'abc');
  assert.equal(await redis.get('sr:text'), 'abc', 'the connection keeps serving');
});

test('SETRANGE is atomic per key: concurrent writers through two gateways lose no byte', async () => {
  const key = 'sr:atomic';
  const n = 64;
  await Promise.all(Array.from({ length: n }, (_, i) => (i % 2 === 0 ? redis : second).setrange(key, i, String.fromCharCode(65 + (i % 26)))));
  const v = await redis.get(key);
  assert.equal(v, Array.from({ length: n }, (_, i) => String.fromCharCode(65 + (i % 26))).join(''));
});

test('SETRANGE inside MULTI/EXEC and from a script (redis.call) behaves the same', async () => {
  const [k, k2] = onShard0('sr:tx:', 2);
  const r = await redis.multi().set(k, 'aaaa').setrange(k, 2, 'XY').get(k).exec();
  assert.deepEqual(r, [
    [null, 'OK'],
    [null, 4],
    [null, 'aaXY'],
  ]);
  assert.deepEqual(
    await redis.eval(
      'local n = redis.call("setrange", KEYS[1], 3, ARGV[1]); return {n, redis.call("get", KEYS[1]), redis.call("setrange", KEYS[2], 0, "")}',
      2,
      k,
      k2,
      'zz',
    ),
    [5, 'aaXzz', 0],
  );
  assert.equal(await redis.exists(k2), 0);
  await assert.rejects(redis.eval('return redis.call("setrange", KEYS[1], -1, "x")', 1, k), /ERR offset is out of range/);
  await assert.rejects(redis.eval(`return redis.call("setrange", KEYS[1], ${MAX_VALUE}, "x")`, 1, k), /KV_ERR_VALUE_TOO_LARGE/);
  await assert.rejects(
    redis.call('EVAL_RO', 'return redis.call("setrange", KEYS[1], 0, "x")', '1', k),
    /Write commands are not allowed from read-only scripts/,
  );
  assert.equal(await second.get(k), 'aaXzz');
});
