/**
 * Expiry under races, end to end (src/shard-actor expirer, timer wheel, write plan; read paths):
 * 200 keys written together with one TTL, so they fall due in the same wheel tick and the expirer
 * reaps them in one go, while pipelined clients race them with GETs, keepTtl PUTs, TTL set
 * (extend) and clear, and plain PUTs, issued around the expiry instant. Judged on the shard's
 * clock (test/helpers/shard-clock):
 *   - no read that began after a key's expiry instant returns it: every hit is judged against the
 *     expiry of the incarnation it returned (its expiresAt), not against what the racing op
 *     later turns out to have done. A keepTtl put that finds the row already expired creates a
 *     fresh key without a TTL, and another connection may read that key before the put's own
 *     reply has arrived: such a hit carries no TTL, is legitimate, and is checked once the put
 *     has answered (it must have re-created the key, and the read must end after the put began
 *     and after the instant);
 *   - nothing is deleted early: no miss for a read or write that ended before the instant, and a
 *     key whose TTL was extended or cleared, or which was rewritten without a TTL, survives the
 *     reaper, with its TTL as last acknowledged.
 * Seeded (test/helpers/seeded; replay with KVSQL_FUZZ_SEED).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { createClient, type KvClient } from '../../src/client';
import { startTestStore, type TestStore } from '../helpers/store';
import { checkRead, measureShardClock, type ShardClock, type TimedRead } from '../helpers/shard-clock';
import { Rng, fuzzSeed } from '../helpers/seeded';
import { sleep, waitFor } from '../helpers/wait';

const SEED = fuzzSeed(0xe4_1e5);
const N = 200;
const TTL_MS = 3000;

let store: TestStore;
let clock: ShardClock;
let clients: KvClient[] = [];
before(async () => {
  store = await startTestStore({ shards: 2, config: { queueWaitMs: 0 } }); // races, not admission
  clock = await measureShardClock(store.urls[0]); // both shards are databases on one server
  clients = Array.from({ length: 4 }, () => createClient(`ws://127.0.0.1:${store.port}/v1/ws`));
  await Promise.all(clients.map((c) => c.get('warm-up')));
});
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await store?.close();
});

type Group = 'untouched' | 'extend' | 'clear' | 'keepttl' | 'rewrite';
const GROUPS: Group[] = ['untouched', 'extend', 'clear', 'keepttl', 'rewrite'];

interface KeyState {
  key: string;
  group: Group;
  expiresAt: number;
  /** Set when the racing op was acknowledged as applied to the live key (it survives or keeps its TTL). */
  applied?: boolean;
  /** The key's expiry after the race, as acknowledged: null = no TTL. */
  finalExpiresAt?: number | null;
  /** When the racing op was issued (local ms). */
  racerBegan?: number;
  /** keepttl only: hits that returned the key as re-created by its keepTtl put (no TTL), checked once the put answered. */
  recreatedReads?: Array<TimedRead & { appliedWhenRead: boolean | undefined }>;
}

const shardMs = (local: number): number => local + clock.offset;

test(`${N} keys expiring in one tick, raced by reads, keepTtl puts, TTL set and clear, and rewrites`, async (t) => {
  const r = new Rng(SEED);
  const keys: KeyState[] = Array.from({ length: N }, (_, i) => ({ key: `race-${i}`, group: GROUPS[i % GROUPS.length], expiresAt: 0 }));
  // Written together: a few batches, expiry instants within a few ms of each other.
  const putStarted = Date.now();
  const puts = await Promise.all(keys.map((k, i) => clients[i % clients.length].put(k.key, 'original', { ttl: TTL_MS })));
  puts.forEach((p, i) => (keys[i].expiresAt = p.expiresAt!));
  const spread = Math.max(...keys.map((k) => k.expiresAt)) - Math.min(...keys.map((k) => k.expiresAt));
  t.diagnostic(
    `puts took ${Date.now() - putStarted} ms; expiry instants spread over ${spread} ms; clock offset ${clock.offset.toFixed(1)} +- ${clock.error.toFixed(1)} ms`,
  );
  const localExpiry = Math.min(...keys.map((k) => k.expiresAt)) - clock.offset;

  // Readers: back-to-back GETs on every key from 300 ms before the instant to 400 ms after.
  let reads = 0;
  let hits = 0;
  const readers = clients.map(async (c, ci) => {
    await sleep(Math.max(0, localExpiry - 300 - Date.now()));
    while (Date.now() < localExpiry + 400) {
      const batch = keys.filter((_, i) => i % clients.length === ci);
      await Promise.all(
        batch.map(async (k) => {
          const began = Date.now();
          const got = await c.get(k.key);
          const read = { status: got === null ? 404 : 200, began, ended: Date.now() };
          reads++;
          if (got === null) {
            // Nothing is deleted early: extended, cleared, rewritten or re-created keys may outlive
            // the instant, but no key dies before it.
            checkRead(read, k.expiresAt, clock, `${k.key} (${k.group})`);
            return;
          }
          hits++;
          // Never an expired key, judged on the incarnation returned: a hit with a TTL began before that TTL ran out.
          if (got.expiresAt !== null) checkRead(read, got.expiresAt, clock, `${k.key} (${k.group}, expiresAt ${got.expiresAt})`);
          if (k.group === 'untouched') {
            assert.equal(got.expiresAt, k.expiresAt, `${k.key} (untouched): expiry changed`);
          } else if (k.group === 'keepttl' && got.expiresAt !== k.expiresAt) {
            // Not the original lifetime (checked above): only the keepTtl put's re-creation has another expiry.
            assert.ok(
              got.expiresAt === null && got.value.toString() === 'kept',
              `${k.key} (keepttl): returned ${got.value.toString()} with expiresAt ${got.expiresAt}`,
            );
            (k.recreatedReads ??= []).push({ ...read, appliedWhenRead: k.applied });
          }
        }),
      );
    }
  });

  // Racers: each touched key's op is issued somewhere from 600 ms before to 100 ms after its
  // instant: the early ones land on the live key, the late ones find it expired, and the ones in
  // between race the reaper's tick.
  const racers = keys
    .filter((k) => k.group !== 'untouched')
    .map(async (k, i) => {
      await sleep(Math.max(0, k.expiresAt - clock.offset - 600 + r.int(700) - Date.now()));
      const c = clients[i % clients.length];
      const began = Date.now();
      k.racerBegan = began;
      let applied: boolean;
      switch (k.group) {
        case 'extend': {
          const at = await c.pexpire(k.key, 30_000);
          applied = at !== null;
          k.finalExpiresAt = at;
          break;
        }
        case 'clear':
          applied = await c.persist(k.key);
          k.finalExpiresAt = null;
          break;
        case 'keepttl': {
          const p = await c.put(k.key, 'kept', { keepTtl: true });
          applied = !p.created;
          if (applied) assert.equal(p.expiresAt, k.expiresAt, `${k.key}: keepTtl changed the expiry`);
          else assert.equal(p.expiresAt, null, `${k.key}: a keepTtl put that re-created the key has no TTL`);
          k.finalExpiresAt = p.expiresAt;
          break;
        }
        default: {
          const p = await c.put(k.key, 'rewritten');
          applied = !p.created;
          assert.equal(p.expiresAt, null);
          k.finalExpiresAt = null;
        }
      }
      const ended = Date.now();
      k.applied = applied;
      // "Applied to the live key" must have begun before the instant; "found it gone" must have ended after it.
      if (applied)
        assert.ok(shardMs(began) - clock.error < k.expiresAt, `${k.key} (${k.group}): applied to a key ${shardMs(began) - k.expiresAt} ms after its expiry`);
      else
        assert.ok(
          shardMs(ended) + clock.error >= k.expiresAt,
          `${k.key} (${k.group}): found the key gone ${k.expiresAt - shardMs(ended)} ms before its expiry`,
        );
    });

  await Promise.all([...readers, ...racers]);
  const touched = keys.filter((k) => k.group !== 'untouched');
  const applied = touched.filter((k) => k.applied).length;
  t.diagnostic(`${reads} reads (${hits} hits); ${applied} of ${touched.length} racing ops applied before the instant`);
  // A hit on a re-created keepTtl key is legitimate only if its put did re-create the key (found
  // it expired), and only after that put began and after the instant (shard clock).
  let early = 0;
  for (const k of keys) {
    for (const read of k.recreatedReads ?? []) {
      assert.equal(k.applied, false, `${k.key} (keepttl): a read returned the key without TTL although the keepTtl put kept the TTL`);
      assert.ok(read.ended >= k.racerBegan!, `${k.key} (keepttl): the re-created key was read before its put was issued`);
      assert.ok(
        shardMs(read.ended) + clock.error >= k.expiresAt,
        `${k.key} (keepttl): re-created ${k.expiresAt - shardMs(read.ended)} ms before the expiry instant`,
      );
      if (read.appliedWhenRead === undefined) early++;
    }
  }
  t.diagnostic(
    `${keys.reduce((n, k) => n + (k.recreatedReads?.length ?? 0), 0)} reads of re-created keepTtl keys, ${early} of them before their put's reply arrived`,
  );
  assert.ok(applied > 0 && applied < touched.length, `${applied} of ${touched.length} racing ops applied: the race did not straddle the instant`);

  // After the reaper's tick: the untouched are gone; every extended, cleared or rewritten key
  // survived with the TTL it was last acknowledged with; keepTtl keys expired on time.
  await sleep(Math.max(0, localExpiry + 800 - Date.now()));
  for (const k of keys) {
    const got = await clients[0].get(k.key);
    const survives =
      k.group === 'extend' ? k.applied : k.group === 'clear' ? k.applied : k.group === 'rewrite' ? true : k.group === 'keepttl' ? !k.applied : false;
    if (!survives) {
      assert.equal(got, null, `${k.key} (${k.group}) outlived its expiry`);
      continue;
    }
    assert.ok(got !== null, `${k.key} (${k.group}, applied=${k.applied}) was deleted although its TTL was extended, cleared or replaced`);
    assert.equal(got.expiresAt, k.finalExpiresAt ?? null, `${k.key} (${k.group}): expiry`);
  }
  // And the reaper deleted the expired rows physically while the races ran.
  const conn = await mysql.createConnection({ uri: store.urls[0] });
  const conn1 = await mysql.createConnection({ uri: store.urls[1] });
  try {
    const gone = keys.filter((k) => k.group === 'untouched').map((k) => k.key);
    const rows = async () => {
      let n = 0;
      for (const c of [conn, conn1]) n += Number(((await c.query('SELECT COUNT(*) AS n FROM kv WHERE k IN (?)', [gone]))[0] as Array<{ n: number }>)[0].n);
      return n;
    };
    await waitFor(async () => (await rows()) === 0, { timeoutMs: 5000, message: async () => `${await rows()} expired rows still stored 5 s after expiry` });
  } finally {
    await conn.end();
    await conn1.end();
  }
});
