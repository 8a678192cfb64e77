/**
 * Owns the overload scenario: 64 KiB PUTs (--overload-value-size) offered open loop at
 * --overload-factor (2) times the peak PUT rate just measured closed loop, over
 * up to --overload-connections (4000) keep-alive connections (rate x 6 s: the client never
 * queues). The store must
 * refuse the excess at once with 503 + Retry-After and keep the latency of what it accepts
 * bounded (KVSQL_QUEUE_WAIT_MS; goal: p99 of accepted ops <= 1 s) with memory bounded (gateway
 * RSS sampled every 250 ms). A light probe client (GETs at 20/s on 4 connections) measures what
 * any other client of the store sees meanwhile. Latency counts from each op's due time.
 */
import { KEY_PREFIX, measured, type BenchContext } from '../context';
import { LatencyHistogram, percentilesOf } from '../histogram';
import { rssBytes } from '../proc-stats';
import { clearProgress, fmtInt, log, progress } from '../progress';
import { RawHttpPool, getRequest, putRequest, targetOf } from '../raw-http';
import type { Row } from '../result';

const MiB = 1024 * 1024;
const CALIBRATION_CONNECTIONS = 64;
const PROBE_RATE = 20;
const PROBE_CONNECTIONS = 4;
/** Distinct keys the PUTs spread over (each a full-size row; kept small so the table stays in memory). */
const OVERLOAD_KEYS = 10_000;

export async function runOverload(ctx: BenchContext, runLabel: string): Promise<Row[]> {
  const { opts } = ctx;
  const value = Buffer.alloc(opts.overloadValueSize, 0x61);
  const host = targetOf(ctx.base).host;
  const putOf = (): Buffer => putRequest(host, `/v1/kv/${KEY_PREFIX}ov${Math.floor(Math.random() * OVERLOAD_KEYS)}`, value);

  // 1. Peak: closed loop, enough connections to keep both shards' write pipelines busy.
  const calib = await RawHttpPool.open(ctx.base, CALIBRATION_CONNECTIONS);
  let peak: number;
  try {
    const seconds = Math.min(opts.duration, 5);
    const r = await calib.closedLoop(seconds * 1000, putOf, (t) =>
      progress(`${runLabel}overload: calibrating PUT ${opts.overloadValueSize} B peak, ok ${fmtInt(t.ok)}`),
    );
    clearProgress();
    peak = r.ok / (r.elapsedMs / 1000);
    log(`overload: PUT ${opts.overloadValueSize} B peak ${fmtInt(peak)} ops/s closed loop (${CALIBRATION_CONNECTIONS} connections)`);
  } finally {
    calib.close();
  }
  await new Promise((r) => setTimeout(r, 1000)); // let the calibration's queue drain

  // 2. Open loop at factor x peak, on enough connections that no op waits for one even if every
  // accepted op took the whole op deadline (5 s), and not many more: uWebSockets.js closes a
  // connection idle for 10 s.
  const rate = Math.max(1, Math.round(peak * opts.overloadFactor));
  const conns = Math.min(opts.overloadConnections, Math.ceil(rate * 6) + 16);
  const pool = await RawHttpPool.open(ctx.base, conns, {
    onProgress: (n) => progress(`${runLabel}overload: opening connections ${fmtInt(n)}/${fmtInt(conns)}`),
  });
  const probeKey = `/v1/kv/${KEY_PREFIX}overload-probe`;
  const seeded = await RawHttpPool.open(ctx.base, 1);
  await seeded.closedLoop(1, () => putRequest(host, probeKey, Buffer.from('probe')));
  seeded.close();
  const probe = await RawHttpPool.open(ctx.base, PROBE_CONNECTIONS);
  const pid = ctx.gatewayPid;
  const rssBefore = pid ? rssBytes(pid) : NaN;
  let rssMax = rssBefore;
  const sampler = setInterval(() => {
    if (pid) rssMax = Math.max(rssMax, rssBytes(pid));
  }, 250);
  try {
    const t0 = performance.now();
    const probeRun = probe.openLoop(PROBE_RATE, opts.duration * 1000, () => getRequest(host, probeKey));
    const { value: r, window } = await measured(ctx, ctx.base, () =>
      pool.openLoop(rate, opts.duration * 1000, putOf, (t, sent) => {
        const el = (performance.now() - t0) / 1000;
        const refused = t.non2xx[503] ?? 0;
        progress(
          `${runLabel}overload PUT @ ${fmtInt(rate)}/s: ${el.toFixed(1)}/${opts.duration}s sent ${fmtInt(sent)} ok ${fmtInt(t.ok)} 503 ${fmtInt(refused)}`,
        );
      }),
    );
    const pr = await probeRun;
    clearProgress();
    const refused = r.non2xx[503] ?? 0;
    const other = Object.entries(r.non2xx)
      .filter(([s]) => s !== '503')
      .reduce((a, [, n]) => a + n, 0);
    const answered = r.ok + refused + other;
    const lat = percentilesOf(r.hist);
    const probeLat = percentilesOf(pr.hist.count > 0 ? pr.hist : new LatencyHistogram());
    const rssNote = pid
      ? `gateway RSS ${(rssBefore / MiB).toFixed(0)} MiB before, max ${(rssMax / MiB).toFixed(0)} MiB during`
      : 'gateway RSS not measured (no pid)';
    return [
      {
        name: `overload: http-put ${Math.round(opts.overloadValueSize / 1024)} KiB @ ${opts.overloadFactor}x peak (open loop)`,
        scenario: 'overload',
        api: 'http',
        opsPerSec: r.ok / (r.elapsedMs / 1000),
        latency: lat,
        errors: refused + other + r.errors,
        errorDetail: `503 x${refused} (${((100 * refused) / Math.max(1, answered)).toFixed(1)}%)${other ? `, other non-2xx x${other}` : ''}${r.errors ? `, connection errors x${r.errors}` : ''}`,
        durationS: r.elapsedMs / 1000,
        cpu: window.cpu,
        notes: [
          `offered ${fmtInt(rate)} PUT/s = ${opts.overloadFactor}x closed-loop peak ${fmtInt(peak)}; ${pool.size} connections; latency of accepted (2xx) ops from their due time`,
          `accepted p50 ${lat.p50.toFixed(0)} ms, p99 ${lat.p99.toFixed(0)} ms, max ${lat.max.toFixed(0)} ms; ${rssNote}`,
          `probe client (GET at ${PROBE_RATE}/s): ${pr.ok} ok, p50 ${probeLat.p50.toFixed(1)} ms, p99 ${probeLat.p99.toFixed(1)} ms, non-2xx ${JSON.stringify(pr.non2xx)}`,
        ],
        extra: {
          peak,
          offered: rate,
          accepted: r.ok,
          refused503: refused,
          refusedFraction: refused / Math.max(1, answered),
          rssBeforeMiB: rssBefore / MiB,
          rssMaxMiB: rssMax / MiB,
          probe: { ok: pr.ok, non2xx: pr.non2xx, latency: probeLat },
        },
      },
    ];
  } finally {
    clearInterval(sampler);
    pool.close();
    probe.close();
  }
}
