#!/usr/bin/env node
/**
 * Owns `npm run bench`: parse flags, raise the open-files limit, start (or find) the store, run
 * the chosen scenarios in a fixed order (each --runs times, median reported), print the table and
 * save bench/results/. Relies on every other bench/ module. Must not touch a store it did not
 * start: without --url it starts its own on free ports with data under bench/.data, and only
 * there does it empty the kv table before measuring.
 */
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ALL_SCENARIOS, OptionsError, parseOptions, usage, type BenchOptions, type ScenarioName } from './options';
import { newContext, type BenchContext } from './context';
import { backgroundBusyCores, CORES, describeCpu, type Watched } from './proc-stats';
import { clearProgress, log } from './progress';
import { addRatios, renderTable, saveReport, type Report } from './report';
import { medianRow, skippedRow, type Row } from './result';
import { ShardSql } from './shard-sql';
import { BENCH_DIR, embeddedShardPids, embeddedShardUrls, startAblationGateway, startMainGateway, type GatewayProcess } from './store-processes';
import { runThroughput } from './scenarios/throughput';
import { runHalfLoad } from './scenarios/half-load';
import { runExpiry } from './scenarios/expiry';
import { runConcurrency } from './scenarios/concurrency';
import { runSecurity } from './scenarios/security';
import { runRedisScenario } from './scenarios/redis';
import { runListScenario } from './scenarios/list';
import { runOverload } from './scenarios/overload';
import { renderCompare, runCompare } from './compare';

const RESULTS_DIR = path.join(BENCH_DIR, 'results');
/** Committed: the compact summary of each run DESIGN.md cites (raw reports stay in results/). */
const EVIDENCE_DIR = path.join(BENCH_DIR, 'evidence');
const REEXEC_ENV = 'KVSQL_BENCH_NOFILE_RAISED';

/** RLIMIT_NOFILE [soft, hard] from /proc (Node has no getrlimit). */
function nofileLimits(): [number, number] | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    if (!m) return null;
    const n = (s: string) => (s === 'unlimited' ? Infinity : Number(s));
    return [n(m[1]), n(m[2])];
  } catch {
    return null;
  }
}

/**
 * Node cannot setrlimit, so when the soft limit is below the hard one, run ourselves again under
 * `ulimit -n <hard>`; children (gateway, load generators) inherit the raised limit.
 */
function reexecWithMoreFiles(): boolean {
  const lim = nofileLimits();
  if (lim === null || process.env[REEXEC_ENV] === '1' || lim[0] >= lim[1]) return false;
  const target = lim[1] === Infinity ? 1_048_576 : lim[1];
  const child = spawn(
    '/bin/sh',
    ['-c', `ulimit -n ${target} 2>/dev/null; exec "$@"`, 'sh', process.execPath, ...process.execArgv, __filename, ...process.argv.slice(2)],
    {
      stdio: 'inherit',
      env: { ...process.env, [REEXEC_ENV]: '1' },
    },
  );
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1)));
  return true;
}

function gitCommit(): string {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: BENCH_DIR, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain'], { cwd: BENCH_DIR, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
    return dirty ? `${sha} (dirty)` : sha;
  } catch {
    return 'unknown';
  }
}

/** `gateways`: the processes the harness started (null with --url); a scenario may add its own. */
async function runScenario(ctx: BenchContext, s: ScenarioName, runLabel: string, gateways: GatewayProcess[] | null): Promise<Row[]> {
  switch (s) {
    case 'security':
      return runSecurity(ctx, gateways, runLabel);
    case 'latency-at-half-load':
      return runHalfLoad(ctx, runLabel);
    case 'expiry':
      return runExpiry(ctx, runLabel);
    case 'concurrency':
      return runConcurrency(ctx, runLabel);
    case 'redis':
      return runRedisScenario(ctx, runLabel);
    case 'list':
      return runListScenario(ctx, runLabel);
    case 'overload':
      return runOverload(ctx, runLabel);
    default:
      return runThroughput(ctx, s, runLabel);
  }
}

async function main(): Promise<number> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(usage() + '\n');
    return 0;
  }
  let opts: Readonly<BenchOptions>;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (err instanceof OptionsError) {
      process.stderr.write(`bench: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const startedAt = new Date().toISOString();
  const logLines: string[] = [];
  const note = (s: string) => {
    logLines.push(s);
    log(s);
  };
  const lim = nofileLimits();
  note(`kvsql bench: scenarios ${opts.scenarios.join(',')}; ${opts.duration} s each x ${opts.runs} run(s); ${CORES} cores; open files ${lim ? lim[0] : '?'}`);

  const gateways: GatewayProcess[] = [];
  let sql: ShardSql | null = null;
  let stopNaive: (() => Promise<void>) | null = null;
  let interrupted = false;
  const stopAll = async () => {
    clearProgress();
    for (const g of gateways.reverse()) {
      const code = await g.stop();
      note(`${g.name} (pid ${g.pid}) exited with ${code}${code === 0 ? '' : `; log ${g.logFile}`}`);
    }
    gateways.length = 0;
  };
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    log(`\n${sig}: stopping the store processes`);
    void stopAll().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  if (opts.compare !== null) {
    let stopCompare: (() => Promise<void>) | null = null;
    process.removeAllListeners('SIGINT');
    process.removeAllListeners('SIGTERM');
    const onStop = (sig: NodeJS.Signals) => {
      log(`\n${sig}: stopping the store processes`);
      void (stopCompare?.() ?? Promise.resolve()).finally(() => process.exit(130));
    };
    process.once('SIGINT', onStop);
    process.once('SIGTERM', onStop);
    const order = ALL_SCENARIOS.filter((s) => opts.scenarios.includes(s));
    const r = await runCompare(opts, opts.compare, order, runScenario, note, (stop) => (stopCompare = stop));
    process.stdout.write(`\n${renderCompare(r.compared, r.newLabel, r.oldLabel)}\n`);
    if (r.evidence) process.stdout.write(`\nsaved ${path.relative(process.cwd(), r.evidence)} and its .md (commit them with the note that quotes them)\n`);
    return r.failed ? 1 : 0;
  }

  const rows: Row[] = [];
  let failed = false;
  try {
    let base: string;
    let ablationBase: string | null = opts.ablationUrl;
    let gatewayPid = opts.gatewayPid;
    let redisPort = opts.redisPort;
    let ablationPid: number | null = null;
    let shardUrls: string[] = opts.shardUrls;
    const watched: Watched[] = [];
    if (opts.url !== null) {
      base = opts.url;
      note(`target: existing store ${base}${ablationBase ? `, batching-off gateway ${ablationBase}` : ''}`);
      if (opts.shardUrls.length > 0) sql = await ShardSql.connect(opts.shardUrls);
    } else {
      const t = performance.now();
      log('starting the store: embedded MySQL shards under bench/.data and a gateway (first start initialises MySQL)...');
      const main = await startMainGateway();
      gateways.push(main);
      base = main.base;
      gatewayPid = main.pid;
      redisPort = main.redisPort;
      note(
        `store ready at ${base} (pid ${main.pid}, batching on) in ${((performance.now() - t) / 1000).toFixed(1)} s; shards ${embeddedShardUrls().join(', ')}`,
      );
      shardUrls = embeddedShardUrls();
      sql = await ShardSql.connect(shardUrls);
      if (!opts.keepData) {
        await sql.truncate();
        note('emptied the kv table of the bench store (pass --keep-data to keep it)');
      }
      if (opts.scenarios.includes('ablation')) {
        const off = await startAblationGateway();
        gateways.push(off);
        ablationBase = off.base;
        ablationPid = off.pid;
        note(`ablation gateway ready at ${off.base} (pid ${off.pid}, KVSQL_BATCHING=false, KVSQL_EXPIRY=false, same shards)`);
      }
      embeddedShardPids().forEach((pid, i) => watched.push({ label: `shard-${i} mysqld`, pid }));
    }
    if (gatewayPid !== null) watched.unshift({ label: 'gateway', pid: gatewayPid, threads: true });
    watched.push({ label: 'load generator (this process)', pid: process.pid });

    const ctx = newContext(opts, { base, redisPort, ablationBase, gatewayPid, ablationPid, shardUrls, watched, sql });

    const background = await backgroundBusyCores(2000);
    note(
      `machine busy before load: ${background.toFixed(2)} of ${CORES} cores${background > 0.25 ? ' -- NOT idle (something else is running): results will be noisy' : ''}`,
    );

    // Fixed order: the expiry scenario leaves millions of rows behind, so it goes last.
    const order = ALL_SCENARIOS.filter((s) => opts.scenarios.includes(s));
    for (const s of order) {
      const byName = new Map<string, Row[]>();
      for (let run = 1; run <= opts.runs; run++) {
        const label = opts.runs > 1 ? `[${s} ${run}/${opts.runs}] ` : `[${s}] `;
        let got: Row[];
        try {
          got = await runScenario(ctx, s, label, opts.url === null ? gateways : null);
          if (ctx.naive) stopNaive = ctx.naive.stop;
        } catch (err) {
          failed = true;
          clearProgress();
          note(`${s} failed: ${(err as Error).stack ?? err}`);
          got = [skippedRow(s, s, `failed: ${(err as Error).message.split('\n')[0]}`)];
        }
        for (const r of got) {
          if (r.skipped === undefined && Number.isFinite(r.opsPerSec)) ctx.peaks.set(r.name, r.opsPerSec);
          const list = byName.get(r.name) ?? [];
          list.push(r);
          byName.set(r.name, list);
          if (r.skipped !== undefined) note(`${r.name}: skipped: ${r.skipped}`);
          else
            note(
              `${r.name}: ${Math.round(r.opsPerSec).toLocaleString('en-US')} ops/s, p99 ${r.latency ? r.latency.p99.toFixed(3) + ' ms' : '-'}, errors ${r.errors}; CPU ${describeCpu(r.cpu)}`,
            );
        }
        if (got.some((r) => r.skipped !== undefined && r.skipped.startsWith('failed'))) break;
      }
      for (const list of byName.values()) {
        const m = medianRow(list);
        rows.push(m);
        if (m.skipped === undefined && Number.isFinite(m.opsPerSec)) ctx.peaks.set(m.name, m.opsPerSec);
      }
    }
  } catch (err) {
    failed = true;
    clearProgress();
    note(`bench failed: ${(err as Error).stack ?? err}`);
  } finally {
    await stopNaive?.();
    await sql?.close();
    if (!interrupted) await stopAll();
  }

  addRatios(rows);
  const table = renderTable(rows);
  process.stdout.write(`\n${table}\n`);
  if (!opts.noSave && rows.length > 0) {
    const report: Report = {
      info: {
        startedAt,
        finishedAt: new Date().toISOString(),
        gitCommit: gitCommit(),
        node: process.version,
        cpus: CORES,
        memoryGiB: Math.round(os.totalmem() / 2 ** 30),
        target: opts.url ?? 'own store (embedded shards under bench/.data)',
        options: { ...opts },
        log: logLines,
      },
      rows,
    };
    const saved = saveReport(RESULTS_DIR, report, EVIDENCE_DIR);
    process.stdout.write(`\nsaved ${path.relative(process.cwd(), saved.json)}, ${path.relative(process.cwd(), saved.html)} (and latest.json / latest.html)\n`);
    process.stdout.write(`summary for DESIGN.md: ${path.relative(process.cwd(), saved.summary!)} (commit it when a figure is quoted from this run)\n`);
  }
  return failed ? 1 : 0;
}

if (!reexecWithMoreFiles()) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`bench: ${(err as Error)?.stack ?? err}\n`);
      process.exit(1);
    },
  );
}
