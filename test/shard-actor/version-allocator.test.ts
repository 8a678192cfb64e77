/**
 * Tests src/shard-actor/version-allocator.ts on a real shard (MysqlShardStore.reserveVersionBlock
 * against a real MySQL): versions come from reserved blocks (one reservation per block, handed out
 * consecutively, concurrent takes while a block is being reserved share one reservation), never
 * repeat (also across two allocators on one shard, as with two gateways), only grow, and are above
 * `above` and, when kv_seq has moved past the block, above every version issued elsewhere.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql2, { type RowDataPacket } from 'mysql2/promise';
import { MysqlShardStore } from '../../src/shard-actor/mysql-store/mysql-shard-store';
import { VersionAllocator, type Versions } from '../../src/shard-actor/version-allocator';
import { startTestServer, type TestServer } from '../helpers/mysql';

let mysql: TestServer;
before(async () => {
  mysql = await startTestServer();
});
after(() => mysql?.stop());

/** A fresh shard (its own database, schema made by the store) and the store on it. */
async function shardStore(url?: string): Promise<{ url: string; store: MysqlShardStore }> {
  const db = url ?? (await mysql.createDatabase());
  const store = new MysqlShardStore({ url: db, poolSize: 2, queryTimeoutMs: 10_000 });
  after(() => store.close());
  await store.init();
  await store.bootstrap({ shard: 0, shardCount: 1, slotRanges: '[[0,16383]]' });
  return { url: db, store };
}

/** An allocator on `store` that records every reservation it makes: [size, above, start]. */
function recorded(store: MysqlShardStore, blockSize: number): { allocator: VersionAllocator; reservations: Array<[number, number, number]> } {
  const reservations: Array<[number, number, number]> = [];
  const allocator = new VersionAllocator(async (size, above) => {
    const start = await store.reserveVersionBlock(size, above);
    reservations.push([size, above, start]);
    return start;
  }, blockSize);
  return { allocator, reservations };
}

/** kv_seq's counter: the end of the newest block any allocator reserved. */
async function seqCounter(url: string): Promise<number> {
  const conn = await mysql2.createConnection({ uri: url });
  try {
    const [rows] = await conn.query<RowDataPacket[]>('SELECT next_version FROM kv_seq WHERE id = 1');
    return Number(rows[0].next_version);
  } finally {
    await conn.end();
  }
}

test('versions come from blocks: one reservation per block, handed out consecutively, synchronously inside a block', async () => {
  const { url, store } = await shardStore();
  const { allocator, reservations } = recorded(store, 100);
  const got: Versions[] = [];
  for (let i = 0; i < 250; i++) {
    const v = allocator.take(1, 0);
    // Inside a block no round trip is needed: the result is there at once.
    if (i % 100 !== 0) assert.ok(!(v instanceof Promise), `take ${i} waited though its block had room`);
    got.push(await v);
  }
  assert.equal(reservations.length, 3, 'one reservation per 100 versions');
  for (let i = 1; i < got.length; i++) {
    assert.ok(got[i].first > got[i - 1].first, `version ${got[i].first} after ${got[i - 1].first}`);
    if (i % 100 !== 0) assert.equal(got[i].first, got[i - 1].first + 1, 'versions inside a block are consecutive');
  }
  for (const [b, [size, , start]] of reservations.entries()) {
    assert.equal(size, 100);
    assert.equal(got[b * 100].first, start, 'a block starts where the shard said');
    for (const v of got.slice(b * 100, b * 100 + 100)) assert.equal(v.blockEnd, start + 100, 'blockEnd is the end of the block the version came from');
  }
  assert.equal(await seqCounter(url), got[249].blockEnd, "kv_seq's counter is the newest block's end");
});

test('takes that arrive while a block is being reserved share one reservation and get disjoint versions', async () => {
  const { store } = await shardStore();
  const { allocator, reservations } = recorded(store, 100);
  const counts = Array.from({ length: 40 }, (_, i) => 1 + (i % 3));
  const got = await Promise.all(counts.map((n) => allocator.take(n, 0)));
  assert.equal(reservations.length, 1, 'the waiters re-checked the block the first one reserved');
  const issued = got.flatMap((v, i) => Array.from({ length: counts[i] }, (_, j) => v.first + j));
  assert.equal(new Set(issued).size, issued.length, 'a version was handed out twice');
  assert.equal(
    issued.length,
    counts.reduce((a, b) => a + b),
  );
  assert.ok(Math.max(...issued) < reservations[0][2] + 100);
});

test('a run larger than the block, or than what is left of it, gets a block of its own', async () => {
  const { store } = await shardStore();
  const { allocator, reservations } = recorded(store, 10);
  const a = await allocator.take(8, 0);
  const b = await allocator.take(5, 0); // 2 left in the block: not enough
  assert.ok(b.first >= a.first + 8, `run ${b.first}.. overlaps ${a.first}..${a.first + 7}`);
  const c = await allocator.take(25, 0);
  assert.equal(reservations.length, 3);
  assert.equal(reservations[2][0], 25, 'a run of 25 reserves 25, not the block size');
  assert.ok(c.first >= b.first + 5);
  assert.ok(c.first + 25 <= c.blockEnd);
});

test('versions are above `above`: a row newer than the block makes the allocator reserve above it', async () => {
  const { store } = await shardStore();
  const { allocator, reservations } = recorded(store, 100);
  const first = await allocator.take(1, 0);
  const above = first.first + 5_000; // e.g. a row restored from a backup newer than the counter
  const next = await allocator.take(1, above);
  assert.ok(next.first > above, `version ${next.first} not above ${above}`);
  assert.equal(reservations.length, 2);
  const after1 = await allocator.take(1, 0);
  assert.equal(after1.first, next.first + 1, 'and later versions carry on from there');
});

test('two allocators on one shard (two gateways) never hand out the same version, each only growing', async () => {
  const { url, store: storeA } = await shardStore();
  const { store: storeB } = await shardStore(url);
  const A = recorded(storeA, 7);
  const B = recorded(storeB, 5);
  const issued = new Map<number, string>();
  const last = { A: 0, B: 0 };
  let seed = 42;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const run = async (name: 'A' | 'B', allocator: VersionAllocator): Promise<void> => {
    for (let i = 0; i < 60; i++) {
      const count = 1 + rand(4);
      const v = await allocator.take(count, 0);
      assert.ok(v.first > last[name], `${name}: version ${v.first} after ${last[name]}`);
      for (let j = 0; j < count; j++) {
        const other = issued.get(v.first + j);
        assert.equal(other, undefined, `version ${v.first + j} issued by ${other} and by ${name}`);
        issued.set(v.first + j, name);
      }
      last[name] = v.first + count - 1;
      if (rand(3) === 0) await new Promise((r) => setImmediate(r));
    }
  };
  await Promise.all([run('A', A.allocator), run('B', B.allocator)]);
  assert.ok(A.reservations.length > 1 && B.reservations.length > 1, 'both reserved several blocks');
});

test('when kv_seq has moved past its block (another actor reserved a newer one), a take goes above every version issued', async () => {
  const { url, store: storeA } = await shardStore();
  const { store: storeB } = await shardStore(url);
  const A = recorded(storeA, 1000);
  const B = recorded(storeB, 1000);
  const a1 = await A.allocator.take(1, 0);
  const b1 = await B.allocator.take(1, 0); // B's block lies above A's
  assert.ok(b1.first >= a1.blockEnd);
  // A's block still has room, but B may have issued anything below kv_seq's counter.
  const issuedBelow = await seqCounter(url);
  assert.equal(issuedBelow, b1.blockEnd);
  const a2 = await A.allocator.take(1, 0, issuedBelow);
  assert.ok(a2.first >= issuedBelow, `version ${a2.first} not above what B may have issued (< ${issuedBelow})`);
  assert.equal(A.reservations.length, 2);
  // With the counter still at its own block's end, the block is used as it is.
  const a3 = A.allocator.take(1, 0, await seqCounter(url));
  assert.ok(!(a3 instanceof Promise));
  assert.equal(a3.first, a2.first + 1);
});
