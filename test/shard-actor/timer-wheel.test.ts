/**
 * TimerWheel is pure: time is passed in, so these tests drive it with explicit `now` values (the
 * wheel's fake clock) and check exactly when entries become due.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TimerWheel } from '../../src/shard-actor/timer-wheel';

const k = (s: string) => Buffer.from(s);
const keys = (w: TimerWheel, max = 1000) => w.takeDue(max).map((e) => e.key.toString());

test('an entry is due only after its whole slot has elapsed', () => {
  const w = new TimerWheel(100, 16, 10_000);
  assert.equal(w.add(k('a'), 10_150), true);
  w.advance(10_150);
  assert.deepEqual(keys(w), []);
  w.advance(10_199);
  assert.deepEqual(keys(w), []);
  w.advance(10_200);
  assert.deepEqual(keys(w), ['a']);
  assert.equal(w.size, 0);
});

test('entries already due go straight to the due queue', () => {
  const w = new TimerWheel(100, 16, 10_000);
  w.add(k('past'), 5_000);
  assert.equal(w.dueCount, 1);
  assert.deepEqual(keys(w), ['past']);
});

test('entries beyond one revolution are refused (left to the range scan)', () => {
  const w = new TimerWheel(100, 16, 10_000);
  assert.equal(w.add(k('far'), 10_000 + 16 * 100 + 500), false);
  assert.equal(w.size, 0);
  assert.ok(w.spanEnd >= 10_000 + 14 * 100);
});

test('due entries come out oldest slot first, bounded by max', () => {
  const w = new TimerWheel(10, 100, 0);
  for (let i = 0; i < 50; i++) w.add(k(`k${i}`), 500 - i * 10);
  w.advance(10_000);
  const first = w.takeDue(10);
  assert.equal(first.length, 10);
  assert.ok(first.every((e, i) => i === 0 || e.dueAt >= first[i - 1].dueAt));
  assert.equal(w.size, 40);
  assert.equal(w.takeDue(1000).length, 40);
});

test('a jump of more than a revolution releases everything once, and the wheel keeps working', () => {
  const w = new TimerWheel(100, 8, 0);
  for (let t = 100; t < 700; t += 100) w.add(k(`t${t}`), t);
  w.advance(1_000_000);
  assert.equal(w.takeDue(100).length, 6);
  assert.equal(w.add(k('next'), 1_000_150), true);
  w.advance(1_000_200);
  assert.deepEqual(keys(w), ['next']);
});

test('clear empties the wheel and restarts at the given time', () => {
  const w = new TimerWheel(100, 8, 0);
  w.add(k('a'), 300);
  w.clear(50_000);
  assert.equal(w.size, 0);
  w.advance(60_000);
  assert.deepEqual(keys(w), []);
});
