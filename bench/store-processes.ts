/**
 * Owns the store processes the harness starts for itself: the main gateway with its embedded
 * MySQL shards (`node dist/src/cli.js`, batching on) and the ablation gateway on the same shards
 * (batching and expiry off). Relies on the compiled CLI. Must not touch a store it did not start:
 * everything lives under bench/.data and on ports it picked (shards on 23306+, gateways free).
 *
 *   harness ──spawn──> gateway A (cli.js, KVSQL_BATCHING=true) ──spawn──> mariadbd :23306, :23307
 *           └─spawn──> gateway B (cli.js, KVSQL_SHARDS=those two, KVSQL_BATCHING=false, KVSQL_EXPIRY=false)
 *
 * Children get a clean env: no inherited KVSQL_* except tuning passed on purpose as
 * KVSQL_BENCH_GATEWAY_<SETTING> (e.g. KVSQL_BENCH_GATEWAY_READS_IN_FLIGHT=1 becomes KVSQL_READS_IN_FLIGHT=1
 * for both gateways, for tuning experiments), and, on Linux, `setpriv --pdeathsig TERM` so they stop if the harness is killed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { currentBuild, envFor, type Build } from './builds';

export const BENCH_DIR = path.resolve(__dirname, '..', '..', 'bench');
export const DATA_DIR = path.join(BENCH_DIR, '.data');
const SETPRIV = process.platform === 'linux' ? ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p)) : undefined;
export const EMBEDDED_BASE_PORT = 23306;
export const EMBEDDED_SHARDS = 2;

/**
 * Where one store the harness starts keeps its shards: the default store under bench/.data on
 * 23306+, and with --compare the other build's store beside it (its own data dir and ports, so
 * two builds with different schemas never share a table).
 */
export interface StoreLayout {
  dataDir: string;
  basePort: number;
}
export const DEFAULT_LAYOUT: StoreLayout = { dataDir: DATA_DIR, basePort: EMBEDDED_BASE_PORT };
let thisBuild: Build | null = null;
/** This checkout's build (the default for every gateway the harness starts). */
export function ownBuild(): Build {
  return (thisBuild ??= currentBuild());
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export class GatewayProcess {
  /** The Redis-protocol port, or null when it is off. */
  redisPort: number | null = null;
  private exited: Promise<number | null>;
  private exitCode: number | null | undefined = undefined;
  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly base: string,
    readonly logFile: string,
  ) {
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        resolve(this.exitCode);
      }),
    );
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** Last lines of the child's log, for error messages. */
  tail(lines = 15): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Polls /readyz until 200; fails early if the child exits. */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) throw new Error(`${this.name} exited with ${this.exitCode} before it was ready; log ${this.logFile}:\n${this.tail()}`);
      try {
        if ((await readyStatus(`${this.base}/readyz`)) === 200) return;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new Error(`${this.name} not ready after ${timeoutMs} ms; log ${this.logFile}:\n${this.tail()}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** SIGTERM and wait; returns the exit code (the CLI exits 0 after a clean stop). */
  async stop(timeoutMs = 60_000): Promise<number | null> {
    if (!this.running) return this.exitCode ?? null;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/** GET status of a URL; https without checking the certificate (the bench's own test CA). */
function readyStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? https.get : http.get;
    const req = get(url, { timeout: 2000, rejectUnauthorized: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

function cleanEnv(kv: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KVSQL_') && !k.startsWith('KV_')) env[k] = v;
  return { ...env, ...kv };
}

/** KVSQL_BENCH_GATEWAY_<SETTING> as KVSQL_<SETTING> (through envFor: a build that lacks the setting does not get it). */
function tuningEnv(): Record<string, string> {
  const tuning: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('KVSQL_BENCH_GATEWAY_') && v !== undefined) tuning[`KVSQL_${k.slice('KVSQL_BENCH_GATEWAY_'.length)}`] = v;
  }
  return tuning;
}

/**
 * Starts `build`'s CLI (this checkout's by default) with the harness's settings, named KVSQL_*
 * and renamed for an older build (envFor); a setting that build does not know is left out, and a
 * Redis port it cannot take is reported as none.
 */
export function spawnGateway(
  name: string,
  kv: Record<string, string>,
  port: number,
  redisPort: number | null = null,
  build: Build = ownBuild(),
  logDir = path.join(DATA_DIR, 'logs'),
): GatewayProcess {
  fs.mkdirSync(logDir, { recursive: true });
  const logFile = path.join(logDir, `${name}.log`);
  const fd = fs.openSync(logFile, 'a');
  const argv = SETPRIV ? [SETPRIV, '--pdeathsig', 'TERM', process.execPath, build.cli] : [process.execPath, build.cli];
  const { env, dropped } = envFor(build, {
    ...tuningEnv(),
    ...kv,
    KVSQL_PORT: String(port),
    KVSQL_REDIS_PORT: redisPort === null ? 'off' : String(redisPort),
    KVSQL_HOST: '127.0.0.1',
    KVSQL_LOG_LEVEL: 'warn',
  });
  const child = spawn(argv[0], argv.slice(1), { env: cleanEnv(env), stdio: ['ignore', fd, fd], cwd: build.root });
  fs.closeSync(fd);
  const scheme = kv.KVSQL_TLS_CERT_FILE ? 'https' : 'http';
  const gw = new GatewayProcess(name, child, `${scheme}://127.0.0.1:${port}`, logFile);
  gw.redisPort = dropped.includes('KVSQL_REDIS_PORT') ? null : redisPort;
  return gw;
}

/** Shard URLs of the embedded cluster gateway A starts. */
export function embeddedShardUrls(layout: StoreLayout = DEFAULT_LAYOUT): string[] {
  return Array.from({ length: EMBEDDED_SHARDS }, (_, i) => `mysql://root@127.0.0.1:${layout.basePort + i}/kvsql`);
}

/** mariadbd pids of the embedded shards (from their pid files), for CPU accounting. */
export function embeddedShardPids(layout: StoreLayout = DEFAULT_LAYOUT): number[] {
  const pids: number[] = [];
  for (let i = 0; i < EMBEDDED_SHARDS; i++) {
    try {
      pids.push(Number(fs.readFileSync(path.join(layout.dataDir, `shard-${i}`, 'mysqld.pid'), 'utf8').trim()));
    } catch {
      /* not there */
    }
  }
  return pids.filter((p) => Number.isInteger(p) && p > 0);
}

/** Gateway A: embedded shards under bench/.data, batching on. First start initialises MySQL. */
export async function startMainGateway(build: Build = ownBuild(), layout: StoreLayout = DEFAULT_LAYOUT): Promise<GatewayProcess> {
  const port = await freePort();
  const gw = spawnGateway(
    build.role === 'new' ? 'gateway-batching-on' : `gateway-${build.label}`,
    {
      KVSQL_DATA_DIR: layout.dataDir,
      KVSQL_EMBEDDED_BASE_PORT: String(layout.basePort),
      KVSQL_EMBEDDED_SHARDS: String(EMBEDDED_SHARDS),
      KVSQL_BATCHING: 'true',
    },
    port,
    await freePort(),
    build,
    path.join(layout.dataDir, 'logs'),
  );
  await gw.waitReady(240_000);
  return gw;
}

/** Gateway B: the same shards, batching and expiry off (the ablation baseline). */
export async function startAblationGateway(): Promise<GatewayProcess> {
  const port = await freePort();
  const gw = spawnGateway('gateway-batching-off', { KVSQL_SHARDS: embeddedShardUrls().join(','), KVSQL_BATCHING: 'false', KVSQL_EXPIRY: 'false' }, port);
  await gw.waitReady(60_000);
  return gw;
}
