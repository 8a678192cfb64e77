/**
 * Owns latency-at-half-load: open-loop load at --load-fraction (default 50 %) of the peak ops/s
 * measured for ws-put and http-get, reporting the latency percentiles (p99 is the headline).
 * Open loop means op k is due at t0 + k/rate whatever is still in flight, and its latency counts
 * from that due time (wrk2 style), so the numbers include any queueing a closed loop would hide.
 * The peaks come from this run's ws-put / http-get rows, or from a calibration run of the same
 * closed-loop load when those scenarios were not selected.
 */
import { ensurePreloaded, KEY_PREFIX, measured, type BenchContext } from '../context';
import { percentilesOf } from '../histogram';
import { fmtInt, log, progress, clearProgress } from '../progress';
import { RawHttpPool, getRequest, rawLoadRow, targetOf } from '../raw-http';
import type { Row } from '../result';
import { wsOpenLoop } from '../ws-load';
import { closeClients, httpRow, openClients, wsRow } from './throughput';

export async function peakOf(ctx: BenchContext, name: 'ws-put' | 'http-get', runLabel: string): Promise<number> {
  const known = ctx.peaks.get(name);
  if (known !== undefined && Number.isFinite(known)) return known;
  const row =
    name === 'http-get'
      ? await httpRow(ctx, name, 'calibration', ctx.base, 'get', `${runLabel}half-load: calibrating http-get peak`)
      : await wsRow(ctx, name, 'calibration', ctx.base, 'put', `${runLabel}half-load: calibrating ws-put peak`);
  log(`half-load: calibrated ${name} peak ${fmtInt(row.opsPerSec)} ops/s`);
  return row.opsPerSec;
}

async function wsPutRow(ctx: BenchContext, runLabel: string): Promise<Row> {
  const { opts } = ctx;
  const pct = Math.round(opts.loadFraction * 100);
  const peak = await peakOf(ctx, 'ws-put', runLabel);
  const rate = Math.max(1, Math.round(peak * opts.loadFraction));
  const clients = await openClients(ctx.base, opts.wsConnections, opts.depth);
  try {
    const t0 = performance.now();
    const { value: r, window } = await measured(ctx, ctx.base, () =>
      wsOpenLoop(
        clients,
        rate,
        opts.duration * 1000,
        { mix: 'put', keys: opts.keys, keyPrefix: KEY_PREFIX, value: ctx.value, readRatio: 0, missIsError: false },
        (t, sent) => {
          const el = (performance.now() - t0) / 1000;
          progress(
            `${runLabel}half-load ws-put @ ${fmtInt(rate)}/s: ${el.toFixed(1)}/${opts.duration}s sent ${fmtInt(sent)} ok ${fmtInt(t.ok)} errors ${fmtInt(t.errors)}`,
          );
        },
      ),
    );
    clearProgress();
    return {
      name: `ws-put @ ${pct}% of peak (open loop)`,
      scenario: 'latency-at-half-load',
      api: 'ws',
      opsPerSec: r.ok / r.elapsedS,
      latency: percentilesOf(r.hist),
      errors: r.errors,
      errorDetail: r.errorDetail,
      durationS: r.elapsedS,
      cpu: window.cpu,
      notes: [`target ${fmtInt(rate)} ops/s = ${pct}% of peak ${fmtInt(peak)}; ${opts.wsConnections} connections`],
      extra: { targetRate: rate, peak },
    };
  } finally {
    await closeClients(clients);
  }
}

async function httpGetRow(ctx: BenchContext, runLabel: string): Promise<Row> {
  const { opts } = ctx;
  const pct = Math.round(opts.loadFraction * 100);
  await ensurePreloaded(ctx);
  const peak = await peakOf(ctx, 'http-get', runLabel);
  const rate = Math.max(1, Math.round(peak * opts.loadFraction));
  const pool = await RawHttpPool.open(ctx.base, opts.connections);
  try {
    const host = targetOf(ctx.base).host;
    const t0 = performance.now();
    const { value: r, window } = await measured(ctx, ctx.base, () =>
      pool.openLoop(
        rate,
        opts.duration * 1000,
        () => getRequest(host, `/v1/kv/${KEY_PREFIX}${Math.floor(Math.random() * opts.keys)}`),
        (t, sent) => {
          const el = (performance.now() - t0) / 1000;
          progress(`${runLabel}half-load http-get @ ${fmtInt(rate)}/s: ${el.toFixed(1)}/${opts.duration}s sent ${fmtInt(sent)} ok ${fmtInt(t.ok)}`);
        },
      ),
    );
    clearProgress();
    return rawLoadRow(r, {
      name: `http-get @ ${pct}% of peak (open loop)`,
      scenario: 'latency-at-half-load',
      cpu: window.cpu,
      notes: [`target ${fmtInt(rate)} ops/s = ${pct}% of peak ${fmtInt(peak)}; ${pool.size} connections`],
      extra: { targetRate: rate, peak },
    });
  } finally {
    pool.close();
  }
}

export async function runHalfLoad(ctx: BenchContext, runLabel: string): Promise<Row[]> {
  return [await wsPutRow(ctx, runLabel), await httpGetRow(ctx, runLabel)];
}
