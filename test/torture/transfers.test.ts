/**
 * Tests the transfer check of torture runs (test/torture/transfers.ts) on hand-made histories:
 * whole transfers pass whatever their outcome; a half-applied one seen by a read, a wrong final
 * sum and an impossible final balance are each named. And the accounts share one slot.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { slotOf } from '../../src/protocol/slot-map';
import { ACCOUNTS, checkTransfers, sameSlotKeys, START, type TransferOp } from './transfers';

const read = (balances: number[] | null): TransferOp => ({ client: 1, kind: 'read', invoke: 0, complete: 1, outcome: 'ok', balances });
const move = (from: number, to: number, amount: number, outcome: TransferOp['outcome'] = 'ok'): TransferOp => ({
  client: 0,
  kind: 'transfer',
  invoke: 0,
  complete: 1,
  outcome,
  transfer: [from, to, amount],
});
const even = new Array<number>(ACCOUNTS).fill(START);

test('the accounts share one slot', () => {
  const keys = sameSlotKeys('x', ACCOUNTS);
  assert.equal(new Set(keys.map((k) => slotOf(Buffer.from(k)))).size, 1);
});

test('whole transfers pass, acknowledged or unknown; reads before creation see nothing', () => {
  const finals = [START - 5, START + 5, START, START];
  assert.deepEqual(checkTransfers([read(null), move(0, 1, 3), move(0, 1, 2, 'unknown'), read([START - 3, START + 3, START, START])], finals), []);
});

test('a half-applied transfer, a wrong final sum and an impossible balance are each named', () => {
  assert.match(checkTransfers([read([START - 3, START, START, START])], even).join('\n'), /half applied/);
  assert.match(checkTransfers([], [START, START, START, START + 1]).join('\n'), /final balances sum to/);
  assert.match(checkTransfers([move(0, 1, 2, 'fail')], [START - 2, START + 2, START, START]).join('\n'), /account 0 moved by -2, more than/);
});
