/**
 * Owns the `security` scenario: what auth and TLS cost. Three more gateways on the same shards as
 * gateway A (plain): auth on, TLS on, both (expiry off, like the ablation gateway). For each of
 * http-get, http-put, ws-get, ws-put the four run back to back in one pass, so each ratio
 * ("auth 0.97x plain") compares loads measured minutes apart at most; --runs repeats the pass and
 * the table shows medians. Relies on throughput's rows' loaders, store-processes and the test
 * CA helper (openssl). The token has read/write on two prefixes (the check walks both).
 *
 *   gateway A  plain        http://   (the main gateway)
 *   gateway S1 auth         http://   KVSQL_AUTH_FILE
 *   gateway S2 tls          https://  KVSQL_TLS_CERT_FILE/KEY_FILE
 *   gateway S3 auth+tls     https://  both
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { runAutocannon, type HttpMix } from '../autocannon-load';
import { ensurePreloaded, KEY_PREFIX, type BenchContext } from '../context';
import { percentilesOf } from '../histogram';
import { CpuMeter } from '../proc-stats';
import { clearProgress, fmtInt, progress, log } from '../progress';
import { skippedRow, type Row } from '../result';
import { DATA_DIR, embeddedShardUrls, freePort, spawnGateway, type GatewayProcess } from '../store-processes';
import { wsClosedLoop, type WsMix } from '../ws-load';
import { closeClients, openClients } from './throughput';
import { formatToken, tokenLine } from '../../src/protocol/access';
import { makeCa, makeCert } from '../../test/helpers/certs';

interface Variant {
  name: 'plain' | 'auth' | 'tls' | 'auth+tls';
  base: string;
  pid: number | null;
  token?: string;
  ca?: string;
}

let variants: Variant[] | null = null;

/** Starts the three gateways once per harness run (stopped with the others: `gateways`). */
async function ensureGateways(ctx: BenchContext, gateways: GatewayProcess[]): Promise<Variant[]> {
  if (variants !== null) return variants;
  const dir = path.join(DATA_DIR, 'security');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const ca = await makeCa(dir, 'bench CA');
  const cert = await makeCert(dir, ca, 'gateway', ['127.0.0.1', 'localhost']);
  const idBytes = randomBytes(4);
  const token = formatToken(idBytes, randomBytes(32));
  const tokenFile = path.join(dir, 'tokens.jsonl');
  const grants = [{ rights: ['read' as const, 'write' as const], prefixes: ['bench:', KEY_PREFIX] }];
  fs.writeFileSync(
    tokenFile,
    tokenLine(idBytes.toString('hex'), 'bench', createHash('sha256').update(token).digest('hex'), grants, new Date().toISOString()) + '\n',
    { mode: 0o600 },
  );
  const common = { KVSQL_SHARDS: embeddedShardUrls().join(','), KVSQL_EXPIRY: 'false' };
  const auth = { KVSQL_AUTH_FILE: tokenFile };
  const tls = { KVSQL_TLS_CERT_FILE: cert.certFile, KVSQL_TLS_KEY_FILE: cert.keyFile };
  const specs: Array<[Variant['name'], Record<string, string>]> = [
    ['auth', { ...common, ...auth }],
    ['tls', { ...common, ...tls }],
    ['auth+tls', { ...common, ...auth, ...tls }],
  ];
  const out: Variant[] = [{ name: 'plain', base: ctx.base, pid: ctx.gatewayPid }];
  for (const [name, env] of specs) {
    const gw = spawnGateway(`gateway-${name.replace('+', '-')}`, env, await freePort());
    gateways.push(gw);
    await gw.waitReady(60_000);
    log(`security gateway "${name}" ready at ${gw.base} (pid ${gw.pid})`);
    out.push({ name, base: gw.base, pid: gw.pid, token: name.includes('auth') ? token : undefined, ca: name.includes('tls') ? ca.pem : undefined });
  }
  variants = out;
  return out;
}

async function oneRow(ctx: BenchContext, v: Variant, load: 'http-get' | 'http-put' | 'ws-get' | 'ws-put', label: string): Promise<Row> {
  const { opts } = ctx;
  const watched = ctx.watched.flatMap((w) => (w.label !== 'gateway' ? [w] : v.pid !== null ? [{ ...w, pid: v.pid }] : []));
  const meter = new CpuMeter(watched);
  const name = `security ${load} ${v.name}`;
  const tick = (ok: number, errors: number, el: number) =>
    progress(`${label}${load} ${v.name}: ${el.toFixed(1)}/${opts.duration}s  ${fmtInt(ok / Math.max(el, 0.001))} ops/s  errors ${fmtInt(errors)}`);
  if (load.startsWith('http')) {
    meter.start();
    const r = await runAutocannon({
      base: v.base,
      connections: opts.connections,
      durationS: opts.duration,
      mix: load.slice(5) as HttpMix,
      keys: opts.keys,
      keyPrefix: KEY_PREFIX,
      value: ctx.value,
      readRatio: opts.readRatio,
      headers: v.token ? { authorization: `Bearer ${v.token}` } : undefined,
      onTick: tick,
    });
    const cpu = meter.stop();
    clearProgress();
    return {
      name,
      scenario: 'security',
      api: 'http',
      opsPerSec: r.ok / r.elapsedS,
      latency: percentilesOf(r.hist),
      errors: r.errors,
      errorDetail: r.errorDetail,
      durationS: r.elapsedS,
      cpu,
      notes: [],
      extra: { variant: v.name },
    };
  }
  const clients = await openClients(v.base, opts.wsConnections, opts.depth, { token: v.token, ca: v.ca });
  try {
    const t0 = performance.now();
    meter.start();
    const r = await wsClosedLoop(
      clients,
      opts.depth,
      opts.duration * 1000,
      { mix: load.slice(3) as WsMix, keys: opts.keys, keyPrefix: KEY_PREFIX, value: ctx.value, readRatio: opts.readRatio, missIsError: true },
      (t) => tick(t.ok, t.errors, (performance.now() - t0) / 1000),
    );
    const cpu = meter.stop();
    clearProgress();
    return {
      name,
      scenario: 'security',
      api: 'ws',
      opsPerSec: r.ok / r.elapsedS,
      latency: percentilesOf(r.hist),
      errors: r.errors + r.misses,
      errorDetail: r.errorDetail,
      durationS: r.elapsedS,
      cpu,
      notes: [],
      extra: { variant: v.name },
    };
  } finally {
    await closeClients(clients);
  }
}

export async function runSecurity(ctx: BenchContext, gateways: GatewayProcess[] | null, label: string): Promise<Row[]> {
  const loads = ['http-get', 'http-put', 'ws-get', 'ws-put'] as const;
  if (gateways === null) return loads.map((l) => skippedRow(`security ${l}`, 'security', 'needs the harness to start its own store (not with --url)'));
  const vs = await ensureGateways(ctx, gateways);
  await ensurePreloaded(ctx);
  const rows: Row[] = [];
  for (const load of loads) {
    const pass: Row[] = [];
    for (const v of vs) pass.push(await oneRow(ctx, v, load, label));
    const plain = pass[0].opsPerSec;
    // Ratios within this pass (the table's median rows carry the median run's notes).
    for (const r of pass) if (r !== pass[0]) r.notes.push(`${(r.opsPerSec / plain).toFixed(3)}x plain in the same pass`);
    rows.push(...pass);
  }
  return rows;
}
