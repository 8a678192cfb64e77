/**
 * Versions with two actors on one shard (two gateways), in the window between a create's locking
 * read (the key absent, so nothing is locked under READ COMMITTED) and its INSERT: another
 * gateway creates the key with a version from a newer block and deletes it again. The INSERT then
 * succeeds; its version must still be above the other incarnation's (issue 8, "versions go
 * backwards with two gateways"). The window is widened here by delaying one actor's decision.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { OP_DEL, OP_PUT, type Reply } from '../../src/protocol/ops';
import type { ActorConfig } from '../../src/protocol/port-messages';
import { ShardActor } from '../../src/shard-actor/actor';
import { MysqlShardStore, type ShardStore } from '../../src/shard-actor/shard-store';
import { startTestServer, type TestServer } from '../helpers/mysql';

let mysql: TestServer;
let url: string;
before(async () => {
  mysql = await startTestServer();
  url = await mysql.createDatabase();
});
after(() => mysql?.stop());

const config = (): ActorConfig => ({
  shard: 0,
  shardCount: 1,
  url,
  slotRanges: '[[0,16383]]',
  batching: true,
  maxBatchOps: 64,
  maxBatchBytes: 1 << 20,
  readsInFlight: 2,
  writesInFlight: 2,
  queryTimeoutMs: 10_000,
  maxRetries: 4,
  expiry: { enabled: false, tickMs: 100, horizonMs: 60_000, reapBatch: 100, reapsInFlight: 100, maxWheelKeys: 1000, lockRetryMs: 2000 },
});

/** An actor on its own pool; `delay` holds each write decision (rows locked, nothing written yet). */
async function startActor(delay: { ms: number }) {
  const real = new MysqlShardStore({ url, poolSize: 6, queryTimeoutMs: 10_000 });
  const store: ShardStore = Object.assign(Object.create(real) as ShardStore, {
    transact: (keys: Buffer[], decide: Parameters<ShardStore['transact']>[1], recheck: Parameters<ShardStore['transact']>[2]) =>
      real.transact(
        keys,
        async (locked, now, issuedBelow) => {
          const m = await decide(locked, now, issuedBelow);
          if (delay.ms > 0) await new Promise((r) => setTimeout(r, delay.ms));
          return m;
        },
        recheck,
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
  let nextId = 1;
  const call = (op: typeof OP_PUT | typeof OP_DEL, key: string, value?: string): Promise<Reply> =>
    new Promise((resolve) => {
      const id = nextId++;
      waiting.set(id, resolve);
      actor.receive([[id, op, Buffer.from(key), value === undefined ? null : Buffer.from(value), 0, 0, 0]]);
    });
  return { actor, call };
}

test('a create whose key was created and deleted through another gateway meanwhile gets a higher version', async () => {
  const slowY = { ms: 0 };
  const x = await startActor({ ms: 0 });
  const y = await startActor(slowY);
  after(() => Promise.all([x.actor.stop(), y.actor.stop()]));

  assert.equal((await x.call(OP_PUT, 'k', 'x1'))[1], 201); // X reserves the first block
  assert.equal((await y.call(OP_PUT, 'other', 'y1'))[1], 201); // Y reserves a newer one
  assert.equal((await x.call(OP_DEL, 'k'))[1], 204);

  // Y locks k (absent) and decides to INSERT it with a version from its block, then stalls.
  slowY.ms = 600;
  const yCreate = y.call(OP_PUT, 'k', 'y2');
  await new Promise((r) => setTimeout(r, 150));
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
