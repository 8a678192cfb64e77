/**
 * Tests src/shard-actor/key-scheduler.ts, the per-key ordering rules, with no MySQL and no clock:
 * reads of a key run side by side; a write waits for every earlier op on its key and holds back
 * later ones; writes that waited start together as one ordered chain (up to maxChain, never past a
 * read); keys are independent; batches are taken oldest first within op and byte bounds; and
 * drainWaiting hands back exactly what has not started. A seeded random run checks the ordering
 * rule over thousands of operations.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OP_DEL, OP_EXPIRE, OP_GET, OP_PUT, OP_TTL, OP_TXN, type OpCode } from '../../src/protocol/ops';
import { KeyScheduler, type Chain } from '../../src/shard-actor/key-scheduler';
import type { PendingOp } from '../../src/shard-actor/pending-op';

let nextId = 1;
function op(kind: OpCode, key: string, value: string | null = kind === OP_PUT ? 'v' : null): PendingOp {
  const k = Buffer.from(key);
  return {
    id: nextId++,
    op: kind,
    key: k,
    keyStr: k.toString('latin1'),
    slot: 0,
    value: value === null ? null : Buffer.from(value),
    ttlMs: 0,
    flags: 0,
    ifVersion: 0,
    dueAt: 0,
  };
}
const get = (key: string) => op(OP_GET, key);
const put = (key: string, value = 'v') => op(OP_PUT, key, value);
const ids = (ops: PendingOp[]) => ops.map((o) => o.id);
const chainIds = (chains: Chain[]) => chains.map((c) => ids(c.ops));

test('reads of one key run side by side, in arrival order', () => {
  const s = new KeyScheduler(512);
  const r = [get('a'), get('a'), op(OP_TTL, 'a')];
  r.forEach((o) => s.submit(o));
  assert.equal(s.readyReadCount, 3);
  assert.equal(s.readyWriteCount, 0);
  assert.deepEqual(ids(s.takeReads(10)), ids(r));
  assert.equal(s.size, 3);
  r.forEach((o) => s.readDone(o));
  assert.equal(s.size, 0);
  assert.equal(s.keyCount, 0);
});

test('a write waits for the reads before it; reads after it wait for it', () => {
  const s = new KeyScheduler(512);
  const r1 = get('a');
  const w = put('a');
  const r2 = get('a');
  [r1, w, r2].forEach((o) => s.submit(o));
  assert.equal(s.readyReadCount, 1);
  assert.equal(s.readyWriteCount, 0, 'the write must wait for r1');
  s.takeReads(10);
  s.readDone(r1);
  assert.equal(s.readyWriteCount, 1);
  assert.equal(s.readyReadCount, 0, 'r2 must wait for the write');
  const [chain] = s.takeWrites(10, Infinity);
  assert.deepEqual(ids(chain.ops), [w.id]);
  s.chainDone(chain);
  assert.deepEqual(ids(s.takeReads(10)), [r2.id]);
  s.readDone(r2);
  assert.equal(s.size, 0);
  assert.equal(s.keyCount, 0);
});

test('a read that arrives while a write waits does not overtake it', () => {
  const s = new KeyScheduler(512);
  const r1 = get('a');
  const w = put('a');
  const r2 = get('a');
  [r1, w, r2].forEach((o) => s.submit(o));
  // r1 runs; r2 could run beside it, but that would let it see the state before w.
  assert.deepEqual(ids(s.takeReads(10)), [r1.id]);
  assert.equal(s.readyReadCount, 0);
});

test('writes that waited behind a running write start together as one chain, in order', () => {
  const s = new KeyScheduler(512);
  const w = [put('a', '1'), put('a', '2'), op(OP_DEL, 'a'), put('a', '3'), op(OP_EXPIRE, 'a')];
  w.forEach((o) => s.submit(o));
  const first = s.takeWrites(10, Infinity);
  assert.deepEqual(chainIds(first), [[w[0].id]], 'the first write started alone when it arrived');
  assert.equal(s.readyWriteCount, 0);
  s.chainDone(first[0]);
  const second = s.takeWrites(10, Infinity);
  assert.deepEqual(chainIds(second), [ids(w.slice(1))]);
  assert.equal(second[0].keyStr, 'a');
  s.chainDone(second[0]);
  assert.equal(s.size, 0);
  assert.equal(s.keyCount, 0);
});

test('a chain stops at a read, and the write after that read waits for it', () => {
  const s = new KeyScheduler(512);
  const [w1, w2, w3, r, w4] = [put('a'), put('a'), put('a'), get('a'), put('a')];
  [w1, w2, w3, r, w4].forEach((o) => s.submit(o));
  s.chainDone(s.takeWrites(10, Infinity)[0]);
  const chain = s.takeWrites(10, Infinity);
  assert.deepEqual(chainIds(chain), [[w2.id, w3.id]]);
  assert.equal(s.readyReadCount, 0);
  s.chainDone(chain[0]);
  assert.deepEqual(ids(s.takeReads(10)), [r.id]);
  assert.equal(s.readyWriteCount, 0);
  s.readDone(r);
  assert.deepEqual(chainIds(s.takeWrites(10, Infinity)), [[w4.id]]);
});

test('chains are at most maxChain writes long', () => {
  const s = new KeyScheduler(2);
  const w = Array.from({ length: 6 }, () => put('a'));
  w.forEach((o) => s.submit(o));
  const seen: number[][] = [];
  while (s.size > 0) {
    const [chain] = s.takeWrites(100, Infinity);
    assert.ok(chain, 'a chain must be ready while ops remain');
    seen.push(ids(chain.ops));
    s.chainDone(chain);
  }
  assert.deepEqual(seen, [[w[0].id], [w[1].id, w[2].id], [w[3].id, w[4].id], [w[5].id]]);
});

test('keys are independent: a write on one key holds back nothing on another', () => {
  const s = new KeyScheduler(512);
  const wa = put('a');
  const ra = get('a');
  const rb = get('b');
  const wc = put('c');
  [wa, ra, rb, wc].forEach((o) => s.submit(o));
  assert.deepEqual(ids(s.takeReads(10)), [rb.id]);
  assert.deepEqual(
    s.takeWrites(10, Infinity).map((c) => c.keyStr),
    ['a', 'c'],
  );
  assert.equal(s.keyCount, 3);
});

test('binary keys that differ in any byte are different keys', () => {
  const s = new KeyScheduler(512);
  for (let b = 0; b < 256; b++) {
    const k = Buffer.from([0x00, b, 0xff]);
    s.submit({ id: nextId++, op: OP_PUT, key: k, keyStr: k.toString('latin1'), slot: 0, value: Buffer.from('x'), ttlMs: 0, flags: 0, ifVersion: 0, dueAt: 0 });
  }
  assert.equal(s.readyWriteCount, 256, 'no two of them may wait for each other');
  assert.equal(s.keyCount, 256);
});

test('takeReads and takeWrites take the oldest first, within the op and byte bounds', () => {
  const s = new KeyScheduler(512);
  const reads = Array.from({ length: 5 }, (_, i) => get(`r${i}`));
  reads.forEach((o) => s.submit(o));
  assert.deepEqual(ids(s.takeReads(2)), ids(reads.slice(0, 2)));
  assert.deepEqual(ids(s.takeReads(2)), ids(reads.slice(2, 4)));
  assert.deepEqual(ids(s.takeReads(2)), ids(reads.slice(4)));
  assert.deepEqual(s.takeReads(2), []);

  const writes = Array.from({ length: 5 }, (_, i) => put(`w${i}`, 'x'.repeat(100)));
  writes.forEach((o) => s.submit(o));
  assert.deepEqual(chainIds(s.takeWrites(2, Infinity)), [[writes[0].id], [writes[1].id]], 'op bound');
  assert.deepEqual(chainIds(s.takeWrites(10, 250)), [[writes[2].id], [writes[3].id]], 'byte bound');
  // One chain is always taken, even when it alone is over the byte bound.
  assert.deepEqual(chainIds(s.takeWrites(10, 10)), [[writes[4].id]]);
  assert.deepEqual(s.takeWrites(10, 10), []);
});

test('a chain is taken whole: the op bound never splits it', () => {
  const s = new KeyScheduler(512);
  const [w0, w1, w2, w3] = [put('a'), put('a'), put('a'), put('a')];
  const other = put('b');
  [w0, w1, w2, w3].forEach((o) => s.submit(o));
  s.chainDone(s.takeWrites(10, Infinity)[0]);
  s.submit(other);
  // Ready now: chain [w1, w2, w3] then [other]. Bound 2: the first chain alone (3 ops) is taken.
  const batch = s.takeWrites(2, Infinity);
  assert.deepEqual(chainIds(batch), [[w1.id, w2.id, w3.id]]);
  assert.deepEqual(chainIds(s.takeWrites(2, Infinity)), [[other.id]]);
});

test('drainWaiting returns what has not started, keeps what runs, and leaves the books balanced', () => {
  const s = new KeyScheduler(512);
  const running = [get('a'), put('b')];
  running.forEach((o) => s.submit(o));
  const runningRead = s.takeReads(10);
  const runningChain = s.takeWrites(10, Infinity);
  const waiting = [put('a'), get('a'), put('b'), get('c'), put('d')];
  waiting.forEach((o) => s.submit(o));
  assert.equal(s.size, 7);
  const drained = s.drainWaiting();
  assert.deepEqual(
    ids(drained).sort((x, y) => x - y),
    ids(waiting).sort((x, y) => x - y),
  );
  assert.equal(s.size, 2);
  assert.equal(s.readyReadCount, 0);
  assert.equal(s.readyWriteCount, 0);
  s.readDone(runningRead[0]);
  s.chainDone(runningChain[0]);
  assert.equal(s.size, 0);
  assert.equal(s.keyCount, 0);
  // Still usable afterwards.
  const w = put('a');
  s.submit(w);
  assert.deepEqual(chainIds(s.takeWrites(10, Infinity)), [[w.id]]);
});

test('random workload: on each key every op that conflicts with an earlier one starts only after it completed', () => {
  // Small deterministic PRNG (mulberry32) so a failure reproduces.
  let seed = 0x5eed;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const s = new KeyScheduler(4);
  const arrival = new Map<number, number>();
  const started = new Map<number, number>();
  const completed = new Map<number, number>();
  const all: PendingOp[] = [];
  let clock = 0;
  const runningReads: PendingOp[] = [];
  const runningChains: Chain[] = [];
  for (let step = 0; step < 6000; step++) {
    const x = rand();
    if (x < 0.45 && all.length < 3000) {
      const key = `k${Math.floor(rand() * 4)}`;
      const o = rand() < 0.5 ? get(key) : put(key);
      arrival.set(o.id, clock++);
      all.push(o);
      s.submit(o);
    } else if (x < 0.6) {
      for (const o of s.takeReads(1 + Math.floor(rand() * 5))) {
        started.set(o.id, clock++);
        runningReads.push(o);
      }
    } else if (x < 0.75) {
      for (const c of s.takeWrites(1 + Math.floor(rand() * 5), Infinity)) {
        assert.deepEqual(
          ids(c.ops),
          ids(c.ops).sort((p, q) => p - q),
          'a chain holds its writes in arrival order',
        );
        for (const o of c.ops) started.set(o.id, clock);
        clock++;
        runningChains.push(c);
      }
    } else if (x < 0.88 && runningReads.length > 0) {
      const [o] = runningReads.splice(Math.floor(rand() * runningReads.length), 1);
      completed.set(o.id, clock++);
      s.readDone(o);
    } else if (runningChains.length > 0) {
      const [c] = runningChains.splice(Math.floor(rand() * runningChains.length), 1);
      for (const o of c.ops) completed.set(o.id, clock);
      clock++;
      s.chainDone(c);
    }
  }
  // Finish everything.
  while (s.size > 0) {
    for (const o of s.takeReads(100)) {
      started.set(o.id, clock++);
      completed.set(o.id, clock++);
      s.readDone(o);
    }
    for (const c of s.takeWrites(100, Infinity)) {
      for (const o of c.ops) started.set(o.id, clock);
      clock++;
      for (const o of c.ops) completed.set(o.id, clock);
      clock++;
      s.chainDone(c);
    }
    while (runningReads.length > 0) {
      const o = runningReads.pop()!;
      completed.set(o.id, clock++);
      s.readDone(o);
    }
    while (runningChains.length > 0) {
      const c = runningChains.pop()!;
      for (const o of c.ops) completed.set(o.id, clock);
      clock++;
      s.chainDone(c);
    }
  }
  assert.equal(s.keyCount, 0);
  assert.equal(completed.size, all.length, 'every op completed exactly once');
  const byKey = new Map<string, PendingOp[]>();
  for (const o of all) byKey.set(o.keyStr, [...(byKey.get(o.keyStr) ?? []), o]);
  let checked = 0;
  for (const ops of byKey.values()) {
    for (let j = 0; j < ops.length; j++) {
      for (let i = 0; i < j; i++) {
        const [a, b] = [ops[i], ops[j]];
        if (a.op === OP_GET && b.op === OP_GET) continue;
        const sameChain = a.op === OP_PUT && b.op === OP_PUT && started.get(a.id) === started.get(b.id);
        if (sameChain) continue; // applied in order inside one transaction
        assert.ok(started.get(b.id)! > completed.get(a.id)!, `op ${b.id} started before the earlier conflicting op ${a.id} completed`);
        checked++;
      }
    }
  }
  assert.ok(checked > 1000, `only ${checked} conflicting pairs checked`);
});

// ---------------------------------------------------------------------------------------------
// Transactions: one op queued on every key it names
// ---------------------------------------------------------------------------------------------

function txn(...keys: string[]): PendingOp {
  const t = op(OP_TXN as OpCode, keys[0]);
  const sorted = keys.map((k) => Buffer.from(k)).sort(Buffer.compare);
  t.txn = {
    compares: [],
    success: [],
    failure: [],
    keys: sorted.map((key) => ({ key, keyStr: key.toString('latin1'), slot: 0 })),
    withValues: false,
    waiting: 0,
    held: [],
  };
  return t;
}

test('a transaction is ready once it holds all its keys, and holds back what came after it', () => {
  const s = new KeyScheduler(512);
  const w = put('a');
  const t = txn('a', 'b');
  const rb = get('b');
  const wa = put('a');
  [w, t, rb, wa].forEach((o) => s.submit(o));
  assert.equal(s.readyTxnCount, 0, 'waits for the put of a before it');
  assert.equal(s.readyReadCount, 0, 'the read of b came after the transaction: it waits');
  const [chain] = s.takeWrites(10, Infinity);
  assert.deepEqual(ids(chain.ops), [w.id]);
  s.chainDone(chain);
  assert.equal(s.readyTxnCount, 1);
  assert.deepEqual(s.takeTxns(10), [t]);
  assert.equal(s.readyReadCount + s.readyWriteCount, 0, 'nothing on a or b runs beside it');
  s.txnDone(t);
  assert.deepEqual(ids(s.takeReads(10)), [rb.id]);
  assert.deepEqual(chainIds(s.takeWrites(10, Infinity)), [[wa.id]]);
  assert.equal(s.size, 2);
});

test('overlapping transactions run in arrival order and never wait on each other in a cycle', () => {
  const s = new KeyScheduler(512);
  const r = get('b');
  const t1 = txn('a', 'b');
  const t2 = txn('b', 'a');
  const t3 = txn('c');
  [r, t1, t2, t3].forEach((o) => s.submit(o));
  assert.deepEqual(s.takeTxns(10), [t3], 'independent keys: ready at once');
  assert.deepEqual(s.takeTxns(10), [], 't1 waits for the read of b; t2 waits for t1');
  s.takeReads(10);
  s.readDone(r);
  assert.deepEqual(s.takeTxns(10), [t1]);
  assert.deepEqual(s.takeTxns(10), []);
  s.txnDone(t1);
  assert.deepEqual(s.takeTxns(10), [t2]);
  s.txnDone(t2);
  s.txnDone(t3);
  assert.equal(s.size, 0);
  assert.equal(s.keyCount, 0);
});

test('a transaction chain-breaks: writes before it and after it never share a chain', () => {
  const s = new KeyScheduler(512);
  const r = get('a');
  const w1 = put('a');
  const t = txn('a');
  const w2 = put('a');
  [r, w1, t, w2].forEach((o) => s.submit(o));
  s.takeReads(10);
  s.readDone(r);
  const chains = s.takeWrites(10, Infinity);
  assert.deepEqual(chainIds(chains), [[w1.id]]);
  s.chainDone(chains[0]);
  assert.deepEqual(s.takeTxns(10), [t]);
  s.txnDone(t);
  assert.deepEqual(chainIds(s.takeWrites(10, Infinity)), [[w2.id]]);
});

test('drainWaiting hands back a waiting transaction once and frees the keys it held', () => {
  const s = new KeyScheduler(512);
  const w = put('b');
  const t = txn('a', 'b');
  [w, t].forEach((o) => s.submit(o));
  const drained = s.drainWaiting();
  assert.deepEqual(ids(drained).sort(), [w.id, t.id].sort());
  assert.equal(s.size, 0);
  assert.equal(s.keyCount, 0, 'the key a, held for the transaction, is free');
  const again = put('a');
  s.submit(again);
  assert.equal(s.readyWriteCount, 1);
});
