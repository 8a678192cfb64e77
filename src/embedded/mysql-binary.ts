/**
 * Owns finding (and, as a last resort, installing) a MySQL-compatible server binary, the one
 * `aptInstall` that installs it and every other Debian package the store, its tests and its
 * benchmarks need (Galera, openssl, redis-server...), and the quick "is a Docker engine
 * answering?" probe used to choose between a local process and a container.
 * Relies on the filesystem, `apt-get` (Debian/Ubuntu, as root) and the Docker HTTP API `/_ping`.
 * Must not start servers or touch data directories: that is local-mysqld.ts.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export type MysqlFlavor = 'mariadb' | 'mysql';

export interface MysqlBinary {
  /** Absolute path of `mariadbd` / `mysqld`. */
  server: string;
  flavor: MysqlFlavor;
  /** MariaDB's `mariadb-install-db`; absent for MySQL 8, which initialises with `mysqld --initialize-insecure`. */
  installDb?: string;
}

/** What a human (or CI image) should install when we cannot do it ourselves. */
const INSTALL_HINT =
  'No MySQL server binary (mariadbd or mysqld) found on PATH, /usr/sbin, /usr/local/sbin or /usr/local/mysql/bin. ' +
  'Install one, e.g. `apt-get install -y --no-install-recommends mariadb-server` (Debian/Ubuntu, as root), ' +
  '`brew install mariadb` (macOS), or set KVSQL_TEST_MYSQL_URL / run a Docker engine.';

// sbin directories are often missing from a non-login PATH (CI shells, `sudo -u`), and tarball
// installs live in /usr/local/mysql, so they are searched after PATH.
const EXTRA_DIRS = ['/usr/sbin', '/usr/local/sbin', '/usr/local/mysql/bin', '/usr/local/mysql/scripts', '/usr/bin', '/usr/local/bin', '/sbin'];

function searchDirs(): string[] {
  const fromPath = (process.env.PATH ?? '').split(path.delimiter).filter((d) => d !== '');
  return [...new Set([...fromPath, ...EXTRA_DIRS])];
}

function isExecutableFile(p: string): boolean {
  try {
    if (!fs.statSync(p).isFile()) return false;
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** First executable called one of `names` in `dirs`, in dir order then name order. */
function which(names: readonly string[], dirs: readonly string[]): string | undefined {
  for (const dir of dirs) {
    for (const name of names) {
      const candidate = path.join(dir, name);
      if (isExecutableFile(candidate)) return candidate;
    }
  }
  return undefined;
}

/**
 * A client tool by name (e.g. `mariadb-binlog`, `mysqlbinlog`, `mariadb`, `mysql`), found like the
 * server binary; undefined when absent. Debian's mariadb-server brings MariaDB's (mariadb-client-core).
 */
export function findTool(names: readonly string[]): string | undefined {
  return which(names, searchDirs());
}

function detectFlavor(server: string): MysqlFlavor {
  if (path.basename(server) === 'mariadbd') return 'mariadb';
  // `mysqld` is a symlink to mariadbd on Debian's MariaDB packages, so the name alone lies.
  try {
    if (path.basename(fs.realpathSync(server)) === 'mariadbd') return 'mariadb';
  } catch {
    /* fall through to --version */
  }
  try {
    const out = execFileSync(server, ['--version'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
    return /mariadb/i.test(out) ? 'mariadb' : 'mysql';
  } catch {
    return 'mysql';
  }
}

/** Finds a server binary without installing anything. Cheap enough to call on every start. */
export function findMysqlBinary(): MysqlBinary | null {
  const dirs = searchDirs();
  // mariadbd first: when both exist, mysqld is usually the compatibility symlink to it.
  const server = which(['mariadbd', 'mysqld'], dirs);
  if (server === undefined) return null;
  const flavor = detectFlavor(server);
  if (flavor === 'mysql') return { server, flavor };
  // A tarball layout keeps install-db in <basedir>/scripts; look next to the server first so that
  // a server and install-db from two different installs are not mixed.
  const basedir = path.dirname(path.dirname(server));
  const installDb = which(
    ['mariadb-install-db', 'mysql_install_db'],
    [path.dirname(server), path.join(basedir, 'bin'), path.join(basedir, 'scripts'), ...dirs],
  );
  return installDb === undefined ? { server, flavor } : { server, flavor, installDb };
}

const LOCK_BUSY = /Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock (the )?(administration )?directory/;

/** Runs `cmd`, logging its output line by line; the exit code, and whether it said apt/dpkg's lock was held. */
function run(cmd: string, args: string[], log: (msg: string) => void, env: NodeJS.ProcessEnv): Promise<{ code: number; lockBusy: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let lockBusy = false;
    // apt output is long; log only line-level progress so a CI log shows what happened.
    const relay = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() === '') continue;
        if (LOCK_BUSY.test(line)) lockBusy = true;
        log(`${path.basename(cmd)}: ${line.trimEnd()}`);
      }
    };
    child.stdout.on('data', relay);
    child.stderr.on('data', relay);
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code: code ?? (signal === null ? 1 : 128), lockBusy }));
  });
}

/**
 * Debian's policy-rc.d hook: exit code 101 tells invoke-rc.d "do not start services". Without it
 * the mariadb-server postinst tries to start a system mysqld on port 3306 (which we do not want,
 * and which fails without systemd anyway); redis-server's would start a redis on 6379. Only
 * installed when absent, and removed afterwards.
 */
const POLICY_RC_D = '/usr/sbin/policy-rc.d';

/** Why apt-get cannot install anything here ('not running as root', 'no apt-get'), or null when it can. */
export function aptUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not running as root';
  if (which(['apt-get'], searchDirs()) === undefined) return 'no apt-get';
  return null;
}

export interface AptOptions {
  /** How long to keep retrying while another apt-get or dpkg holds the lock; 10 minutes when absent. */
  lockWaitMs?: number;
  /** The pause between those retries; 3 s when absent. */
  lockRetryMs?: number;
}

/**
 * Installs Debian `packages` with apt-get (as root: see aptUnavailable, which the caller checks
 * first to say what to install by hand), logging apt's output line by line, with services kept
 * from starting (policy-rc.d). `installed` decides, not apt's exit code: a postinst that could not
 * start a service (no systemd) exits non-zero and leaves a usable binary. When the install does
 * not provide it, the package lists are updated (a fresh machine has none) and the install runs
 * again. While another process holds apt's or dpkg's lock, each step waits and retries (up to
 * `lockWaitMs`). Returns `installed()` at the end.
 */
export async function aptInstall(packages: readonly string[], installed: () => boolean, log: (msg: string) => void, opts: AptOptions = {}): Promise<boolean> {
  if (installed()) return true;
  const unavailable = aptUnavailable();
  if (unavailable !== null) throw new Error(`cannot apt-get install ${packages.join(' ')}: ${unavailable}`);
  const aptGet = which(['apt-get'], searchDirs())!;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', NEEDRESTART_MODE: 'a' };
  const lockWaitMs = opts.lockWaitMs ?? 600_000;
  const lockRetryMs = opts.lockRetryMs ?? 3000;
  const step = async (args: string[]): Promise<number> => {
    const deadline = Date.now() + lockWaitMs;
    for (;;) {
      const { code, lockBusy } = await run(aptGet, args, log, env);
      if (code === 0 || !lockBusy || Date.now() >= deadline) return code;
      log(`apt-get ${args[0]}: another process holds the apt/dpkg lock; retrying in ${lockRetryMs} ms`);
      await new Promise((r) => setTimeout(r, lockRetryMs));
    }
  };
  const install = ['install', '-y', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold', ...packages];
  let createdPolicy = false;
  try {
    if (!fs.existsSync(POLICY_RC_D)) {
      fs.writeFileSync(POLICY_RC_D, '#!/bin/sh\n# temporary, written by kvsql aptInstall\nexit 101\n', { mode: 0o755 });
      createdPolicy = true;
    }
    let code = await step(install);
    if (code !== 0 && !installed()) {
      log(`apt-get install exited with ${code}; updating the package lists and trying again`);
      const updateCode = await step(['update']);
      if (updateCode !== 0) log(`apt-get update exited with ${updateCode}; trying the install anyway`);
      code = await step(install);
    }
    if (code !== 0) log(`apt-get install ${packages.join(' ')} exited with ${code}; checking whether it is usable anyway`);
  } finally {
    if (createdPolicy) fs.rmSync(POLICY_RC_D, { force: true });
  }
  return installed();
}

/**
 * Returns a server binary, installing MariaDB with apt-get when none is found and we are root.
 * Throws an Error naming what to install when neither works.
 */
export async function ensureMysqlBinary(log: (msg: string) => void): Promise<MysqlBinary> {
  const found = findMysqlBinary();
  if (found !== null) return found;
  const unavailable = aptUnavailable();
  if (unavailable !== null) throw new Error(`${INSTALL_HINT} (not installing automatically: ${unavailable})`);
  log('no MySQL server binary found; installing mariadb-server with apt-get (one-time, takes a minute)');
  await aptInstall(['mariadb-server'], () => findMysqlBinary() !== null, log);
  const installed = findMysqlBinary();
  if (installed === null) throw new Error(`apt-get install mariadb-server did not provide a server binary. ${INSTALL_HINT}`);
  log(`installed ${installed.server} (${installed.flavor})`);
  return installed;
}

/**
 * A client tool (`names`, first found wins), installing Debian's `pkg` with apt-get when it is
 * missing and we are root, as ensureMysqlBinary does for the server. mariadb-server already
 * depends on mariadb-client (mariadb-binlog) and mariadb-client-core (mariadb).
 */
export async function ensureTool(names: readonly string[], pkg: string, log: (msg: string) => void): Promise<string> {
  const found = findTool(names);
  if (found !== undefined) return found;
  const hint = `no ${names.join(' or ')} found: install ${pkg} (Debian/Ubuntu: apt-get install -y --no-install-recommends ${pkg}, as root)`;
  const unavailable = aptUnavailable();
  if (unavailable !== null) throw new Error(`${hint}; not installing automatically (${unavailable})`);
  log(`installing ${pkg} with apt-get (one-time) for ${names[0]}`);
  await aptInstall([pkg], () => findTool(names) !== undefined, log);
  const installed = findTool(names);
  if (installed === undefined) throw new Error(`${hint}; apt-get did not provide it`);
  return installed;
}

/** Where distributions put Galera 4's provider library (Debian/Ubuntu first). */
const GALERA_PROVIDERS = [
  '/usr/lib/galera/libgalera_smm.so',
  '/usr/lib/libgalera_smm.so',
  '/usr/lib/galera-4/libgalera_smm.so',
  '/usr/lib64/galera-4/libgalera_smm.so',
  '/usr/lib64/galera/libgalera_smm.so',
];

/** The Galera provider and rsync (its state transfer), or null when either is missing. */
export function findGalera(): { provider: string; rsync: string } | null {
  const provider = GALERA_PROVIDERS.find((p) => fs.existsSync(p));
  const rsync = which(['rsync'], searchDirs());
  return provider === undefined || rsync === undefined ? null : { provider, rsync };
}

/**
 * Returns the Galera provider library, installing Debian's `galera-4` and `rsync` with apt-get
 * when missing and we are root (the HA mode, and the tests that run it, need both).
 */
export async function ensureGalera(log: (msg: string) => void): Promise<{ provider: string; rsync: string }> {
  const found = findGalera();
  if (found !== null) return found;
  const hint = 'Galera needs the galera-4 provider and rsync: `apt-get install -y --no-install-recommends galera-4 rsync` (Debian/Ubuntu, as root)';
  const unavailable = aptUnavailable();
  if (unavailable !== null) throw new Error(`${hint}; not installing automatically (${unavailable})`);
  log('installing galera-4 and rsync with apt-get (one-time)');
  await aptInstall(['galera-4', 'rsync'], () => findGalera() !== null, log);
  const installed = findGalera();
  if (installed === null) throw new Error(`galera-4 or rsync still missing after apt-get. ${hint}`);
  return installed;
}

interface DockerEndpoint {
  socketPath?: string;
  host?: string;
  port?: number;
  /** TLS endpoints cannot be pinged over plain HTTP; a TCP connect is the best cheap signal. */
  tcpOnly?: boolean;
}

function dockerEndpoints(): DockerEndpoint[] {
  const dockerHost = process.env.DOCKER_HOST;
  if (dockerHost !== undefined && dockerHost !== '') {
    // An explicit DOCKER_HOST is the only place the CLI and testcontainers look, so we do too.
    if (dockerHost.startsWith('unix://')) return [{ socketPath: dockerHost.slice('unix://'.length) }];
    try {
      const u = new URL(dockerHost.replace(/^tcp:/, 'http:'));
      const tls = process.env.DOCKER_TLS_VERIFY === '1' || u.port === '2376';
      return [{ host: u.hostname, port: Number(u.port || (tls ? 2376 : 2375)), tcpOnly: tls }];
    } catch {
      return [];
    }
  }
  const sockets = [
    '/var/run/docker.sock',
    path.join(os.homedir(), '.docker', 'run', 'docker.sock'),
    path.join(os.homedir(), '.docker', 'desktop', 'docker.sock'),
  ];
  if (process.env.XDG_RUNTIME_DIR) sockets.push(path.join(process.env.XDG_RUNTIME_DIR, 'docker.sock'));
  // Missing socket files are filtered here so the common "no Docker" case costs no I/O wait at all.
  return sockets.filter((s) => fs.existsSync(s)).map((socketPath) => ({ socketPath }));
}

function pingEndpoint(ep: DockerEndpoint, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (ep.tcpOnly === true) {
      const sock = net.connect({ host: ep.host, port: ep.port ?? 2376 });
      const done = (ok: boolean): void => {
        sock.destroy();
        resolve(ok);
      };
      sock.setTimeout(timeoutMs, () => done(false));
      sock.once('connect', () => done(true));
      sock.once('error', () => done(false));
      return;
    }
    const req = http.get({ socketPath: ep.socketPath, host: ep.host, port: ep.port, path: '/_ping', timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
  });
}

/**
 * True when a Docker engine answers `/_ping` within `timeoutMs`. A docker CLI without an engine
 * (this project's CI) has no socket, so this returns false without waiting.
 */
export async function dockerEngineReachable(timeoutMs = 800): Promise<boolean> {
  const endpoints = dockerEndpoints();
  if (endpoints.length === 0) return false;
  const results = await Promise.all(endpoints.map((ep) => pingEndpoint(ep, timeoutMs)));
  return results.includes(true);
}
