/**
 * Versions with two actors on one shard (two gateways), in the window between a create's locking
 * read (the key absent, so nothing is locked under READ COMMITTED) and its INSERT: another
 * gateway creates the key with a version from a newer block and deletes it again. The INSERT then
 * succeeds; its version must still be above the other incarnation's ("versions go
 * backwards with two gateways"). The window is widened here by delaying one actor's decision.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { OP_DEL, OP_GET, OP_PUT, type Reply, type Request } from '../../src/protocol/ops';
import type { ActorConfig } from '../../src/protocol/port-messages';
import { ShardActor } from '../../src/shard-actor/actor';
import type { ShardStore } from '../../src/shard-actor/shard-store';
import { MysqlShardStore } from '../../src/shard-actor/mysql-store/mysql-shard-store';
import { startTestServer, type TestServer } from '../helpers/mysql';
import { sleep } from '../helpers/wait';

let mysql: TestServer;
let url: string;
before(async () => {
  mysql = await startTestServer();
  url = await mysql.createDatabase();
});
after(() => mysql?.stop());

const config = (): ActorConfig => ({
  shard: 0,
  url,
  slotHoldMs: 2000,
  batching: true,
  maxBatchOps: 64,
  maxBatchBytes: 1 << 20,
  readsInFlight: 2,
  writesInFlight: 2,
  queryTimeoutMs: 10_000,
  opDeadlineMs: 30_000,
  tls: null,
  nodes: [],
  maxRetries: 4,
  maxValueBytes: 1024 * 1024,
  expiry: { enabled: false, tickMs: 100, horizonMs: 60_000, reapBatch: 100, reapsInFlight: 100, maxWheelKeys: 1000, lockRetryMs: 2000 },
});

interface Delays {
  /** Rows locked, versions not yet taken. */
  beforeDecide?: number;
  /** Versions taken, nothing written yet. */
  ms?: number;
  /** Written (INSERT done, version rechecked), not committed. */
  beforeCommit?: number;
}

/** An actor on its own pool, whose write transactions can be held at the points in `delay`. */
async function startActor(delay: Delays) {
  const real = new MysqlShardStore({ url, poolSize: 6, queryTimeoutMs: 10_000 });
  const store: ShardStore = Object.assign(Object.create(real) as ShardStore, {
    transact: (
      keys: Buffer[],
      slots: number[],
      decide: Parameters<ShardStore['transact']>[2],
      ctl: Parameters<ShardStore['transact']>[3],
      recheck: Parameters<ShardStore['transact']>[4],
    ) =>
      real.transact(
        keys,
        slots,
        async (locked, now, issuedBelow, states) => {
          if (delay.beforeDecide) await sleep(delay.beforeDecide);
          const m = await decide(locked, now, issuedBelow, states);
          if (delay.ms) await sleep(delay.ms);
          return m;
        },
        ctl,
        async (issuedNow) => {
          const fix = recheck === undefined ? null : await recheck(issuedNow);
          if (delay.beforeCommit) await sleep(delay.beforeCommit);
          return fix;
        },
      ),
  });
  const waiting = new Map<number, (r: Reply) => void>();
  const actor = new ShardActor(
    config(),
    store,
    (replies) => {
      for (const r of replies) waiting.get(r[0])?.(r);
    },
    () => undefined,
    () => undefined,
  );
  await actor.start();
  // The first actor makes the database a one-shard store owning every slot (idempotent).
  await actor.bootstrap({ shard: 0, shardCount: 1, slotRanges: '[[0,16383]]' });
  let nextId = 1;
  const request = (op: typeof OP_PUT | typeof OP_DEL | typeof OP_GET, key: string, value?: string): [Request, Promise<Reply>] => {
    const id = nextId++;
    return [[id, op, Buffer.from(key), value === undefined ? null : Buffer.from(value), 0, 0, 0], new Promise((resolve) => waiting.set(id, resolve))];
  };
  const call = (op: typeof OP_PUT | typeof OP_DEL | typeof OP_GET, key: string, value?: string): Promise<Reply> => {
    const [r, reply] = request(op, key, value);
    actor.receive([r]);
    return reply;
  };
  /** Several ops in one frame: consecutive writes to one key run as one chain. */
  const frame = (...ops: Array<[typeof OP_PUT | typeof OP_DEL, string, string?]>): Promise<Reply[]> => {
    const made = ops.map(([op, key, value]) => request(op, key, value));
    actor.receive(made.map(([r]) => r));
    return Promise.all(made.map(([, p]) => p));
  };
  return { actor, call, frame };
}

test('a create whose key was created and deleted through another gateway meanwhile gets a higher version', async () => {
  const slowY: Delays = {};
  const x = await startActor({});
  const y = await startActor(slowY);
  after(() => Promise.all([x.actor.stop(), y.actor.stop()]));

  assert.equal((await x.call(OP_PUT, 'k', 'x1'))[1], 201); // X reserves the first block
  assert.equal((await y.call(OP_PUT, 'other', 'y1'))[1], 201); // Y reserves a newer one
  assert.equal((await x.call(OP_DEL, 'k'))[1], 204);

  // Y locks k (absent) and decides to INSERT it with a version from its block, then stalls.
  slowY.ms = 600;
  const yCreate = y.call(OP_PUT, 'k', 'y2');
  await sleep(150);
  // Meanwhile X creates k (from a block above Y's: Y's is the newest it saw) and deletes it.
  const xCreate = await x.call(OP_PUT, 'k', 'x2');
  assert.equal(xCreate[1], 201);
  assert.equal((await x.call(OP_DEL, 'k'))[1], 204);
  const yCreated = await yCreate;
  slowY.ms = 0;
  assert.equal(yCreated[1], 201, 'Y created k again after X deleted it');
  const yNext = await y.call(OP_PUT, 'k', 'y3');
  assert.equal(yNext[1], 200);

  const xVersion = xCreate[2] as number;
  assert.ok((yCreated[2] as number) > xVersion, `Y's create (v${yCreated[2]}) linearizes after X's create (v${xVersion}) and delete`);
  assert.ok((yNext[2] as number) > xVersion, `a write invoked after X's create was acknowledged got v${yNext[2]} < v${xVersion}`);
});

test("a key created and deleted again in one chain is ordered against another gateway's create", async () => {
  const x: Delays = {};
  const y: Delays = {};
  const gx = await startActor(x);
  const gy = await startActor(y);
  after(() => Promise.all([gx.actor.stop(), gy.actor.stop()]));
  assert.equal((await gy.call(OP_PUT, 'other-y', 'v'))[1], 201); // Y's block
  assert.equal((await gx.call(OP_PUT, 'other-x', 'v'))[1], 201); // X's, newer

  // Y locks t (absent) for a chain that creates and deletes it, and stalls before taking versions.
  // (The first DEL keeps t busy, so the PUT and the DEL behind it wait and run as one chain.)
  y.beforeDecide = 600;
  const yChain = gy.frame([OP_DEL, 't'], [OP_PUT, 't', 'y'], [OP_DEL, 't']);
  await sleep(800);
  // X inserts t from its block (the newest: no recheck needed) and stalls before COMMIT; Y then
  // takes versions from a block reserved after X's.
  x.beforeCommit = 900;
  const xCreate = gx.call(OP_PUT, 't', 'x');
  const [yFirstDel, yPut, yDel] = await yChain;
  assert.equal(yFirstDel[1], 404);
  const xCreated = await xCreate;
  x.beforeCommit = 0;
  y.beforeDecide = 0;
  assert.equal(xCreated[1], 201);
  assert.equal(yDel[1], 204);
  const now = await gx.call(OP_GET, 't');
  // Y's put was acknowledged with a version; whatever is stored now must not be older.
  if (now[1] === 200) assert.ok((now[3] as number) > (yPut[2] as number), `stored v${now[3]} after an acknowledged put of v${yPut[2]}`);
  // Both orders are fine as long as versions follow them: X's create, then Y's put (200) and
  // delete (the fix: Y's INSERT waits for X's row, fails, and the chain is decided again), or
  // Y's chain first and X's create after it with a higher version.
  if (yPut[1] === 200) assert.ok((yPut[2] as number) > (xCreated[2] as number));
  else assert.ok((xCreated[2] as number) > (yPut[2] as number), `X's create (v${xCreated[2]}) follows Y's chain (v${yPut[2]})`);
});
