/**
 * Tests hash tags on a new store of 2 shards (protocol/slot-map.ts, the rule kv_shard.hash_rule
 * records): keys with one {tag} whose whole keys hash to both shards are served by the shard of
 * the tag's slot, so MULTI/EXEC, EVAL, MSET and the HTTP txn over them succeed (whole-key hashing
 * refuses them with CROSSSLOT), through two gateways; each row is stored under the tag's slot;
 * untagged keys on two shards are still refused.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type Redis from 'ioredis';
import mysql from 'mysql2/promise';
import { SlotMap, slotOf } from '../../src/protocol/slot-map';
import { connectRedis } from '../helpers/ioredis';
import { onShard0, onShard1 } from '../helpers/shard-keys';
import { startTestStore, type TestStore } from '../helpers/store';

let store: TestStore;
let redis: Redis;
let second: Redis;
let secondBase: string;
before(async () => {
  store = await startTestStore({ shards: 2 });
  const other = await store.startAnotherGateway();
  secondBase = `http://127.0.0.1:${other.port}`;
  redis = await connectRedis(store.server.redisPort!);
  second = await connectRedis(other.redisPort!);
});
after(async () => {
  redis?.disconnect();
  second?.disconnect();
  await store?.close();
});

const map = SlotMap.even(2);

/** `n` keys with the tag {`tag`} whose whole keys hash to both shards (CROSSSLOT without tags). */
function taggedKeys(tag: string, n: number): string[] {
  const keys: string[] = [];
  const wholeShard = (k: string) => map.shardOf(Buffer.from(k), false);
  for (let i = 0; keys.length < n; i++) {
    const k = i % 2 === 0 ? `{${tag}}.f${i}` : `x${i}:{${tag}}`;
    // The second key is one whose whole key is on the other shard than the first's.
    if (keys.length !== 1 || wholeShard(k) !== wholeShard(keys[0])) keys.push(k);
  }
  assert.equal(new Set(keys.map(wholeShard)).size, 2, `the whole keys of ${keys.join(' ')} are on both shards`);
  return keys;
}

/** The shard each key's row is on, and its slot column, read from MySQL. */
async function rowsOf(keys: string[]): Promise<Map<string, { shard: number; slot: number }>> {
  const out = new Map<string, { shard: number; slot: number }>();
  for (const [shard, uri] of store.urls.entries()) {
    const conn = await mysql.createConnection({ uri });
    try {
      const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT k, slot FROM kv WHERE k IN (?)', [keys.map((k) => Buffer.from(k))]);
      for (const r of rows) {
        const k = (r.k as Buffer).toString();
        assert.equal(out.has(k), false, `${k} has one row`);
        out.set(k, { shard, slot: Number(r.slot) });
      }
    } finally {
      await conn.end();
    }
  }
  return out;
}

test('a new store hashes tags, and says so in /v1/slots', async () => {
  const slots = (await (await fetch(`${store.base}/v1/slots`)).json()) as { hash: string; hashTags: boolean };
  assert.equal(slots.hash, 'crc16-xmodem');
  assert.equal(slots.hashTags, true);
});

test('MULTI/EXEC, MSET and WATCH over keys with one tag run on its shard, atomically, seen by another gateway', async () => {
  const [a, b, c, d] = taggedKeys('user1000', 4);
  const res = await redis.multi().set(a, '1').incr(a).set(b, 'x').get(b).exec();
  assert.deepEqual(res, [
    [null, 'OK'],
    [null, 2],
    [null, 'OK'],
    [null, 'x'],
  ]);
  assert.equal(await redis.mset(c, 'cv', d, 'dv'), 'OK');
  assert.deepEqual(await second.mget(a, b, c, d), ['2', 'x', 'cv', 'dv']);
  // WATCH on tagged keys: a write through the other gateway makes EXEC answer nil.
  await redis.watch(a, c);
  await second.set(c, 'changed');
  assert.equal(await redis.multi().set(a, 'lost').exec(), null);
  assert.equal(await second.get(a), '2');
  const rows = await rowsOf([a, b, c, d]);
  const slot = slotOf(Buffer.from(a));
  assert.equal(slot, slotOf(Buffer.from('user1000')));
  for (const k of [a, b, c, d]) assert.deepEqual(rows.get(k), { shard: map.shardOfSlot(slot), slot }, k);
});

test('EVAL over KEYS with one tag runs as one script on the tag’s shard', async () => {
  const [a, b] = taggedKeys('acct:7', 2);
  const script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], ARGV[2])";
  assert.equal(await redis.eval(script, 2, a, b, 'v', '5'), 5);
  assert.equal(await second.eval(script, 2, a, b, 'w', '5'), 10);
  assert.deepEqual(await redis.mget(a, b), ['w', '10']);
});

test('the HTTP transaction over keys with one tag succeeds', async () => {
  const [a, b] = taggedKeys('order-42', 2);
  const r = await fetch(`${secondBase}/v1/txn`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      compare: [{ key: a, exists: false }],
      success: [
        { op: 'put', key: a, value: 'one' },
        { op: 'incr', key: b, by: '3' },
      ],
    }),
  });
  const json = (await r.json()) as { succeeded: boolean; results: Array<{ status?: number; value?: string }> };
  assert.equal(r.status, 200, JSON.stringify(json));
  assert.equal(json.succeeded, true);
  assert.equal(json.results[1].value, '3');
  assert.deepEqual(await redis.mget(a, b), ['one', '3']);
});

test('keys without a common tag on two shards are still refused with CROSSSLOT, nothing written', async () => {
  const [near] = onShard0('ht:near:', 1);
  const far = onShard1('ht:far:');
  await assert.rejects(redis.mset(near, '1', far, '2'), /^ReplyError: CROSSSLOT/);
  // An empty tag ({}) is no tag: the whole key is hashed.
  const emptyTag = (i: number) => `{}ht:${i}`;
  let i = 0;
  while (map.shardOf(Buffer.from(emptyTag(i))) === map.shardOf(Buffer.from(emptyTag(0)))) i++;
  await assert.rejects(redis.mset(emptyTag(0), '1', emptyTag(i), '2'), /^ReplyError: CROSSSLOT/);
  assert.deepEqual(await redis.mget(near, far, emptyTag(0), emptyTag(i)), [null, null, null, null]);
});
