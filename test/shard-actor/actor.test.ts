/**
 * Tests src/shard-actor/actor.ts and the parts it wires (read-path, write-path, reap-lane,
 * deadlines, health, slot-refusals) on their own, over an in-memory ShardStore (MemoryStore below),
 * for what is hard to reach through MySQL: per-key order while a transaction is held open, a read
 * beside a write, a store call that never answers, an in-doubt COMMIT, a fenced slot and a slot
 * owned elsewhere. The MySQL-facing behaviour of the real store is tested against a real server
 * (MysqlShardStore's callers in test/gateway and test/shard-actor); this fake only has to keep the
 * ShardStore contract: rows and kv_seq as MySQL would, slot states per slot, TxControl's phase
 * reset per attempt, `cut` failing the call in flight.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OP_DEL, OP_GET, OP_PUT, type OpCode, type Reply, type Request } from '../../src/protocol/ops';
import type { ActorConfig } from '../../src/protocol/port-messages';
import { HASH_TAGS, SERVED_STATES, SLOT_FENCED, SLOT_MOVED, SLOT_OWNED, slotOf, type ShardOwnership } from '../../src/protocol/slot-map';
import { ShardActor } from '../../src/shard-actor/actor';
import { StoreError } from '../../src/shard-actor/mysql-errors';
import {
  newTxControl,
  type CountResult,
  type DueRow,
  type FeedHead,
  type ScanResult,
  type LockedRow,
  type ReadResult,
  type ShardIdentity,
  type ShardInit,
  type ShardStore,
  type SlotStates,
  type TxControl,
} from '../../src/shard-actor/shard-store';
import type { FeedRow } from '../../src/protocol/feed';
import { sleep, waitFor } from '../helpers/wait';

/** Calls wait on it until it is opened (never, for a hung server). */
class Gate {
  private waiters: Array<() => void> = [];
  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  open(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

interface Row {
  v: Buffer;
  version: number;
  expiresAt: number | null;
}

/** One transact attempt as the store saw it; `start`/`end` order all attempts. */
interface Attempt {
  keys: string[];
  ctl: TxControl;
  start: number;
  end: number;
}

/** A fault for the next transact attempt: thrown at the locking read or at COMMIT (after applying, if `applied`). */
interface Fault {
  at: 'lock' | 'commit';
  error: Error;
  applied?: boolean;
}

const driverError = (code: string, message: string, fatal = false): Error => Object.assign(new Error(message), { code, fatal });
const connectionLost = (): Error => driverError('PROTOCOL_CONNECTION_LOST', 'Connection lost: The server closed the connection.', true);

class MemoryStore implements ShardStore {
  readonly rows = new Map<string, Row>();
  /** kv_slots: state by slot; a slot not listed is owned. */
  readonly slotStates = new Map<number, number>();
  /** Where moved slots went (movedTo's hint). */
  readonly moved = new Map<number, number>();
  nextVersion = 1;
  readonly attempts: Attempt[] = [];
  readonly reads: string[][] = [];
  readonly faults: Fault[] = [];
  readGate: Gate | null = null;
  writeGate: Gate | null = null;
  /** What settle() answers, and what it was asked. */
  settled = false;
  readonly settleCalls: number[] = [];
  private seq = 0;
  private thread = 100;

  private stateOf(slot: number): number {
    return this.slotStates.get(slot) ?? SLOT_OWNED;
  }

  /** Waits at `gate` if one is set; `ctl.cut` fails the wait as a destroyed connection would. */
  private async hold(gate: Gate | null, ctl: TxControl | undefined): Promise<void> {
    if (gate === null) return;
    await new Promise<void>((resolve, reject) => {
      void gate.wait().then(resolve);
      if (ctl !== undefined) ctl.cut = () => reject(connectionLost());
    });
    if (ctl !== undefined) ctl.cut = null;
  }

  async init(): Promise<ShardInit> {
    return { shardIndex: 0, hashTags: true };
  }
  async bootstrap(identity: ShardIdentity): Promise<ShardInit> {
    return { shardIndex: identity.shard, hashTags: true };
  }
  async ownership(): Promise<ShardOwnership> {
    return { shardIndex: 0, hashRule: HASH_TAGS, slots: [], peers: [], progress: null };
  }
  async movedTo(slots: number[]): Promise<Map<number, number>> {
    return new Map(slots.filter((s) => this.moved.has(s)).map((s) => [s, this.moved.get(s)!]));
  }
  async fillSlots(_limit: number): Promise<number> {
    return 0;
  }
  /** Listing is tested against real shards (test/gateway/list-keys.test.ts). */
  async scanRange(): Promise<ScanResult> {
    return { rows: [], served: { epoch: 0, slots: new Set() } };
  }
  async readValues(): Promise<Map<string, { v: Buffer; expires_at: number | null }>> {
    return new Map();
  }
  async countBySlot(): Promise<CountResult> {
    return { counts: new Map(), served: { epoch: 0, slots: new Set() } };
  }

  async readLive(keys: Buffer[], slots: number[], ctl?: TxControl): Promise<ReadResult> {
    if (ctl?.abandoned) throw new StoreError('KV_ABANDONED', 'abandoned');
    this.reads.push(keys.map((k) => k.toString()));
    await this.hold(this.readGate, ctl);
    const now = Date.now();
    const rows = [];
    for (const k of keys) {
      const r = this.rows.get(k.toString('latin1'));
      if (r !== undefined && (r.expiresAt === null || r.expiresAt > now)) rows.push({ k, v: r.v, version: r.version, expires_at: r.expiresAt, now_ms: now });
    }
    return { rows, served: new Set(slots.filter((s) => (SERVED_STATES as number[]).includes(this.stateOf(s)))) };
  }

  readonly transact: ShardStore['transact'] = async (sortedKeys, sortedSlots, decide, ctl = newTxControl(), recheck) => {
    ctl.phase = 'work';
    const attempt: Attempt = { keys: sortedKeys.map((k) => k.toString()), ctl, start: ++this.seq, end: 0 };
    this.attempts.push(attempt);
    const fault = this.faults.shift();
    try {
      if (ctl.abandoned) throw new StoreError('KV_ABANDONED', 'abandoned');
      await this.hold(this.writeGate, ctl);
      if (fault?.at === 'lock') throw fault.error;
      const locked = new Map<string, LockedRow>();
      for (const k of sortedKeys) {
        const r = this.rows.get(k.toString('latin1'));
        if (r !== undefined) locked.set(k.toString('latin1'), { version: r.version, expiresAt: r.expiresAt });
      }
      const states: SlotStates = new Map(sortedSlots.map((s) => [s, this.stateOf(s)]));
      const m = await decide(locked, Date.now(), this.nextVersion, states);
      const fix = m.inserts.length > 0 && recheck !== undefined ? await recheck(this.nextVersion) : null;
      if (ctl.abandoned) throw new StoreError('KV_ABANDONED', 'abandoned');
      ctl.phase = 'commit';
      ctl.threadId = ++this.thread;
      ctl.connectedAt = 1;
      if (fault?.at === 'commit' && !fault.applied) throw fault.error;
      for (const [k, v, version, expiresAt] of [...m.inserts, ...m.upserts, ...(fix?.upserts ?? [])])
        this.rows.set(k.toString('latin1'), { v: Buffer.from(v), version, expiresAt });
      for (const [k, expiresAt] of m.ttlUpdates) this.rows.get(k.toString('latin1'))!.expiresAt = expiresAt;
      for (const k of m.deletes) this.rows.delete(k.toString('latin1'));
      if (fault?.at === 'commit') throw fault.error;
    } finally {
      attempt.end = ++this.seq;
    }
  };

  async settle(threadId: number, _connectedAt: number): Promise<boolean> {
    this.settleCalls.push(threadId);
    return this.settled;
  }
  async reserveVersionBlock(size: number, above: number): Promise<number> {
    const first = Math.max(this.nextVersion, above + 1);
    this.nextVersion = first + size;
    return first;
  }
  async reap(_keys: Buffer[]): Promise<number> {
    return 0;
  }
  async reapWithFeed(_keys: Buffer[]): Promise<number> {
    return 0;
  }
  async feedHead(): Promise<FeedHead> {
    return { max: 0, trimmed: 0, from: 0, present: [] };
  }
  async feedTail(): Promise<FeedRow[]> {
    return [];
  }
  async feedRange(): Promise<{ rows: FeedRow[]; trimmed: number }> {
    return { rows: [], trimmed: 0 };
  }
  async feedFill(): Promise<void> {}
  async feedTrim(): Promise<number> {
    return 0;
  }
  async now(): Promise<number> {
    return Date.now();
  }
  async scanDueWindow(): Promise<DueRow[]> {
    return [];
  }
  async scanDueTies(): Promise<DueRow[]> {
    return [];
  }
  async scanOverdue(): Promise<DueRow[]> {
    return [];
  }
  async tryExpirerLock(): Promise<boolean> {
    return false;
  }
  async releaseExpirerLock(): Promise<void> {}
  async close(): Promise<void> {}
}

const config = (over: Partial<ActorConfig> = {}): ActorConfig => ({
  shard: 0,
  url: 'mysql://unused',
  nodes: [],
  slotHoldMs: 2000,
  batching: true,
  // 8: a second batch of a kind starts in parallel as soon as one chain is ready (maxBatchOps / 8).
  maxBatchOps: 8,
  maxBatchBytes: 1 << 20,
  readsInFlight: 2,
  writesInFlight: 2,
  queryTimeoutMs: 10_000,
  opDeadlineMs: 3000,
  maxRetries: 4,
  maxValueBytes: 1024 * 1024,
  tls: null,
  expiry: { enabled: false, tickMs: 100, horizonMs: 60_000, reapBatch: 100, reapsInFlight: 100, maxWheelKeys: 1000, lockRetryMs: 2000 },
  ...over,
});

/** An actor over `store`, started; its replies are collected by id. */
async function startActor(t: { after(fn: () => unknown): void }, store: MemoryStore, over: Partial<ActorConfig> = {}) {
  const replies = new Map<number, Reply>();
  const order: number[] = [];
  const actor = new ShardActor(
    config(over),
    store,
    (rs) => {
      for (const r of rs) {
        assert.equal(replies.has(r[0]), false, `op ${r[0]} answered twice`);
        replies.set(r[0], r);
        order.push(r[0]);
      }
    },
    () => undefined,
    () => undefined,
  );
  await actor.start();
  t.after(() => actor.stop());
  let nextId = 1;
  return {
    actor,
    replies,
    /** Ids in the order their replies were sent. */
    order,
    /** Submits ops in one frame; returns their ids. */
    send(...ops: Array<[OpCode, string, string?]>): number[] {
      const reqs: Request[] = ops.map(([op, key, value]) => [nextId++, op, Buffer.from(key), value === undefined ? null : Buffer.from(value), 0, 0, 0]);
      actor.receive(reqs);
      return reqs.map((r) => r[0]);
    },
    async reply(id: number, ms = 3000): Promise<Reply> {
      await waitFor(() => replies.has(id), { timeoutMs: ms, intervalMs: 2, message: () => `a reply to op ${id}` });
      return replies.get(id)!;
    },
  };
}

const attemptsOn = (store: MemoryStore, key: string): Attempt[] => store.attempts.filter((a) => a.keys.includes(key));

test('writes to one key apply in arrival order, one transaction at a time, while other keys run beside them', async (t) => {
  const store = new MemoryStore();
  const a = await startActor(t, store);
  const gate = (store.writeGate = new Gate());
  const [first] = a.send([OP_PUT, 'k', 'v1']);
  await waitFor(() => store.attempts.length === 1, { timeoutMs: 3000, intervalMs: 2, message: 'the first write to reach the store' });
  const [second, del, third, other] = a.send([OP_PUT, 'k', 'v2'], [OP_DEL, 'k'], [OP_PUT, 'k', 'v3'], [OP_PUT, 'j', 'x']);
  await waitFor(() => store.attempts.length === 2, { timeoutMs: 3000, intervalMs: 2, message: 'the write to another key to start beside it' });
  assert.deepEqual(store.attempts[1].keys, ['j']);
  await sleep(50);
  assert.equal(attemptsOn(store, 'k').length, 1, 'later writes to k wait while its transaction is open');
  assert.equal(a.replies.size, 0);
  store.writeGate = null;
  gate.open();

  const r = await Promise.all([first, second, del, third, other].map((id) => a.reply(id)));
  assert.deepEqual(
    r.map((x) => x[1]),
    [201, 200, 204, 201, 201],
  );
  const [v1, v2, , v3] = r.map((x) => x[2] as number);
  assert.ok(v1 < v2 && v2 < v3, `versions grow in arrival order: ${v1}, ${v2}, ${v3}`);
  assert.deepEqual(
    a.order.filter((id) => id !== other),
    [first, second, del, third],
    'answered in arrival order',
  );
  const k = attemptsOn(store, 'k');
  assert.equal(k.length, 2, 'the three waiting writes ran as one chain');
  assert.ok(k[1].start > k[0].end, 'the second transaction on k started after the first ended');
  assert.equal(store.rows.get('k')?.v.toString(), 'v3');
  assert.equal(store.rows.get('k')?.version, v3);
});

test('a read of another key runs beside a write; a read of the written key waits for it and sees it', async (t) => {
  const store = new MemoryStore();
  store.rows.set('j', { v: Buffer.from('jv'), version: 7, expiresAt: null });
  const a = await startActor(t, store);
  const gate = (store.writeGate = new Gate());
  const [put] = a.send([OP_PUT, 'k', 'new']);
  await waitFor(() => store.attempts.length === 1, { timeoutMs: 3000, intervalMs: 2, message: 'the write to reach the store' });
  const [getK, getJ] = a.send([OP_GET, 'k'], [OP_GET, 'j']);
  const j = await a.reply(getJ);
  assert.deepEqual([j[1], Buffer.from(j[2] as Uint8Array).toString(), j[3]], [200, 'jv', 7]);
  assert.equal(a.replies.has(getK), false, 'the read of k waits behind the write');
  assert.ok(!store.reads.some((keys) => keys.includes('k')), 'k was not read while its write was open');
  store.writeGate = null;
  gate.open();
  const k = await a.reply(getK);
  const p = a.replies.get(put)!;
  assert.equal(p[1], 201);
  assert.deepEqual([k[1], Buffer.from(k[2] as Uint8Array).toString(), k[3]], [200, 'new', p[2]]);
  assert.ok(a.order.indexOf(put) < a.order.indexOf(getK));
});

test('a store call that never answers: the op is answered SHARD_UNAVAILABLE at its deadline, and a write is never applied', async (t) => {
  const store = new MemoryStore();
  const a = await startActor(t, store, { opDeadlineMs: 300 });
  store.readGate = new Gate(); // never opened: a hung server
  store.writeGate = new Gate();
  const started = Date.now();
  const [get, put] = a.send([OP_GET, 'k'], [OP_PUT, 'w', 'v']);
  const g = await a.reply(get);
  const p = await a.reply(put);
  assert.ok(Date.now() - started < 2000, 'answered near the deadline, not at some store timeout');
  assert.deepEqual([g[1], g[2]], [503, 'KV_ERR_SHARD_UNAVAILABLE']);
  assert.deepEqual([p[1], p[2]], [503, 'KV_ERR_SHARD_UNAVAILABLE'], 'COMMIT was never sent: the outcome is known');
  const w = attemptsOn(store, 'w');
  assert.equal(w.length, 1);
  assert.equal(w[0].ctl.abandoned, true);
  assert.equal(w[0].ctl.phase, 'work');
  await waitFor(() => w[0].end > 0, { timeoutMs: 3000, intervalMs: 2, message: 'the cut call to fail' });
  assert.equal(store.rows.has('w'), false);
});

test('a connection lost during COMMIT: OUTCOME_UNKNOWN, not retried, and the key is held until settle() says the server finished', async (t) => {
  const store = new MemoryStore();
  const a = await startActor(t, store);
  store.faults.push({ at: 'commit', error: connectionLost(), applied: true });
  const [put] = a.send([OP_PUT, 'k', 'v1']);
  const r = await a.reply(put);
  assert.deepEqual([r[1], r[2]], [500, 'KV_ERR_OUTCOME_UNKNOWN']);
  assert.equal(attemptsOn(store, 'k').length, 1, 'an in-doubt COMMIT is never retried');
  const thread = attemptsOn(store, 'k')[0].ctl.threadId;

  const [later] = a.send([OP_PUT, 'k', 'v2']);
  await waitFor(() => store.settleCalls.length >= 2, { timeoutMs: 3000, intervalMs: 2, message: 'settle to be asked again' });
  assert.ok(
    store.settleCalls.every((id) => id === thread),
    'settle asks about the COMMIT in doubt',
  );
  assert.equal(attemptsOn(store, 'k').length, 1, 'no later write to k starts while the COMMIT is in doubt');
  assert.equal(a.replies.has(later), false);
  assert.equal(a.actor.statsSnapshot().inDoubt, 1, 'the unsettled batch is counted (kvsql_shard_in_doubt_batches)');
  store.settled = true;
  const l = await a.reply(later);
  assert.equal(a.actor.statsSnapshot().inDoubt, 0, 'settled: no longer counted');
  assert.equal(l[1], 200, 'the in-doubt write had committed: the later put replaces it');
  assert.equal(store.rows.get('k')?.v.toString(), 'v2');
});

test("a COMMIT refused with an answer is retried, and a later attempt's connection error before COMMIT is not taken for an in-doubt COMMIT", async (t) => {
  const store = new MemoryStore();
  const a = await startActor(t, store);
  // Galera: certification failed at COMMIT (not applied); then the connection drops while locking.
  store.faults.push({ at: 'commit', error: driverError('ER_LOCK_DEADLOCK', 'Deadlock found when trying to get lock; try restarting transaction') });
  store.faults.push({ at: 'lock', error: connectionLost() });
  const [put] = a.send([OP_PUT, 'k', 'v']);
  const r = await a.reply(put);
  assert.equal(r[1], 201);
  assert.equal(attemptsOn(store, 'k').length, 3);
  assert.equal(store.settleCalls.length, 0);
  assert.equal(store.rows.get('k')?.v.toString(), 'v');
});

test('a write to a fenced slot is held, then applied once the fence lifts; held past KVSQL_SLOT_HOLD_MS it is answered SLOT_MOVING', async (t) => {
  const store = new MemoryStore();
  const a = await startActor(t, store, { slotHoldMs: 600 });
  store.slotStates.set(slotOf(Buffer.from('k')), SLOT_FENCED);
  const [put] = a.send([OP_PUT, 'k', 'v']);
  await waitFor(() => attemptsOn(store, 'k').length >= 3, { timeoutMs: 3000, intervalMs: 2, message: 'the held write to be tried again' });
  assert.equal(a.replies.has(put), false, 'held, not answered');
  assert.equal(store.rows.has('k'), false);
  store.slotStates.set(slotOf(Buffer.from('k')), SLOT_OWNED);
  const r = await a.reply(put);
  assert.equal(r[1], 201);
  assert.equal(store.rows.get('k')?.v.toString(), 'v');

  store.slotStates.set(slotOf(Buffer.from('m')), SLOT_FENCED);
  const started = Date.now();
  const [held] = a.send([OP_PUT, 'm', 'v']);
  const h = await a.reply(held);
  assert.deepEqual([h[1], h[2]], [503, 'KV_ERR_SLOT_MOVING']);
  assert.ok(Date.now() - started >= 600, 'held for KVSQL_SLOT_HOLD_MS first');
  assert.equal(store.rows.has('m'), false);
});

test('a slot this shard does not own: reads and writes are refused WRONG_SHARD with the new owner, nothing written', async (t) => {
  const store = new MemoryStore();
  const slot = slotOf(Buffer.from('k'));
  store.slotStates.set(slot, SLOT_MOVED);
  store.moved.set(slot, 3);
  store.rows.set('k', { v: Buffer.from('stale'), version: 5, expiresAt: null });
  const a = await startActor(t, store);
  const [put, get] = a.send([OP_PUT, 'k', 'v'], [OP_GET, 'k']);
  const p = await a.reply(put);
  const g = await a.reply(get);
  for (const r of [p, g]) {
    assert.deepEqual([r[1], r[2], r[4]], [503, 'KV_ERR_WRONG_SHARD', 3]);
    assert.match(r[3] as string, new RegExp(`does not own slot ${slot}`));
  }
  assert.equal(attemptsOn(store, 'k').length, 1, 'a refusal is not retried');
  assert.equal(store.rows.get('k')?.v.toString(), 'stale');
});
