/**
 * Owns writing many keys fast: the preload of the key space, and the millions of TTL'd keys of
 * the expiry scenarios. Relies on the WebSocket client: pipelined puts with ttl, the way
 * production feeds the expiry wheel. Shows progress; retries puts the store shed (503) or lost.
 */
import { openClient, type KvClient } from './kv-client';
import { fmtInt, progress, clearProgress } from './progress';

export interface BulkLoad {
  base: string;
  count: number;
  keyOf: (i: number) => string;
  value: Buffer;
  /** TTL in ms for key i, read when its put is issued; undefined = no TTL. */
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
  lastError: string;
}

/** 8 connections x 512 puts in flight: enough to fill the store's write batches (512 ops). */
const CLIENTS = 8;
const WINDOW = 512;
/**
 * A put the store shed (503: admission by estimated queue wait, which a busy shared machine
 * trips) is retried with a growing pause, up to ~10 s in all: the preload must not fail a run.
 */
const MAX_ATTEMPTS = 20;

export async function bulkLoad(job: BulkLoad): Promise<BulkResult> {
  const t0 = performance.now();
  let done = 0;
  let failed = 0;
  let lastError = '';
  const ticker = setInterval(() => {
    const el = (performance.now() - t0) / 1000;
    const pct = ((100 * (done + failed)) / job.count).toFixed(1);
    progress(
      `${job.label}: ${fmtInt(done)}/${fmtInt(job.count)} (${pct}%) ${fmtInt(done / Math.max(el, 0.001))} keys/s${failed ? ` failed ${fmtInt(failed)}` : ''}${job.status ? ' ' + job.status() : ''}`,
    );
  }, 250);
  const clients: KvClient[] = [];
  try {
    for (let i = 0; i < CLIENTS; i++) clients.push(await openClient(job.base, { maxInflight: WINDOW, timeoutMs: 60_000 }));
    // Work list: | retries (LIFO) | next .. count-1 |
    let next = 0;
    const retry: Array<[index: number, attempt: number]> = [];
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
          lastError = (err as { code?: string }).code ?? (err as Error).message;
          if (attempt < MAX_ATTEMPTS) {
            retry.push([i, attempt + 1]);
            await new Promise((r) => setTimeout(r, Math.min(1000, 50 * attempt)));
          } else failed++;
        }
      }
    };
    await Promise.all(clients.flatMap((c) => Array.from({ length: WINDOW }, () => worker(c))));
  } finally {
    clearInterval(ticker);
    clearProgress();
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  }
  const elapsedS = (performance.now() - t0) / 1000;
  return { loaded: done, failed, elapsedS, rate: done / Math.max(elapsedS, 0.001), lastError };
}
