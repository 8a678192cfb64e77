/**
 * Owns the shape of what a scenario reports, and combining repeated runs into their median.
 * Relies on histogram.ts and proc-stats.ts for the types it carries. Pure: no I/O.
 *
 *   Row = one line of the table (a scenario can produce several: ablation gives two, expiry
 *   three). `extra` holds scenario-specific facts (expiry lag, RSS, deletion progress).
 */
import type { Percentiles } from './histogram';
import type { CpuUse } from './proc-stats';

export interface Row {
  /** Unique row name, e.g. "http-get", "ablation ws-put (batching off)". */
  name: string;
  /** The --scenarios entry that produced it. */
  scenario: string;
  api: 'http' | 'ws' | 'mixed' | '-';
  opsPerSec: number;
  latency: Percentiles | null;
  errors: number;
  errorDetail: string;
  durationS: number;
  /** CPU cores used per process while the load ran (1.0 = one core busy). */
  cpu: CpuUse[];
  /** Short human lines printed under the table. */
  notes: string[];
  extra: Record<string, unknown>;
  /** Set instead of numbers when the row could not run here (and why). */
  skipped?: string;
  /** Filled after all scenarios: "0.41x noop", "3.2x off". */
  ratio?: string;
  /** Every run's headline numbers when --runs > 1. */
  runs?: Array<{ opsPerSec: number; p50: number; p99: number; p999: number; errors: number }>;
}

export function skippedRow(name: string, scenario: string, why: string): Row {
  return { name, scenario, api: '-', opsPerSec: NaN, latency: null, errors: 0, errorDetail: '', durationS: 0, cpu: [], notes: [], extra: {}, skipped: why };
}

/** Median of the finite values of `xs`; NaN when there are none. */
export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 === 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/**
 * Combines the same row from several runs: each headline number is the median of its own
 * values; CPU, notes and extra come from the run whose ops/s is the median one.
 */
export function medianRow(runs: Row[]): Row {
  if (runs.length === 1) return runs[0];
  const live = runs.filter((r) => r.skipped === undefined);
  if (live.length === 0) return runs[0];
  const ops = median(live.map((r) => r.opsPerSec));
  const representative = live.reduce((best, r) => (Math.abs(r.opsPerSec - ops) < Math.abs(best.opsPerSec - ops) ? r : best));
  const lat = (k: keyof Percentiles) => median(live.map((r) => (r.latency ? r.latency[k] : NaN)));
  return {
    ...representative,
    opsPerSec: ops,
    latency: representative.latency ? { p50: lat('p50'), p90: lat('p90'), p99: lat('p99'), p999: lat('p999'), max: lat('max'), mean: lat('mean') } : null,
    errors: median(live.map((r) => r.errors)),
    runs: live.map((r) => ({ opsPerSec: r.opsPerSec, p50: r.latency?.p50 ?? NaN, p99: r.latency?.p99 ?? NaN, p999: r.latency?.p999 ?? NaN, errors: r.errors })),
  };
}
