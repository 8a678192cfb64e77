/**
 * Contention on a few hot keys, through the pipelined WebSocket API: random batches of puts
 * (some with short TTLs, so the expirer reaps while clients write; a quarter on 200 warm keys whose
 * TTLs do run out), creates (ifAbsent), deletes,
 * TTL set and clear, and reads, with overlapping keys, from several clients at once. Seeded
 * (test/helpers/seeded; replay with KVSQL_FUZZ_SEED).
 *   - One gateway: InnoDB reports no deadlock at all (its counter does not move): each shard's
 *     actor locks a transaction's rows in sorted key order, keeps concurrent transactions' and
 *     reaps' keys disjoint (locks in one global order), and every locking statement reaches only its own rows
 *     (reaps forced onto the primary key, deletes one point statement per key; see
 *     lock-scope.test.ts, which pins the reap-vs-write deadlock this test once saw under load).
 *   - Two gateways on the same shards: their transactions may meet in InnoDB, but no deadlock or
 *     lock-wait error reaches a client (every op gets its normal answer), and retries stay
 *     bounded (the actors' stats).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, KvClientError, type KvClient } from '../../src/client';
import type { Server } from '../../src/gateway/server';
import { startTestStore, type TestStore } from '../helpers/store';
import { innodbDeadlocks } from '../helpers/innodb';
import { Rng, fuzzSeed } from '../helpers/seeded';

const SEED = fuzzSeed(0xc0_27e7);
const KEYS = Array.from({ length: 12 }, (_, i) => `hot-${i}`);
// A quarter of the ops go to 200 warm keys: on a fast machine every hot key is rewritten within
// milliseconds, so its short TTLs never run out; warm keys' TTLs do, and their reaps run while
// the clients keep the hot keys (and the warm ones) busy.
const WARM = Array.from({ length: 200 }, (_, i) => `warm-${i}`);
const RUN_MS = 3000;

let store: TestStore;
let second: Server;
before(async () => {
  // queueWaitMs 0: these tests count lock errors; a busy machine would also see time-bound 503s.
  store = await startTestStore({ shards: 2, config: { expiryTickMs: 20, queueWaitMs: 0 } });
});
after(() => store?.close());

interface Tally {
  ops: number;
  errors: Map<string, number>;
}

function oneOp(c: KvClient, r: Rng, n: number): Promise<unknown> {
  const key = r.int(4) === 0 ? r.pick(WARM) : r.pick(KEYS);
  switch (r.int(9)) {
    case 0:
    case 1:
      return c.put(key, `v${n}`);
    case 2:
      return c.put(key, `t${n}`, { ttl: 20 + r.int(200) });
    case 3:
      return c.put(key, `c${n}`, { ifAbsent: true }).catch((e: KvClientError) => (e.code === 'KV_ERR_PRECONDITION_FAILED' ? null : Promise.reject(e)));
    case 4:
      return c.del(key);
    case 5:
      return c.pexpire(key, 20 + r.int(200));
    case 6:
      return c.persist(key);
    case 7:
      return c.put(key, `k${n}`, { keepTtl: true });
    default:
      return c.get(key);
  }
}

/** Clients issue random batches (1-24 ops, all in flight at once) until `ms` pass. */
async function run(clients: KvClient[], seed: number, ms: number): Promise<Tally> {
  const tally: Tally = { ops: 0, errors: new Map() };
  const deadline = Date.now() + ms;
  await Promise.all(
    clients.map(async (c, i) => {
      const r = new Rng(seed + i);
      while (Date.now() < deadline) {
        const batch = Array.from({ length: 1 + r.int(24) }, () => oneOp(c, r, tally.ops++));
        for (const res of await Promise.allSettled(batch)) {
          if (res.status === 'rejected') {
            const code = (res.reason as KvClientError)?.code ?? String(res.reason);
            tally.errors.set(code, (tally.errors.get(code) ?? 0) + 1);
          }
        }
      }
    }),
  );
  return tally;
}

async function clientsOn(ports: number[], n: number): Promise<KvClient[]> {
  const clients = Array.from({ length: n }, (_, i) => createClient(`ws://127.0.0.1:${ports[i % ports.length]}/v1/ws`));
  after(() => Promise.all(clients.map((c) => c.close())));
  await Promise.all(clients.map((c) => c.get('warm-up')));
  return clients;
}

async function retries(server: Server): Promise<{ retries: number; batches: number; expired: number }> {
  const stats = await server.pool.stats();
  let out = { retries: 0, batches: 0, expired: 0 };
  for (const s of stats) {
    assert.ok(s, 'an actor did not answer stats');
    out = { retries: out.retries + s.retries, batches: out.batches + s.readBatches + s.writeBatches, expired: out.expired + s.expiry.expired };
  }
  return out;
}

test('one gateway: random overlapping batches, creates, deletes and reaps; InnoDB reports no deadlock', async (t) => {
  const clients = await clientsOn([store.port], 12);
  const before = await innodbDeadlocks(store.urls[0]);
  const tally = await run(clients, SEED, RUN_MS);
  const deadlocks = (await innodbDeadlocks(store.urls[0])) - before;
  const s = await retries(store.server);
  t.diagnostic(`one gateway: ${tally.ops} ops, ${s.expired} reaped, ${s.retries} retries, ${deadlocks} InnoDB deadlocks`);
  assert.deepEqual([...tally.errors], [], `errors over ${tally.ops} ops`);
  assert.ok(tally.ops > 500, `only ${tally.ops} ops: too little contention to mean anything`);
  assert.ok(s.expired > 0, 'the expirer reaped nothing: no reaps raced the clients');
  assert.equal(deadlocks, 0, `${deadlocks} InnoDB deadlocks with one gateway over ${tally.ops} ops (${s.retries} retries)`);
});

test('two gateways: no deadlock or lock error reaches a client; retries stay bounded', async (t) => {
  // Started here, not in before(): during the one-gateway test a second gateway could hold the
  // expirer lease, and its reaps would be another gateway's transactions.
  second = await store.startAnotherGateway();
  const clients = await clientsOn([store.port, second.port], 12);
  const before = await innodbDeadlocks(store.urls[0]);
  const r0 = [await retries(store.server), await retries(second)];
  const tally = await run(clients, SEED ^ 0xffff, RUN_MS);
  const r1 = [await retries(store.server), await retries(second)];
  const deadlocks = (await innodbDeadlocks(store.urls[0])) - before;
  const retried = r1[0].retries - r0[0].retries + r1[1].retries - r0[1].retries;
  const batches = r1[0].batches - r0[0].batches + r1[1].batches - r0[1].batches;
  t.diagnostic(`two gateways: ${tally.ops} ops, ${batches} batches, ${retried} retries, ${deadlocks} InnoDB deadlocks`);
  assert.deepEqual([...tally.errors], [], `errors over ${tally.ops} ops (${deadlocks} deadlocks, ${retried} retries)`);
  assert.ok(tally.ops > 500, `only ${tally.ops} ops`);
  // Every retry is a batch that met another gateway's transaction; most batches never do.
  assert.ok(retried <= batches / 4, `${retried} retries over ${batches} batches (${deadlocks} InnoDB deadlocks)`);
});
