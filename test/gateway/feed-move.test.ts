/**
 * Tests the change feed across gateways and a slot move, against a real store (real MySQL, two
 * gateways on the same two shards): writers on both gateways, a watcher on each, one watcher
 * resumed from its cursor on the other gateway half way, and the slots of some watched keys moved
 * to the other shard meanwhile. Every acknowledged write must appear in each watcher's stream,
 * nothing else (the mover's copies are not changes), in version order per key and shard.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, type KvClient } from '../../src/index';
import type { Watch, WatchEvent } from '../../src/client/watch';
import type { Server } from '../../src/gateway/server';
import { ShardSet } from '../../src/admin/shard-set';
import { runUnits } from '../../src/admin/commands';
import { DEFAULT_MOVE_OPTIONS } from '../../src/admin/slot-mover';
import { slotOf } from '../../src/protocol/slot-map';
import { startTestStore, type TestStore } from '../helpers/store';
import { sleep } from '../helpers/wait';

let store!: TestStore;
let second!: Server;
const url = (port: number): string => `ws://127.0.0.1:${port}/v1/ws`;

before(async () => {
  store = await startTestStore({ shards: 2 });
  second = await store.startAnotherGateway({ port: 0, redisPort: 0 });
});
after(() => store?.close());

/** Reads a watch into `out` until stopped. */
function drain(w: Watch, out: WatchEvent[]): Promise<void> {
  return (async () => {
    try {
      for await (const e of w) out.push(e);
    } catch {
      // ended by close()
    }
  })();
}

test('two gateways, a resume across them and a slot move: every acknowledged write, once per position, in order', async () => {
  const writers: KvClient[] = [createClient(url(store.port)), createClient(url(second.port))];
  const watchers: KvClient[] = [createClient(url(store.port)), createClient(url(second.port))];
  const keys = Array.from({ length: 16 }, (_, i) => `mv:${i}`);
  const w1 = watchers[0].watch('mv:');
  const w2 = watchers[1].watch('mv:');
  await Promise.all([w1.ready, w2.ready]);
  const got1: WatchEvent[] = [];
  const got2: WatchEvent[] = [];
  const d1 = drain(w1, got1);
  const d2 = drain(w2, got2);
  const acked = new Map<string, Set<number>>();
  let stop = false;
  const load = Promise.all(
    writers.map(async (c, wi) => {
      for (let n = 0; !stop; n++) {
        await Promise.all(
          keys.map((k) =>
            c.put(k, `${wi}:${n}`).then(
              (r) => {
                let s = acked.get(k);
                if (s === undefined) acked.set(k, (s = new Set()));
                s.add(r.version);
              },
              () => undefined, // a write refused during the move (503) was not applied
            ),
          ),
        );
      }
    }),
  );
  await sleep(500);

  // Half way: watcher 1 stops and resumes from its cursor on the other gateway.
  w1.close();
  await d1;
  const cursor = w1.cursor!;
  const resumed: WatchEvent[] = [];
  const w1b = watchers[1].watch('mv:', { from: cursor });
  const d1b = drain(w1b, resumed);

  // Move the slots of half the keys to the other shard while the writers run.
  const set = await ShardSet.open(store.urls);
  try {
    await set.lockMovers();
    const rows = await set.slotRows();
    const ownerOf = new Map<number, number>();
    for (const r of rows) if (r.state === 1) ownerOf.set(r.slot, r.shard);
    const units = keys.slice(0, 8).map((k) => {
      const slot = slotOf(Buffer.from(k));
      const source = ownerOf.get(slot)!;
      return { lo: slot, hi: slot, source, target: source === 0 ? 1 : 0, resume: false };
    });
    await runUnits(set, units, () => undefined, {}, { ...DEFAULT_MOVE_OPTIONS, pageRows: 100 });
  } finally {
    await set.close();
  }
  await sleep(500);
  stop = true;
  await load;

  const total = [...acked.values()].reduce((n, s) => n + s.size, 0);
  const deadline = Date.now() + 15_000;
  const versionsOf = (events: readonly WatchEvent[]) => {
    const m = new Map<string, Set<number>>();
    for (const e of events) {
      let s = m.get(e.key.toString());
      if (s === undefined) m.set(e.key.toString(), (s = new Set()));
      s.add(e.version);
    }
    return m;
  };
  const complete = (events: readonly WatchEvent[]) => {
    const m = versionsOf(events);
    for (const [k, s] of acked) for (const v of s) if (!m.get(k)?.has(v)) return false;
    return true;
  };
  while (!(complete(got2) && complete([...got1, ...resumed])) && Date.now() < deadline) await sleep(100);
  w2.close();
  w1b.close();
  await Promise.all([d2, d1b]);
  for (const c of [...writers, ...watchers]) await c.close();

  assert.ok(total > 100, `writes acknowledged: ${total}`);
  for (const [name, events] of [
    ['gateway 2 watcher', got2],
    ['watcher resumed across gateways', [...got1, ...resumed]],
  ] as const) {
    const seen = versionsOf(events);
    for (const [k, versions] of acked) {
      for (const v of versions) assert.ok(seen.get(k)?.has(v), `${name}: ${k} version ${v} acknowledged but not in the feed`);
    }
    // Nothing that was not an acknowledged write: no copy of the mover appears as a put.
    for (const e of events) assert.ok(acked.get(e.key.toString())?.has(e.version), `${name}: ${e.key} version ${e.version} was never acknowledged`);
    // In version order per key within each shard's feed; each (shard, seq) once per stream, except
    // the repeats a resume may bring.
    const last = new Map<string, number>();
    for (const e of events) {
      const id = `${e.shard}/${e.key}`;
      assert.ok((last.get(id) ?? 0) <= e.version, `${name}: ${id} went from version ${last.get(id)} to ${e.version}`);
      last.set(id, e.version);
    }
  }
  // The moved keys' events come from both shards: before the move from the old, after from the new.
  for (const k of keys.slice(0, 8)) {
    const shards = new Set(got2.filter((e) => e.key.toString() === k).map((e) => e.shard));
    assert.equal(shards.size, 2, `${k}: events from shards ${[...shards].join(',')}`);
  }
  const ids2 = got2.map((e) => `${e.shard}:${e.seq}`);
  assert.equal(new Set(ids2).size, ids2.length, 'a stream without resume has no repeats');
});
