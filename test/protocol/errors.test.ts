/**
 * Tests src/protocol/errors.ts, the one error path every door uses: a code's status (unknown codes
 * are 500), the Retry-After policy (503 and 429 only; an outcome-unknown 500 never says retry),
 * and toErrorData, which keeps a KvError's or a port's `{code, message}` and hides anything else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clientMessage, ERRORS, KvError, RETRY_AFTER_SECONDS, retryAfterOf, statusOf, toErrorData } from '../../src/protocol/errors';

test('statusOf gives the registry status, and 500 for a code it does not know', () => {
  for (const [code, status] of Object.entries(ERRORS)) assert.equal(statusOf(code), status, code);
  assert.equal(statusOf('KV_ERR_FROM_A_NEWER_SERVER'), 500);
  assert.equal(statusOf(''), 500);
  assert.equal(new KvError('KV_ERR_OVERLOADED', 'x').status, 503);
});

test('Retry-After is sent with every 503 and 429, and with nothing else', () => {
  for (const code of Object.keys(ERRORS) as Array<keyof typeof ERRORS>) {
    const expected = ERRORS[code] === 503 || ERRORS[code] === 429 ? RETRY_AFTER_SECONDS : null;
    assert.equal(retryAfterOf(code), expected, code);
  }
  assert.equal(retryAfterOf('KV_ERR_OUTCOME_UNKNOWN'), null, 'a write of unknown fate must not invite a blind retry');
  assert.equal(retryAfterOf('KV_ERR_NOT_A_CODE'), null);
});

test('toErrorData keeps KvErrors and registered port data, and hides everything else', () => {
  assert.deepEqual(toErrorData(new KvError('KV_ERR_BAD_KEY', 'key must not be empty')), { code: 'KV_ERR_BAD_KEY', message: 'key must not be empty' });
  // An error that crossed a MessagePort is plain data; its code is matched, not its class.
  assert.deepEqual(toErrorData({ code: 'KV_ERR_SHARD_UNAVAILABLE', message: 'shard 2 is down' }), {
    code: 'KV_ERR_SHARD_UNAVAILABLE',
    message: 'shard 2 is down',
  });
  const internal = { code: 'KV_ERR_INTERNAL', message: 'internal error' };
  assert.deepEqual(toErrorData(new Error('ECONNRESET at 10.0.0.7:3306')), internal);
  assert.deepEqual(toErrorData(Object.assign(new Error('secret detail'), { code: 'ER_ACCESS_DENIED_ERROR' })), internal);
  assert.deepEqual(toErrorData(null), internal);
  assert.deepEqual(toErrorData('boom'), internal);
});

test('clientMessage: one rule on every door: a 500 shows "internal error", except an outcome the client must act on', () => {
  assert.equal(clientMessage('KV_ERR_INTERNAL', 'shard 1: ER_NO_SUCH_TABLE'), 'internal error');
  assert.equal(clientMessage('KV_ERR_FROM_A_NEWER_SERVER', 'detail'), 'internal error', 'a code not in the registry is a 500');
  assert.equal(clientMessage('KV_ERR_OUTCOME_UNKNOWN', 'shard 0: the connection was lost during COMMIT'), 'shard 0: the connection was lost during COMMIT');
  for (const code of Object.keys(ERRORS)) {
    if (code === 'KV_ERR_INTERNAL') continue;
    assert.equal(clientMessage(code, 'as sent'), 'as sent', code);
  }
});
