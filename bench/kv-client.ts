/**
 * Owns how the harness reaches the WebSocket API: through the project's own client (src/client),
 * so the benchmark measures what users get, pipelining included (ops issued in one tick leave in
 * one frame). Relies on createClient; must not speak the wire protocol itself.
 */
import { createClient, type ClientOptions, type KvClient } from '../src/client';

export type { KvClient };

/** ws://host:port/v1/ws for an http://host:port base (wss:// for https://). */
export function wsUrlOf(base: string): string {
  return `${base.replace(/^http/, 'ws')}/v1/ws`;
}

/**
 * Opens one client and waits until its connection is up (createClient connects lazily and
 * queues; a benchmark must not count connection setup as op latency). One GET of a key that
 * need not exist proves the round trip.
 */
export async function openClient(base: string, opts: Pick<ClientOptions, 'maxInflight' | 'timeoutMs' | 'token' | 'ca'>): Promise<KvClient> {
  const client = createClient(wsUrlOf(base), opts);
  try {
    await client.get('bench:probe');
  } catch (err) {
    await client.close().catch(() => undefined);
    throw err;
  }
  return client;
}
