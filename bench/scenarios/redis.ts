/**
 * Owns the `redis` scenario: `redis-benchmark -t set,get,incr` (--redis-tests; unpipelined, and with -P 16) against
 * kvsql's Redis-protocol port and, when `redis-server` is installed, against a local Redis started
 * here with `appendonly yes` (fsync everysec, Redis's default, and fsync always, the setting
 * whose durability matches kvsql's committed transactions), in the same run, as ratios. Relies on
 * redis-benchmark / redis-server from the redis-tools / redis-server packages; rows are skipped
 * when they are missing. Must not touch a Redis it did not start: its own runs on a free port
 * with data under a fresh temporary directory, removed afterwards.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { batchNote, measured, type BenchContext } from '../context';
import { progress, clearProgress } from '../progress';
import { skippedRow, type Row } from '../result';
import { freePort } from '../store-processes';

const BIN_DIRS = ['/usr/bin', '/usr/local/bin'];
const which = (name: string): string | null => BIN_DIRS.map((d) => path.join(d, name)).find((p) => fs.existsSync(p)) ?? null;

/** Requests per redis-benchmark test: about --duration seconds at kvsql's unpipelined rate. */
const requestsFor = (durationS: number, pipelined: boolean): number => Math.max(20_000, Math.round(durationS * (pipelined ? 40_000 : 15_000)));
const KEYSPACE = 100_000;

interface BenchLine {
  test: string;
  rps: number;
  avg: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** redis-benchmark --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms". */
function parseCsv(text: string): BenchLine[] {
  const out: BenchLine[] = [];
  for (const line of text.split('\n')) {
    const cells = line.split('","').map((c) => c.replace(/^"|"$/g, '').trim());
    if (cells.length < 8 || cells[0] === 'test') continue;
    const n = cells.slice(1).map(Number);
    out.push({ test: cells[0], rps: n[0], avg: n[1], p50: n[3], p95: n[4], p99: n[5], max: n[6] });
  }
  return out;
}

async function redisBenchmark(bin: string, port: number, tests: string, clients: number, pipeline: number, n: number, valueSize: number): Promise<BenchLine[]> {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-t', tests, '-n', String(n), '-c', String(clients), '-r', String(KEYSPACE), '-d', String(valueSize), '-P', String(pipeline), '--csv'];
  const { stdout } = await promisify(execFile)(bin, args, { maxBuffer: 16 * 1024 * 1024, timeout: 600_000 });
  const lines = parseCsv(stdout);
  if (lines.length < tests.split(',').length) throw new Error(`redis-benchmark printed no results: ${stdout.slice(0, 300)}`);
  return lines;
}

async function startRedis(bin: string, fsync: 'everysec' | 'always'): Promise<{ port: number; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-bench-redis-'));
  const child: ChildProcess = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', fsync, '--save', '', '--daemonize', 'no', '--logfile', ''], {
    stdio: 'ignore',
  });
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const cli = which('redis-cli');
  for (let i = 0; i < 100; i++) {
    try {
      if (cli) await promisify(execFile)(cli, ['-p', String(port), 'ping']);
      return { port, stop };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await stop();
  throw new Error('redis-server did not answer PING');
}

function row(name: string, api: Row['api'], b: BenchLine, notes: string[], cpu: Row['cpu'], extra: Record<string, unknown>): Row {
  return {
    name,
    scenario: 'redis',
    api,
    opsPerSec: b.rps,
    latency: { p50: b.p50, p90: NaN, p99: b.p99, p999: NaN, max: b.max, mean: b.avg },
    errors: 0,
    errorDetail: '',
    durationS: 0,
    cpu,
    notes,
    extra,
  };
}

export async function runRedisScenario(ctx: BenchContext, label: string): Promise<Row[]> {
  const bench = which('redis-benchmark');
  if (bench === null) return [skippedRow('redis', 'redis', 'redis-benchmark is not installed (apt-get install redis-tools)')];
  if (ctx.redisPort === null) return [skippedRow('redis', 'redis', 'the Redis port of the store under test is unknown (pass --redis-port with --url)')];
  const rows: Row[] = [];
  const size = ctx.opts.valueSize;
  for (const p of [1, 16]) {
    const suffix = p === 1 ? '' : ` -P ${p}`;
    progress(`${label}redis-benchmark -t ${ctx.opts.redisTests}${suffix} against kvsql...`, true);
    const { value: lines, window } = await measured(ctx, ctx.base, () => redisBenchmark(bench, ctx.redisPort!, ctx.opts.redisTests, ctx.opts.redisClients, p, requestsFor(ctx.opts.duration, p > 1), size));
    const note = batchNote(window);
    for (const l of lines) rows.push(row(`redis ${l.test.toLowerCase()}${suffix} (kvsql)`, '-', l, note ? [note] : [], window.cpu, { pipeline: p, clients: ctx.opts.redisClients }));
  }
  const server = which('redis-server');
  if (server === null) {
    rows.push(skippedRow('redis (redis-server)', 'redis', 'redis-server is not installed: no same-run Redis baseline'));
    return rows;
  }
  for (const fsync of ['everysec', 'always'] as const) {
    const redis = await startRedis(server, fsync);
    try {
      for (const p of [1, 16]) {
        const suffix = p === 1 ? '' : ` -P ${p}`;
        progress(`${label}redis-benchmark -t ${ctx.opts.redisTests}${suffix} against redis-server (appendfsync ${fsync})...`, true);
        const lines = await redisBenchmark(bench, redis.port, ctx.opts.redisTests, ctx.opts.redisClients, p, requestsFor(ctx.opts.duration, p > 1) * 2, size);
        for (const l of lines) rows.push(row(`redis ${l.test.toLowerCase()}${suffix} (redis-server aof ${fsync})`, '-', l, [], [], { pipeline: p, clients: ctx.opts.redisClients }));
      }
    } finally {
      await redis.stop();
    }
  }
  clearProgress();
  // Ratios within this run: kvsql over each Redis configuration, same test and pipeline depth.
  for (const r of rows) {
    const m = /^redis (\S+)( -P \d+)? \(kvsql\)$/.exec(r.name);
    if (!m) continue;
    const parts: string[] = [];
    for (const fsync of ['everysec', 'always']) {
      const base = rows.find((x) => x.name === `redis ${m[1]}${m[2] ?? ''} (redis-server aof ${fsync})`);
      if (base) parts.push(`${(r.opsPerSec / base.opsPerSec).toFixed(2)}x aof-${fsync}`);
    }
    const unpipelined = rows.find((x) => x.name === `redis ${m[1]} (redis-server aof everysec)`);
    if (m[2] && unpipelined) parts.push(`${(r.opsPerSec / unpipelined.opsPerSec).toFixed(2)}x unpipelined redis`);
    r.ratio = parts.join('; ');
  }
  return rows;
}
