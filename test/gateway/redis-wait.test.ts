/**
 * Tests WAIT on the Redis door against single-server shards (src/gateway/resp/wait-command.ts)
 * with ioredis: 0 at once (a single server has no replica), whatever the timeout; Redis's errors
 * for bad arguments; refused inside MULTI. A Galera group's real count is galera-wait.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Redis from 'ioredis';
import { startTestStore, type TestStore } from '../helpers/store';

let store: TestStore;
let redis: Redis;
before(async () => {
  store = await startTestStore({ shards: 2 });
  redis = new Redis({ port: store.server.redisPort!, host: '127.0.0.1', maxRetriesPerRequest: 0 });
});
after(async () => {
  redis?.disconnect();
  await store?.close();
});

test('WAIT on single servers: 0 at once, before and after a write, whatever the timeout', async () => {
  assert.equal(await redis.wait(1, 5000), 0, 'no write yet');
  await redis.set('w:a', 'v');
  const started = Date.now();
  assert.equal(await redis.wait(1, 0), 0, 'timeout 0 would block in Redis: a single server has no replica to wait for');
  assert.equal(await redis.wait(0, 5000), 0);
  assert.ok(Date.now() - started < 1000, `answered at once (${Date.now() - started} ms)`);
});

test('WAIT errors are Redis’s; inside MULTI it is refused', async () => {
  await assert.rejects(redis.call('WAIT', 'x', '0'), /^ReplyError: ERR value is not an integer or out of range$/);
  await assert.rejects(redis.call('WAIT', '1', 'x'), /^ReplyError: ERR timeout is not an integer or out of range$/);
  await assert.rejects(redis.call('WAIT', '1', '-1'), /^ReplyError: ERR timeout is negative$/);
  await assert.rejects(redis.call('WAIT', '1'), /ERR wrong number of arguments for 'wait' command/);
  await assert.rejects(redis.multi().set('w:b', '1').wait(1, 0).exec(), /EXECABORT/);
  assert.equal(await redis.get('w:b'), null);
});
