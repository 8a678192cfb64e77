/**
 * Tests src/protocol/fifo.ts against a plain array model: order, take, drain, peek, and that
 * compaction (which copies the live tail down) never loses, repeats or reorders an item.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Fifo } from '../../src/protocol/fifo';

test('items come out in the order they went in, through shift, take and drain', () => {
  const q = new Fifo<number>();
  assert.equal(q.count, 0);
  assert.equal(q.peek(), undefined);
  for (let i = 0; i < 10; i++) q.push(i);
  assert.equal(q.peek(), 0);
  assert.equal(q.shift(), 0);
  assert.deepEqual(q.take(3), [1, 2, 3]);
  assert.equal(q.count, 6);
  assert.deepEqual(q.take(100), [4, 5, 6, 7, 8, 9]);
  assert.equal(q.count, 0);
  q.push(10);
  q.push(11);
  assert.deepEqual(q.drain(), [10, 11]);
  assert.equal(q.count, 0);
  assert.deepEqual(q.take(5), []);
});

test('a seeded random mix of operations matches an array model through many compactions', () => {
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const q = new Fifo<number>();
  const model: number[] = [];
  let next = 0;
  for (let step = 0; step < 50_000; step++) {
    const r = rand(100);
    if (r < 55) {
      q.push(next);
      model.push(next++);
    } else if (r < 80) {
      if (model.length > 0) assert.equal(q.shift(), model.shift());
    } else if (r < 97) {
      const n = rand(40);
      assert.deepEqual(q.take(n), model.splice(0, n));
    } else if (r < 98) {
      assert.deepEqual(q.drain(), model.splice(0));
    }
    assert.equal(q.count, model.length);
    assert.equal(q.peek(), model[0]);
  }
});
