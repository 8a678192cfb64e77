/**
 * Owns one embedded shard run as a MariaDB Galera cluster of N nodes on loopback: initialising
 * the nodes' data dirs, (re)starting the cluster from the most advanced node, restarting a node
 * that dies (it rejoins by IST, or SST when too far behind), and stopping them all. Relies on
 * local-mysqld.ts helpers, mysql-binary.ts (server binary, Galera provider) and mysql2 to watch
 * wsrep status. Must not create tables: it hands out URLs to the `kvsql` database, one per node.
 *
 *   <shardDir>/node-<j>/     node j's --datadir (grastate.dat, galera.cache, InnoDB, ...)
 *              ports: SQL, gmcast.listen_addr, ist.recv_addr, wsrep_sst_receive_address
 *
 * Start, whatever the previous run left behind:
 *   fresh      node-0 is initialised and bootstrapped alone, the database created, then it is
 *              stopped and its data dir copied to the other nodes (same state UUID and seqno, so
 *              they join with no state transfer: a copy takes ~0.3 s, two rsync SSTs ~15 s)
 *   otherwise  read every grastate.dat; bootstrap the node with safe_to_bootstrap: 1 (the last
 *              to leave a clean shutdown), else the highest seqno, else (all crashed: seqno -1)
 *              the highest position found by `mariadbd --wsrep-recover`; the others join it.
 *
 * As root every node runs `--user=root`, as a single embedded server does, so the nodes start from
 * any directory the user can reach (a checkout under /root, mode 700, which the `mysql` user
 * cannot enter). The one part of Galera that minds is the rsync SST: a joiner's `rsync --daemon`
 * run by root switches to `nobody` for its transfers (rsyncd.conf `uid`), which cannot write a
 * root-owned data dir. So as root the nodes use an SST method of ours that runs the stock rsync
 * script with an `rsync` that tells the daemon to stay root (see writeSstShim).
 *
 *   <tmpDirFor(node dir)>/     the node's --tmpdir, outside the data dir, removed at stop
 *     bin/                     as root: wsrep_sst_kvsql_rsync and its rsync shim
 *
 * Call from the main thread (the children die with the thread that spawned them, see
 * local-mysqld.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { findGalera, type MysqlBinary } from './mysql-binary';
import {
  SETPRIV,
  childOutputSince,
  initialiseDataDir,
  isAlive,
  isInitialised,
  pickFreePort,
  sizeOf,
  sleep,
  socketPathFor,
  refuseForeignServer,
  tailOf,
  tmpDirFor,
  trackChild,
} from './local-mysqld';

export interface GaleraShardOptions {
  shard: number;
  replicas: number;
  /** The shard's directory; node j lives in <dir>/node-<j>. */
  dir: string;
  /** Node j's SQL port is sqlBase + j; its Galera ports are galeraBase + 3j + {0,1,2}. 0 = free ports. */
  sqlBase: number;
  galeraBase: number;
  database: string;
  binary: MysqlBinary;
  provider: string;
  log: (msg: string) => void;
}

/** wsrep_local_state: 1 Joining, 2 Donor/Desynced, 3 Joined, 4 Synced. */
export const WSREP_SYNCED = 4;
const WSREP_DONOR = 2;
/** A donor state this long while every other node is Synced is stuck (see waitSynced). */
const STUCK_DONOR_MS = 45_000;

const READY_TIMEOUT_MS = 120_000;
/** A joiner answers SQL only after its state transfer; a full SST of a large shard takes long. */
const JOIN_TIMEOUT_MS = 30 * 60_000;
const JOIN_ATTEMPTS = 3;
const STOP_GRACE_MS = 30_000;
/**
 * A node that died is started again after this long (and after each failed attempt). Not sooner:
 * a new incarnation that knocks while the survivors are still evicting the old one can make
 * the membership round time out and split them into non-Primary singletons (seen here with 1 s).
 */
const REJOIN_DELAY_MS = 6000;

/**
 * Galera timeouts for loopback: a dead or hung peer is suspected after 2 s and evicted by 3 s
 * (defaults 5 s / 15 s), which bounds how long the survivors' commits stall on it. The
 * membership round (evs.install_timeout) keeps its default 7.5 s: shortened to 3 s, a busy
 * 2-core machine split the survivors into non-Primary singletons. Production clusters across
 * hosts should keep the defaults (see DESIGN.md §9).
 */
const PROVIDER_OPTIONS = [
  'evs.keepalive_period=PT0.5S',
  'evs.suspect_timeout=PT2S',
  'evs.inactive_timeout=PT3S',
  'evs.inactive_check_period=PT0.5S',
  'gcache.size=64M',
  // Keep the write-set cache across a crash: after every node crashed, the one bootstrapped can
  // then serve the others by IST instead of a full rsync SST of its data dir (seen here: > 2 min).
  'gcache.recover=yes',
  'pc.wait_prim_timeout=PT30S',
];

interface Ports {
  sql: number;
  gcomm: number;
  ist: number;
  sst: number;
}

interface GrastateInfo {
  uuid: string;
  seqno: number;
  safeToBootstrap: boolean;
}

export function readGrastate(dataDir: string): GrastateInfo | null {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dataDir, 'grastate.dat'), 'utf8');
  } catch {
    return null;
  }
  const field = (name: string): string => new RegExp(`^${name}:\\s*(\\S+)`, 'm').exec(text)?.[1] ?? '';
  return { uuid: field('uuid'), seqno: Number(field('seqno') || -1), safeToBootstrap: field('safe_to_bootstrap') === '1' };
}

function setSafeToBootstrap(dataDir: string): void {
  const file = path.join(dataDir, 'grastate.dat');
  const text = fs.readFileSync(file, 'utf8');
  fs.writeFileSync(
    file,
    /^safe_to_bootstrap:/m.test(text) ? text.replace(/^safe_to_bootstrap:.*$/m, 'safe_to_bootstrap: 1') : `${text.trimEnd()}\nsafe_to_bootstrap: 1\n`,
  );
}

const asRoot = (): boolean => process.getuid?.() === 0;

/** The SST method as root: `wsrep_sst_kvsql_rsync`, written by writeSstShim. */
const ROOT_SST_METHOD = 'kvsql_rsync';

/**
 * As root: `<tmpDir>/bin/`, on the node's PATH, with two scripts. mariadbd runs the SST script
 * `wsrep_sst_<method>` found on PATH, but puts its own bin dir first, so a plain `rsync` shim
 * would lose to /usr/bin/rsync; hence a method of our own:
 *   wsrep_sst_kvsql_rsync   puts this dir first on PATH, then runs the stock wsrep_sst_rsync
 *   rsync                   in daemon mode (the joiner's receiver) adds uid/gid root, so the
 *                           transfers write as root and not as rsync's default for root, nobody
 */
function writeSstShim(tmpDir: string): string {
  const rsync = findGalera()?.rsync ?? '/usr/bin/rsync';
  const bin = path.join(tmpDir, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  const header = '#!/bin/sh\n# Written by kvsql (src/embedded/galera-cluster.ts): rsync SST as root.\n';
  fs.writeFileSync(path.join(bin, `wsrep_sst_${ROOT_SST_METHOD}`), `${header}PATH='${bin}':"$PATH"; export PATH\nexec wsrep_sst_rsync "$@"\n`, { mode: 0o755 });
  fs.writeFileSync(
    path.join(bin, 'rsync'),
    `${header}for a in "$@"; do [ "$a" = --daemon ] && exec '${rsync}' "$@" --dparam=uid=root --dparam=gid=root; done\nexec '${rsync}' "$@"\n`,
    { mode: 0o755 },
  );
  return bin;
}

export class GaleraNode {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private gone = true;
  /** Set by stop(): an exit is expected and the node is not started again. */
  private stopping = false;
  /** Set once the cluster formed: from then on a node that dies is started again by itself. */
  supervise = false;
  private restartTimer: NodeJS.Timeout | null = null;
  restarts = 0;

  constructor(
    readonly index: number,
    readonly dataDir: string,
    readonly ports: Ports,
    private readonly cluster: { name: string; peers: () => string; database: string; binary: MysqlBinary; provider: string },
    private readonly log: (msg: string) => void,
  ) {}

  get url(): string {
    return `mysql://root@127.0.0.1:${this.ports.sql}/${this.cluster.database}`;
  }

  get pid(): number {
    return this.child !== null && !this.gone ? (this.child.pid ?? 0) : 0;
  }

  private args(bootstrap: boolean): string[] {
    const socket = socketPathFor(this.dataDir);
    const args = [
      '--no-defaults',
      `--datadir=${this.dataDir}`,
      `--tmpdir=${tmpDirFor(this.dataDir)}`,
      '--bind-address=127.0.0.1',
      `--port=${this.ports.sql}`,
      `--socket=${socket}`,
      `--pid-file=${path.join(this.dataDir, 'mysqld.pid')}`,
      `--log-error=${path.join(this.dataDir, 'error.log')}`,
      // Durability as a single node: each node fsyncs its commits (a whole-cluster power loss
      // then loses nothing acknowledged, see DESIGN.md §8).
      '--innodb-flush-log-at-trx-commit=1',
      '--transaction-isolation=READ-COMMITTED',
      '--max-connections=1000',
      '--max-allowed-packet=256M',
      '--innodb-buffer-pool-size=128M',
      '--skip-name-resolve',
      '--character-set-server=utf8mb4',
      '--innodb-lock-wait-timeout=5',
      // Galera's requirements: row events, interleaved auto-increment locks.
      '--binlog-format=ROW',
      '--innodb-autoinc-lock-mode=2',
      '--wsrep-on=ON',
      `--wsrep-provider=${this.cluster.provider}`,
      `--wsrep-cluster-name=${this.cluster.name}`,
      `--wsrep-cluster-address=${this.cluster.peers()}`,
      '--wsrep-node-address=127.0.0.1',
      `--wsrep-node-name=node-${this.index}`,
      `--wsrep-provider-options=${[`gmcast.listen_addr=tcp://127.0.0.1:${this.ports.gcomm}`, `ist.recv_addr=127.0.0.1:${this.ports.ist}`, ...PROVIDER_OPTIONS].join(';')}`,
      `--wsrep-sst-method=${asRoot() ? ROOT_SST_METHOD : 'rsync'}`,
      `--wsrep-sst-receive-address=127.0.0.1:${this.ports.sst}`,
      '--wsrep-slave-threads=2',
    ];
    if (bootstrap) args.push('--wsrep-new-cluster');
    if (asRoot()) args.push('--user=root');
    return args;
  }

  /**
   * The data dir and tmpdir; as root also the rsync shim. Returns the environment of the node's
   * processes. A data dir left owned by `mysql` by an earlier version is fine: root reads it.
   */
  prepareDir(): NodeJS.ProcessEnv {
    fs.mkdirSync(this.dataDir, { recursive: true });
    const tmp = tmpDirFor(this.dataDir);
    fs.mkdirSync(tmp, { recursive: true });
    if (!asRoot()) return process.env;
    return { ...process.env, PATH: `${writeSstShim(tmp)}${path.delimiter}${process.env.PATH ?? '/usr/bin:/bin'}` };
  }

  /** Start the server; resolves once it accepts SQL (not necessarily Synced yet). */
  async start(bootstrap: boolean): Promise<void> {
    this.stopping = false;
    await refuseForeignServer(path.join(this.dataDir, 'mysqld.pid'));
    // A node killed during a state transfer leaves the rsync script's files behind.
    for (const f of ['rsync_sst.pid', 'rsync_sst.conf', 'stunnel.pid']) fs.rmSync(path.join(this.dataDir, f), { force: true });
    const env = this.prepareDir();
    const errorLog = path.join(this.dataDir, 'error.log');
    const outFile = path.join(this.dataDir, 'mysqld.out');
    const errFrom = sizeOf(errorLog);
    const outFrom = sizeOf(outFile);
    const outFd = fs.openSync(outFile, 'a');
    let child: ChildProcess;
    try {
      const args = this.args(bootstrap);
      child =
        SETPRIV !== undefined
          ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', this.cluster.binary.server, ...args], { stdio: ['ignore', outFd, outFd], env })
          : spawn(this.cluster.binary.server, args, { stdio: ['ignore', outFd, outFd], env });
    } finally {
      fs.closeSync(outFd);
    }
    this.child = child;
    this.gone = false;
    this.exited = new Promise<void>((resolve) => {
      const onGone = (): void => {
        if (this.child === child) {
          this.gone = true;
          this.onExit(child);
        }
        resolve();
      };
      child.once('exit', onGone);
      child.once('error', onGone);
    });
    trackChild(child);
    child.unref();
    const started = Date.now();
    const deadline = started + (bootstrap ? READY_TIMEOUT_MS : JOIN_TIMEOUT_MS);
    let lastError = '';
    for (;;) {
      if (this.gone) break;
      try {
        const conn = await mysql.createConnection({ socketPath: socketPathFor(this.dataDir), user: 'root', connectTimeout: 2000 });
        await conn.end();
        this.log(
          `node-${this.index} pid ${child.pid} accepting SQL on 127.0.0.1:${this.ports.sql}${bootstrap ? ' (bootstrapped a new cluster)' : ''} in ${Date.now() - started} ms`,
        );
        return;
      } catch (err) {
        lastError = (err as Error).message;
      }
      if (Date.now() > deadline) break;
      await sleep(100);
    }
    if (!this.gone) await this.signal('SIGKILL');
    throw new Error(
      `galera node-${this.index} (${this.dataDir}) did not start: ${this.gone ? `exited (code ${child.exitCode}, signal ${child.signalCode})` : `no SQL after ${Date.now() - started} ms (${lastError})`}\n` +
        childOutputSince(errorLog, errFrom, outFile, outFrom),
    );
  }

  /** A node that died by itself is started again as a joiner (IST, or SST when too far behind). */
  private onExit(child: ChildProcess): void {
    if (this.stopping || !this.supervise) return;
    this.log(`node-${this.index} exited (code ${child.exitCode}, signal ${child.signalCode}); rejoining in ${REJOIN_DELAY_MS} ms`);
    this.scheduleRejoin();
  }

  private scheduleRejoin(): void {
    if (this.restartTimer !== null) return;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.stopping) return;
      this.restarts++;
      this.start(false).catch((err) => {
        this.log(`node-${this.index} rejoin failed: ${(err as Error).message.split('\n')[0]}; retrying`);
        if (!this.stopping && this.gone) this.scheduleRejoin();
      });
    }, REJOIN_DELAY_MS);
    this.restartTimer.unref();
  }

  /** wsrep_local_state (4 = Synced), or 0 when the node does not answer. */
  async localState(): Promise<number> {
    try {
      const conn = await mysql.createConnection({ socketPath: socketPathFor(this.dataDir), user: 'root', connectTimeout: 2000 });
      try {
        const [rows] = await conn.query<mysql.RowDataPacket[]>({
          sql: "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', 'wsrep_ready')",
          timeout: 2000,
        });
        const v = new Map(rows.map((r) => [String(r.Variable_name).toLowerCase(), String(r.Value)]));
        return v.get('wsrep_ready') === 'ON' ? Number(v.get('wsrep_local_state') ?? 0) : 0;
      } finally {
        await conn.end();
      }
    } catch {
      return 0;
    }
  }

  /**
   * Until the node is Synced. A node left Donor/Desynced for STUCK_DONOR_MS while every one of
   * `peers` is Synced (nobody to send a state to) is restarted, and rejoins by IST: galera-4 (26.4, seen here under load) can lose track of a finished state
   * transfer when a view change comes in the middle ("sst sent called when not SST donor") and
   * then keeps the node desynced for good.
   */
  async waitSynced(timeoutMs = JOIN_TIMEOUT_MS, peers: GaleraNode[] = []): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let donorSince = 0;
    for (let state = await this.localState(); state !== WSREP_SYNCED; state = await this.localState()) {
      if (Date.now() > deadline) throw new Error(`galera node-${this.index} not Synced after ${timeoutMs} ms; see ${path.join(this.dataDir, 'error.log')}`);
      if (state !== WSREP_DONOR) donorSince = 0;
      else if (donorSince === 0) donorSince = Date.now();
      else if (
        Date.now() - donorSince > STUCK_DONOR_MS &&
        peers.length > 0 &&
        (await Promise.all(peers.map((p) => p.localState()))).every((x) => x === WSREP_SYNCED)
      ) {
        this.log(`node-${this.index} stayed Donor/Desynced for ${STUCK_DONOR_MS} ms with no state transfer to finish; restarting it`);
        await this.stop();
        await this.start(false);
        donorSince = 0;
      }
      await sleep(200);
    }
  }

  private async signal(sig: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (child === null || this.gone) return;
    child.ref();
    child.kill(sig);
    if (sig === 'SIGTERM') {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([this.exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), STOP_GRACE_MS)))]);
      clearTimeout(timer);
      if (timedOut) child.kill('SIGKILL');
    }
    await this.exited;
  }

  /** Graceful stop; the node is not started again. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    if (this.child !== null && !this.gone) {
      try {
        process.kill(this.child.pid!, 'SIGCONT'); // a paused node cannot stop
      } catch {
        /* gone */
      }
    }
    await this.signal('SIGTERM');
    fs.rmSync(tmpDirFor(this.dataDir), { recursive: true, force: true });
  }

  /** kill -9 (a crash). The node is started again by itself if the cluster supervises it. */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }

  /** SIGSTOP / SIGCONT: a hung node that keeps its sockets open. */
  pause(): void {
    if (this.child?.pid) process.kill(this.child.pid, 'SIGSTOP');
  }

  resume(): void {
    if (this.child?.pid) process.kill(this.child.pid, 'SIGCONT');
  }

  /** Cut (true) or restore (false) this node's group communication: a network partition. */
  async isolate(on: boolean): Promise<void> {
    const conn = await mysql.createConnection({ socketPath: socketPathFor(this.dataDir), user: 'root', connectTimeout: 2000 });
    try {
      await conn.query(`SET GLOBAL wsrep_provider_options = 'gmcast.isolate=${on ? 1 : 0}'`);
    } finally {
      await conn.end();
    }
  }

  /** `mariadbd --wsrep-recover`: the node's last committed position, from InnoDB. */
  async recoverPosition(): Promise<number> {
    const env = this.prepareDir();
    const logFile = path.join(this.dataDir, 'wsrep-recover.log');
    fs.rmSync(logFile, { force: true });
    const args = [...this.args(false).filter((a) => !a.startsWith('--log-error=')), '--wsrep-recover', `--log-error=${logFile}`];
    let output = '';
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(this.cluster.binary.server, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
      child.stdout.on('data', (c: Buffer) => (output += c.toString()));
      child.stderr.on('data', (c: Buffer) => (output += c.toString()));
      child.once('close', (c) => resolve(c));
      child.once('error', (err) => {
        output += err.message;
        resolve(null);
      });
    });
    const text = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '';
    const m = /Recovered position:\s*[0-9a-f-]+:(-?\d+)/i.exec(text);
    if (m === null)
      this.log(
        `node-${this.index}: mariadbd --wsrep-recover found no position (exit ${code}): ${(output.trim() || tailOf(logFile)).split('\n').slice(-3).join(' | ') || '(no output)'}`,
      );
    return m ? Number(m[1]) : -1;
  }
}

export interface GaleraShard {
  readonly shard: number;
  readonly nodes: GaleraNode[];
  /** The nodes' URLs joined by `|`: one KVSQL_SHARDS entry. */
  readonly url: string;
  stop(): Promise<void>;
}

async function portsFor(opts: GaleraShardOptions, j: number): Promise<Ports> {
  if (opts.sqlBase === 0) return { sql: await pickFreePort(), gcomm: await pickFreePort(), ist: await pickFreePort(), sst: await pickFreePort() };
  const g = opts.galeraBase + 3 * j;
  return { sql: opts.sqlBase + j, gcomm: g, ist: g + 1, sst: g + 2 };
}

/** Copies a stopped node's data dir to a new node: same Galera state, so it joins without SST. */
function cloneDataDir(from: string, to: string): void {
  const skip = new Set(['error.log', 'mysqld.out', 'mysqld.pid', 'mysqld.sock', 'gvwstate.dat', 'wsrep-recover.log']);
  fs.rmSync(to, { recursive: true, force: true });
  fs.cpSync(from, to, { recursive: true, filter: (src) => !skip.has(path.basename(src)) || path.dirname(src) !== from });
  const file = path.join(to, 'grastate.dat');
  fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace(/^safe_to_bootstrap:.*$/m, 'safe_to_bootstrap: 0'));
}

/** Starts (creating when needed) one shard's Galera cluster; resolves when every node is Synced. */
export async function startGaleraShard(opts: GaleraShardOptions): Promise<GaleraShard> {
  const dir = path.resolve(opts.dir);
  if (isInitialised(dir)) {
    throw new Error(`${dir} holds a single-node shard; a Galera shard keeps its nodes in ${dir}/node-<j>. Use a new data dir (or --replicas=1)`);
  }
  fs.mkdirSync(dir, { recursive: true });
  const ports: Ports[] = [];
  for (let j = 0; j < opts.replicas; j++) ports.push(await portsFor(opts, j));
  const cluster = {
    name: `kvsql-shard-${opts.shard}`,
    peers: () => `gcomm://${ports.map((p) => `127.0.0.1:${p.gcomm}`).join(',')}`,
    database: opts.database,
    binary: opts.binary,
    provider: opts.provider,
  };
  const nodes = ports.map((p, j) => new GaleraNode(j, path.join(dir, `node-${j}`), p, cluster, (m) => opts.log(m)));
  const started = Date.now();
  try {
    if (!nodes.some((n) => isInitialised(n.dataDir))) await createCluster(nodes, opts);
    const boot = await chooseBootstrapNode(nodes, opts.log);
    setSafeToBootstrap(boot.dataDir);
    await boot.start(true);
    // Joiners of a new cluster: an uninitialised node (deleted by hand) gets a fresh dir and SST.
    // Settled, not Promise.all: a joiner still retrying when another has given up would start a
    // server after the cleanup below has stopped the nodes.
    const joins = await Promise.allSettled(
      nodes
        .filter((n) => n !== boot)
        .map(async (n) => {
          if (!isInitialised(n.dataDir)) await initialiseDataDir(opts.binary, n.dataDir, opts.log);
          // The rsync SST script sometimes fails to start its receiver on a busy machine ("Failed
          // to read 'ready <addr>'"), which aborts the joiner; a new attempt succeeds.
          for (let attempt = 1; ; attempt++) {
            try {
              await n.start(false);
              return;
            } catch (err) {
              if (attempt >= JOIN_ATTEMPTS) throw err;
              opts.log(`node-${n.index} failed to join (attempt ${attempt}): ${(err as Error).message.split('\n')[0]}; retrying`);
              await sleep(REJOIN_DELAY_MS);
            }
          }
        }),
    );
    const failed = joins.find((j): j is PromiseRejectedResult => j.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    await Promise.all(
      nodes.map((n) =>
        n.waitSynced(
          JOIN_TIMEOUT_MS,
          nodes.filter((p) => p !== n),
        ),
      ),
    );
  } catch (err) {
    await Promise.allSettled(nodes.map((n) => n.stop()));
    throw err;
  }
  for (const n of nodes) n.supervise = true;
  opts.log(`galera cluster of ${nodes.length} nodes Synced in ${Date.now() - started} ms (bootstrap node-${nodes.findIndex((n) => n.pid !== 0)})`);
  return {
    shard: opts.shard,
    nodes,
    url: nodes.map((n) => n.url).join('|'),
    async stop() {
      // One after another: the last node to leave is marked safe_to_bootstrap for the next start.
      for (const n of [...nodes].reverse()) await n.stop();
    },
  };
}

/** First start: node-0 alone creates the database; its stopped data dir seeds the others. */
async function createCluster(nodes: GaleraNode[], opts: GaleraShardOptions): Promise<void> {
  const first = nodes[0];
  fs.rmSync(first.dataDir, { recursive: true, force: true });
  await initialiseDataDir(opts.binary, first.dataDir, opts.log);
  await first.start(true);
  const conn = await mysql.createConnection({ socketPath: socketPathFor(first.dataDir), user: 'root' });
  try {
    await conn.query(`CREATE DATABASE IF NOT EXISTS \`${opts.database}\` CHARACTER SET utf8mb4`);
  } finally {
    await conn.end();
  }
  await first.stop();
  for (const n of nodes.slice(1)) cloneDataDir(first.dataDir, n.dataDir);
}

/**
 * The node holding the newest committed state. safe_to_bootstrap marks the last node of a clean
 * shutdown; a crashed node has seqno -1 in grastate.dat and its position is recovered from InnoDB.
 */
async function chooseBootstrapNode(nodes: GaleraNode[], log: (msg: string) => void): Promise<GaleraNode> {
  const states = nodes.map((n) => ({ n, g: readGrastate(n.dataDir) }));
  const safe = states.filter((s) => s.g?.safeToBootstrap);
  if (safe.length > 0) return safe.reduce((a, b) => (b.g!.seqno > a.g!.seqno ? b : a)).n;
  const positions = await Promise.all(
    states.map(async (s) => {
      if (!isInitialised(s.n.dataDir)) return -2;
      if (s.g !== null && s.g.seqno >= 0) return s.g.seqno;
      return s.n.recoverPosition();
    }),
  );
  let best = 0;
  for (let j = 1; j < nodes.length; j++) if (positions[j] > positions[best]) best = j;
  log(`no node is marked safe_to_bootstrap; positions ${JSON.stringify(positions)}: bootstrapping node-${best}`);
  return nodes[best];
}

/** Exposed for tests: true while the process is alive (not a zombie). */
export function nodeAlive(node: GaleraNode): boolean {
  return node.pid !== 0 && isAlive(node.pid);
}
