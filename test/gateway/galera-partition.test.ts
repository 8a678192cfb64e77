/**
 * A shard that is a real 3-node MariaDB Galera cluster behind two gateways: a partition of the
 * writer node (gmcast.isolate cuts its group communication), then a crash of every node under
 * load and a restart of the whole store. What must hold: the minority node refuses reads and
 * writes (no split brain) while the majority serves; the healed node catches up; after the crash
 * the cluster bootstraps from the most advanced node and every acknowledged write is back.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { onNode } from '../helpers/galera';
import { HaStore, Record, startHaStore, rowsOn, startLoad } from '../helpers/ha-load';
import { waitFor } from '../helpers/wait';

let store: HaStore;
before(async () => (store = await startHaStore()));
after(() => store?.close());

test('partition of the writer node from the other two: it refuses service, the majority keeps serving, no split brain', async () => {
  await store.allSynced();
  await waitFor(async () => (await store.writers()).every((w) => w >= 0), {
    timeoutMs: 20_000,
    intervalMs: 100,
    message: 'both gateways on one writer',
    ignoreErrors: true,
  });
  const victim = await store.writerIndex(0);
  const node = store.galera.shard.nodes[victim];
  await node.isolate(true);
  try {
    await waitFor(
      async () => {
        const rows = await onNode<Array<{ Value: string }>>(node.url, "SHOW GLOBAL STATUS LIKE 'wsrep_cluster_status'");
        return rows[0]?.Value !== 'Primary';
      },
      { timeoutMs: 20_000, intervalMs: 100, message: 'the isolated node leaves the Primary component', ignoreErrors: true },
    );
    // The minority node refuses reads and writes: no split brain.
    await assert.rejects(onNode(node.url, "INSERT INTO kv (k, v, version) VALUES ('split-brain', 'x', 1)"), /WSREP|not yet prepared|Unknown command/i);
    await assert.rejects(onNode(node.url, 'SELECT COUNT(*) FROM kv'), /WSREP|not yet prepared|Unknown command/i);
    // The gateways move to the majority and keep serving.
    await waitFor(async () => (await store.writers()).every((w) => w >= 0 && w !== victim), {
      timeoutMs: 20_000,
      intervalMs: 100,
      message: 'every gateway off the isolated node',
      ignoreErrors: true,
    });
    // The first op after the switch may still find the shard marked down (503 Retry-After,
    // until the next probe a second later): a client retries.
    const statuses: number[] = [];
    await waitFor(
      async () => {
        const put = await fetch(`${store.bases()[0]}/v1/kv/during-partition`, { method: 'PUT', body: 'majority' });
        await put.arrayBuffer();
        statuses.push(put.status);
        return put.status === 200 || put.status === 201;
      },
      { timeoutMs: 15_000, intervalMs: 100, message: 'a write on the majority', ignoreErrors: true },
    );
    assert.ok(
      statuses.every((st) => st < 300 || st === 503),
      `only 503 before success: ${statuses}`,
    );
    const get = await fetch(`${store.bases()[1]}/v1/kv/during-partition`);
    assert.equal(await get.text(), 'majority');
  } finally {
    await node.isolate(false).catch(() => undefined);
  }
  await node.waitSynced(90_000);
  const healed = await rowsOn(node.url, 'during');
  assert.equal(healed.size, 1, 'the healed node caught up');
  const split = await onNode<unknown[]>(node.url, "SELECT k FROM kv WHERE k = 'split-brain'");
  assert.equal(split.length, 0, 'nothing written on the minority side');
});

test('crash of every node, then a restart of the whole store: all acknowledged data is back', async () => {
  const rec = new Record();
  const load = startLoad(store, rec, { workers: 8, keysPerWorker: 10, prefix: 'crash' });
  await waitFor(() => rec.ackedWrites > 200, { timeoutMs: 60_000, intervalMs: 100, message: 'writes', ignoreErrors: true });
  // Crash all nodes under load (a power loss), then stop the gateways.
  for (const n of store.galera.shard.nodes) n.supervise = false;
  await Promise.all(store.galera.shard.nodes.map((n) => n.kill()));
  await load.stop();
  rec.assertConsistent();
  await store.closeGateways();
  // Bootstrap from the most advanced node (every grastate.dat says seqno -1: --wsrep-recover).
  await store.galera.restart();
  await store.startGateways();
  for (const [key, v] of rec.acked) {
    const r = await fetch(`${store.bases()[0]}/v1/kv/${key}`);
    const got = r.status === 200 ? Number(await r.text()) : null;
    assert.ok(got === v || (got !== null && (rec.unknown.get(key)?.has(got) ?? false)), `${key}: ${got}, acknowledged ${v}`);
  }
});
