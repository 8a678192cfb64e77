/**
 * Owns the Redis-door tests' usual setup: a test store (two shards unless told) with a second
 * gateway on the same shards, and an ioredis client on each gateway's Redis port. Relies on
 * helpers/store and ioredis. A suite starts it in `before` and closes it in `after`.
 */
import Redis from 'ioredis';
import type { Config } from '../../src/config/config';
import { startTestStore, type TestStore } from './store';

export interface RedisPair {
  store: TestStore;
  /** A client of the first gateway. */
  redis: Redis;
  /** A client of the second gateway. */
  second: Redis;
  close(): Promise<void>;
}

export async function startRedisPair(config: Partial<Config> = {}): Promise<RedisPair> {
  const store = await startTestStore({ shards: 2, config });
  const other = await store.startAnotherGateway();
  const redis = new Redis({ port: store.server.redisPort!, host: '127.0.0.1', maxRetriesPerRequest: 0 });
  const second = new Redis({ port: other.redisPort!, host: '127.0.0.1', maxRetriesPerRequest: 0 });
  return {
    store,
    redis,
    second,
    async close() {
      redis.disconnect();
      second.disconnect();
      await store.close();
    },
  };
}
