/**
 * Owns connecting ioredis to a gateway's Redis door in tests: on loopback, connected before it is
 * returned, and failing a command at once (no retries) when the door is gone. Relies on ioredis.
 * The caller disconnects it.
 */
import Redis from 'ioredis';

export async function connectRedis(port: number): Promise<Redis> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
  await r.connect();
  return r;
}
