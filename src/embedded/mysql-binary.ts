/**
 * Owns finding (and, as a last resort, installing) a MySQL-compatible server binary, and the quick
 * "is a Docker engine answering?" probe used to choose between a local process and a container.
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

function run(cmd: string, args: string[], log: (msg: string) => void, env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    // apt output is long; log only line-level progress so a CI log shows what happened.
    const relay = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') log(`${path.basename(cmd)}: ${line.trimEnd()}`);
    };
    child.stdout.on('data', relay);
    child.stderr.on('data', relay);
    child.once('error', reject);
    child.once('close', (code, signal) => resolve(code ?? (signal === null ? 1 : 128)));
  });
}

/**
 * Debian's policy-rc.d hook: exit code 101 tells invoke-rc.d "do not start services". Without it
 * the mariadb-server postinst tries to start a system mysqld on port 3306 (which we do not want,
 * and which fails without systemd anyway). Only installed when absent, and removed afterwards.
 */
const POLICY_RC_D = '/usr/sbin/policy-rc.d';

/**
 * Returns a server binary, installing MariaDB with apt-get when none is found and we are root.
 * Throws an Error naming what to install when neither works.
 */
export async function ensureMysqlBinary(log: (msg: string) => void): Promise<MysqlBinary> {
  const found = findMysqlBinary();
  if (found !== null) return found;

  const isRoot = process.getuid?.() === 0;
  const aptGet = which(['apt-get'], searchDirs());
  if (!isRoot || aptGet === undefined) {
    throw new Error(`${INSTALL_HINT}${isRoot ? '' : ' (not installing automatically: not running as root)'}`);
  }

  log('no MySQL server binary found; installing mariadb-server with apt-get (one-time, takes a minute)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', NEEDRESTART_MODE: 'a' };
  let createdPolicy = false;
  try {
    if (!fs.existsSync(POLICY_RC_D)) {
      fs.writeFileSync(POLICY_RC_D, '#!/bin/sh\n# temporary, written by kvsql ensureMysqlBinary\nexit 101\n', { mode: 0o755 });
      createdPolicy = true;
    }
    const updateCode = await run(aptGet, ['update'], log, env);
    if (updateCode !== 0) log(`apt-get update exited with ${updateCode}; trying the install anyway`);
    const installCode = await run(
      aptGet,
      ['install', '-y', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold', 'mariadb-server'],
      log,
      env,
    );
    // A non-zero exit is not trusted either way: the postinst may fail only because it could not
    // start the service (no systemd), which leaves a perfectly usable binary. The binary decides.
    if (installCode !== 0) log(`apt-get install exited with ${installCode}; checking whether the binary is usable anyway`);
  } finally {
    if (createdPolicy) fs.rmSync(POLICY_RC_D, { force: true });
  }

  const installed = findMysqlBinary();
  if (installed === null) throw new Error(`apt-get install mariadb-server did not provide a server binary. ${INSTALL_HINT}`);
  log(`installed ${installed.server} (${installed.flavor})`);
  return installed;
}

/** Where distributions put Galera 4's provider library (Debian/Ubuntu first). */
const GALERA_PROVIDERS = ['/usr/lib/galera/libgalera_smm.so', '/usr/lib/libgalera_smm.so', '/usr/lib/galera-4/libgalera_smm.so', '/usr/lib64/galera-4/libgalera_smm.so', '/usr/lib64/galera/libgalera_smm.so'];

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
  const aptGet = which(['apt-get'], searchDirs());
  if (process.getuid?.() !== 0 || aptGet === undefined) throw new Error(`${hint}; not installing automatically (${aptGet === undefined ? 'no apt-get' : 'not root'})`);
  log('installing galera-4 and rsync with apt-get (one-time)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', NEEDRESTART_MODE: 'a' };
  let createdPolicy = false;
  try {
    if (!fs.existsSync(POLICY_RC_D)) {
      fs.writeFileSync(POLICY_RC_D, '#!/bin/sh\n# temporary, written by kvsql ensureGalera\nexit 101\n', { mode: 0o755 });
      createdPolicy = true;
    }
    let code = await run(aptGet, ['install', '-y', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confold', 'galera-4', 'rsync'], log, env);
    if (code !== 0) {
      // A clean machine may have no package lists yet.
      await run(aptGet, ['update'], log, env);
      code = await run(aptGet, ['install', '-y', '--no-install-recommends', '-o', 'Dpkg::Options::=--force-confold', 'galera-4', 'rsync'], log, env);
    }
    if (code !== 0) log(`apt-get install galera-4 rsync exited with ${code}`);
  } finally {
    if (createdPolicy) fs.rmSync(POLICY_RC_D, { force: true });
  }
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
  const sockets = ['/var/run/docker.sock', path.join(os.homedir(), '.docker', 'run', 'docker.sock'), path.join(os.homedir(), '.docker', 'desktop', 'docker.sock')];
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
    const req = http.get(
      { socketPath: ep.socketPath, host: ep.host, port: ep.port, path: '/_ping', timeout: timeoutMs, agent: false },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
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
