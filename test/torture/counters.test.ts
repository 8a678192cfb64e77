/**
 * Tests the counter check of torture runs (test/torture/counters.ts) on hand-made histories: it
 * accepts a correct one and names each kind of violation (lost, invented, duplicate, stale read).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkCounters, type CounterOp } from './counters';

const incr = (value: number, invoke: number, complete: number, client = 0): CounterOp => ({
  client,
  key: 'c',
  kind: 'incr',
  invoke,
  complete,
  outcome: 'ok',
  value,
});
const lost = (invoke: number, complete: number): CounterOp => ({ client: 9, key: 'c', kind: 'incr', invoke, complete, outcome: 'unknown' });
const read = (value: number, invoke: number, complete: number): CounterOp => ({ client: 5, key: 'c', kind: 'get', invoke, complete, outcome: 'ok', value });
const finals = (n: number) => new Map([['c', n]]);

test('a correct history passes, concurrent increments in any order, an unknown one applied or not', () => {
  const h = [incr(2, 0, 10), incr(1, 1, 9, 1), read(2, 11, 12), lost(13, 20), incr(3, 21, 22)];
  assert.deepEqual(checkCounters(h, finals(3)), []);
  assert.deepEqual(checkCounters([...h.slice(0, 4), incr(4, 21, 22)], finals(4)), []);
});

test('each violation is named', () => {
  assert.match(checkCounters([incr(1, 0, 1), incr(2, 2, 3)], finals(1)).join('\n'), /increments lost/);
  assert.match(checkCounters([incr(1, 0, 1)], finals(2)).join('\n'), /increments invented/);
  assert.match(checkCounters([incr(1, 0, 5), incr(1, 1, 4, 1)], finals(2)).join('\n'), /two acknowledged increments answered 1/);
  assert.match(checkCounters([incr(2, 0, 1), incr(1, 2, 3)], finals(2)).join('\n'), /answered 1 though one acknowledged before it began answered 2/);
  assert.match(checkCounters([incr(1, 0, 1), read(0, 2, 3)], finals(1)).join('\n'), /a read saw 0 after an increment to 1/);
  assert.match(checkCounters([read(1, 0, 1), incr(1, 2, 3)], finals(1)).join('\n'), /a read saw 1 before an increment that then answered 1 began/);
});
