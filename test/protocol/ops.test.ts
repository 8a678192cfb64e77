/**
 * Tests the reply shapes of src/protocol/ops.ts: each constructor builds exactly the array the
 * MessagePort has always carried (its msgpack bytes are a wire format), isErrorReply tells an
 * error from a 404 or 412 result, and ttlLeftMs is the one TTL computation (0 once due, null
 * without a TTL).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import {
  deleted,
  errorReply,
  expireSet,
  getHit,
  isErrorReply,
  notFound,
  persisted,
  preconditionFailed,
  putDone,
  reapDeleted,
  reaped,
  ttlHit,
  ttlLeftMs,
  type Reply,
} from '../../src/protocol/ops';

const packr = new Packr({ useRecords: false, moreTypes: false });
const bytes = (v: unknown): string => Buffer.from(packr.pack(v)).toString('hex');

test('each constructor builds the positional array the port carries, byte for byte', () => {
  const v = Buffer.from('value');
  const cases: Array<[Reply, unknown[]]> = [
    [notFound(7), [7, 404]],
    [preconditionFailed(7, 12), [7, 412, 12]],
    [preconditionFailed(7, null), [7, 412, null]],
    [getHit(7, v, 3, null), [7, 200, v, 3, null]],
    [getHit(7, v, 3, 1_700_000_000_000), [7, 200, v, 3, 1_700_000_000_000]],
    [putDone(7, true, 4, null), [7, 201, 4, null]],
    [putDone(7, false, 5, 99), [7, 200, 5, 99]],
    [deleted(7), [7, 204]],
    [expireSet(7, 5000), [7, 200, 5000]],
    [persisted(7, true), [7, 200, 1]],
    [persisted(7, false), [7, 200, 0]],
    [ttlHit(7, 5000, 3800, 9), [7, 200, 5000, 3800, 9]],
    [reaped(7, true), [7, 200, 1]],
    [errorReply(7, 'KV_ERR_OVERLOADED', 'shard 0 queue is full'), [7, 503, 'KV_ERR_OVERLOADED', 'shard 0 queue is full', 1]],
    [errorReply(7, 'KV_ERR_OUTCOME_UNKNOWN', 'lost during commit'), [7, 500, 'KV_ERR_OUTCOME_UNKNOWN', 'lost during commit', 1]],
  ];
  for (const [built, literal] of cases) {
    assert.deepEqual(built, literal);
    assert.equal(bytes(built), bytes(literal), JSON.stringify(literal));
  }
});

test('isErrorReply: an error has a code; 404 and 412 are results', () => {
  assert.equal(isErrorReply(errorReply(1, 'KV_ERR_SHARD_UNAVAILABLE', 'down')), true);
  assert.equal(isErrorReply([1, 500, 'KV_ERR_OUTCOME_UNKNOWN', 'no answer']), true, 'the pool builds errors without retryAfter');
  assert.equal(isErrorReply(notFound(1)), false);
  assert.equal(isErrorReply(preconditionFailed(1, 3)), false);
  assert.equal(isErrorReply(preconditionFailed(1, null)), false);
  assert.equal(isErrorReply(getHit(1, Buffer.from('KV_ERR_X'), 1, null)), false);
});

test('ttlLeftMs: time left against the shard clock of the read, 0 once due, null without a TTL', () => {
  assert.equal(ttlLeftMs(ttlHit(1, 5000, 3800, 1)), 1200);
  assert.equal(ttlLeftMs(ttlHit(1, 5000, 5000, 1)), 0);
  assert.equal(ttlLeftMs(ttlHit(1, 5000, 6000, 1)), 0);
  assert.equal(ttlLeftMs(ttlHit(1, null, 3800, 1)), null);
});

test('reapDeleted reads what reaped wrote', () => {
  assert.equal(reapDeleted(reaped(1, true)), true);
  assert.equal(reapDeleted(reaped(1, false)), false);
});
