/**
 * Tests one shard's key-range scan on a real shard: the plans of STATEMENTS.scanRange (every
 * variant) and countBySlot (EXPLAIN: a range on the primary key read in order, never a filesort of
 * the range; an index-only walk of kv_slot), and ScanLane's page: only live keys of served slots,
 * in byte order, `upTo` when it stopped early, values within the page's byte budget.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql2 from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';
import { MysqlShardStore } from '../../src/shard-actor/mysql-store/mysql-shard-store';
import { STATEMENTS } from '../../src/shard-actor/mysql-store/statements';
import { ScanLane } from '../../src/shard-actor/scan-lane';
import { MAX_PAGE_VALUE_BYTES, type ScanRequest, type ShardPage } from '../../src/protocol/listing';
import { formatSql } from '../../src/shard-actor/sql-format';
import { slotOf } from '../../src/protocol/slot-map';
import { startTestServer, type TestServer } from '../helpers/mysql';

let mysql: TestServer;
let url: string;
let store: MysqlShardStore;
let conn: mysql2.Connection;
/** Keys by whether this shard serves their slot (it is created with slots 0..8191 only). */
const served: string[] = [];
const notServed: string[] = [];

before(async () => {
  mysql = await startTestServer();
  url = await mysql.createDatabase();
  store = new MysqlShardStore({ url, poolSize: 4, queryTimeoutMs: 30_000 });
  await store.init();
  await store.bootstrap({ shard: 0, shardCount: 2, slotRanges: '[[0,8191]]' });
  conn = await mysql2.createConnection({ uri: url, multipleStatements: true });
  const rows: unknown[][] = [];
  for (let i = 0; i < 3000; i++) {
    const k = `p${i % 5}:${String(i).padStart(5, '0')}`;
    const expired = i % 10 === 3;
    if (!expired && k.startsWith('p2:')) (slotOf(Buffer.from(k)) < 8192 ? served : notServed).push(k);
    rows.push([
      Buffer.from(k),
      Buffer.alloc(i % 7 === 0 ? 2000 : 10, 0x76),
      i + 1,
      expired ? Date.now() - 60_000 : i % 4 === 0 ? Date.now() + 3_600_000 : null,
      slotOf(Buffer.from(k)),
    ]);
  }
  await conn.query('INSERT INTO kv (k, v, version, expires_at, slot) VALUES ?', [rows]);
  await conn.query('ANALYZE TABLE kv');
  served.sort();
});
after(async () => {
  await conn?.end();
  await store?.close();
  await mysql?.stop();
});

test('EXPLAIN: every scanRange variant reads a primary-key range in order, without a filesort; countBySlot walks kv_slot alone', async () => {
  for (let variant = 0; variant < 8; variant++) {
    const params: unknown[] = [Buffer.from('p2:')];
    if (variant & 1) params.push(Buffer.from('p2:00100'));
    if (variant & 2) params.push(Buffer.from('p2;'));
    params.push(100);
    const [plan] = await conn.query<RowDataPacket[]>(`EXPLAIN ${formatSql(STATEMENTS.scanRange.sql(variant), params)}`);
    const kv = plan.find((r) => r.table === 'kv')!;
    assert.equal(kv.key, 'PRIMARY', `variant ${variant}: ${JSON.stringify(plan)}`);
    assert.equal(kv.type, 'range', `variant ${variant}: ${JSON.stringify(plan)}`);
    for (const r of plan) assert.doesNotMatch(String(r.Extra), /filesort|temporary/i, `variant ${variant}: ${JSON.stringify(plan)}`);
  }
  const [plan] = await conn.query<RowDataPacket[]>(`EXPLAIN ${STATEMENTS.countBySlot.sql}`);
  const walk = plan.find((r) => r.table === 'kv' && r.key === 'kv_slot')!;
  assert.equal(walk.Extra, 'Using index', JSON.stringify(plan));
});

/** A lane with the actor's part played by a counter of 4 read slots, checked never to go wrong. */
function lane(deadlineMs = 10_000): ScanLane {
  let free = 4;
  const l: ScanLane = new ScanLane(store, 0, deadlineMs, () => true, {
    take: () => (free > 0 ? (free--, true) : false),
    give: () => {
      free++;
      assert.ok(free <= 4);
      l.kick();
    },
  });
  return l;
}
function scan(l: ScanLane, q: ScanRequest): Promise<ShardPage> {
  return new Promise((resolve, reject) =>
    l.submit(q, (a) => ('page' in a ? resolve(a.page) : reject(Object.assign(new Error('error' in a ? a.error.message : '?'), 'error' in a ? a.error : {})))),
  );
}
const text = (ks: Uint8Array[]): string[] => ks.map((k) => Buffer.from(k).toString());

test('a page: live keys of served slots only, in byte order, upTo where it stopped; pages chain to every served key', async () => {
  const l = lane();
  const got: string[] = [];
  let after: Uint8Array | null = null;
  let pages = 0;
  for (;;) {
    const p = await scan(l, { prefix: Buffer.from('p2:'), after, limit: 50, values: false });
    pages++;
    got.push(...text(p.keys));
    if (p.upTo === null) break;
    assert.ok(p.keys.length <= 50);
    after = p.upTo;
  }
  assert.deepEqual(got, served, 'every live key of a served slot, once, in order; no expired key, no key of another slot');
  assert.ok(pages > 5);
  for (const k of notServed) assert.ok(!got.includes(k));
  // The served bitmap says slots 0..8191.
  const p = await scan(l, { prefix: Buffer.from('zz'), after: null, limit: 1, values: false });
  assert.equal(p.keys.length, 0);
  assert.equal(p.upTo, null);
  assert.equal(p.served[0], 0xff);
  assert.equal(p.served[8191 >> 3], 0xff);
  assert.equal(p.served[8192 >> 3], 0);
});

test('values: each live value and expiry; a page of large values stops at the byte budget with upTo', async () => {
  const l = lane();
  const p = await scan(l, { prefix: Buffer.from('p2:'), after: null, limit: 20, values: true });
  assert.equal(p.values!.length, p.keys.length);
  for (let i = 0; i < p.keys.length; i++) {
    const n = Number(Buffer.from(p.keys[i]).toString().slice(3));
    assert.equal(p.values![i].length, n % 7 === 0 ? 2000 : 10);
    assert.equal(p.expiresAt![i] === null, n % 4 !== 0);
  }
  // 3 MB values in served slots: the budget (4 MiB) holds one; the page stops after it.
  const big = Buffer.alloc(3 * 1024 * 1024, 0x42);
  const bigKeys: string[] = [];
  for (let i = 0; bigKeys.length < 3; i++) if (slotOf(Buffer.from(`big:${i}`)) < 8192) bigKeys.push(`big:${i}`);
  bigKeys.sort();
  for (const [i, k] of bigKeys.entries())
    await conn.query('INSERT INTO kv (k, v, version, expires_at, slot) VALUES (?, ?, ?, NULL, ?)', [Buffer.from(k), big, 100_000 + i, slotOf(Buffer.from(k))]);
  const q = await scan(l, { prefix: Buffer.from('big:'), after: null, limit: 10, values: true });
  assert.deepEqual(text(q.keys), bigKeys.slice(0, 1));
  assert.equal(q.values![0].length, big.length);
  assert.deepEqual(Buffer.from(q.upTo!).toString(), bigKeys[0], 'stopped early after the first: more may follow');
  const r = await scan(l, { prefix: Buffer.from('big:'), after: q.upTo, limit: 10, values: true });
  assert.deepEqual(text(r.keys), bigKeys.slice(1, 2));
  assert.ok(MAX_PAGE_VALUE_BYTES < 2 * big.length);
});

test('a slot moved away is not listed; the same rows are again once the served set says so (epoch)', async () => {
  const l = lane();
  const k = served[0];
  const slot = slotOf(Buffer.from(k));
  const before = await scan(l, { prefix: Buffer.from(k), after: null, limit: 10, values: false });
  assert.deepEqual(text(before.keys), [k]);
  // As the mover's flip does: the slot moves away, and the epoch is bumped in the same transaction.
  await conn.query('START TRANSACTION; UPDATE kv_slots SET state = 4, peer = 1 WHERE slot = ?; UPDATE kv_slots_epoch SET n = n + 1 WHERE id = 1; COMMIT', [
    slot,
  ]);
  const moved = await scan(l, { prefix: Buffer.from(k), after: null, limit: 10, values: false });
  assert.deepEqual(text(moved.keys), []);
  assert.equal((moved.served[slot >> 3] >> (slot & 7)) & 1, 0);
  await conn.query('START TRANSACTION; UPDATE kv_slots SET state = 1, peer = NULL WHERE slot = ?; UPDATE kv_slots_epoch SET n = n + 1 WHERE id = 1; COMMIT', [
    slot,
  ]);
  const back = await scan(l, { prefix: Buffer.from(k), after: null, limit: 10, values: false });
  assert.deepEqual(text(back.keys), [k]);
});

test('count: live keys of served slots (expired rows not yet reaped are not counted)', async () => {
  const l = lane();
  const [rows] = await conn.query<RowDataPacket[]>(`SELECT k FROM kv WHERE expires_at IS NULL OR expires_at > ${Date.now()}`);
  const want = rows.filter((r) => slotOf(r.k as Buffer) < 8192).length;
  const got = await new Promise<number>((resolve, reject) => l.submit(null, (a) => ('count' in a ? resolve(a.count) : reject(new Error(JSON.stringify(a))))));
  assert.equal(got, want);
});

test("a scan waits for one of the actor's read slots; one that gets none by its deadline is answered 503", async () => {
  let free = 0;
  const l: ScanLane = new ScanLane(store, 0, 300, () => true, {
    take: () => (free > 0 ? (free--, true) : false),
    give: () => {
      free++;
      l.kick();
    },
  });
  const q: ScanRequest = { prefix: Buffer.from(served[0]), after: null, limit: 5, values: false };
  const t0 = Date.now();
  await assert.rejects(scan(l, q), { code: 'KV_ERR_SHARD_UNAVAILABLE' });
  const waited = Date.now() - t0;
  assert.ok(waited >= 250 && waited < 2000, `answered after ${waited} ms`);
  const p = scan(l, q);
  free = 1;
  l.kick();
  assert.deepEqual(text((await p).keys), [served[0]]);
  await new Promise((r) => setImmediate(r)); // the slot is given back right after the answer
  assert.equal(free, 1, 'the slot was given back');
});
