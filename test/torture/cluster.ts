/**
 * Owns a store made of real processes for fault tests: one throwaway local mariadbd per shard and
 * several gateway processes (`node dist/src/cli.js`, KVSQL_SHARDS naming those shards), plus the
 * faults a test may inject: kill -9 of a gateway (and its restart on the same port), kill -9 of a
 * shard's mariadbd (and its restart on the same data and port), SIGSTOP/SIGCONT of a mariadbd;
 * plus spare servers (not in KVSQL_SHARDS) that `kvsql shards add` can join, and the admin CLI.
 * Relies on src/embedded/local-mysqld (the same servers test/helpers/mysql.ts starts; used
 * directly because SIGSTOP needs the server's pid) and on a built dist/. Must not touch anything
 * but its own temp dir and the processes it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pickFreePort, startLocalMysqld, type LocalMysqld } from '../../src/embedded/local-mysqld';
import { CLI, cliEnv, runCli } from '../helpers/cli';
import { sleep, waitFor } from '../helpers/wait';

const READY_TIMEOUT_MS = 60_000;

export interface GatewayProcess {
  readonly index: number;
  readonly port: number;
  /** http://127.0.0.1:PORT */
  readonly base: string;
  readonly pid: number;
  /** kill -9, and wait for the exit. */
  kill(): Promise<void>;
  /** Start it again on the same port and wait until /readyz answers 200. */
  start(): Promise<void>;
  readonly running: boolean;
}

export interface Cluster {
  readonly dir: string;
  /** The servers the gateways were started with (KVSQL_SHARDS). */
  readonly shards: LocalMysqld[];
  /** Servers with an empty database, for `kvsql shards add`. */
  readonly spares: LocalMysqld[];
  /** Runs `kvsql <args>` (the admin commands) with the gateways' settings; its exit code and output. */
  admin(args: string[], timeoutMs?: number): Promise<{ code: number | null; out: string }>;
  readonly gateways: GatewayProcess[];
  /** Wait until every gateway answers /readyz with 200 (every shard up). */
  waitReady(timeoutMs?: number): Promise<void>;
  /** Stop everything and delete the temp dir. */
  close(): Promise<void>;
}

export interface ClusterOptions {
  shards?: number;
  gateways?: number;
  /** Spare servers to start beside the shards (see Cluster.spares). */
  spares?: number;
  /** Extra KVSQL_* settings for every gateway. */
  env?: Record<string, string>;
  log?: (msg: string) => void;
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const log = opts.log ?? (() => undefined);
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} does not exist: run npm run build first`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-torture-'));
  const shards: LocalMysqld[] = [];
  const spares: LocalMysqld[] = [];
  const gateways: Gateway[] = [];
  const close = async (): Promise<void> => {
    for (const g of gateways) await g.kill();
    for (const s of [...shards, ...spares]) {
      try {
        process.kill(s.pid, 'SIGCONT'); // a stopped server cannot stop gracefully
      } catch {
        /* not running */
      }
      await s.stop().catch(() => s.kill());
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    // In parallel: most of a start is mariadb-install-db, which waits on the disk.
    const nShards = opts.shards ?? 2;
    const starting = Array.from({ length: nShards + (opts.spares ?? 0) }, (_, i) =>
      startLocalMysqld({ dataDir: path.join(dir, `shard-${i}`), port: 0, database: 'kvsql', bufferPoolMb: 64, log }),
    );
    const settled = await Promise.allSettled(starting);
    settled.forEach((r, i) => r.status === 'fulfilled' && (i < nShards ? shards : spares).push(r.value));
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
    // No Redis door: two gateways on one host would both want its default port.
    const env = cliEnv({
      KVSQL_SHARDS: shards.map((s) => s.url).join(','),
      KVSQL_HOST: '127.0.0.1',
      KVSQL_LOG_LEVEL: 'warn',
      KVSQL_REDIS_PORT: 'off',
      ...opts.env,
    });
    for (let i = 0; i < (opts.gateways ?? 2); i++) gateways.push(new Gateway(i, await pickFreePort(), env, path.join(dir, `gateway-${i}.log`)));
    await Promise.all(gateways.map((g) => g.start()));
  } catch (err) {
    await close();
    throw err;
  }
  return {
    dir,
    shards,
    spares,
    gateways,
    admin: (args, timeoutMs) => runCli(args, gateways[0].env, timeoutMs),
    async waitReady(timeoutMs = READY_TIMEOUT_MS) {
      for (const g of gateways) await waitReady(g.base, timeoutMs);
    },
    close,
  };
}

class Gateway implements GatewayProcess {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  constructor(
    readonly index: number,
    readonly port: number,
    readonly env: NodeJS.ProcessEnv,
    private readonly logFile: string,
  ) {}

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }
  get pid(): number {
    return this.child?.pid ?? 0;
  }
  get running(): boolean {
    return this.child !== null;
  }

  async start(): Promise<void> {
    if (this.child !== null) return;
    const out = fs.openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, [CLI], { env: { ...this.env, KVSQL_PORT: String(this.port) }, stdio: ['ignore', out, out] });
    } finally {
      fs.closeSync(out);
    }
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once('exit', () => {
        if (this.child === child) this.child = null;
        resolve();
      });
    });
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (this.child !== child) throw new Error(`gateway ${this.index} exited during start; see ${this.logFile}:\n${tail(this.logFile)}`);
      if ((await readyz(this.base)) === 200) return;
      if (Date.now() > deadline) throw new Error(`gateway ${this.index} not ready in ${READY_TIMEOUT_MS} ms; see ${this.logFile}`);
      await sleep(100);
    }
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (child === null) return;
    child.kill('SIGKILL');
    await this.exited;
  }
}

async function readyz(base: string): Promise<number> {
  try {
    const r = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return 0;
  }
}

async function waitReady(base: string, timeoutMs: number): Promise<void> {
  await waitFor(async () => (await readyz(base)) === 200, { timeoutMs, intervalMs: 200, message: `${base} ready` });
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').slice(-2000);
  } catch {
    return '';
  }
}
