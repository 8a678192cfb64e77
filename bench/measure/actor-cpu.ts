#!/usr/bin/env node
/**
 * Owns measuring the shard actor's own CPU per op, without MySQL, uWS or a MessagePort: the part
 * of an op's cost that the actor's code decides (intake, key scheduling, batching, planning,
 * answering). It drives one ShardActor over an in-memory store that answers at once, with frames
 * of ops kept in flight as the gateway does, and reports CPU microseconds per op.
 *
 * Two builds compared in one run, alternating (the machine is noisy; ratios within a run hold):
 *
 *   node dist/bench/measure/actor-cpu.js [--ops=200000] [--rounds=5] [--frame=32] [--in-flight=4]
 *        [--old=bench/.builds/<sha>/dist]
 *
 * Each measurement is a child process (fresh JIT), `--child=<dist root>` internally. Without
 * --old it measures this build only. Writes nothing; DESIGN.md quotes what it prints.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { ShardActor } from '../../src/shard-actor/actor';
import type { ShardStore } from '../../src/shard-actor/shard-store';
import type { ActorConfig } from '../../src/protocol/port-messages';
import { numberFlag, runScript } from '../options';

const OP_GET = 1;
const OP_PUT = 2;
const KEYS = 10_000;

interface Row {
  v: Buffer;
  version: number;
  expiresAt: number | null;
}

/** A store with no I/O: reads and transactions answer on the next microtask. */
function memoryStore(): ShardStore {
  const rows = new Map<string, Row>();
  let nextVersion = 1;
  const served = (slots: number[]) => new Set(slots);
  const none = async () => [];
  const store = {
    init: async () => 0,
    bootstrap: async () => undefined,
    ownership: async () => ({ shardIndex: 0, slots: [], peers: [], progress: null }),
    movedTo: async () => new Map(),
    fillSlots: async () => 0,
    scanRange: async () => ({ rows: [], served: { epoch: 0, slots: new Set() } }),
    readValues: async () => new Map(),
    countBySlot: async () => ({ counts: new Map(), served: { epoch: 0, slots: new Set() } }),
    readLive: async (keys: Buffer[], slots: number[]) => {
      const now = Date.now();
      const out = [];
      for (const k of keys) {
        const r = rows.get(k.toString('latin1'));
        if (r !== undefined) out.push({ k, v: r.v, version: r.version, expires_at: r.expiresAt, now_ms: now });
      }
      return { rows: out, served: served(slots) };
    },
    transact: async (sortedKeys: Buffer[], sortedSlots: number[], decide: (...a: unknown[]) => unknown, ctl?: { phase: string; threadId: number }) => {
      if (ctl) ctl.phase = 'work';
      const locked = new Map();
      for (const k of sortedKeys) {
        const r = rows.get(k.toString('latin1'));
        if (r !== undefined) locked.set(k.toString('latin1'), { version: r.version, expiresAt: r.expiresAt });
      }
      const m = (await decide(locked, Date.now(), nextVersion, new Map(sortedSlots.map((s) => [s, 0])))) as {
        inserts: Array<[Buffer, Buffer, number, number | null]>;
        upserts: Array<[Buffer, Buffer, number, number | null]>;
        ttlUpdates: Array<[Buffer, number | null]>;
        deletes: Buffer[];
      };
      if (ctl) ctl.phase = 'commit';
      for (const [k, v, version, expiresAt] of m.inserts) rows.set(k.toString('latin1'), { v, version, expiresAt });
      for (const [k, v, version, expiresAt] of m.upserts) rows.set(k.toString('latin1'), { v, version, expiresAt });
      for (const k of m.deletes) rows.delete(k.toString('latin1'));
    },
    settle: async () => true,
    reserveVersionBlock: async (size: number, above: number) => {
      const first = Math.max(nextVersion, above + 1);
      nextVersion = first + size;
      return first;
    },
    reap: async () => 0,
    reapWithFeed: async () => 0,
    feedHead: async () => ({ max: 0, trimmed: 0, from: 0, present: [] }),
    feedTail: none,
    feedRange: async () => ({ rows: [], trimmed: 0 }),
    feedFill: async () => undefined,
    feedTrim: async () => 0,
    now: async () => Date.now(),
    scanDueWindow: none,
    scanDueTies: none,
    scanOverdue: none,
    tryExpirerLock: async () => false,
    releaseExpirerLock: async () => undefined,
    close: async () => undefined,
  };
  return store as unknown as ShardStore;
}

const config: ActorConfig = {
  shard: 0,
  url: 'mysql://unused',
  nodes: [],
  slotHoldMs: 2000,
  batching: true,
  maxBatchOps: 512,
  maxBatchBytes: 1 << 20,
  readsInFlight: 4,
  writesInFlight: 4,
  queryTimeoutMs: 10_000,
  opDeadlineMs: 4500,
  maxRetries: 4,
  maxValueBytes: 1 << 20,
  tls: null,
  expiry: { enabled: false, tickMs: 100, horizonMs: 60_000, reapBatch: 100, reapsInFlight: 100, maxWheelKeys: 1000, lockRetryMs: 2000 },
};

/** Runs `ops` ops of one kind through an actor from `dist`; returns CPU µs per op. */
async function measure(dist: string, op: number, ops: number, frame: number, inFlight: number): Promise<number> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { ShardActor: Actor } = require(path.resolve(dist, 'src/shard-actor/actor.js')) as { ShardActor: typeof ShardActor };
  const keys = Array.from({ length: KEYS }, (_, i) => Buffer.from(`key:${i}`));
  const value = Buffer.alloc(100, 'v');
  let answered = 0;
  let wake: (() => void) | null = null;
  const actor = new Actor(
    config,
    memoryStore(),
    (replies) => {
      answered += replies.length;
      wake?.();
    },
    () => undefined,
    () => undefined,
  );
  await actor.start();
  // Preload every key, so GETs hit.
  const run = async (kind: number, n: number): Promise<void> => {
    let id = 1;
    let sent = 0;
    answered = 0;
    while (answered < n) {
      while (sent < n && sent - answered < frame * inFlight) {
        const reqs = [];
        for (let i = 0; i < frame && sent < n; i++, sent++) reqs.push([id++, kind, keys[sent % KEYS], kind === OP_PUT ? value : null, 0, 0, 0]);
        actor.receive(reqs as never);
      }
      await new Promise<void>((r) => (wake = r));
      wake = null;
    }
  };
  await run(OP_PUT, KEYS);
  await run(op, Math.min(ops, 20_000)); // warm the JIT
  const cpu0 = process.cpuUsage();
  await run(op, ops);
  const cpu = process.cpuUsage(cpu0);
  await actor.stop();
  return (cpu.user + cpu.system) / ops;
}

runScript(async () => {
  const child = process.argv.find((a) => a.startsWith('--child='))?.slice('--child='.length);
  const ops = numberFlag('ops', 200_000);
  const frame = numberFlag('frame', 32);
  const inFlight = numberFlag('in-flight', 4);
  if (child !== undefined) {
    const get = await measure(child, OP_GET, ops, frame, inFlight);
    const put = await measure(child, OP_PUT, ops, frame, inFlight);
    process.stdout.write(JSON.stringify({ get, put }) + '\n');
    return;
  }
  const rounds = numberFlag('rounds', 5);
  const here = path.resolve(__dirname, '../..');
  const old = process.argv.find((a) => a.startsWith('--old='))?.slice('--old='.length);
  const builds = old === undefined ? [here] : [here, path.resolve(old)];
  const results = builds.map(() => ({ get: [] as number[], put: [] as number[] }));
  for (let r = 0; r < rounds; r++) {
    // Alternate which build goes first, so drift over the run favours neither.
    const order = r % 2 === 0 ? builds.map((_, i) => i) : builds.map((_, i) => i).reverse();
    for (const i of order) {
      const out = execFileSync(process.execPath, [__filename, `--child=${builds[i]}`, `--ops=${ops}`, `--frame=${frame}`, `--in-flight=${inFlight}`], {
        encoding: 'utf8',
      });
      const m = JSON.parse(out.trim().split('\n').pop()!) as { get: number; put: number };
      results[i].get.push(m.get);
      results[i].put.push(m.put);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const kind of ['get', 'put'] as const) {
    const meds = results.map((r) => median(r[kind]));
    const line = builds
      .map((b, i) => `${path.relative(process.cwd(), b) || '.'} ${meds[i].toFixed(2)} µs/op [${results[i][kind].map((x) => x.toFixed(2)).join(' ')}]`)
      .join('  vs  ');
    const ratio = meds.length === 2 ? `  new/old CPU ${(meds[0] / meds[1]).toFixed(3)}x` : '';
    console.log(`actor ${kind}: ${line}${ratio}`);
  }
});
