/**
 * Tests protocol/redis-notify.ts: notify-keyspace-events flags parsed and printed as Redis's
 * notify.c (every letter, A's members, m and n outside A), and the mapping of change-feed events to
 * Redis's event names and classes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  NOTIFY_ALL,
  NOTIFY_EXPIRED,
  NOTIFY_GENERIC,
  NOTIFY_KEY_MISS,
  NOTIFY_NEW,
  NOTIFY_STRING,
  notifyFlagsOf,
  notifyFlagsText,
  notifying,
  redisEventsOf,
} from '../../src/protocol/redis-notify';
import { FLAG_FLOAT, OP_APPEND, OP_INCR, OP_PUT } from '../../src/protocol/ops';

test('flags: every Redis letter round-trips; A is g$lshzxetd (not m, not n); K and E come last, then m', () => {
  for (const l of 'g$lshzxetdn') assert.equal(notifyFlagsText(notifyFlagsOf(l)), l);
  assert.equal(notifyFlagsOf('A'), NOTIFY_ALL);
  assert.equal(notifyFlagsText(notifyFlagsOf('g$lshzxetd')), 'A');
  assert.equal(notifyFlagsText(notifyFlagsOf('AKE')), 'AKE');
  assert.equal(notifyFlagsText(notifyFlagsOf('EKA')), 'AKE');
  assert.equal(notifyFlagsText(notifyFlagsOf('mEKAn')), 'AKEm', 'n is outside A and hidden by it, as in Redis');
  assert.equal(notifyFlagsText(notifyFlagsOf('nxE')), 'xnE');
  assert.equal(notifyFlagsOf(''), 0);
  assert.equal(notifyFlagsOf('a'), -1, 'case matters');
  assert.equal(notifyFlagsOf('K E'), -1);
  assert.equal((notifyFlagsOf('A') & NOTIFY_KEY_MISS) | (notifyFlagsOf('A') & NOTIFY_NEW), 0);
});

test('notifying: some class and K or E', () => {
  assert.equal(notifying(notifyFlagsOf('')), false);
  assert.equal(notifying(notifyFlagsOf('K')), false);
  assert.equal(notifying(notifyFlagsOf('A')), false);
  assert.equal(notifying(notifyFlagsOf('KA')), true);
  assert.equal(notifying(notifyFlagsOf('Ex')), true);
});

test('events: feed changes map to Redis names and classes in Redis order', () => {
  const key = Buffer.from('k');
  const names = (e: Parameters<typeof redisEventsOf>[0]) => redisEventsOf(e).map(([c, n]) => `${c}:${n}`);
  assert.deepEqual(names({ type: 'put', key }), [`${NOTIFY_STRING}:set`]);
  assert.deepEqual(names({ type: 'put', key, op: OP_PUT, created: true, ttl: true }), [
    `${NOTIFY_NEW}:new`,
    `${NOTIFY_STRING}:set`,
    `${NOTIFY_GENERIC}:expire`,
  ]);
  assert.deepEqual(names({ type: 'put', key, op: OP_INCR }), [`${NOTIFY_STRING}:incrby`]);
  assert.deepEqual(names({ type: 'put', key, op: OP_INCR, flags: FLAG_FLOAT }), [`${NOTIFY_STRING}:incrbyfloat`]);
  assert.deepEqual(names({ type: 'put', key, op: OP_APPEND }), [`${NOTIFY_STRING}:append`]);
  assert.deepEqual(names({ type: 'del', key }), [`${NOTIFY_GENERIC}:del`]);
  assert.deepEqual(names({ type: 'expire', key }), [`${NOTIFY_GENERIC}:expire`]);
  assert.deepEqual(names({ type: 'persist', key }), [`${NOTIFY_GENERIC}:persist`]);
  assert.deepEqual(names({ type: 'expired', key }), [`${NOTIFY_EXPIRED}:expired`]);
});
