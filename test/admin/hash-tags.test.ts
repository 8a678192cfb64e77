/**
 * Tests switching a store made before hash tags (kv_shard.hash_rule = 0, whole keys) to hash tags
 * with the real `kvsql hashtags enable` (src/admin/hash-tags.ts), on 2 shards of a real MySQL:
 * refused while a gateway is connected (nothing changed); with the gateways stopped, every braced
 * key is served afterwards with its value, version order and TTL, from one row on the shard of its
 * tag's slot, a leftover row of an earlier slot move does not surface, keys with one tag now share
 * a transaction; a second run does nothing; gateways refuse shards that disagree or are switching.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { configFrom } from '../../src/config/config';
import { createLogger, startServer, type Server } from '../../src/gateway/server';
import { SlotMap, slotOf } from '../../src/protocol/slot-map';
import { cliEnv, runCli } from '../helpers/cli';
import { connectRedis } from '../helpers/ioredis';
import { startTestServer, type TestServer } from '../helpers/mysql';

let server: TestServer;
let urls: string[];
const config = configFrom({ port: 0, redisPort: 0, logLevel: process.env.KVSQL_TEST_LOG_LEVEL ?? 'silent' });
const log = createLogger(config.logLevel);
const map = SlotMap.even(2);

before(async () => {
  server = await startTestServer();
  urls = [await server.createDatabase(), await server.createDatabase()];
  // Create the store, then make it one from before hash tags: every shard records whole keys.
  await (await startServer(config, urls, log)).close();
  for (const shard of [0, 1]) await query(shard, 'UPDATE kv_shard SET hash_rule = 0');
});
after(() => server?.stop());

/**
 * One statement on one shard, on a connection of its own: a session left open would count as a
 * gateway for `kvsql hashtags enable`.
 */
async function query(shard: number, sql: string, params: unknown[] = []): Promise<mysql.RowDataPacket[]> {
  const conn = await mysql.createConnection({ uri: urls[shard] });
  try {
    return (await conn.query<mysql.RowDataPacket[]>(sql, params))[0];
  } finally {
    await conn.end();
  }
}

const env = () => cliEnv({ KVSQL_SHARDS: urls.join(',') });
const rules = async () => Promise.all([0, 1].map(async (shard) => Number((await query(shard, 'SELECT hash_rule FROM kv_shard'))[0].hash_rule)));

async function put(base: string, key: string, value: string, ttlSeconds?: number): Promise<void> {
  const r = await fetch(`${base}/v1/kv/${encodeURIComponent(key)}${ttlSeconds ? `?ttl=${ttlSeconds}` : ''}`, { method: 'PUT', body: value });
  assert.ok(r.status === 200 || r.status === 201, `PUT ${key}: ${r.status}`);
}

async function get(base: string, key: string): Promise<{ status: number; value: string; version: string | null }> {
  const r = await fetch(`${base}/v1/kv/${encodeURIComponent(key)}`);
  return { status: r.status, value: await r.text(), version: r.headers.get('etag') };
}

/** Every row of `keys` on every shard: [shard, slot] per key (a key may have several rows). */
async function rowsOf(keys: string[]): Promise<Map<string, Array<[number, number]>>> {
  const out = new Map<string, Array<[number, number]>>();
  for (const shard of [0, 1]) {
    const rows = await query(shard, 'SELECT k, slot FROM kv WHERE k IN (?)', [keys.map((k) => Buffer.from(k))]);
    for (const r of rows) {
      const k = (r.k as Buffer).toString();
      out.set(k, [...(out.get(k) ?? []), [shard, Number(r.slot)]]);
    }
  }
  return out;
}

test('a MySQL user without PROCESS cannot switch: it could not see a running gateway, so nothing changes', async () => {
  const dbs = urls.map((u) => new URL(u).pathname.slice(1));
  await query(0, "CREATE USER IF NOT EXISTS 'kvsql_noproc'@'127.0.0.1' IDENTIFIED BY 'pw'");
  await query(0, "CREATE USER IF NOT EXISTS 'kvsql_noproc'@'localhost' IDENTIFIED BY 'pw'");
  for (const host of ['127.0.0.1', 'localhost']) for (const db of dbs) await query(0, `GRANT ALL PRIVILEGES ON \`${db}\`.* TO 'kvsql_noproc'@'${host}'`);
  const asUser = urls.map((u) => {
    const url = new URL(u);
    url.username = 'kvsql_noproc';
    url.password = 'pw';
    return url.toString();
  });
  const refused = await runCli(['hashtags', 'enable'], cliEnv({ KVSQL_SHARDS: asUser.join(',') }));
  assert.equal(refused.code, 1, refused.out);
  assert.match(refused.out, /lacks the PROCESS privilege.*Nothing was changed/);
  assert.deepEqual(await rules(), [0, 0]);
});

test('an old store is switched to hash tags offline: refused beside a gateway, then every key kept and co-located', async () => {
  let gw: Server | null = await startServer(config, urls, log);
  const base = `http://127.0.0.1:${gw.port}`;
  assert.equal(((await (await fetch(`${base}/v1/slots`)).json()) as { hashTags: boolean }).hashTags, false);
  // Braced keys written under whole-key hashing: a tag's keys are spread over both shards.
  const tagged: string[] = [];
  for (let t = 0; t < 8; t++) for (let i = 0; i < 6; i++) tagged.push(i % 2 === 0 ? `{user${t}}.f${i}` : `s${i}:{user${t}}`);
  const plain = ['plain:1', 'plain:2', 'no{tag', 'empty{}{tag}'];
  for (const k of [...tagged, ...plain]) await put(base, k, `v-${k}`, k.endsWith('f2') ? 3600 : undefined);
  const movers = tagged.filter((k) => map.shardOf(Buffer.from(k), false) !== map.shardOf(Buffer.from(k), true));
  assert.ok(movers.length > 5, 'some keys change shard');
  const redis = await connectRedis(gw.redisPort!);
  await assert.rejects(redis.mset(...tagged.slice(0, 6).flatMap((k) => [k, 'x'])), /CROSSSLOT/, 'whole keys: one tag spans both shards');
  redis.disconnect();
  const before = new Map<string, string | null>();
  for (const k of [...tagged, ...plain]) before.set(k, (await get(base, k)).version);

  // A leftover of an earlier slot move: a row for a key with no live row, on the shard that does
  // not own its whole-key slot (never served) but owns its tag's slot. It must not surface.
  let ghost = '';
  for (let i = 0; ghost === ''; i++) {
    const k = `{ghost${i}}.k`;
    if (map.shardOf(Buffer.from(k), false) === 0 && map.shardOf(Buffer.from(k), true) === 1) ghost = k;
  }
  await query(1, 'INSERT INTO kv (k, v, version, expires_at, slot) VALUES (?, ?, 1, NULL, ?)', [
    Buffer.from(ghost),
    'stale',
    slotOf(Buffer.from(ghost), false),
  ]);
  assert.equal((await get(base, ghost)).status, 404);

  // A gateway is connected: refused, and nothing changed.
  const refused = await runCli(['hashtags', 'enable'], env());
  assert.equal(refused.code, 1, refused.out);
  assert.match(refused.out, /stop every gateway first: \d+ other session\(s\) use the shard databases .*Nothing was changed/);
  assert.deepEqual(await rules(), [0, 0]);
  assert.equal((await get(base, tagged[0])).value, `v-${tagged[0]}`);
  const status = await runCli(['hashtags', 'status'], env());
  assert.equal(status.out, 'shard 0  whole key\nshard 1  whole key\n');

  await gw.close();
  gw = null;
  const done = await runCli(['hashtags', 'enable'], env());
  assert.equal(done.code, 0, done.out);
  assert.match(done.out, new RegExp(`hash tags on: \\d+ braced keys examined, ${movers.length} moved to another shard, \\d+ re-slotted in place, 1 leftovers`));
  assert.deepEqual(await rules(), [1, 1]);
  const seqs = await Promise.all([0, 1].map(async (shard) => Number((await query(shard, 'SELECT next_version FROM kv_seq'))[0].next_version)));
  assert.equal(seqs[0], seqs[1], 'every shard issues versions above every moved row');

  // Every key: one row, on the shard of its slot under hash tags, with that slot.
  const rows = await rowsOf([...tagged, ...plain, ghost]);
  assert.equal(rows.has(ghost), false, 'the leftover is deleted');
  for (const k of [...tagged, ...plain]) {
    const slot = slotOf(Buffer.from(k));
    assert.deepEqual(rows.get(k), [[map.shardOfSlot(slot), slot]], k);
  }

  gw = await startServer(config, urls, log);
  try {
    const after = `http://127.0.0.1:${gw.port}`;
    assert.equal(((await (await fetch(`${after}/v1/slots`)).json()) as { hashTags: boolean }).hashTags, true);
    for (const k of [...tagged, ...plain]) {
      const r = await get(after, k);
      assert.deepEqual([r.status, r.value, r.version], [200, `v-${k}`, before.get(k)], k);
    }
    assert.equal((await get(after, ghost)).status, 404);
    const r2 = await connectRedis(gw.redisPort!);
    try {
      assert.ok((await r2.ttl(tagged[2])) > 3500, 'the TTL moved with its row');
      assert.equal(await r2.mset(...tagged.slice(0, 6).flatMap((k) => [k, 'y'])), 'OK', 'one tag, one shard');
      const res = await r2.multi().incr(`{user0}.n`).get(tagged[1]).exec();
      assert.deepEqual(res, [
        [null, 1],
        [null, 'y'],
      ]);
      // A key re-created on its new shard gets a version above the moved row's.
      const old = BigInt(JSON.parse((await get(after, tagged[3])).version!));
      await r2.del(tagged[3]);
      await put(after, tagged[3], 'again');
      assert.ok(BigInt(JSON.parse((await get(after, tagged[3])).version!)) > old);
    } finally {
      r2.disconnect();
    }
  } finally {
    await gw.close();
  }
  const again = await runCli(['hashtags', 'enable'], env());
  assert.equal(again.code, 0, again.out);
  assert.match(again.out, /the store hashes \{tags\} already/);
});

test('gateways refuse shards that record different rules, or a switch in progress, until enable finishes it', async () => {
  assert.deepEqual(await rules(), [1, 1]);
  await query(1, 'UPDATE kv_shard SET hash_rule = 0');
  await assert.rejects(
    startServer(config, urls, log),
    /refusing to start: the shards do not record one key hashing rule \(shard 0: hash tags; shard 1: whole key\)/,
  );
  // An interrupted `kvsql hashtags enable`: a shard left switching. Its actor refuses it.
  await query(1, 'UPDATE kv_shard SET hash_rule = 2');
  await assert.rejects(startServer(config, urls, log), /switching to hash tags: `kvsql hashtags enable` is moving rows or was interrupted/);
  const slot = await runCli(['slot', '{user1}.x'], env());
  assert.equal(slot.code, 1, slot.out);
  assert.match(slot.out, /do not record one key hashing rule/);
  const done = await runCli(['hashtags', 'enable'], env());
  assert.equal(done.code, 0, done.out);
  assert.deepEqual(await rules(), [1, 1]);
  const gw = await startServer(config, urls, log);
  await gw.close();
  const slotNow = await runCli(['slot', '{user1}.x'], env());
  assert.equal(slotNow.code, 0, slotNow.out);
  assert.match(slotNow.out, new RegExp(`^slot ${slotOf(Buffer.from('user1'))}\\nshard ${map.shardOf(Buffer.from('user1'))} `));
});
