/**
 * Owns what every scenario shares during one harness run: the options, where the store is, the
 * processes to watch, SQL access to the shards, the preload of the key space (done once, on the
 * first scenario that reads), the peaks measured so far, and measuring a load window (CPU per
 * process, batch sizes from /metrics). Relies on the modules it wires together.
 */
import type { BenchOptions } from './options';
import { CpuMeter, type CpuUse, type Watched } from './proc-stats';
import { scrape, sum, type Sample } from './prometheus';
import type { ShardSql } from './shard-sql';
import { bulkLoad } from './bulk-load';
import { fmtInt, log } from './progress';

/** The main key space: k:0 .. k:<keys-1>. */
export const KEY_PREFIX = 'k:';

export interface BenchContext {
  opts: Readonly<BenchOptions>;
  /** http://127.0.0.1:PORT of the gateway under test (batching on). */
  base: string;
  /** The Redis-protocol port of the gateway under test, or null (the redis scenario is skipped). */
  redisPort: number | null;
  /** The batching-off gateway on the same shards, or null (ablation skipped). */
  ablationBase: string | null;
  gatewayPid: number | null;
  /** The batching-off gateway's pid (null when not started by us). */
  ablationPid: number | null;
  /** mysql:// URLs of the store's shards (empty when unknown: with --url and no --shard-urls). */
  shardUrls: string[];
  /** The naive baseline server on the same shards, started on first use (bench/naive.ts). */
  naive: { base: string; pid: number; stop(): Promise<void> } | null;
  /** Processes whose CPU is reported per row; the entry labelled 'gateway' is the main one. */
  watched: Watched[];
  sql: ShardSql | null;
  value: Buffer;
  /** ops/s measured by earlier rows, by row name (latency-at-half-load reads them). */
  peaks: Map<string, number>;
  /** keys/s of the last bulk load (the storm sizes its TTL window with it). */
  loadRate: number;
  preloaded: boolean;
}

/** Where one store under test is, as a scenario sees it (what `newContext` is given). */
export type StoreTarget = Pick<BenchContext, 'base' | 'redisPort' | 'ablationBase' | 'gatewayPid' | 'ablationPid' | 'shardUrls' | 'watched' | 'sql'>;

/** A fresh context for one store: nothing preloaded or measured yet. */
export function newContext(opts: Readonly<BenchOptions>, target: StoreTarget): BenchContext {
  return { ...target, opts, naive: null, value: Buffer.alloc(opts.valueSize, 0x61), peaks: new Map(), loadRate: 0, preloaded: false };
}

export async function ensurePreloaded(ctx: BenchContext): Promise<void> {
  if (ctx.preloaded) return;
  const { keys } = ctx.opts;
  const r = await bulkLoad({
    base: ctx.base,
    count: keys,
    keyOf: (i) => KEY_PREFIX + i,
    value: ctx.value,
    label: `preload ${fmtInt(keys)} keys x ${ctx.value.length} B`,
  });
  if (r.failed > 0) throw new Error(`preload failed for ${r.failed} of ${keys} keys (last error: ${r.lastError})`);
  ctx.loadRate = r.rate;
  ctx.preloaded = true;
  log(`preloaded ${fmtInt(keys)} keys x ${ctx.value.length} B over WebSocket in ${r.elapsedS.toFixed(1)} s (${fmtInt(r.rate)} keys/s)`);
}

export interface Window {
  cpu: CpuUse[];
  /** Mean ops per read / write batch in the window (from the gateway's batch-size histograms). */
  readBatch: number;
  writeBatch: number;
}

async function scrapeOrNull(base: string): Promise<Sample[] | null> {
  try {
    return await scrape(base);
  } catch {
    return null;
  }
}

/**
 * Runs `load` while measuring CPU per watched process and the gateway's batch sizes. `metricsBase`
 * is the gateway whose /metrics to read (the ablation reads the batching-off one).
 */
export async function measured<T>(ctx: BenchContext, metricsBase: string, load: () => Promise<T>): Promise<{ value: T; window: Window }> {
  const before = await scrapeOrNull(metricsBase);
  // The row's gateway is whichever one the load goes to.
  const stand = metricsBase === ctx.ablationBase ? ctx.ablationPid : metricsBase === ctx.naive?.base ? ctx.naive.pid : undefined;
  const watched = stand !== undefined ? ctx.watched.flatMap((w) => (w.label !== 'gateway' ? [w] : stand !== null ? [{ ...w, pid: stand }] : [])) : ctx.watched;
  const meter = new CpuMeter(watched);
  meter.start();
  const value = await load();
  const cpu = meter.stop();
  const after = await scrapeOrNull(metricsBase);
  const perBatch = (kind: 'read' | 'write'): number => {
    if (!before || !after) return NaN;
    const batches = sum(after, `kvsql_${kind}_batch_size_count`) - sum(before, `kvsql_${kind}_batch_size_count`);
    // The histogram exports no sum of ops, so divide requests answered (by kind) by batches.
    const ops = opsOfKind(after, kind) - opsOfKind(before, kind);
    return batches > 0 ? ops / batches : NaN;
  };
  return { value, window: { cpu, readBatch: perBatch('read'), writeBatch: perBatch('write') } };
}

function opsOfKind(samples: Sample[], kind: 'read' | 'write'): number {
  let n = 0;
  for (const s of samples) {
    if (s.name !== 'kvsql_requests_total') continue;
    const isRead = s.labels.op === 'get' || s.labels.op === 'ttl';
    if (isRead === (kind === 'read')) n += s.value;
  }
  return n;
}

/** "batches: 37 ops/write" for the notes; empty when unknown. */
export function batchNote(w: Window): string {
  const parts: string[] = [];
  if (Number.isFinite(w.readBatch)) parts.push(`${w.readBatch.toFixed(1)} ops/read batch`);
  if (Number.isFinite(w.writeBatch)) parts.push(`${w.writeBatch.toFixed(1)} ops/write batch`);
  return parts.join(', ');
}
