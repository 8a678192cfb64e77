/**
 * Owns `npm run bench -- --compare=<ref>`: this checkout's build against `ref`'s, in one run.
 * Both stores run side by side (each its own embedded shards, data dir and ports, so two schemas
 * never meet), and every scenario alternates between them round by round (new, old; then old,
 * new; ...), so a machine that speeds up or slows down during the run moves both alike. Reports
 * per scenario the median ops/s of each build, the ratio new/old of the medians and of each
 * adjacent pair, p99, and CPU microseconds per op for each process (gateway main thread, its
 * shard workers, mysqld, the load generator). Writes bench/evidence/compare-<time>.{json,md}.
 * Relies on builds.ts for the old build and on the scenarios themselves, unchanged.
 *
 *   round 1:  s1[new] s1[old]   round 2:  s1[old] s1[new]   ...   then s2 the same way
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildOf, type Build } from './builds';
import { FeedProbe } from './feed-probe';
import { newContext, type BenchContext } from './context';
import type { BenchOptions, ScenarioName } from './options';
import { backgroundBusyCores, CORES, MACHINE, type CpuUse, type Watched } from './proc-stats';
import { clearProgress, log } from './progress';
import { median, skippedRow, type Row } from './result';
import { ShardSql } from './shard-sql';
import {
  BENCH_DIR,
  DEFAULT_LAYOUT,
  embeddedShardPids,
  embeddedShardUrls,
  ownBuild,
  startMainGateway,
  type GatewayProcess,
  type StoreLayout,
} from './store-processes';

/** Scenarios that need a second gateway of the same build on the same shards: not compared. */
export const NOT_COMPARED: readonly ScenarioName[] = ['ablation', 'security'];

type RunScenario = (ctx: BenchContext, s: ScenarioName, label: string, gateways: GatewayProcess[] | null) => Promise<Row[]>;

interface Side {
  probe?: FeedProbe;
  build: Build;
  layout: StoreLayout;
  gateway: GatewayProcess;
  ctx: BenchContext;
}

/** µs of CPU per op for each process kind of one row; NaN where a process was not watched. */
export interface CpuPerOp {
  gatewayMain: number;
  gatewayWorkers: number;
  mysqld: number;
  loadGen: number;
  machine: number;
}

export function cpuPerOp(row: Row): CpuPerOp {
  const per = (cores: number) => (Number.isFinite(cores) && row.opsPerSec > 0 ? (cores * 1e6) / row.opsPerSec : NaN);
  const sumOf = (pred: (u: CpuUse) => boolean) => row.cpu.filter(pred).reduce((a, u) => a + (Number.isFinite(u.cores) ? u.cores : 0), 0);
  const gw = row.cpu.find((u) => u.label === 'gateway');
  const main = gw?.threads?.find((t) => t.name === 'main')?.cores ?? NaN;
  return {
    gatewayMain: per(main),
    gatewayWorkers: per(gw ? gw.cores - main : NaN),
    mysqld: per(sumOf((u) => u.label.includes('mysqld'))),
    loadGen: per(sumOf((u) => u.label.includes('load generator') || u.label.includes('loadgen'))),
    machine: per(row.cpu.find((u) => u.label === MACHINE)?.cores ?? NaN),
  };
}

export interface Compared {
  name: string;
  newOps: number[];
  oldOps: number[];
  /** new/old of the medians, and of each round's adjacent pair. */
  ratio: number;
  pairRatios: number[];
  newP99: number;
  oldP99: number;
  newCpu: CpuPerOp;
  oldCpu: CpuPerOp;
  notes: string[];
}

function medianCpu(rows: Row[]): CpuPerOp {
  const all = rows.filter((r) => r.skipped === undefined).map(cpuPerOp);
  const m = (k: keyof CpuPerOp) => median(all.map((c) => c[k]));
  return { gatewayMain: m('gatewayMain'), gatewayWorkers: m('gatewayWorkers'), mysqld: m('mysqld'), loadGen: m('loadGen'), machine: m('machine') };
}

export function compareRows(name: string, news: Row[], olds: Row[]): Compared {
  const ops = (rows: Row[]) => rows.map((r) => (r.skipped === undefined ? r.opsPerSec : NaN));
  const newOps = ops(news);
  const oldOps = ops(olds);
  const p99 = (rows: Row[]) => median(rows.map((r) => r.latency?.p99 ?? NaN));
  return {
    name,
    newOps,
    oldOps,
    ratio: median(newOps) / median(oldOps),
    pairRatios: newOps.map((n, i) => n / oldOps[i]),
    newP99: p99(news),
    oldP99: p99(olds),
    newCpu: medianCpu(news),
    oldCpu: medianCpu(olds),
    notes: [...news, ...olds].filter((r) => r.skipped !== undefined).map((r) => `${r.name}: ${r.skipped}`),
  };
}

const f0 = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '-');
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '-');

/** The comparison as a Markdown table (what a note quotes). */
export function renderCompare(list: Compared[], newLabel: string, oldLabel: string): string {
  const lines = [
    `| scenario | new ${newLabel} ops/s | old ${oldLabel} ops/s | new/old | each pair | p99 ms new / old | CPU µs/op new / old: gw main · gw workers · mysqld · load gen |`,
    '|---|---:|---:|---:|---|---|---|',
  ];
  for (const c of list) {
    const cpu = (x: CpuPerOp) => `${f1(x.gatewayMain)} · ${f1(x.gatewayWorkers)} · ${f1(x.mysqld)} · ${f1(x.loadGen)}`;
    lines.push(
      `| ${c.name} | ${f0(median(c.newOps))} | ${f0(median(c.oldOps))} | **${f2(c.ratio)}x** | ${c.pairRatios.map(f2).join(' ')} | ${f2(c.newP99)} / ${f2(c.oldP99)} | ${cpu(c.newCpu)} / ${cpu(c.oldCpu)} |`,
    );
  }
  return lines.join('\n');
}

async function startSide(build: Build, layout: StoreLayout, opts: Readonly<BenchOptions>, note: (s: string) => void): Promise<Side> {
  const t = performance.now();
  log(`starting ${build.role} build ${build.label}: embedded shards under ${path.relative(process.cwd(), layout.dataDir)} on ${layout.basePort}+ ...`);
  const gateway = await startMainGateway(build, layout);
  const urls = embeddedShardUrls(layout);
  const sql = await ShardSql.connect(urls);
  if (!opts.keepData) await sql.truncate();
  const watched: Watched[] = [{ label: 'gateway', pid: gateway.pid, threads: true }];
  embeddedShardPids(layout).forEach((pid, i) => watched.push({ label: `shard-${i} mysqld`, pid }));
  watched.push({ label: 'load generator (this process)', pid: process.pid });
  note(
    `${build.role} ${build.label}: ready at ${gateway.base} (pid ${gateway.pid}) in ${((performance.now() - t) / 1000).toFixed(1)} s${gateway.redisPort === null ? '; no Redis door in this build' : ''}`,
  );
  const ctx = newContext(opts, {
    base: gateway.base,
    redisPort: gateway.redisPort,
    ablationBase: null,
    gatewayPid: gateway.pid,
    ablationPid: null,
    shardUrls: urls,
    watched,
    sql,
  });
  let probe: FeedProbe | undefined;
  if (opts.watch && build.role === 'new') {
    probe = new FeedProbe(gateway.base);
    note(`${build.role} ${build.label}: change-feed watcher on every key, from ${await probe.ready()}`);
  }
  return { build, layout, gateway, ctx, probe };
}

export interface CompareResult {
  newLabel: string;
  oldLabel: string;
  compared: Compared[];
  failed: boolean;
  evidence: string | null;
}

export async function runCompare(
  opts: Readonly<BenchOptions>,
  ref: string,
  order: readonly ScenarioName[],
  runScenario: RunScenario,
  note: (s: string) => void,
  onStop: (stop: () => Promise<void>) => void,
): Promise<CompareResult> {
  const startedAt = new Date().toISOString();
  const oldBuild = buildOf(ref, note);
  const newBuild = ownBuild();
  note(
    `comparing new ${newBuild.label} with old ${oldBuild.label} (${ref}): ${order.join(',')}; ${opts.runs} round(s) of ${opts.duration} s each, alternating`,
  );
  const sides: Side[] = [];
  let probeSummary: string | null = null;
  const stop = async () => {
    clearProgress();
    for (const s of sides.splice(0)) {
      if (s.probe !== undefined) {
        probeSummary = s.probe.summary();
        note(probeSummary);
        await s.probe.stop();
      }
      await s.ctx.naive?.stop();
      await s.ctx.sql?.close();
      const code = await s.gateway.stop();
      note(`${s.build.role} ${s.build.label} gateway (pid ${s.gateway.pid}) exited with ${code}`);
    }
  };
  onStop(stop);
  const compared: Compared[] = [];
  let failed = false;
  try {
    sides.push(await startSide(newBuild, DEFAULT_LAYOUT, opts, note));
    sides.push(await startSide(oldBuild, { dataDir: `${DEFAULT_LAYOUT.dataDir}-${oldBuild.label}`, basePort: DEFAULT_LAYOUT.basePort + 10 }, opts, note));
    const background = await backgroundBusyCores(2000);
    note(
      `machine busy before load: ${background.toFixed(2)} of ${CORES} cores${background > 0.25 ? ' -- NOT idle: results will be noisy (ratios within the run still hold better than absolutes)' : ''}`,
    );
    for (const s of order) {
      const got = new Map<string, { new: Row[]; old: Row[] }>();
      for (let round = 1; round <= opts.runs; round++) {
        const turn = round % 2 === 1 ? sides : [sides[1], sides[0]];
        for (const side of turn) {
          const label = `[${s} ${round}/${opts.runs} ${side.build.role}] `;
          let rows: Row[];
          try {
            rows = await runScenario(side.ctx, s, label, null);
          } catch (err) {
            failed = true;
            clearProgress();
            note(`${s} (${side.build.role}) failed: ${(err as Error).stack ?? err}`);
            rows = [skippedRow(s, s, `failed: ${(err as Error).message.split('\n')[0]}`)];
          }
          for (const r of rows) {
            const e = got.get(r.name) ?? { new: [], old: [] };
            got.set(r.name, e);
            e[side.build.role].push(r);
            if (r.skipped === undefined && Number.isFinite(r.opsPerSec)) side.ctx.peaks.set(r.name, r.opsPerSec);
            note(`${label}${r.name}: ${r.skipped ?? `${f0(r.opsPerSec)} ops/s, p99 ${f2(r.latency?.p99 ?? NaN)} ms, errors ${r.errors}`}`);
          }
        }
      }
      for (const [name, e] of got) compared.push(compareRows(name, e.new, e.old));
    }
  } catch (err) {
    failed = true;
    clearProgress();
    note(`compare failed: ${(err as Error).stack ?? err}`);
  } finally {
    await stop();
  }
  let evidence: string | null = null;
  if (!opts.noSave && compared.length > 0) {
    const dir = path.join(BENCH_DIR, 'evidence');
    fs.mkdirSync(dir, { recursive: true });
    const stamp = startedAt.replace(/[:.]/g, '-');
    const round = (x: number, d = 2) => (Number.isFinite(x) ? Number(x.toFixed(d)) : null);
    const json = {
      info: {
        startedAt,
        finishedAt: new Date().toISOString(),
        new: newBuild.label,
        old: oldBuild.label,
        ref,
        node: process.version,
        cpus: CORES,
        memoryGiB: Math.round(os.totalmem() / 2 ** 30),
        options: { ...opts },
        feedWatcher: probeSummary,
      },
      scenarios: compared.map((c) => ({
        name: c.name,
        newOps: c.newOps.map((x) => round(x, 0)),
        oldOps: c.oldOps.map((x) => round(x, 0)),
        ratio: round(c.ratio, 3),
        pairRatios: c.pairRatios.map((x) => round(x, 3)),
        p99Ms: { new: round(c.newP99), old: round(c.oldP99) },
        cpuMicrosPerOp: {
          new: Object.fromEntries(Object.entries(c.newCpu).map(([k, v]) => [k, round(v, 1)])),
          old: Object.fromEntries(Object.entries(c.oldCpu).map(([k, v]) => [k, round(v, 1)])),
        },
        notes: c.notes,
      })),
    };
    evidence = path.join(dir, `compare-${stamp}.json`);
    fs.writeFileSync(evidence, JSON.stringify(json, null, 1) + '\n');
    fs.writeFileSync(evidence.replace(/\.json$/, '.md'), renderCompare(compared, newBuild.label, oldBuild.label) + '\n');
  }
  return { newLabel: newBuild.label, oldLabel: oldBuild.label, compared, failed, evidence };
}
