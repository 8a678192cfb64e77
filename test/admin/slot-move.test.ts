/**
 * Slot moves while the store serves: under a mixed load through two gateways, add a third shard
 * and rebalance, then drain one; the mover is interrupted mid-copy and mid-fence and run again; a
 * gateway started with the old shard list finds the new shard. Checked against an exact record of
 * acknowledged writes, and against the shards' rows (one owner per slot, no stray rows, expired
 * keys deleted, versions only grow).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { RowDataPacket } from 'mysql2/promise';
import { startTestStore, type TestStore } from '../helpers/store';
import { HttpClient } from '../helpers/http-client';
import { KvLoad } from '../helpers/kv-load';
import { ShardSet, openPool } from '../../src/admin/shard-set';
import { planRebalance } from '../../src/admin/rebalance';
import { runUnits } from '../../src/admin/commands';
import { DEFAULT_MOVE_OPTIONS } from '../../src/admin/slot-mover';
import { SLOT_COUNT, SLOT_OWNED, SLOT_MOVED, slotOf } from '../../src/protocol/slot-map';
import type { Server } from '../../src/gateway/server';
import { spawn } from 'node:child_process';
import { CLI, cliEnv } from '../helpers/cli';
import { sleep, waitFor } from '../helpers/wait';

let store: TestStore;
let second: Server;
let c1: HttpClient;
let c2: HttpClient;
let newUrl: string;
const noReport = () => undefined;
const SMALL_PAGES = { ...DEFAULT_MOVE_OPTIONS, pageRows: 100 };

before(async () => {
  store = await startTestStore({ shards: 2 });
  second = await store.startAnotherGateway();
  c1 = new HttpClient(store.port);
  c2 = new HttpClient(second.port);
  newUrl = await store.mysql.createDatabase();
});
after(async () => {
  c1?.close();
  c2?.close();
  await store?.close();
});

async function withSet<T>(urls: string[], fn: (set: ShardSet) => Promise<T>): Promise<T> {
  const set = await ShardSet.open(urls);
  try {
    await set.lockMovers();
    return await fn(set);
  } finally {
    await set.close();
  }
}

/** Every slot served by exactly one shard, nothing mid-move, and no row outside its shard's slots. */
async function checkShards(urls: string[]): Promise<Map<number, number>> {
  const servedBy = new Int32Array(SLOT_COUNT).fill(-1);
  const counts = new Map<number, number>();
  for (const url of urls) {
    const pool = openPool(url);
    try {
      const [[id]] = await pool.query<RowDataPacket[]>('SELECT shard_index FROM kv_shard');
      const [rows] = await pool.query<RowDataPacket[]>('SELECT slot, state FROM kv_slots');
      for (const r of rows) {
        assert.ok(r.state === SLOT_OWNED || r.state === SLOT_MOVED, `slot ${r.slot} on shard ${id.shard_index} left in state ${r.state}`);
        if (r.state === SLOT_OWNED) {
          assert.equal(servedBy[r.slot], -1, `slot ${r.slot} owned twice`);
          servedBy[r.slot] = id.shard_index;
          counts.set(id.shard_index, (counts.get(id.shard_index) ?? 0) + 1);
        }
      }
      const [[stray]] = await pool.query<RowDataPacket[]>(
        'SELECT COUNT(*) AS n FROM kv LEFT JOIN kv_slots o ON o.slot = kv.slot AND o.state = 1 WHERE o.slot IS NULL',
      );
      assert.equal(Number(stray.n), 0, `shard ${id.shard_index} holds rows of slots it does not own`);
    } finally {
      await pool.end();
    }
  }
  assert.equal(servedBy.indexOf(-1), -1, 'every slot has an owner');
  return counts;
}

async function preload(n: number, prefix: string, query = ''): Promise<string[]> {
  const keys = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
  for (let i = 0; i < keys.length; i += 64) {
    const replies = await Promise.all(keys.slice(i, i + 64).map((k) => c1.put(k, `v-${k}`, query)));
    for (const r of replies) assert.ok(r.status === 201 || r.status === 200, `preload: ${r.status} ${r.text()}`);
  }
  return keys;
}

test('add a third shard and rebalance under load from two gateways: nothing acknowledged is lost', async () => {
  const bulk = await preload(1500, 'bulk');
  // Keys that expire while they are moved: they must be gone on time and leave no row behind.
  const shortLived = await preload(150, 'short', 'ttl=1.5');
  const load = new KvLoad([c1, c2], 12, 40, 'add');
  load.start();
  let pauses: number[] = [];
  try {
    await sleep(300);
    await withSet(store.urls, async (set) => {
      const index = await set.addShard(newUrl);
      assert.equal(index, 2);
      await set.publishPeers();
      const units = planRebalance(await set.slotRows(), [...set.members.keys()], new Set(), 512);
      assert.equal(
        units.reduce((n, u) => n + u.hi - u.lo + 1, 0),
        5461,
        'a third of the slots move, no more',
      );
      const p = await runUnits(set, units, noReport, {}, SMALL_PAGES);
      pauses = p.pauses;
      assert.ok(p.rows >= 500, `rows copied: ${p.rows}`);
    });
    await sleep(300);
  } finally {
    await load.stop();
  }
  assert.deepEqual(load.stats.violations, []);
  // A fence pause on a busy machine may outlast KVSQL_QUEUE_WAIT_MS, and admission then refuses
  // (503 OVERLOADED, nothing applied; verify below reads those keys back). Rare, and nothing else.
  const { KV_ERR_OVERLOADED: refused = 0, ...others } = load.stats.errorCodes;
  const seen = `${JSON.stringify(load.stats.errorCodes)} ${JSON.stringify(load.stats.errorMessages)}`;
  assert.deepEqual(others, {}, `errors during the move: ${seen}`);
  assert.ok(refused <= load.stats.ops / 100, `refusals during the move: ${seen} of ${load.stats.ops} ops`);
  assert.ok(load.stats.acked > 200, `acked ${load.stats.acked}`);
  assert.deepEqual(await load.verify(c1), []);
  assert.deepEqual(await load.verify(c2), []);
  for (const k of bulk.filter((_, i) => i % 10 === 0)) assert.equal((await c2.get(k)).text(), `v-${k}`);
  const counts = await checkShards([...store.urls, newUrl]);
  assert.deepEqual([...counts.entries()].sort(), [
    [0, 5462],
    [1, 5461],
    [2, 5461],
  ]);
  assert.ok(pauses.length >= 11);
  const metrics = (await c1.request('GET', '/metrics')).text();
  assert.match(metrics, /^kvsql_slot_map_epoch 2$/m);
  assert.match(metrics, /^kvsql_move_slots_total 5461$/m, "the mover's progress reached /metrics");
  assert.ok(Number(/^kvsql_slot_redirects_total (\d+)$/m.exec(metrics)?.[1]) > 0, 'stale routes were redirected');
  // Expired keys: absent through both gateways, and their rows deleted on whichever shard.
  for (const k of shortLived.slice(0, 50)) assert.equal((await c1.get(k)).status, 404);
  await waitFor(
    async () => {
      let left = 0;
      for (const url of [...store.urls, newUrl]) {
        const pool = openPool(url);
        const [[r]] = await pool.query<RowDataPacket[]>("SELECT COUNT(*) AS n FROM kv WHERE k LIKE 'short-%'");
        await pool.end();
        left += Number(r.n);
      }
      return left === 0;
    },
    { timeoutMs: 8000, intervalMs: 200, message: 'expired rows deleted on every shard' },
  );
});

test('a gateway started with the old shard list learns the new shard and serves its keys', async () => {
  const old = await store.startAnotherGateway(); // store.urls: the two original shards only
  const c3 = new HttpClient(old.port);
  try {
    const keys = Array.from({ length: 200 }, (_, i) => `bulk-${i}`);
    const onNew = keys.filter((k) => slotOf(Buffer.from(k)) >= 16384 - 2731 || (slotOf(Buffer.from(k)) >= 8192 - 2730 && slotOf(Buffer.from(k)) < 8192));
    assert.ok(onNew.length > 10);
    for (const k of keys) assert.equal((await c3.get(k)).text(), `v-${k}`);
    const put = await c3.put(onNew[0], 'through-old-list');
    assert.equal(put.status, 200);
    assert.equal((await c1.get(onNew[0])).text(), 'through-old-list');
    const slots = (await c3.request('GET', '/v1/slots')).json();
    assert.ok(
      slots.ranges.some((r: number[]) => r[2] === 2),
      'its map names shard 2',
    );
  } finally {
    c3.close();
  }
});

test('the mover killed mid-copy and mid-fence: running it again finishes the move', async () => {
  const load = new KvLoad([c1, c2], 8, 40, 'crash');
  load.start();
  try {
    // Move shard 2's slots back to shard 0 in one unit, dying after the second copy page.
    let pages = 0;
    await assert.rejects(
      withSet(store.urls, async (set) => {
        const units = planRebalance(await set.slotRows(), [...set.members.keys()], new Set([2]), 16384).filter((u) => u.source === 2);
        await runUnits(
          set,
          units.slice(0, 1),
          noReport,
          {
            onRows: () => {
              if (++pages === 2) throw new Error('simulated crash mid-copy');
            },
          },
          SMALL_PAGES,
        );
      }),
      /mid-copy/,
    );
    // Run again: the copying range resumes, then die after fencing (writes to it are held).
    await assert.rejects(
      withSet(store.urls, async (set) => {
        const units = planRebalance(await set.slotRows(), [...set.members.keys()], new Set([2]), 16384);
        assert.ok(units[0].resume, 'the interrupted move comes first');
        await runUnits(
          set,
          units.slice(0, 1),
          noReport,
          {
            beforeStep: (step) => {
              if (step === 6) throw new Error('simulated crash mid-fence');
            },
          },
          SMALL_PAGES,
        );
      }),
      /mid-fence/,
    );
    await sleep(200);
    // And again, to the end: drain shard 2 entirely.
    await withSet(store.urls, async (set) => {
      await runUnits(set, planRebalance(await set.slotRows(), [...set.members.keys()], new Set([2]), 1024), noReport, {}, SMALL_PAGES);
    });
    await sleep(200);
  } finally {
    await load.stop();
  }
  assert.deepEqual(load.stats.violations, []);
  // Writes held by the fence while no mover ran are answered within KVSQL_SLOT_HOLD_MS: either
  // applied after the flip or 503 KV_ERR_SLOT_MOVING (then not counted as acknowledged). While
  // they are held, the shard's queue wait passes KVSQL_QUEUE_WAIT_MS and new ops may be refused
  // at admission (503 KV_ERR_OVERLOADED). Both are refusals: verify reads those keys back.
  for (const code of Object.keys(load.stats.errorCodes))
    assert.ok(['KV_ERR_SLOT_MOVING', 'KV_ERR_OVERLOADED'].includes(code), `${code}: ${load.stats.errorMessages[code]}`);
  assert.deepEqual(await load.verify(c1), []);
  assert.deepEqual(await load.verify(c2), []);
  const counts = await checkShards([...store.urls, newUrl]);
  assert.equal(counts.get(2) ?? 0, 0, 'the drained shard owns nothing');
  assert.equal((counts.get(0) ?? 0) + (counts.get(1) ?? 0), SLOT_COUNT);
  for (let i = 0; i < 1500; i += 37) assert.equal((await c1.get(`bulk-${i}`)).text(), `v-bulk-${i}`);
});

test('a gateway process killed and the MySQL server killed during moves: the moves finish when run again', async (t) => {
  // A gateway in its own process, with the old shard list, killed (SIGKILL) mid-move.
  const child = spawn(process.execPath, [CLI], {
    env: cliEnv({ KVSQL_SHARDS: store.urls.join(','), KVSQL_PORT: '0', KVSQL_REDIS_PORT: 'off', KVSQL_LOG_LEVEL: 'info' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  await waitFor(() => /"msg":"kvsql listening"/.test(out), { timeoutMs: 60_000, intervalMs: 100, message: () => `gateway did not start: ${out}` });
  const port = Number(/"port":(\d+),"redisPort"/.exec(out)![1]);
  const c3 = new HttpClient(port);
  t.after(() => c3.close());
  const load = new KvLoad([c1, c3], 8, 30, 'kill');
  load.start();
  try {
    await withSet(store.urls, async (set) => {
      const units = planRebalance(await set.slotRows(), [...set.members.keys()], new Set(), 256).slice(0, 4);
      let done = 0;
      await runUnits(
        set,
        units,
        () => {
          if (++done === 1) child.kill('SIGKILL');
        },
        {},
        SMALL_PAGES,
      );
    });
    // The MySQL server (every shard) dies in the middle of copying the next range.
    let pages = 0;
    await assert.rejects(
      withSet(store.urls, async (set) => {
        const units = planRebalance(await set.slotRows(), [...set.members.keys()], new Set(), 256).slice(0, 1);
        await runUnits(
          set,
          units,
          noReport,
          {
            onRows: async () => {
              if (++pages === 1) await store.mysql.kill();
            },
          },
          SMALL_PAGES,
        );
      }),
    );
    await store.mysql.restart();
    await withSet(store.urls, async (set) => {
      const units = planRebalance(await set.slotRows(), [...set.members.keys()], new Set(), 1024);
      assert.ok(units[0].resume, 'the range interrupted by the crash is finished first');
      await runUnits(set, units, noReport, {}, SMALL_PAGES);
    });
    await sleep(500);
  } finally {
    await load.stop();
  }
  assert.deepEqual(load.stats.violations, []);
  // Shards come back up after the server restart and the gateways re-read the map.
  await waitFor(async () => (await c1.get('kill-0-0')).status < 500, { timeoutMs: 20_000, intervalMs: 200 });
  assert.deepEqual(await load.verify(c1), []);
  assert.deepEqual(await load.verify(c2), []);
  const counts = await checkShards([...store.urls, newUrl]);
  assert.deepEqual([...counts.entries()].sort(), [
    [0, 5462],
    [1, 5461],
    [2, 5461],
  ]);
  for (let i = 0; i < 1500; i += 37) assert.equal((await c2.get(`bulk-${i}`)).text(), `v-bulk-${i}`);
});
