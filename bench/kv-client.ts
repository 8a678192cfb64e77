/**
 * Owns how the harness reaches the WebSocket API: through the project's own TypeScript client
 * (src/client), loaded at run time so that the harness builds and its HTTP scenarios run even
 * where the client is absent. Relies on src/client's createClient. The interface below is the
 * subset of the client the harness uses; keep it in step with src/client.
 */

export interface KvEntry {
  value: unknown;
  version: number;
  expiresAt: number | null;
}

export interface PutOptions {
  /** Milliseconds. */
  ttl?: number;
  keepTtl?: boolean;
  ifAbsent?: boolean;
  ifVersion?: number;
}

export interface KvClient {
  get(key: string): Promise<KvEntry | null>;
  put(key: string, value: Uint8Array | string, opts?: PutOptions): Promise<unknown>;
  del(key: string): Promise<unknown>;
  close(): Promise<void> | void;
}

export interface ClientOptions {
  maxInflight?: number;
  timeoutMs?: number;
}

export type CreateClient = (url: string, opts?: ClientOptions) => KvClient | Promise<KvClient>;

let cached: CreateClient | null | undefined;
let whyMissing = '';

/** createClient from src/client, or null (see `clientMissingReason`). */
export function loadCreateClient(): CreateClient | null {
  if (cached !== undefined) return cached;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require('../src/client') as { createClient?: unknown };
    if (typeof mod.createClient !== 'function') {
      whyMissing = 'src/client exports no createClient';
      cached = null;
    } else {
      cached = mod.createClient as CreateClient;
    }
  } catch (err) {
    whyMissing = `src/client is not available (${(err as Error).message.split('\n')[0]})`;
    cached = null;
  }
  return cached;
}

export function clientMissingReason(): string {
  return whyMissing;
}

/** ws://host:port/v1/ws for an http://host:port base. */
export function wsUrlOf(base: string): string {
  return `${base.replace(/^http/, 'ws')}/v1/ws`;
}

/** Opens one client; createClient may return the client or a promise of it. */
export async function openClient(create: CreateClient, base: string, opts: ClientOptions): Promise<KvClient> {
  return await create(wsUrlOf(base), opts);
}
