/**
 * Owns the closed-loop throughput rows: noop (the load generator's ceiling), http-get/put/mixed
 * (autocannon, --connections keep-alive connections), ws-get/put/mixed (the client, --ws-connections
 * x --depth ops in flight), and the ablation (http-put, ws-put and http-get against the batching-off
 * gateway). Every request picks a uniformly random key of the --keys key space.
 */
import { runAutocannon, type HttpMix } from '../autocannon-load';
import { batchNote, ensurePreloaded, KEY_PREFIX, measured, type BenchContext } from '../context';
import { percentilesOf } from '../histogram';
import { openClient, type KvClient } from '../kv-client';
import type { ClientOptions } from '../../src/client';
import { fmtInt, progress, clearProgress } from '../progress';
import { skippedRow, type Row } from '../result';
import { wsClosedLoop, type WsMix } from '../ws-load';
import { ensureNaive } from '../naive';

export async function httpRow(ctx: BenchContext, name: string, scenario: string, base: string, mix: HttpMix, label: string): Promise<Row> {
  const { opts } = ctx;
  if (mix !== 'noop' && mix !== 'put') await ensurePreloaded(ctx);
  const { value: r, window } = await measured(ctx, base, () =>
    runAutocannon({
      base,
      connections: opts.connections,
      durationS: opts.duration,
      mix,
      keys: opts.keys,
      keyPrefix: KEY_PREFIX,
      value: ctx.value,
      readRatio: opts.readRatio,
      onTick: (ok, errors, el) => progress(`${label}: ${el.toFixed(1)}/${opts.duration}s  ${fmtInt(ok / Math.max(el, 0.001))} ops/s  errors ${fmtInt(errors)}`),
    }),
  );
  clearProgress();
  const ops = r.ok / r.elapsedS;
  const note = batchNote(window);
  return {
    name,
    scenario,
    api: 'http',
    opsPerSec: ops,
    latency: percentilesOf(r.hist),
    errors: r.errors,
    errorDetail: r.errorDetail,
    durationS: r.elapsedS,
    cpu: window.cpu,
    notes: note && mix !== 'noop' ? [note] : [],
    extra: { connections: opts.connections, readBatch: window.readBatch, writeBatch: window.writeBatch },
  };
}

export async function openClients(base: string, n: number, maxInflight: number, security: Pick<ClientOptions, 'token' | 'ca'> = {}): Promise<KvClient[]> {
  const clients: KvClient[] = [];
  try {
    for (let i = 0; i < n; i++) clients.push(await openClient(base, { maxInflight, timeoutMs: 30_000, ...security }));
  } catch (err) {
    await closeClients(clients);
    throw err;
  }
  return clients;
}

export async function closeClients(clients: KvClient[]): Promise<void> {
  await Promise.all(clients.map((c) => Promise.resolve(c.close()).catch(() => undefined)));
}

export async function wsRow(ctx: BenchContext, name: string, scenario: string, base: string, mix: WsMix, label: string): Promise<Row> {
  const { opts } = ctx;
  if (mix !== 'put') await ensurePreloaded(ctx);
  const clients = await openClients(base, opts.wsConnections, opts.depth);
  try {
    const t0 = performance.now();
    const { value: r, window } = await measured(ctx, base, () =>
      wsClosedLoop(
        clients,
        opts.depth,
        opts.duration * 1000,
        { mix, keys: opts.keys, keyPrefix: KEY_PREFIX, value: ctx.value, readRatio: opts.readRatio, missIsError: true },
        (t) => {
          const el = (performance.now() - t0) / 1000;
          progress(`${label}: ${el.toFixed(1)}/${opts.duration}s  ${fmtInt(t.ok / Math.max(el, 0.001))} ops/s  errors ${fmtInt(t.errors)}`);
        },
      ),
    );
    clearProgress();
    const note = batchNote(window);
    return {
      name,
      scenario,
      api: 'ws',
      opsPerSec: r.ok / r.elapsedS,
      latency: percentilesOf(r.hist),
      errors: r.errors + r.misses,
      errorDetail: r.errorDetail,
      durationS: r.elapsedS,
      cpu: window.cpu,
      notes: [`${opts.wsConnections} connections x ${opts.depth} in flight${note ? '; ' + note : ''}`],
      extra: { connections: opts.wsConnections, depth: opts.depth, readBatch: window.readBatch, writeBatch: window.writeBatch },
    };
  } finally {
    await closeClients(clients);
  }
}

export async function runThroughput(ctx: BenchContext, scenario: string, runLabel: string): Promise<Row[]> {
  const L = (s: string) => `${runLabel}${s}`;
  switch (scenario) {
    case 'noop':
      return [await httpRow(ctx, 'noop', scenario, ctx.base, 'noop', L('noop'))];
    case 'http-get':
      return [await httpRow(ctx, 'http-get', scenario, ctx.base, 'get', L('http-get'))];
    case 'http-put':
      return [await httpRow(ctx, 'http-put', scenario, ctx.base, 'put', L('http-put'))];
    case 'http-mixed':
      return [await httpRow(ctx, 'http-mixed', scenario, ctx.base, 'mixed', L(`http-mixed (${Math.round(ctx.opts.readRatio * 100)}% get)`))];
    case 'naive-get':
    case 'naive-put': {
      const naive = await ensureNaive(ctx);
      const mix = scenario === 'naive-get' ? 'get' : 'put';
      const row = await httpRow(ctx, scenario, scenario, naive.base, mix, L(`${scenario} (node:http + mysql2, one statement per request)`));
      row.notes = [`the naive baseline: same shards, ${ctx.opts.connections} connections, no batching`];
      return [row];
    }
    case 'ws-get':
      return [await wsRow(ctx, 'ws-get', scenario, ctx.base, 'get', L('ws-get'))];
    case 'ws-put':
      return [await wsRow(ctx, 'ws-put', scenario, ctx.base, 'put', L('ws-put'))];
    case 'ws-mixed':
      return [await wsRow(ctx, 'ws-mixed', scenario, ctx.base, 'mixed', L(`ws-mixed (${Math.round(ctx.opts.readRatio * 100)}% get)`))];
    case 'ablation': {
      const off = ctx.ablationBase;
      const names = ['ablation http-put (batching off)', 'ablation ws-put (batching off)', 'ablation http-get (batching off)'];
      if (off === null) return names.map((n) => skippedRow(n, scenario, 'no batching-off gateway (with --url, pass --ablation-url)'));
      const rows: Row[] = [];
      // The batching-on numbers this compares with: from the http-put / ws-put scenarios when
      // they are selected (they run first), else measured here, back to back with batching off.
      if (!ctx.opts.scenarios.includes('http-put'))
        rows.push(await httpRow(ctx, 'http-put', 'http-put', ctx.base, 'put', L('ablation: http-put (batching on)')));
      rows.push(await httpRow(ctx, names[0], scenario, off, 'put', L('ablation: http-put (batching off)')));
      if (!ctx.opts.scenarios.includes('ws-put')) rows.push(await wsRow(ctx, 'ws-put', 'ws-put', ctx.base, 'put', L('ablation: ws-put (batching on)')));
      rows.push(await wsRow(ctx, names[1], scenario, off, 'put', L('ablation: ws-put (batching off)')));
      if (!ctx.opts.scenarios.includes('http-get'))
        rows.push(await httpRow(ctx, 'http-get', 'http-get', ctx.base, 'get', L('ablation: http-get (batching on)')));
      rows.push(await httpRow(ctx, names[2], scenario, off, 'get', L('ablation: http-get (batching off)')));
      return rows;
    }
    default:
      throw new Error(`not a throughput scenario: ${scenario}`);
  }
}
