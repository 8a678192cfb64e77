/**
 * Owns choosing where the shards' MySQL servers come from and starting them all in parallel:
 *   1. a server binary already on this machine  -> local processes, data in <dataDir>/shard-<i>/
 *   2. else a Docker engine that answers         -> one mysql:8.4 container per shard
 *   3. else install MariaDB with apt (as root)   -> local processes, as in 1
 *   4. else an Error saying what to install.
 * With replicas > 1 every shard is a Galera cluster of local MariaDB nodes (galera-cluster.ts).
 * The local paths hold the data dir's lock (data-dir-lock.ts) from before the first server starts
 * until the last one stopped: a second store on the same data dir is refused at start.
 * Relies on local-mysqld.ts, mysql-binary.ts and (optionally) testcontainers. Must not create
 * schemas or tables: it hands out URLs to an existing, empty-or-not `kvsql` database.
 */
import path from 'node:path';
import mysql from 'mysql2/promise';
import { findMysqlBinary, ensureMysqlBinary, ensureGalera, dockerEngineReachable, type MysqlBinary } from './mysql-binary';
import { binlogArgs, isPortFree, startLocalMysqld, type LocalMysqld } from './local-mysqld';
import { startGaleraShard, type GaleraShard } from './galera-cluster';
import { lockDataDir, type DataDirLock } from './data-dir-lock';

export interface EmbeddedClusterOptions {
  shards: number;
  dataDir: string;
  /** Shard i listens on basePort + i; 0 = a free port per shard. Ignored for containers. */
  basePort: number;
  /** Nodes per shard: 1 = one server; 3, 5, 7 = a Galera cluster per shard (local MariaDB only). */
  replicas?: number;
  /** Keep a binary log on each single-server shard, for point-in-time recovery; true when absent. */
  binlog?: boolean;
  log: (msg: string) => void;
}

export interface EmbeddedCluster {
  /**
   * One entry per shard, in shard order (read again after a container restart: its port may
   * move). With replicas > 1 an entry is the shard's node URLs joined by `|`.
   */
  readonly urls: string[];
  readonly shards: LocalMysqld[];
  /** The Galera clusters, one per shard, when replicas > 1 (then `shards` is empty). */
  readonly galera: GaleraShard[];
  stop(): Promise<void>;
}

export const EMBEDDED_DATABASE = 'kvsql';

/** A container behind the LocalMysqld interface; remove() stops it for good and deletes it. */
export interface MysqlContainer extends LocalMysqld {
  remove(): Promise<void>;
}

// The subset of testcontainers we use, typed here so that this file compiles (and the local path
// runs) where it is absent: it is a devDependency, so `npm ci --omit=dev` installs have none.
interface TcStartedContainer {
  getHost(): string;
  getMappedPort(port: number): number;
  getId(): string;
  restart(options?: { timeout?: number }): Promise<void>;
  stop(options?: { timeout?: number; remove?: boolean; removeVolumes?: boolean }): Promise<unknown>;
}
interface TcGenericContainer {
  withEnvironment(env: Record<string, string>): TcGenericContainer;
  withCommand(cmd: string[]): TcGenericContainer;
  withExposedPorts(...ports: number[]): TcGenericContainer;
  withWaitStrategy(strategy: unknown): TcGenericContainer;
  withStartupTimeout(ms: number): TcGenericContainer;
  start(): Promise<TcStartedContainer>;
}
interface TcRuntimeClient {
  container: {
    getById(id: string): { kill(opts?: { signal?: string }): Promise<unknown> };
    stop(container: unknown, opts?: { timeout: number }): Promise<void>;
  };
}
interface TcModule {
  GenericContainer: new (image: string) => TcGenericContainer;
  Wait: { forLogMessage(message: RegExp, times?: number): unknown };
  getContainerRuntimeClient(): Promise<TcRuntimeClient>;
}

/**
 * testcontainers is optional (a devDependency since 0.1): loaded lazily, only when no local mysqld
 * is found, and its absence just means "no container fallback". A production install of kvsql
 * (or of kvsql/client) never loads it.
 */
function loadTestcontainers(): TcModule | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('testcontainers') as TcModule;
  } catch {
    return null;
  }
}

/** Same durability and limits as local-mysqld.ts serverArgs, minus what the image sets itself. */
const CONTAINER_ARGS = [
  '--innodb-flush-log-at-trx-commit=1',
  '--sync-binlog=1',
  '--transaction-isolation=READ-COMMITTED',
  '--max-connections=1000',
  '--max-allowed-packet=256M',
  '--skip-name-resolve',
  '--character-set-server=utf8mb4',
  '--innodb-lock-wait-timeout=5',
  '--mysqlx=OFF',
];

const CONTAINER_STOP_GRACE_MS = 20_000;

/**
 * One mysql:8.4 container. Data lives in the container's writable layer: it survives stop() +
 * restart() and kill() + restart(), but not remove(), and nothing is kept under a host dataDir;
 * persistence across kvsql runs is only offered by the local-process path.
 */
export async function startMysqlContainer(opts: { database: string; bufferPoolMb?: number; log: (msg: string) => void }): Promise<MysqlContainer> {
  const tc = loadTestcontainers();
  if (tc === null)
    throw new Error('testcontainers is not installed (a devDependency: installs made with --omit=dev lack it); run `npm install testcontainers`');
  const started = Date.now();
  const container = await new tc.GenericContainer('mysql:8.4')
    .withEnvironment({ MYSQL_ALLOW_EMPTY_PASSWORD: 'yes', MYSQL_DATABASE: opts.database })
    .withCommand([...CONTAINER_ARGS, `--innodb-buffer-pool-size=${opts.bufferPoolMb ?? 256}M`])
    .withExposedPorts(3306)
    // The image's entrypoint first runs a temporary server with networking off ("port: 0"), then
    // the real one; only the second line means the exposed port is served.
    .withWaitStrategy(tc.Wait.forLogMessage(/ready for connections.*port: 3306/, 1))
    .withStartupTimeout(180_000)
    .start();
  const url = (): string => `mysql://root@${container.getHost()}:${container.getMappedPort(3306)}/${opts.database}`;
  await waitForUrl(url(), 30_000);
  opts.log(`mysql:8.4 container ${container.getId().slice(0, 12)} ready at ${url()} in ${Date.now() - started} ms`);

  let running = true;
  let removed = false;
  const runtime = (): Promise<TcRuntimeClient> => tc.getContainerRuntimeClient();
  const handle: MysqlContainer = {
    get url() {
      return url();
    },
    get port() {
      return container.getMappedPort(3306);
    },
    dataDir: '',
    pid: 0,
    // Not container.stop(): testcontainers memoises it (a second call after a restart is a no-op)
    // and it deletes the container, which would make restart() impossible.
    async stop() {
      if (!running || removed) return;
      const client = await runtime();
      await client.container.stop(client.container.getById(container.getId()), { timeout: CONTAINER_STOP_GRACE_MS });
      running = false;
    },
    async kill() {
      if (!running || removed) return;
      const client = await runtime();
      await client.container.getById(container.getId()).kill({ signal: 'SIGKILL' });
      running = false;
    },
    async restart() {
      if (removed) throw new Error('container was removed');
      // `docker restart` starts a stopped container too; testcontainers then re-reads the port
      // mapping (it may change) and re-runs the wait strategy.
      await container.restart({ timeout: CONTAINER_STOP_GRACE_MS });
      running = true;
      await waitForUrl(url(), 30_000);
    },
    async remove() {
      if (removed) return;
      removed = true;
      running = false;
      await container.stop({ timeout: CONTAINER_STOP_GRACE_MS, remove: true, removeVolumes: true });
    },
  };
  return handle;
}

/** Waits until `url` accepts a login (the container's log line can precede the port mapping). */
async function waitForUrl(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const conn = await mysql.createConnection({ uri: url, connectTimeout: 2000 });
      await conn.end();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${url} not accepting connections after ${timeoutMs} ms: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** Starts every item; if any fails, disposes of the ones that started and rethrows the first failure. */
async function startAll<T>(starters: Array<() => Promise<T>>, what: string, dispose: (item: T) => Promise<void>): Promise<T[]> {
  const results = await Promise.allSettled(starters.map((s) => s()));
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failures.length === 0) return results.map((r) => (r as PromiseFulfilledResult<T>).value);
  await Promise.allSettled(results.map((r) => (r.status === 'fulfilled' ? dispose(r.value) : undefined)));
  const first = failures[0]!.reason as Error;
  throw new Error(`${failures.length} of ${starters.length} ${what} failed to start: ${first.message}`, { cause: first });
}

function startLocalShards(binary: MysqlBinary, opts: EmbeddedClusterOptions): Promise<LocalMysqld[]> {
  const starters = Array.from(
    { length: opts.shards },
    (_, i) => () =>
      startLocalMysqld({
        dataDir: path.join(opts.dataDir, `shard-${i}`),
        port: opts.basePort === 0 ? 0 : embeddedSqlPort(opts.basePort, i, 0, 1),
        database: EMBEDDED_DATABASE,
        log: (msg) => opts.log(`shard-${i}: ${msg}`),
        binary,
        autoRestart: true, // crash recovery: see LocalMysqldProcess.onExit
        // Point-in-time recovery replays it (admin/restore.ts); its write cost is in DESIGN.md §8.
        extraArgs: opts.binlog === false ? [] : binlogArgs(binary),
      }),
  );
  return startAll(starters, 'local MySQL shards', (s) => s.stop());
}

/**
 * Every shard a Galera cluster of `replicas` local MariaDB nodes. Ports with a fixed basePort:
 * node j of shard i serves SQL on basePort + i*replicas + j and Galera on
 * basePort + 1000 + 3*(i*replicas + j) + {0: gmcast, 1: IST, 2: SST}.
 */
async function startGaleraShards(opts: EmbeddedClusterOptions, replicas: number): Promise<EmbeddedCluster> {
  const binary = await ensureMysqlBinary(opts.log);
  if (binary.flavor !== 'mariadb') throw new Error(`--replicas=${replicas} needs MariaDB with Galera; found ${binary.flavor} at ${binary.server}`);
  const { provider } = await ensureGalera(opts.log);
  opts.log(`each shard a Galera cluster of ${replicas} nodes (${provider}); data under ${path.resolve(opts.dataDir)}`);
  const lock = await claimLocal(opts, replicas);
  const groups = await startAll(
    Array.from(
      { length: opts.shards },
      (_, i) => () =>
        startGaleraShard({
          shard: i,
          replicas,
          dir: path.join(opts.dataDir, `shard-${i}`),
          sqlBase: opts.basePort === 0 ? 0 : embeddedSqlPort(opts.basePort, i, 0, replicas),
          galeraBase: opts.basePort === 0 ? 0 : opts.basePort + 1000 + 3 * i * replicas,
          database: EMBEDDED_DATABASE,
          binary,
          provider,
          log: (msg) => opts.log(`shard-${i}: ${msg}`),
        }),
    ),
    'Galera shards',
    (g) => g.stop(),
  ).catch((err: unknown) => {
    lock.release();
    throw err;
  });
  return {
    urls: groups.map((g) => g.url),
    shards: [],
    galera: groups,
    async stop() {
      await Promise.all(groups.map((g) => g.stop()));
      lock.release();
    },
  };
}

/**
 * The SQL port of node `node` of embedded shard `shard`: shard i's nodes (one without replicas)
 * take basePort + i * replicas + j. The admin commands derive the embedded URLs from it too.
 */
export function embeddedSqlPort(basePort: number, shard: number, node: number, replicas: number): number {
  return basePort + shard * replicas + node;
}

/**
 * Every fixed port of the embedded shards must be free before any server starts: a busy one
 * would otherwise fail its server after the others were initialised and started, with the reason
 * in a page of server log. One line instead: which ports, and the setting that moves them.
 */
async function refuseBusyPorts(opts: EmbeddedClusterOptions, replicas: number): Promise<void> {
  const ports: number[] = [];
  for (let i = 0; i < opts.shards; i++) {
    for (let j = 0; j < replicas; j++) {
      ports.push(embeddedSqlPort(opts.basePort, i, j, replicas));
      if (replicas > 1) for (let k = 0; k < 3; k++) ports.push(opts.basePort + 1000 + 3 * (i * replicas + j) + k);
    }
  }
  const busy: number[] = [];
  for (const port of ports) if (!(await isPortFree(port))) busy.push(port);
  if (busy.length === 0) return;
  const range =
    replicas > 1
      ? `${opts.basePort}..${opts.basePort + opts.shards * replicas - 1} for SQL and from ${opts.basePort + 1000} for Galera`
      : `${opts.basePort}..${opts.basePort + opts.shards - 1}`;
  throw new Error(
    `embedded MySQL port${busy.length > 1 ? 's' : ''} ${busy.join(', ')} on 127.0.0.1 ${busy.length > 1 ? 'are' : 'is'} in use by another process. ` +
      `Stop it, or move the embedded shards to free ports with --embedded-base-port=N (KVSQL_EMBEDDED_BASE_PORT; now ${opts.basePort}, using ${range})`,
  );
}

/** Before any local server starts: the data dir's lock, then the ports (a store already on this dir holds both; the lock names it). */
async function claimLocal(opts: EmbeddedClusterOptions, replicas: number): Promise<DataDirLock> {
  const lock = lockDataDir(opts.dataDir);
  try {
    if (opts.basePort !== 0) await refuseBusyPorts(opts, replicas);
  } catch (err) {
    lock.release();
    throw err;
  }
  return lock;
}

export async function startEmbeddedCluster(opts: EmbeddedClusterOptions): Promise<EmbeddedCluster> {
  if (!Number.isInteger(opts.shards) || opts.shards < 1) throw new Error(`shards must be a positive integer: ${opts.shards}`);
  const replicas = opts.replicas ?? 1;
  const lastPort = replicas === 1 ? opts.basePort + opts.shards - 1 : opts.basePort + 1000 + 3 * opts.shards * replicas;
  if (opts.basePort !== 0 && (!Number.isInteger(opts.basePort) || opts.basePort < 1 || lastPort > 65535)) {
    throw new Error(`basePort ${opts.basePort} + ${opts.shards} shards x ${replicas} nodes does not fit in 1..65535`);
  }
  if (replicas > 1) return startGaleraShards(opts, replicas);

  let binary = findMysqlBinary();
  if (binary !== null) {
    opts.log(`using local ${binary.flavor} server ${binary.server}; data under ${path.resolve(opts.dataDir)}`);
    return startLocalCluster(binary, opts);
  }

  if ((await dockerEngineReachable()) && loadTestcontainers() !== null) {
    opts.log('no local MySQL binary; using mysql:8.4 containers (data is NOT kept across runs on this path)');
    const containers = await startAll(
      Array.from({ length: opts.shards }, (_, i) => () => startMysqlContainer({ database: EMBEDDED_DATABASE, log: (msg) => opts.log(`shard-${i}: ${msg}`) })),
      'MySQL containers',
      (c) => c.remove(),
    );
    return {
      get urls() {
        return containers.map((c) => c.url);
      },
      shards: containers,
      galera: [],
      async stop() {
        await Promise.all(containers.map((c) => c.remove()));
      },
    };
  }

  // Throws with install instructions when it cannot install.
  binary = await ensureMysqlBinary(opts.log);
  return startLocalCluster(binary, opts);
}

async function startLocalCluster(binary: MysqlBinary, opts: EmbeddedClusterOptions): Promise<EmbeddedCluster> {
  const lock = await claimLocal(opts, 1);
  let shards: LocalMysqld[];
  try {
    shards = await startLocalShards(binary, opts);
  } catch (err) {
    lock.release();
    throw err;
  }
  return {
    get urls() {
      return shards.map((s) => s.url);
    },
    shards,
    galera: [],
    async stop() {
      await Promise.all(shards.map((s) => s.stop()));
      lock.release();
    },
  };
}
