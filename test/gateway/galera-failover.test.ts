/**
 * A shard that is a real 3-node MariaDB Galera cluster behind two gateways, under a mixed load:
 * kill -9 and SIGSTOP of the writer node, and the expirer lease across a switch. What must hold:
 * writes resume on another node; every acknowledged write is present afterwards, on every node;
 * no stale or phantom read (test/helpers/ha-load); versions stay unique; one expirer per group;
 * the killed or stopped node comes back and catches up.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { HaStore, Record, startHaStore, assertDurable, rowsOn, startLoad } from '../helpers/ha-load';
import { sleep, waitFor } from '../helpers/wait';

let store: HaStore;
before(async () => (store = await startHaStore()));
after(() => store?.close());

test('kill -9 of the writer node under load from two gateways: writes resume, nothing acknowledged is lost, no stale read, the node rejoins', async () => {
  const rec = new Record();
  const load = startLoad(store, rec, { workers: 12, keysPerWorker: 20, prefix: 'kill' });
  await waitFor(() => rec.ackedWrites > 200, { timeoutMs: 60_000, intervalMs: 100, message: 'writes before the kill', ignoreErrors: true });
  const victim = await store.writerIndex(0);
  assert.ok(victim >= 0, 'a writer node is chosen');
  const killedAt = Date.now();
  await store.galera.shard.nodes[victim].kill();
  const before = rec.ackedWrites;
  await waitFor(() => rec.ackTimes.some((t) => t > killedAt + 50) && rec.ackedWrites > before + 100, {
    timeoutMs: 60_000,
    intervalMs: 100,
    message: 'writes acknowledged after the kill',
    ignoreErrors: true,
  });
  const writers = await store.writers();
  for (const w of writers) assert.ok(w >= 0 && w !== victim, `every gateway moved off node-${victim} (writers: ${writers})`);
  await load.stop();

  assert.deepEqual(rec.violations, [], 'no stale or phantom read');
  rec.assertConsistent();
  assert.ok(rec.reads > 100, 'reads were checked');
  assert.equal(new Set(rec.versions).size, rec.versions.length, 'versions are unique across the switch');
  for (const i of [0, 1, 2].filter((i) => i !== victim)) assertDurable(rec, await rowsOn(store.galera.shard.nodes[i].url, 'kill'), `node-${i}`);

  // The killed node is started again by the embedded cluster and catches up (IST).
  await store.galera.shard.nodes[victim].waitSynced(90_000);
  assertDurable(rec, await rowsOn(store.galera.shard.nodes[victim].url, 'kill'), `rejoined node-${victim}`);
});

test('expiry across a switch: one expirer for the group, and expired keys are deleted after the writer moved', async () => {
  const isExpirer = async (base: string) => /kvsql_expiry_is_expirer\{shard="0"\} 1/.test(await (await fetch(`${base}/metrics`)).text());
  await waitFor(async () => (await isExpirer(store.bases()[0])) || (await isExpirer(store.bases()[1])), {
    timeoutMs: 10_000,
    intervalMs: 100,
    message: 'an expirer',
    ignoreErrors: true,
  });
  await sleep(1500); // several lease renewals: still exactly one holder
  const holders = await Promise.all(store.bases().map(isExpirer));
  assert.equal(holders.filter(Boolean).length, 1, `exactly one expirer (${holders})`);
  const r = await fetch(`${store.bases()[1]}/v1/kv/exp-after-switch?ttl=0.3`, { method: 'PUT', body: 'x' });
  assert.equal(r.status, 201);
  const writer = await store.writerIndex(0);
  await waitFor(async () => (await rowsOn(store.galera.shard.nodes[writer].url, 'exp')).size === 0, {
    timeoutMs: 15_000,
    intervalMs: 100,
    message: 'the expired row deleted',
    ignoreErrors: true,
  });
});

test('SIGSTOP of the writer node: the shard switches within the bound, and the node comes back', async (t) => {
  const rec = new Record();
  const load = startLoad(store, rec, { workers: 8, keysPerWorker: 20, prefix: 'stop' });
  await waitFor(() => rec.ackedWrites > 100, { timeoutMs: 60_000, intervalMs: 100, message: 'writes before the stop', ignoreErrors: true });
  const victim = await store.writerIndex(0);
  const node = store.galera.shard.nodes[victim];
  const stoppedAt = Date.now();
  node.pause();
  try {
    // Bound (README): probe timeout 1 s + interval 0.5 s to switch; the first commit on the new
    // node then waits for Galera to evict the stopped peer (evs.suspect_timeout 2 s + inactive
    // check). Generous here: a loaded CI machine is slower; the benchmark measures the real value.
    const switchedMs = await waitFor(async () => (await store.writers()).every((w) => w >= 0 && w !== victim), {
      timeoutMs: 15_000,
      intervalMs: 100,
      message: 'every gateway off the stopped node',
      ignoreErrors: true,
    });
    await waitFor(() => rec.ackTimes.some((at) => at > stoppedAt + switchedMs), {
      timeoutMs: 30_000,
      intervalMs: 100,
      message: 'a write acknowledged after the stop',
      ignoreErrors: true,
    });
    t.diagnostic(
      `writer switched ${switchedMs} ms after SIGSTOP; first acknowledged write after it ${Math.min(...rec.ackTimes.filter((at) => at > stoppedAt + switchedMs)) - stoppedAt} ms`,
    );
  } finally {
    node.resume();
  }
  await load.stop();
  assert.deepEqual(rec.violations, [], 'no stale or phantom read');
  rec.assertConsistent();
  for (const i of [0, 1, 2].filter((i) => i !== victim)) assertDurable(rec, await rowsOn(store.galera.shard.nodes[i].url, 'stop'), `node-${i}`);
  await node.waitSynced(90_000);
  assertDurable(rec, await rowsOn(node.url, 'stop'), `resumed node-${victim}`);
});
