/**
 * Owns the expiry rows. Keys are written through the store (WebSocket pipelined puts with ttl,
 * or HTTP PUT ?ttl= without the client), so they reach the expiry wheel the way production
 * writes do. Physical deletion is observed from outside: COUNT(*) of our key prefix on every
 * shard (mysql2), and the gateway's kvsql_expiry_* metrics.
 *
 *   steady  --expiry-keys keys, TTL uniform in [1 s, 60 s] from their put: expiry lag p50/p99/max
 *           (histogram delta of kvsql_expiry_lag_seconds) and rows left over time.
 *   storm   --expiry-keys keys all due in the same second T while an open-loop HTTP GET load
 *           (--load-fraction of the http-get peak) runs: time from T until no row is left, and
 *           GET latency during the storm vs the same load just before it.
 *   memory  --memory-keys keys with TTL one day: beyond the wheel's horizon, so the wheel must
 *           hold none (kvsql_expiry_wheel_keys); gateway RSS before/after (workers are threads
 *           of the gateway process, so RSS covers them).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { bulkLoad } from '../bulk-load';
import { ensurePreloaded, KEY_PREFIX, measured, type BenchContext } from '../context';
import { CpuMeter, rssBytes } from '../proc-stats';
import { fmtInt, log, progress, clearProgress } from '../progress';
import { histogramDelta, scrape, sum, type Sample } from '../prometheus';
import { RawHttpPool, getRequest, rawLoadRow, targetOf } from '../raw-http';
import type { Row } from '../result';
import { peakOf } from './half-load';

const LAG = 'kvsql_expiry_lag_seconds';
const MiB = 1024 * 1024;

/** Polls COUNT(*) of a key prefix on every shard, one query round at a time, every `everyMs`. */
class RowPoller {
  latest = NaN;
  /** Wall-clock time the query behind `latest` was sent. */
  latestAt = 0;
  readonly series: Array<[seconds: number, rows: number]> = [];
  private stopped = false;
  private loop: Promise<void> | null = null;
  constructor(
    private readonly ctx: BenchContext,
    private readonly prefix: string,
    private readonly t0: number,
    private readonly everyMs = 1000,
  ) {}

  get available(): boolean {
    return this.ctx.sql !== null;
  }

  start(): this {
    if (!this.available) return this;
    this.loop = (async () => {
      while (!this.stopped) {
        try {
          const at = Date.now();
          const counts = await this.ctx.sql!.countPrefix(this.prefix);
          this.latest = counts.reduce((a, b) => a + b, 0);
          this.latestAt = at;
          this.series.push([Math.round((Date.now() - this.t0) / 100) / 10, this.latest]);
        } catch (err) {
          log(`row count failed: ${(err as Error).message}`);
        }
        await sleep(this.everyMs);
      }
    })();
    return this;
  }

  /** True when a count sent at or after `since` found no row. */
  zeroSince(since: number): boolean {
    return this.latest === 0 && this.latestAt >= since;
  }

  /**
   * Resolves with the wall-clock time a count sent after `since` (the end of the load: earlier
   * counts may predate the rows) first found no row, or null at the deadline.
   */
  async waitZero(since: number, deadline: number, show: () => void): Promise<number | null> {
    for (;;) {
      if (this.zeroSince(since)) return Date.now();
      if (Date.now() > deadline) return null;
      show();
      await sleep(100);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

function lagNote(before: Sample[] | null, after: Sample[]): { note: string; extra: Record<string, unknown>; lat: Row['latency'] } {
  const h = histogramDelta(before, after, LAG);
  const ms = (s: number) => s * 1000;
  const max = h.maxBound === Infinity ? '> 60 s' : `<= ${h.maxBound} s`;
  return {
    note: `expiry lag (kvsql_expiry_lag_seconds, ${fmtInt(h.count)} reaps): p50 ${ms(h.p50).toFixed(0)} ms, p99 ${ms(h.p99).toFixed(0)} ms, max ${max}, mean ${ms(h.mean).toFixed(0)} ms`,
    extra: { lagCount: h.count, lagP50Ms: ms(h.p50), lagP99Ms: ms(h.p99), lagMaxBoundS: h.maxBound, lagMeanMs: ms(h.mean) },
    lat: { p50: ms(h.p50), p90: NaN, p99: ms(h.p99), p999: NaN, max: h.maxBound === Infinity ? NaN : ms(h.maxBound), mean: ms(h.mean) },
  };
}

async function scrapeSafe(base: string): Promise<Sample[] | null> {
  try {
    return await scrape(base);
  } catch {
    return null;
  }
}

async function steady(ctx: BenchContext, runLabel: string): Promise<Row> {
  const { opts } = ctx;
  const n = opts.expiryKeys;
  const t0 = Date.now();
  const before = await scrapeSafe(ctx.base);
  const poller = new RowPoller(ctx, 'steady:', t0).start();
  let lastDue = 0;
  const meter = new CpuMeter(ctx.watched);
  meter.start();
  const load = await bulkLoad({
    base: ctx.base,
    count: n,
    keyOf: (i) => `steady:${i}`,
    value: ctx.value,
    ttlMsOf: () => {
      const ttl = 1000 + Math.floor(Math.random() * 59_000);
      lastDue = Math.max(lastDue, Date.now() + ttl);
      return ttl;
    },
    label: `${runLabel}expiry steady: loading ${fmtInt(n)} keys, TTL 1-60 s`,
    status: () => (poller.available ? `rows ${fmtInt(poller.latest)}` : ''),
  });
  ctx.loadRate = load.rate;
  const loadedAt = Date.now();
  log(`expiry steady: loaded ${fmtInt(load.loaded)} keys in ${load.elapsedS.toFixed(1)} s (${fmtInt(load.rate)} keys/s)`);
  const deadline = lastDue + opts.expiryTimeout * 1000;
  let goneAt: number | null = null;
  if (poller.available) {
    goneAt = await poller.waitZero(loadedAt, deadline, () =>
      progress(`${runLabel}expiry steady: ${fmtInt(poller.latest)} rows left, last TTL due in ${((lastDue - Date.now()) / 1000).toFixed(0)} s`),
    );
  } else {
    while (Date.now() < lastDue + 5000) {
      progress(`${runLabel}expiry steady: waiting for the last TTL (${((lastDue - Date.now()) / 1000).toFixed(0)} s)`);
      await sleep(250);
    }
  }
  clearProgress();
  const cpu = meter.stop();
  await poller.stop();
  const after = await scrape(ctx.base);
  const lag = lagNote(before, after);
  const expired = sum(after, 'kvsql_expired_keys_total') - (before ? sum(before, 'kvsql_expired_keys_total') : 0);
  const left = poller.available ? poller.latest : NaN;
  const notes = [
    `${fmtInt(n)} keys, TTL uniform 1-60 s from each put; loaded in ${load.elapsedS.toFixed(1)} s; ops/s = rows deleted per second since the load started; latency columns = expiry lag`,
    lag.note,
    poller.available
      ? goneAt !== null
        ? `all rows gone ${((goneAt - lastDue) / 1000).toFixed(1)} s after the last TTL (${((goneAt - t0) / 1000).toFixed(1)} s after the load started)`
        : `${fmtInt(left)} rows still present ${opts.expiryTimeout} s after the last TTL`
      : 'row counts skipped (no shard URLs)',
  ];
  const elapsed = ((goneAt ?? Date.now()) - t0) / 1000;
  return {
    name: 'expiry steady',
    scenario: 'expiry',
    api: '-',
    opsPerSec: expired / elapsed,
    latency: lag.lat,
    errors: load.failed + (Number.isFinite(left) ? left : 0),
    errorDetail: [load.failed ? `${load.failed} puts failed (${load.lastError})` : '', left > 0 ? `${left} rows never deleted` : ''].filter(Boolean).join(', '),
    durationS: elapsed,
    cpu,
    notes,
    extra: { keys: n, loadSeconds: load.elapsedS, loadRate: load.rate, expired, rowsLeft: left, rowsOverTime: poller.series, ...lag.extra },
  };
}

async function storm(ctx: BenchContext, runLabel: string): Promise<Row[]> {
  const { opts } = ctx;
  const n = opts.expiryKeys;
  await ensurePreloaded(ctx);
  const peak = await peakOf(ctx, 'http-get', runLabel);
  const rate = Math.max(1, Math.round(peak * opts.loadFraction));
  const host = targetOf(ctx.base).host;
  const getReq = () => getRequest(host, `/v1/kv/${KEY_PREFIX}${Math.floor(Math.random() * opts.keys)}`);
  const pool = await RawHttpPool.open(ctx.base, opts.connections);
  const rows: Row[] = [];
  try {
    // 1. The same GET load without a storm.
    const tb = performance.now();
    const { value: base, window: baseWindow } = await measured(ctx, ctx.base, () =>
      pool.openLoop(rate, opts.duration * 1000, getReq, (t, sent) =>
        progress(
          `${runLabel}expiry storm: baseline GET @ ${fmtInt(rate)}/s ${((performance.now() - tb) / 1000).toFixed(1)}/${opts.duration}s sent ${fmtInt(sent)} ok ${fmtInt(t.ok)}`,
        ),
      ),
    );
    clearProgress();
    // The same GET load, measured twice (without and during the storm): one row shape.
    const getLoadRow = (name: string, r: typeof base, cpu: typeof baseWindow.cpu, note: string): Row =>
      rawLoadRow(r, { name, scenario: 'expiry', cpu, notes: [note], extra: { rate } });
    rows.push(
      getLoadRow(
        'expiry storm: GET baseline (no storm)',
        base,
        baseWindow.cpu,
        `open-loop GET at ${fmtInt(rate)}/s (${Math.round(opts.loadFraction * 100)}% of http-get peak ${fmtInt(peak)})`,
      ),
    );

    // 2. Load the storm: every key due at T. T leaves room for the load at the last measured
    //    bulk rate, plus margin; keys sent after T (a slow load) get 1 ms and are counted late.
    const estimateS = n / Math.max(ctx.loadRate, 1000);
    const dueAt = Date.now() + Math.ceil(estimateS * 1.3 * 1000) + 5000;
    let late = 0;
    const t0 = Date.now();
    const before = await scrapeSafe(ctx.base);
    const poller = new RowPoller(ctx, 'storm:', t0, 500);
    const load = await bulkLoad({
      base: ctx.base,
      count: n,
      keyOf: (i) => `storm:${i}`,
      value: ctx.value,
      ttlMsOf: () => {
        const ttl = dueAt - Date.now();
        if (ttl < 1) {
          late++;
          return 1;
        }
        return ttl;
      },
      label: `${runLabel}expiry storm: loading ${fmtInt(n)} keys due at T`,
      status: () => `T in ${((dueAt - Date.now()) / 1000).toFixed(0)} s`,
    });
    log(
      `expiry storm: loaded ${fmtInt(load.loaded)} keys in ${load.elapsedS.toFixed(1)} s; ${late ? `${fmtInt(late)} sent after T` : `T in ${((dueAt - Date.now()) / 1000).toFixed(1)} s`}`,
    );
    while (Date.now() < dueAt) {
      progress(`${runLabel}expiry storm: ${fmtInt(load.loaded)} keys loaded, storm in ${((dueAt - Date.now()) / 1000).toFixed(1)} s`);
      await sleep(Math.min(100, Math.max(1, dueAt - Date.now())));
    }
    clearProgress();

    // 3. The same GET load from T until every storm row is gone (or the timeout), on fresh
    //    connections: the server closed the ones left idle while the keys loaded.
    await pool.reopen();
    poller.start();
    const deadline = dueAt + opts.expiryTimeout * 1000;
    let goneAt: number | null = null;
    let maxBacklog = 0;
    let backlogBusy = false;
    const backlogTimer = setInterval(() => {
      if (backlogBusy) return;
      backlogBusy = true;
      scrape(ctx.base)
        .then((s) => (maxBacklog = Math.max(maxBacklog, sum(s, 'kvsql_expiry_backlog') || 0)))
        .catch(() => undefined)
        .finally(() => (backlogBusy = false));
    }, 250);
    const { value: during, window } = await measured(ctx, ctx.base, () =>
      pool.openLoop(
        rate,
        opts.expiryTimeout * 1000,
        getReq,
        (t, sent) =>
          progress(
            `${runLabel}expiry storm: T+${((Date.now() - dueAt) / 1000).toFixed(1)} s, ${poller.available ? `${fmtInt(poller.latest)} rows left` : ''} GET sent ${fmtInt(sent)} ok ${fmtInt(t.ok)}`,
          ),
        () => {
          if (poller.available ? poller.zeroSince(dueAt) : Date.now() > dueAt + opts.duration * 1000) {
            goneAt ??= Date.now();
            return true;
          }
          return Date.now() > deadline;
        },
      ),
    );
    clearInterval(backlogTimer);
    clearProgress();
    await poller.stop();
    const after = await scrape(ctx.base);
    const lag = lagNote(before, after);
    const left = poller.available ? poller.latest : NaN;
    rows.push(getLoadRow('expiry storm: GET during storm', during, window.cpu, 'same open-loop GET load from T until the last storm row was gone'));
    const goneS = goneAt !== null && poller.available ? (goneAt - dueAt) / 1000 : NaN;
    rows.push({
      name: 'expiry storm',
      scenario: 'expiry',
      api: '-',
      opsPerSec: Number.isFinite(goneS) ? n / Math.max(goneS, 0.001) : NaN,
      latency: lag.lat,
      errors: load.failed + (Number.isFinite(left) ? left : 0),
      errorDetail: [load.failed ? `${load.failed} puts failed (${load.lastError})` : '', left > 0 ? `${left} rows never deleted` : '']
        .filter(Boolean)
        .join(', '),
      durationS: Number.isFinite(goneS) ? goneS : during.elapsedMs / 1000,
      cpu: window.cpu,
      notes: [
        `${fmtInt(n)} keys due in the same second (loaded in ${load.elapsedS.toFixed(1)} s${late ? `, ${fmtInt(late)} sent after T` : ''}); ops/s = rows deleted per second; latency columns = expiry lag`,
        poller.available
          ? goneAt !== null
            ? `all storm rows gone ${goneS.toFixed(1)} s after T; max expiry backlog ${fmtInt(maxBacklog)}`
            : `${fmtInt(left)} rows still present ${opts.expiryTimeout} s after T`
          : 'row counts skipped (no shard URLs)',
        lag.note,
      ],
      extra: { keys: n, late, loadSeconds: load.elapsedS, secondsUntilGone: goneS, rowsLeft: left, maxBacklog, rowsOverTime: poller.series, ...lag.extra },
    });
  } finally {
    pool.close();
  }
  return rows;
}

async function memory(ctx: BenchContext, runLabel: string): Promise<Row> {
  const { opts } = ctx;
  const n = opts.memoryKeys;
  const pid = ctx.gatewayPid;
  const rssBefore = pid ? rssBytes(pid) : NaN;
  const wheelBefore = sum(await scrape(ctx.base), 'kvsql_expiry_wheel_keys');
  const load = await bulkLoad({
    base: ctx.base,
    count: n,
    keyOf: (i) => `mem:${i}`,
    value: ctx.value,
    ttlMsOf: () => 86_400_000,
    label: `${runLabel}expiry memory: loading ${fmtInt(n)} keys, TTL 1 day`,
  });
  // Let the wheel's loader run a few ticks: it must still find nothing inside its horizon.
  await sleep(2000);
  const metrics = await scrape(ctx.base);
  const wheel = sum(metrics, 'kvsql_expiry_wheel_keys');
  // Keys of earlier scenarios may still sit in the wheel; ours must add none.
  const added = wheel - wheelBefore;
  const rssAfter = pid ? rssBytes(pid) : NaN;
  let rows = NaN;
  if (ctx.sql) rows = (await ctx.sql.countPrefix('mem:')).reduce((a, b) => a + b, 0);
  const mib = (b: number) => (Number.isFinite(b) ? `${(b / MiB).toFixed(0)} MiB` : 'n/a');
  return {
    name: 'expiry memory',
    scenario: 'expiry',
    api: '-',
    opsPerSec: load.rate,
    latency: null,
    errors: load.failed + Math.max(0, added),
    errorDetail: [load.failed ? `${load.failed} puts failed (${load.lastError})` : '', added > 0 ? `the wheel grew by ${added} keys` : '']
      .filter(Boolean)
      .join(', '),
    durationS: load.elapsedS,
    cpu: [],
    notes: [
      `${fmtInt(n)} keys with TTL 1 day loaded (ops/s = load rate); rows in MySQL ${Number.isFinite(rows) ? fmtInt(rows) : 'n/a'}`,
      `kvsql_expiry_wheel_keys ${fmtInt(wheelBefore)} before, ${fmtInt(wheel)} after; gateway RSS ${mib(rssBefore)} -> ${mib(rssAfter)} (${Number.isFinite(rssAfter - rssBefore) ? ((rssAfter - rssBefore) / MiB >= 0 ? '+' : '') + ((rssAfter - rssBefore) / MiB).toFixed(0) + ' MiB' : 'n/a'}; main thread and shard workers are one process)`,
    ],
    extra: { keys: n, wheelKeysBefore: wheelBefore, wheelKeys: wheel, rssBeforeBytes: rssBefore, rssAfterBytes: rssAfter, rows, loadRate: load.rate },
  };
}

export async function runExpiry(ctx: BenchContext, runLabel: string): Promise<Row[]> {
  const rows: Row[] = [];
  rows.push(await steady(ctx, runLabel));
  rows.push(...(await storm(ctx, runLabel)));
  rows.push(await memory(ctx, runLabel));
  return rows;
}
