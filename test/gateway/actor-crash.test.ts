/**
 * A shard actor that dies (a bug, an OOM in its worker) must not hang callers or take the gateway
 * down: what it held is answered 500 KV_ERR_OUTCOME_UNKNOWN (no Retry-After: it may have been
 * applied), its keys get 503 while it is away, and a new actor takes over by itself. The other
 * shard never notices.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { SlotMap } from '../../src/protocol/slot-map';
import { OP_PUT, type Reply } from '../../src/protocol/ops';
import { startTestStore, type TestStore } from '../helpers/store';

let store: TestStore;
before(async () => {
  store = await startTestStore({ shards: 2 });
});
after(() => store.close());

function keyOnShard(shard: number, prefix: string): string {
  const map = SlotMap.even(2);
  for (let i = 0; ; i++) if (map.shardOf(Buffer.from(`${prefix}${i}`)) === shard) return `${prefix}${i}`;
}

test('a crashed actor is replaced; its keys get 503 meanwhile, the other shard keeps serving', async () => {
  const k0 = keyOnShard(0, 'crash-a-');
  const k1 = keyOnShard(1, 'crash-b-');
  assert.equal((await fetch(`${store.base}/v1/kv/${k0}`, { method: 'PUT', body: 'zero' })).status, 201);
  assert.equal((await fetch(`${store.base}/v1/kv/${k1}`, { method: 'PUT', body: 'one' })).status, 201);

  await store.server.pool.workerOf(0).terminate();
  const during = await fetch(`${store.base}/v1/kv/${k0}`);
  assert.equal(during.status, 503);
  assert.equal(during.headers.get('retry-after'), '1');
  assert.equal(((await during.json()) as { error: { code: string } }).error.code, 'KV_ERR_SHARD_UNAVAILABLE');
  assert.equal(await (await fetch(`${store.base}/v1/kv/${k1}`)).text(), 'one');

  const start = Date.now();
  let status = 0;
  while (Date.now() - start < 10_000) {
    const r = await fetch(`${store.base}/v1/kv/${k0}`);
    status = r.status;
    if (status === 200) {
      assert.equal(await r.text(), 'zero', 'committed data is still there');
      break;
    }
    await r.arrayBuffer();
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.equal(status, 200, 'the shard serves again by itself');
  assert.equal((await fetch(`${store.base}/readyz`)).status, 200);
});

test('what a dying actor held is answered 500 KV_ERR_OUTCOME_UNKNOWN, without a retry hint', async () => {
  const k0 = keyOnShard(0, 'crash-held-');
  const replies: Reply[] = [];
  const got = new Promise<void>((resolve) =>
    store.server.pool.submit({ deliver: (r) => (replies.push(r), resolve()) }, OP_PUT, Buffer.from(k0), Buffer.from('v'), 0, 0, 0),
  );
  await store.server.pool.workerOf(0).terminate();
  await got;
  assert.equal(replies[0][1], 500);
  assert.equal(replies[0][2], 'KV_ERR_OUTCOME_UNKNOWN');
  assert.equal(replies[0][4], undefined, 'no Retry-After seconds');
  // Wait for the replacement actor, so the store closes cleanly.
  const start = Date.now();
  while (Date.now() - start < 10_000 && (await fetch(`${store.base}/v1/kv/${k0}`)).status === 503) await new Promise((r) => setTimeout(r, 100));
});

test('/readyz: one shard down is 200 "degraded"; every shard down is 503', async () => {
  await store.server.pool.workerOf(0).terminate();
  const one = await fetch(`${store.base}/readyz`);
  assert.equal(one.status, 200);
  const body = (await one.json()) as { status: string; up: number; down: Array<{ shard: number }> };
  assert.equal(body.status, 'degraded');
  assert.deepEqual(body.down.map((d) => d.shard), [0]);
  await store.server.pool.workerOf(1).terminate();
  // Both actors are restarted a second after they died; until then nothing can be served.
  const all = await fetch(`${store.base}/readyz`);
  assert.equal(all.status, 503);
  assert.equal(((await all.json()) as { status: string }).status, 'unavailable');
  const start = Date.now();
  const status = async () => ((await (await fetch(`${store.base}/readyz`)).json()) as { status: string }).status;
  while (Date.now() - start < 15_000 && (await status()) !== 'ready') await new Promise((r) => setTimeout(r, 100));
  assert.equal(((await (await fetch(`${store.base}/readyz`)).json()) as { status: string }).status, 'ready');
});
