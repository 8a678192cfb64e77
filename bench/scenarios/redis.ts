/**
 * Owns the `redis` scenario: `redis-benchmark -t set,get,incr` (--redis-tests, which may also name
 * `evalsha` and `multi`, run by customBenchmark; unpipelined, and with -P 16) against
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
  const args = [
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-t',
    tests,
    '-n',
    String(n),
    '-c',
    String(clients),
    '-r',
    String(KEYSPACE),
    '-d',
    String(valueSize),
    '-P',
    String(pipeline),
    '--csv',
  ];
  const { stdout } = await promisify(execFile)(bin, args, { maxBuffer: 16 * 1024 * 1024, timeout: 600_000 });
  const lines = parseCsv(stdout);
  if (lines.length < tests.split(',').length) throw new Error(`redis-benchmark printed no results: ${stdout.slice(0, 300)}`);
  return lines;
}

/** Tests of --redis-tests that redis-benchmark has no -t for: run here (see customBenchmark). */
const CUSTOM_TESTS = ['evalsha', 'multi'];

/** A small script, as rate limiters and locks use: read, then increment with a TTL. */
const BENCH_SCRIPT = "local v = redis.call('incr', KEYS[1]); if v == 1 then redis.call('pexpire', KEYS[1], 60000) end; return v";

/**
 * `evalsha`: redis-benchmark's custom-command mode, EVALSHA of BENCH_SCRIPT on a random key of
 * KEYSPACE (loaded first with SCRIPT LOAD). `multi`: MULTI / INCR / INCR / EXEC on one random key
 * (redis-benchmark sends one custom command per request, not a transaction), looped by `clients`
 * ioredis connections for `seconds`: the same client against kvsql and Redis, so the ratio holds.
 */
async function customBenchmark(bin: string, port: number, test: string, clients: number, n: number, seconds: number): Promise<BenchLine> {
  if (test === 'evalsha') {
    const cli = which('redis-cli')!;
    const { stdout } = await promisify(execFile)(cli, ['-p', String(port), 'SCRIPT', 'LOAD', BENCH_SCRIPT]);
    const sha = stdout.trim();
    const args = [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-n',
      String(n),
      '-c',
      String(clients),
      '-r',
      String(KEYSPACE),
      '--csv',
      'EVALSHA',
      sha,
      '1',
      'bench:script:__rand_int__',
    ];
    const out = await promisify(execFile)(bin, args, { maxBuffer: 16 * 1024 * 1024, timeout: 600_000 });
    const lines = parseCsv(out.stdout);
    if (lines.length === 0) throw new Error(`redis-benchmark EVALSHA printed no results: ${out.stdout.slice(0, 300)}`);
    return { ...lines[0], test: 'EVALSHA' };
  }
  const { default: Redis } = await import('ioredis');
  const conns = Array.from({ length: clients }, () => new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0 }));
  const latencies: number[] = [];
  const until = performance.now() + seconds * 1000;
  let done = 0;
  try {
    await Promise.all(
      conns.map(async (r) => {
        while (performance.now() < until) {
          const key = `bench:multi:${Math.floor(Math.random() * KEYSPACE)}`;
          const t0 = performance.now();
          const res = await r.multi().incr(key).incr(key).exec();
          if (res === null || res.some(([e]) => e !== null)) throw new Error(`MULTI/EXEC failed: ${JSON.stringify(res)}`);
          latencies.push(performance.now() - t0);
          done++;
        }
      }),
    );
  } finally {
    for (const c of conns) c.disconnect();
  }
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  const mean = latencies.reduce((x, y) => x + y, 0) / latencies.length;
  return { test: 'MULTI', rps: done / seconds, avg: mean, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: latencies[latencies.length - 1] };
}

/** The -t tests and the custom ones of a --redis-tests list. */
function splitTests(list: string): { builtIn: string; custom: string[] } {
  const all = list.split(',');
  return { builtIn: all.filter((t) => !CUSTOM_TESTS.includes(t)).join(','), custom: all.filter((t) => CUSTOM_TESTS.includes(t)) };
}

async function startRedis(bin: string, fsync: 'everysec' | 'always'): Promise<{ port: number; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-bench-redis-'));
  const child: ChildProcess = spawn(
    bin,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--appendonly',
      'yes',
      '--appendfsync',
      fsync,
      '--save',
      '',
      '--daemonize',
      'no',
      '--logfile',
      '',
    ],
    {
      stdio: 'ignore',
    },
  );
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
  const tests = splitTests(ctx.opts.redisTests);
  for (const p of tests.builtIn === '' ? [] : [1, 16]) {
    const suffix = p === 1 ? '' : ` -P ${p}`;
    progress(`${label}redis-benchmark -t ${tests.builtIn}${suffix} against kvsql...`, true);
    const { value: lines, window } = await measured(ctx, ctx.base, () =>
      redisBenchmark(bench, ctx.redisPort!, tests.builtIn, ctx.opts.redisClients, p, requestsFor(ctx.opts.duration, p > 1), size),
    );
    const note = batchNote(window);
    for (const l of lines)
      rows.push(row(`redis ${l.test.toLowerCase()}${suffix} (kvsql)`, '-', l, note ? [note] : [], window.cpu, { pipeline: p, clients: ctx.opts.redisClients }));
  }
  for (const t of tests.custom) {
    progress(`${label}${t} against kvsql...`, true);
    const { value: l, window } = await measured(ctx, ctx.base, () =>
      customBenchmark(bench, ctx.redisPort!, t, ctx.opts.redisClients, requestsFor(ctx.opts.duration, false) / 2, ctx.opts.duration),
    );
    const note = batchNote(window);
    rows.push(row(`redis ${l.test.toLowerCase()} (kvsql)`, '-', l, note ? [note] : [], window.cpu, { pipeline: 1, clients: ctx.opts.redisClients }));
  }
  const server = which('redis-server');
  if (server === null) {
    rows.push(skippedRow('redis (redis-server)', 'redis', 'redis-server is not installed: no same-run Redis baseline'));
    return rows;
  }
  for (const fsync of ['everysec', 'always'] as const) {
    const redis = await startRedis(server, fsync);
    try {
      for (const p of tests.builtIn === '' ? [] : [1, 16]) {
        const suffix = p === 1 ? '' : ` -P ${p}`;
        progress(`${label}redis-benchmark -t ${tests.builtIn}${suffix} against redis-server (appendfsync ${fsync})...`, true);
        const lines = await redisBenchmark(bench, redis.port, tests.builtIn, ctx.opts.redisClients, p, requestsFor(ctx.opts.duration, p > 1) * 2, size);
        for (const l of lines)
          rows.push(row(`redis ${l.test.toLowerCase()}${suffix} (redis-server aof ${fsync})`, '-', l, [], [], { pipeline: p, clients: ctx.opts.redisClients }));
      }
      for (const t of tests.custom) {
        progress(`${label}${t} against redis-server (appendfsync ${fsync})...`, true);
        const l = await customBenchmark(bench, redis.port, t, ctx.opts.redisClients, requestsFor(ctx.opts.duration, false), ctx.opts.duration);
        rows.push(row(`redis ${l.test.toLowerCase()} (redis-server aof ${fsync})`, '-', l, [], [], { pipeline: 1, clients: ctx.opts.redisClients }));
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
