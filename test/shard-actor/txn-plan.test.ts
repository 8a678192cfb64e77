/**
 * Tests src/shard-actor/txn-plan.ts with no MySQL: a transaction's keys come out unique and in
 * lock order; compares hold or fail against locked rows (an expired row is absent); the chosen
 * list's ops are regrouped per key in program order; replies go back in program order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OP_GET, OP_INCR, OP_PUT } from '../../src/protocol/ops';
import { ABSENT, EXISTS, type TxnProgram } from '../../src/protocol/txn';
import { choose, comparesHold, txnOp, txnReply } from '../../src/shard-actor/txn-plan';
import { planWrites } from '../../src/shard-actor/write-plan';
import type { LockedRow } from '../../src/shard-actor/shard-store';

const NOW = 1_000_000;
const b = (s: string) => Buffer.from(s);
const rows = (entries: Record<string, LockedRow>) => new Map(Object.entries(entries).map(([k, v]) => [b(k).toString('latin1'), v]));

const program: TxnProgram = [
  [
    [b('z'), 5],
    [b('a'), ABSENT],
  ],
  [
    [OP_PUT, b('m'), b('1'), 0, 0, 0],
    [OP_INCR, b('m'), b('2'), 0, 0, 0],
    [OP_GET, b('a'), null, 0, 0, 0],
    [OP_GET, b('m'), null, 0, 0, 0],
  ],
  [[OP_GET, b('z'), null, 0, 0, 0]],
];

test('a transaction names each key once, in lock (byte) order; it fetches values when an op needs them', () => {
  const t = txnOp(9, program, 123, true);
  assert.deepEqual(
    t.txn!.keys.map((k) => k.keyStr),
    ['a', 'm', 'z'],
  );
  assert.equal(t.key.toString(), 'a');
  assert.equal(t.deadline, 123);
  assert.equal(t.txn!.withValues, true);
  assert.equal(txnOp(1, [[], [[OP_PUT, b('k'), b('v'), 0, 0, 0]], []], 0, true).txn!.withValues, false);
});

test('compares: exact version, absent (an expired row counts as absent), exists', () => {
  const t = txnOp(1, program, 0, true).txn!;
  assert.equal(comparesHold(t, rows({ z: { version: 5, expiresAt: null } }), NOW), true);
  assert.equal(comparesHold(t, rows({ z: { version: 6, expiresAt: null } }), NOW), false, 'z moved on');
  assert.equal(comparesHold(t, rows({ z: { version: 5, expiresAt: NOW } }), NOW), false, 'z expired');
  assert.equal(comparesHold(t, rows({ z: { version: 5, expiresAt: null }, a: { version: 1, expiresAt: null } }), NOW), false, 'a exists');
  assert.equal(comparesHold(t, rows({ z: { version: 5, expiresAt: null }, a: { version: 1, expiresAt: NOW - 1 } }), NOW), true, 'a expired: absent');
  const exists = txnOp(1, [[[b('e'), EXISTS]], [], []], 0, true).txn!;
  assert.equal(comparesHold(exists, rows({ e: { version: 77, expiresAt: null } }), NOW), true);
  assert.equal(comparesHold(exists, rows({}), NOW), false);
});

test('the chosen ops run per key in program order; replies come back in program order', () => {
  const op = txnOp(4, program, 0, true);
  const chains = choose(op.txn!, true);
  assert.deepEqual(
    chains.map((c) => [c.keyStr, c.ops.map((o) => o.id)]),
    [
      ['a', [2]],
      ['m', [0, 1, 3]],
    ],
  );
  const planned = planWrites(chains, rows({ a: { version: 1, expiresAt: null, value: b('x') } }), NOW, 100);
  const reply = txnReply(op, true, planned.replies);
  assert.equal(reply[0], 4);
  assert.equal(reply[2], 1);
  assert.deepEqual(
    reply[3].map((r) => r.slice(1).map((x) => (x instanceof Uint8Array ? Buffer.from(x).toString() : x))),
    [
      [201, 100, null],
      [200, '3', 101, null],
      [200, 'x', 1, null],
      [200, '3', 101, null],
    ],
  );
  const failed = choose(op.txn!, false);
  assert.deepEqual(
    failed.map((c) => c.keyStr),
    ['z'],
  );
});
