/**
 * Owns one local mysqld/mariadbd child process and its data directory: initialising it once,
 * starting it bound to 127.0.0.1, stopping it gracefully or killing it, and starting it again on
 * the same data and port. Relies on mysql-binary.ts for the binary and on mysql2 to know when the
 * server accepts connections. Must not touch any file outside `dataDir` except: its private
 * --tmpdir and (when the path under dataDir is too long) its unix socket in os.tmpdir(), and a
 * sibling staging dir during init.
 *
 *   <dataDir>/            the server's --datadir (InnoDB, system schema, our database)
 *     mysqld.pid          --pid-file: a later start finds a server still running there and refuses
 *     mysqld.sock         --socket (or os.tmpdir()/kvsql-<hash>.sock, see socketPathFor)
 *     error.log           --log-error: the server's own log, appended across restarts
 *     mysqld.out          stdout/stderr of the child (anything printed before error.log opens)
 *
 * Call from the main thread: the child is tied to the life of the thread that spawned it (below).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { ensureMysqlBinary, type MysqlBinary } from './mysql-binary';

export interface LocalMysqldOptions {
  dataDir: string;
  /** 0 = pick a free port once; restart() then reuses the port that was picked. */
  port: number;
  database: string;
  log?: (msg: string) => void;
  /** InnoDB buffer pool; small values (64) start faster and suit throwaway test servers. */
  bufferPoolMb?: number;
  /** Serve TLS with these PEM files (--ssl-cert/--ssl-key/--ssl-ca); clients may still use clear text. */
  tls?: MysqldTls;
  /** Skips the binary lookup (and any apt install) when the caller already has one. */
  binary?: MysqlBinary;
  /** Appended to the server's arguments, e.g. `--log-bin` for a measurement. */
  extraArgs?: string[];
  /**
   * Start the server again by itself when it exits without being asked to (kill -9, OOM kill,
   * a crash): after RESTART_BACKOFF_MS[attempt], same data dir and port, one log line each time.
   * The embedded cluster sets it; tests that crash a server on purpose leave it off.
   */
  autoRestart?: boolean;
}

export interface MysqldTls {
  certFile: string;
  keyFile: string;
  caFile?: string;
}

export interface LocalMysqld {
  /** mysql://root@127.0.0.1:PORT/DATABASE (root has no password; the server listens on loopback only). */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** pid of the running server; 0 when it is not running. */
  readonly pid: number;
  /** Graceful: SIGTERM, wait for exit, SIGKILL after 20 s. No-op when not running. */
  stop(): Promise<void>;
  /** SIGKILL and wait for exit: a crash, for recovery tests. */
  kill(): Promise<void>;
  /** Start again on the same dataDir and port (stopping gracefully first if running). */
  restart(): Promise<void>;
}

const READY_TIMEOUT_MS = 60_000;
/** Delays before automatic restarts 1, 2, 3...; the last repeats. Reset once a server stays up STABLE_MS. */
const RESTART_BACKOFF_MS = [500, 1000, 2000, 5000, 10_000, 30_000];
const STABLE_MS = 60_000;
const STOP_GRACE_MS = 20_000;
/** sockaddr_un.sun_path is 108 bytes on Linux including the NUL (104 on macOS); keep a margin. */
const MAX_SOCKET_PATH_BYTES = 100;
const DATABASE_NAME = /^[A-Za-z0-9_]{1,64}$/;

// Every server we spawned and have not seen exit. The 'exit' handler is the last line of defence
// for a parent that exits without stop() (uncaught exception, process.exit in a test): 'exit'
// handlers must be synchronous, so SIGKILL is all we can do, and InnoDB recovers on next start.
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
export function trackChild(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of liveChildren) {
        try {
          c.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
    });
  }
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  child.once('error', () => liveChildren.delete(child));
}

// A parent killed by a signal (SIGKILL, or SIGTERM without a handler, e.g. a test-runner timeout)
// runs no 'exit' handler. On Linux, util-linux `setpriv --pdeathsig KILL` sets PR_SET_PDEATHSIG and
// then exec()s the server (same pid), so the kernel kills the server when its parent goes away.
// The kernel ties this to the spawning *thread*, hence "call from the main thread" above.
export const SETPRIV = process.platform === 'linux' ? ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p)) : undefined;

export function pickFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('could not pick a free port'))));
    });
  });
}

/**
 * True when nothing listens on 127.0.0.1:`port` now (a node:net bind succeeds; it sets no
 * SO_REUSEPORT, so any listener makes it fail). False only for EADDRINUSE; other errors throw.
 */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(false) : reject(err)));
    probe.listen({ host: '127.0.0.1', port, exclusive: true }, () => probe.close(() => resolve(true)));
  });
}

export function socketPathFor(dataDir: string): string {
  const inDir = path.join(dataDir, 'mysqld.sock');
  if (Buffer.byteLength(inDir) <= MAX_SOCKET_PATH_BYTES) return inDir;
  // Derived from dataDir so that restart() and a later process find the same path.
  const hash = crypto.createHash('sha1').update(dataDir).digest('hex').slice(0, 16);
  return path.join(os.tmpdir(), `kvsql-${hash}.sock`);
}

/**
 * True while `pid` is a live process. A zombie counts as dead: a server orphaned by an earlier
 * parent is reaped by init, and some inits (containers, microVMs) reap late, so `kill(pid, 0)`
 * alone would make us wait for a process that has already exited.
 */
/**
 * A private --tmpdir per server. Why: at startup mysqld deletes every `#sql*` file in its tmpdir
 * as a leftover of its own crash, so servers sharing /tmp delete each other's live temporary
 * tables; seen here as two parallel mariadb-install-db runs failing with "Unknown table
 * 'mysql.tmp_user_sys'". Not under dataDir: every subdirectory there shows up as a database.
 */
export function tmpDirFor(dataDir: string): string {
  const hash = crypto.createHash('sha1').update(dataDir).digest('hex').slice(0, 16);
  return path.join(os.tmpdir(), `kvsql-tmp-${hash}`);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) S ...": comm may contain spaces or parentheses, so split after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return process.platform !== 'linux';
  }
}

/** Guards against pid reuse: a stale pid file must not make us SIGTERM an unrelated process. */
export function looksLikeMysqld(pid: number): boolean {
  try {
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /mysqld|mariadbd/.test(cmdline);
  } catch {
    // No /proc (macOS): the pid file plus a live pid is the best evidence we have.
    return process.platform !== 'linux';
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Last `maxBytes` of `file` written after byte `from` (so an old run's log does not mislead). */
export function tailOf(file: string, from = 0, maxBytes = 4096): string {
  try {
    const size = fs.statSync(file).size;
    const start = Math.max(from, size - maxBytes);
    if (size <= start) return '';
    const buf = Buffer.alloc(size - start);
    const fd = fs.openSync(file, 'r');
    try {
      fs.readSync(fd, buf, 0, buf.length, start);
    } finally {
      fs.closeSync(fd);
    }
    return buf.toString('utf8').trim();
  } catch {
    return '';
  }
}

/**
 * What a server that failed to start said: its error.log and its stdout/stderr file, each from
 * where this start began. Both: a server that dies before it opens error.log (it cannot create
 * it, an option it rejects early) says why on stderr only.
 */
export function childOutputSince(errorLog: string, errorLogFrom: number, outFile: string, outFrom: number): string {
  const log = tailOf(errorLog, errorLogFrom);
  const out = tailOf(outFile, outFrom);
  return `--- ${errorLog} (tail) ---\n${log || '(empty)'}` + (out ? `\n--- ${outFile} (stdout/stderr) ---\n${out}` : '');
}

export function sizeOf(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** The system schema directory exists only after a completed init (see initialiseDataDir). */
export function isInitialised(dataDir: string): boolean {
  return fs.existsSync(path.join(dataDir, 'mysql'));
}

function runToCompletion(cmd: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => chunks.push(c));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? 1, output: Buffer.concat(chunks).toString('utf8') }));
  });
}

const asRoot = (): boolean => process.getuid?.() === 0;

/**
 * Initialises into a sibling staging directory, then moves the result in with `mysql/` last.
 * Why: MySQL 8 refuses to initialise a non-empty dir (our error.log may already be there), and an
 * init interrupted halfway must not leave a dir that looks initialised; `mysql/` arriving last
 * makes isInitialised() true only for a complete init.
 */
export async function initialiseDataDir(binary: MysqlBinary, dataDir: string, log: (msg: string) => void): Promise<void> {
  const staging = `${dataDir}.init-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  const stagingTmp = `${staging}.tmp`; // see tmpDirFor
  fs.mkdirSync(stagingTmp, { recursive: true });
  if (binary.flavor === 'mysql') fs.mkdirSync(path.dirname(staging), { recursive: true });
  else fs.mkdirSync(staging, { recursive: true });
  try {
    const userArgs = asRoot() ? ['--user=root'] : [];
    let cmd: string;
    let args: string[];
    if (binary.flavor === 'mariadb') {
      if (binary.installDb === undefined) {
        throw new Error(`found ${binary.server} but no mariadb-install-db next to it; install the full server package (Debian: mariadb-server)`);
      }
      cmd = binary.installDb;
      args = [
        '--no-defaults', // must be first, or /etc/mysql/my.cnf leaks in
        '--auth-root-authentication-method=normal', // root@localhost/127.0.0.1 with an empty password
        '--skip-test-db',
        '--skip-name-resolve', // grant rows by IP, no hostname lookup during init
        `--datadir=${staging}`,
        `--tmpdir=${stagingTmp}`, // passed through to the bootstrap mariadbd
        ...userArgs,
      ];
      // A tarball install needs --basedir to find its share/ files; distro packages know their paths.
      const basedir = path.dirname(path.dirname(binary.server));
      if (basedir !== '/usr' && basedir !== '/') args.push(`--basedir=${basedir}`);
    } else {
      cmd = binary.server;
      args = ['--no-defaults', '--initialize-insecure', `--datadir=${staging}`, `--tmpdir=${stagingTmp}`, ...userArgs];
    }
    const started = Date.now();
    const { code, output } = await runToCompletion(cmd, args);
    if (code !== 0 || !isInitialised(staging)) {
      // install-db prints the real error first and a page of generic advice after it: keep both ends.
      const text = output.trim();
      const excerpt = text.length <= 4000 ? text : `${text.slice(0, 2500)}\n[...]\n${text.slice(-1500)}`;
      throw new Error(`initialising ${dataDir} with ${path.basename(cmd)} failed (exit ${code}):\n${excerpt}`);
    }
    fs.mkdirSync(dataDir, { recursive: true });
    const entries = fs.readdirSync(staging).sort((a, b) => Number(a === 'mysql') - Number(b === 'mysql'));
    for (const entry of entries) fs.renameSync(path.join(staging, entry), path.join(dataDir, entry));
    log(`initialised ${dataDir} in ${Date.now() - started} ms`);
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
    fs.rmSync(stagingTmp, { recursive: true, force: true });
  }
}

/** How long a server named by the pid file may take to die with the parent that was just killed. */
const ORPHAN_WAIT_MS = 5000;

/**
 * Refuses to start on a data dir whose pid file names a live server we did not start: never
 * stops it, as it is not ours (a store on the same dir is refused earlier, by the data dir lock;
 * this is a server started by hand, or one that outlived its parent). Waits ORPHAN_WAIT_MS
 * first: a parent killed a moment ago takes its servers with it (PR_SET_PDEATHSIG), but not
 * synchronously.
 */
export async function refuseForeignServer(pidFile: string): Promise<void> {
  let pid: number;
  try {
    pid = Number.parseInt(fs.readFileSync(pidFile, 'utf8').trim(), 10);
  } catch {
    return;
  }
  const foreign = (): boolean => Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid) && looksLikeMysqld(pid);
  const deadline = Date.now() + ORPHAN_WAIT_MS;
  while (foreign() && Date.now() < deadline) await sleep(100);
  if (foreign()) {
    throw new Error(
      `${path.dirname(pidFile)} is in use by a MySQL server this store did not start (pid ${pid}, per ${pidFile}); stop it (kill ${pid}) and start again`,
    );
  }
}

/** What mysqld/mariadbd logs when it cannot bind its TCP port. */
const BIND_FAILED = /Can't start server: Bind on TCP\/IP port|Address already in use/i;

/** The server could not listen on its port: another process holds it. `code` is stable. */
export class MysqldPortInUseError extends Error {
  readonly code = 'KVSQL_MYSQL_PORT_IN_USE';
  constructor(
    readonly port: number,
    detail: string,
  ) {
    super(`MySQL port 127.0.0.1:${port} is in use by another process\n${detail}`);
  }
}

/**
 * After the server exited, however it exited: only what lives outside dataDir (its --tmpdir and
 * a socket moved to os.tmpdir()). Nothing in them outlives the process (mysqld clears its tmpdir
 * at start anyway), and a failed start must not leave /tmp/kvsql-tmp-* behind.
 */
function removeOutsideFiles(dataDir: string): void {
  fs.rmSync(tmpDirFor(dataDir), { recursive: true, force: true });
  const socket = socketPathFor(dataDir);
  if (path.dirname(socket) !== dataDir) fs.rmSync(socket, { force: true });
}

function serverArgs(binary: MysqlBinary, dataDir: string, port: number, socket: string, tmpDir: string, bufferPoolMb: number, tls?: MysqldTls): string[] {
  const args = [
    '--no-defaults', // must be the first argument
    `--datadir=${dataDir}`,
    `--tmpdir=${tmpDir}`,
    '--bind-address=127.0.0.1',
    `--port=${port}`,
    `--socket=${socket}`,
    `--pid-file=${path.join(dataDir, 'mysqld.pid')}`,
    `--log-error=${path.join(dataDir, 'error.log')}`,
    // Durability: a commit acknowledged to a client survives a crash (kill() tests rely on this).
    '--innodb-flush-log-at-trx-commit=1',
    '--sync-binlog=1',
    '--transaction-isolation=READ-COMMITTED',
    '--max-connections=1000',
    '--max-allowed-packet=256M',
    `--innodb-buffer-pool-size=${bufferPoolMb}M`,
    '--skip-name-resolve',
    '--character-set-server=utf8mb4',
    '--innodb-lock-wait-timeout=5',
  ];
  // MariaDB has no binlog unless asked (--log-bin); MySQL 8 also opens the X protocol on 33060 by
  // default, which would collide between shards on one host.
  if (binary.flavor === 'mysql') args.push('--mysqlx=OFF');
  if (tls) {
    args.push(`--ssl-cert=${path.resolve(tls.certFile)}`, `--ssl-key=${path.resolve(tls.keyFile)}`);
    if (tls.caFile) args.push(`--ssl-ca=${path.resolve(tls.caFile)}`);
  }
  if (asRoot()) args.push('--user=root');
  return args;
}

/**
 * The binary log that point-in-time recovery replays (admin/restore.ts), in the data dir as
 * binlog.000001, ...: ROW format, so a replay applies exactly the rows each commit changed
 * (statements such as `NOW()`-dependent ones would re-run differently); MINIMAL row images (the
 * primary key and the changed columns: every kvsql table has a primary key, and DESIGN.md §8 M6
 * measured 1,095 B against 2,122 B for a 1 KB overwrite); MariaDB's statement annotations off
 * (they log each statement's text, 3x the bytes of a 1 KB insert). `sync_binlog=1` is already in
 * serverArgs: an acknowledged commit is in the binlog on disk. Files close at 64 MiB (or at
 * FLUSH BINARY LOGS, which `kvsql binlog archive` runs) and are purged after 7 days: archive them
 * before that (README "Backups").
 */
export function binlogArgs(binary: MysqlBinary): string[] {
  const args = [
    // Relative: in the data dir, and binlog.index names the files relative to it, so a data dir
    // that is moved or copied still finds its binlog.
    '--log-bin=binlog',
    '--server-id=1',
    '--binlog-format=ROW',
    '--binlog-row-image=MINIMAL',
    '--max-binlog-size=64M',
    '--binlog-expire-logs-seconds=604800',
  ];
  if (binary.flavor === 'mariadb') args.push('--binlog-annotate-row-events=OFF');
  return args;
}

/** Polls until the server accepts a login, the child dies, or the timeout passes. */
async function waitUntilReady(child: ChildProcess, exited: Promise<unknown>, socket: string, timeoutMs: number): Promise<string | null> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + timeoutMs;
  let lastError = 'not tried';
  while (Date.now() < deadline) {
    if (gone) return `the server exited during startup (code ${child.exitCode}, signal ${child.signalCode})`;
    try {
      // The unix socket, not TCP: MySQL 8's --initialize-insecure creates only root@localhost,
      // which TCP logins under --skip-name-resolve do not match until ensureTcpRoot runs.
      const conn = await mysql.createConnection({ socketPath: socket, user: 'root', connectTimeout: 2000 });
      await conn.end();
      return null;
    } catch (err) {
      lastError = (err as Error).message;
    }
    await sleep(100);
  }
  return `not accepting connections after ${timeoutMs} ms (last error: ${lastError})`;
}

class LocalMysqldProcess implements LocalMysqld {
  private child: ChildProcess | null = null;
  /** Set by the child's 'exit' (or spawn 'error'); exitCode alone stays null after a failed spawn. */
  private childGone = true;
  private exited: Promise<void> = Promise.resolve();
  /** Serialises stop/kill/restart so overlapping calls cannot spawn two servers on one dir. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Set while we stop or kill the server ourselves: its exit is then expected. */
  private stoppingOnPurpose = false;
  /** stop() or kill() was called: no automatic restart until restart(). */
  private held = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private restartAttempt = 0;
  private upSince = 0;
  /** A first start succeeded: only then is an exit a crash to recover from (not a failed start). */
  private everUp = false;
  /** Automatic restarts so far (operations and tests). */
  restarts = 0;

  constructor(
    private readonly binary: MysqlBinary,
    readonly dataDir: string,
    private portNumber: number,
    private readonly database: string,
    private readonly bufferPoolMb: number,
    private readonly log: (msg: string) => void,
    private readonly extraArgs: string[] = [],
    private readonly autoRestart = false,
    private readonly tls?: MysqldTls,
  ) {}

  get port(): number {
    return this.portNumber;
  }

  get url(): string {
    return `mysql://root@127.0.0.1:${this.portNumber}/${this.database}`;
  }

  get pid(): number {
    return this.running() ? (this.child?.pid ?? 0) : 0;
  }

  private running(): boolean {
    return this.child !== null && !this.childGone;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** First start: picks a port when asked for 0, retrying if another process takes it first. */
  async start(pickPort: boolean): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      if (pickPort) this.portNumber = await pickFreePort();
      try {
        await this.startOnce();
        return;
      } catch (err) {
        // pickFreePort closes its probe before mysqld binds, so a parallel test can win the port.
        const portTaken = (err as { code?: string }).code === 'KVSQL_MYSQL_PORT_IN_USE';
        if (!pickPort || !portTaken || attempt >= 3) throw err;
        this.log(`port ${this.portNumber} was taken before the server bound it; picking another`);
      }
    }
  }

  private async startOnce(): Promise<void> {
    const pidFile = path.join(this.dataDir, 'mysqld.pid');
    await refuseForeignServer(pidFile);
    if (!isInitialised(this.dataDir)) await initialiseDataDir(this.binary, this.dataDir, this.log);

    const socket = socketPathFor(this.dataDir);
    const errorLog = path.join(this.dataDir, 'error.log');
    const outFile = path.join(this.dataDir, 'mysqld.out');
    const errorLogFrom = sizeOf(errorLog);
    const outFrom = sizeOf(outFile);
    const tmpDir = tmpDirFor(this.dataDir);
    fs.mkdirSync(tmpDir, { recursive: true });
    const args = [...serverArgs(this.binary, this.dataDir, this.portNumber, socket, tmpDir, this.bufferPoolMb, this.tls), ...this.extraArgs];

    // stdout/stderr go to a file descriptor, not a pipe: the server then holds no handle in our
    // event loop, and its output survives us for post-mortems.
    const outFd = fs.openSync(outFile, 'a');
    let child: ChildProcess;
    try {
      child =
        SETPRIV !== undefined
          ? spawn(SETPRIV, ['--pdeathsig', 'KILL', '--', this.binary.server, ...args], { stdio: ['ignore', outFd, outFd] })
          : spawn(this.binary.server, args, { stdio: ['ignore', outFd, outFd] });
    } finally {
      fs.closeSync(outFd);
    }
    this.child = child;
    this.childGone = false;
    const exited = new Promise<void>((resolve) => {
      const gone = (): void => {
        if (this.child === child) this.childGone = true;
        resolve();
      };
      child.once('exit', gone);
      child.once('error', gone); // spawn failure: 'exit' may never come
    });
    child.once('exit', (code, signal) => this.onExit(child, code, signal));
    trackChild(child);
    // A running server must not keep the parent alive on its own (a test that forgets stop()
    // would hang the runner); stop() re-refs it so a graceful shutdown is awaited to the end.
    child.unref();
    this.exited = exited;

    const started = Date.now();
    const failure = await waitUntilReady(child, exited, socket, READY_TIMEOUT_MS);
    if (failure !== null) {
      if (this.running()) await this.terminate('SIGKILL');
      else removeOutsideFiles(this.dataDir); // exited by itself: terminate() had nothing to clean
      const output = childOutputSince(errorLog, errorLogFrom, outFile, outFrom);
      if (BIND_FAILED.test(output))
        throw new MysqldPortInUseError(this.portNumber, `${path.basename(this.binary.server)} (data ${this.dataDir}) ${failure}\n${output}`);
      throw new Error(`${path.basename(this.binary.server)} on port ${this.portNumber} (data ${this.dataDir}): ${failure}\n${output}`);
    }
    await this.prepare(socket);
    this.upSince = Date.now();
    this.everUp = true;
    this.log(`${path.basename(this.binary.server)} pid ${child.pid} ready on 127.0.0.1:${this.portNumber} in ${Date.now() - started} ms`);
  }

  /**
   * Crash recovery: a server that exits without stop()/kill()/restart() is started again on the
   * same data and port, with backoff. InnoDB recovers committed transactions from its redo log;
   * the shard actors' probes find the server back and the shard's keys serve again.
   */
  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (!this.autoRestart || !this.everUp || this.child !== child || this.stoppingOnPurpose || this.held) return;
    if (this.upSince > 0 && Date.now() - this.upSince > STABLE_MS) this.restartAttempt = 0;
    this.upSince = 0;
    const delay = RESTART_BACKOFF_MS[Math.min(this.restartAttempt, RESTART_BACKOFF_MS.length - 1)];
    this.restartAttempt++;
    this.log(
      `${path.basename(this.binary.server)} pid ${child.pid} exited unexpectedly (code ${code}, signal ${signal}); restarting in ${delay} ms (attempt ${this.restartAttempt})`,
    );
    this.scheduleRestart(delay);
  }

  private scheduleRestart(delay: number): void {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      void this.serial(async () => {
        if (this.held || this.running()) return;
        try {
          await this.startOnce();
          this.restarts++;
          this.log(`restarted after a crash (restart ${this.restarts})`);
        } catch (err) {
          const next = RESTART_BACKOFF_MS[Math.min(this.restartAttempt, RESTART_BACKOFF_MS.length - 1)];
          this.restartAttempt++;
          this.log(`automatic restart failed: ${(err as Error).message.split('\n')[0]}; trying again in ${next} ms`);
          if (!this.held) this.scheduleRestart(next);
        }
      });
    }, delay);
    this.restartTimer.unref();
  }

  private cancelRestart(): void {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
  }

  /** Idempotent per start: cheap, and repairs a half-done first start. */
  private async prepare(socket: string): Promise<void> {
    const conn = await mysql.createConnection({ socketPath: socket, user: 'root', multipleStatements: false });
    try {
      if (this.binary.flavor === 'mysql') {
        // MySQL 8 initialises only root@localhost; our URLs use TCP to 127.0.0.1.
        await conn.query("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''");
        await conn.query("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION");
      }
      await conn.query(`CREATE DATABASE IF NOT EXISTS \`${this.database}\` CHARACTER SET utf8mb4`);
    } finally {
      await conn.end();
    }
    // Prove the URL we hand out works, so an auth problem surfaces here and not in a caller.
    const tcp = await mysql.createConnection({ host: '127.0.0.1', port: this.portNumber, user: 'root', database: this.database, connectTimeout: 5000 });
    await tcp.end();
  }

  private async terminate(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (child === null || !this.running()) return;
    this.stoppingOnPurpose = true;
    try {
      await this.terminateChild(child, signal);
    } finally {
      this.stoppingOnPurpose = false;
    }
  }

  private async terminateChild(child: ChildProcess, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    // Re-ref so the parent stays alive until the server has really exited (see start()).
    child.ref();
    child.kill(signal);
    if (signal === 'SIGTERM') {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        this.exited.then(() => false),
        new Promise<boolean>((r) => {
          timer = setTimeout(() => r(true), STOP_GRACE_MS);
        }),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        this.log(`pid ${child.pid} did not stop within ${STOP_GRACE_MS} ms; sending SIGKILL`);
        child.kill('SIGKILL');
      }
    }
    await this.exited;
    removeOutsideFiles(this.dataDir);
  }

  stop(): Promise<void> {
    this.held = true;
    this.cancelRestart();
    return this.serial(() => this.terminate('SIGTERM'));
  }

  kill(): Promise<void> {
    this.held = true;
    this.cancelRestart();
    return this.serial(() => this.terminate('SIGKILL'));
  }

  restart(): Promise<void> {
    this.cancelRestart();
    return this.serial(async () => {
      this.held = false;
      await this.terminate('SIGTERM');
      await this.startOnce();
    });
  }
}

/** Starts (initialising when needed) a server on `dataDir`; existing data is kept. */
export async function startLocalMysqld(opts: LocalMysqldOptions): Promise<LocalMysqld> {
  if (!DATABASE_NAME.test(opts.database)) throw new Error(`database name must match ${DATABASE_NAME}: ${JSON.stringify(opts.database)}`);
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new Error(`port must be 0..65535: ${opts.port}`);
  const log = opts.log ?? (() => undefined);
  const binary = opts.binary ?? (await ensureMysqlBinary(log));
  // Absolute: the server is told this path and its pid/socket paths are derived from it.
  const dataDir = path.resolve(opts.dataDir);
  fs.mkdirSync(dataDir, { recursive: true });
  const server = new LocalMysqldProcess(
    binary,
    dataDir,
    opts.port,
    opts.database,
    opts.bufferPoolMb ?? 256,
    log,
    opts.extraArgs,
    opts.autoRestart ?? false,
    opts.tls,
  );
  await server.start(opts.port === 0);
  return server;
}
