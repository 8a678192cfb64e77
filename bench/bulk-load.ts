/**
 * Owns writing many keys fast: the preload of the key space, and the millions of TTL'd keys of
 * the expiry scenarios. Relies on the WebSocket client (pipelined puts with ttl: the way
 * production feeds the expiry wheel) and falls back to HTTP PUT ?ttl= over keep-alive
 * connections when src/client is not available. Shows progress; retries puts the store shed.
 */
import { loadCreateClient, openClient, type KvClient } from './kv-client';
import { RawHttpPool, putRequest, targetOf } from './raw-http';
import { fmtInt, progress, clearProgress } from './progress';

export interface BulkLoad {
  base: string;
  count: number;
  keyOf: (i: number) => string;
  value: Buffer;
  /** TTL in ms for key i, read when its put is sent; undefined = no TTL. */
  ttlMsOf?: (i: number) => number | undefined;
  label: string;
  /** Extra text for the progress line (e.g. rows still present). */
  status?: () => string;
}

export interface BulkResult {
  loaded: number;
  failed: number;
  elapsedS: number;
  rate: number;
  via: 'ws' | 'http';
  lastError: string;
}

const WS_CLIENTS = 8;
const WS_WINDOW = 512;
const HTTP_CONNECTIONS = 64;
const MAX_ATTEMPTS = 5;

export async function bulkLoad(job: BulkLoad): Promise<BulkResult> {
  const create = loadCreateClient();
  const t0 = performance.now();
  let done = 0;
  let failed = 0;
  const show = () => {
    const el = (performance.now() - t0) / 1000;
    const pct = ((100 * (done + failed)) / job.count).toFixed(1);
    progress(`${job.label}: ${fmtInt(done)}/${fmtInt(job.count)} (${pct}%) ${fmtInt(done / Math.max(el, 0.001))} keys/s${failed ? ` failed ${fmtInt(failed)}` : ''}${job.status ? ' ' + job.status() : ''}`);
  };
  const ticker = setInterval(show, 250);
  ticker.unref();
  let lastError = '';
  try {
    if (create !== null) {
      const clients: KvClient[] = [];
      try {
        for (let i = 0; i < WS_CLIENTS; i++) clients.push(await openClient(create, job.base, { maxInflight: WS_WINDOW, timeoutMs: 60_000 }));
        let next = 0;
        const retry: Array<[number, number]> = [];
        const worker = async (c: KvClient): Promise<void> => {
          for (;;) {
            let i: number;
            let attempt = 1;
            if (retry.length > 0) [i, attempt] = retry.pop()!;
            else if (next < job.count) i = next++;
            else return;
            const ttl = job.ttlMsOf?.(i);
            try {
              await c.put(job.keyOf(i), job.value, ttl === undefined ? undefined : { ttl });
              done++;
            } catch (err) {
              lastError = (err as { code?: string; message?: string }).code ?? (err as Error).message;
              if (attempt < MAX_ATTEMPTS) {
                retry.push([i, attempt + 1]);
                await new Promise((r) => setTimeout(r, 50));
              } else failed++;
            }
          }
        };
        await Promise.all(clients.flatMap((c) => Array.from({ length: WS_WINDOW }, () => worker(c))));
      } finally {
        await Promise.all(clients.map((c) => c.close()));
      }
      return finish('ws');
    }
    const pool = await RawHttpPool.open(job.base, HTTP_CONNECTIONS);
    try {
      const host = targetOf(job.base).host;
      const r = await pool.drain(
        job.count,
        (i) => {
          const ttl = job.ttlMsOf?.(i);
          const q = ttl === undefined ? '' : `?ttl=${(ttl / 1000).toFixed(3)}`;
          return putRequest(host, `/v1/kv/${encodeURIComponent(job.keyOf(i))}${q}`, job.value);
        },
        (d, f) => {
          done = d;
          failed = f;
        },
        MAX_ATTEMPTS,
      );
      done = r.done;
      failed = r.failed;
      lastError = r.lastError;
    } finally {
      pool.close();
    }
    return finish('http');
  } finally {
    clearInterval(ticker);
    clearProgress();
  }

  function finish(via: 'ws' | 'http'): BulkResult {
    const elapsedS = (performance.now() - t0) / 1000;
    return { loaded: done, failed, elapsedS, rate: done / Math.max(elapsedS, 0.001), via, lastError };
  }
}
