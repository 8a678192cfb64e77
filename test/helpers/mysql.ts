/**
 * Owns giving a test suite a real MySQL: one server per call to startTestServer(), and a fresh
 * database per createDatabase() so suites and tests never see each other's rows.
 * Source, first that applies:
 *   1. KVSQL_TEST_MYSQL_URL (an existing server; stop/kill/restart unsupported, canRestart=false)
 *   2. a Docker engine that answers          -> a mysql:8.4 container (testcontainers)
 *   3. otherwise                             -> a throwaway local mysqld in a fresh temp dir
 * KVSQL_TEST_MYSQL_SOURCE=local|container forces 2 or 3 (e.g. a laptop with Docker that wants the
 * faster local server).
 * Relies on src/embedded. Must not drop databases it did not create, nor touch any data dir but
 * its own temp dir.
 *
 * Cost here (Debian 12, MariaDB 10.11, 2 cores, measured): a throwaway server takes 0.85-1.1 s
 * from nothing to accepting connections (mariadb-install-db ~0.7 s, then start ~0.12-0.2 s with a
 * 64 MB buffer pool); a graceful stop ~30 ms; restart() after stop() or kill() ~0.1-0.2 s. So one
 * server per test file is cheap, and one database per test (a CREATE DATABASE) cheaper still.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { dockerEngineReachable } from '../../src/embedded/mysql-binary';
import { startLocalMysqld, type MysqldTls } from '../../src/embedded/local-mysqld';
import { startMysqlContainer } from '../../src/embedded/embedded-cluster';

export interface TestServer {
  /** URL of `database` on this server (the database need not exist yet). */
  url(database: string): string;
  /** Creates a uniquely named database (or `name`, if given and new) and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** Disposes of the server for good: stops it and deletes its data (temp dir or container). */
  stop(): Promise<void>;
  /** SIGKILL: a crash. The server stays down until restart(). Committed data survives. */
  kill(): Promise<void>;
  /** Graceful stop (if running) and start on the same data; URLs stay valid for local servers. */
  restart(): Promise<void>;
  /** False when kill()/restart() are unsupported (KVSQL_TEST_MYSQL_URL): skip crash tests then. */
  readonly canRestart: boolean;
  /** pid of a local server process (SIGSTOP/SIGCONT tests); 0 for containers and external servers. */
  readonly pid: number;
}

const DATABASE_NAME = /^[A-Za-z0-9_]{1,64}$/;

/** Replaces the path of a mysql:// URL, keeping credentials, host, port and query options. */
function withDatabase(baseUrl: string, database: string): string {
  const u = new URL(baseUrl);
  u.pathname = `/${database}`;
  return u.toString();
}

function makeServer(baseUrl: () => string, ops: Pick<TestServer, 'stop' | 'kill' | 'restart' | 'canRestart'>, pid: () => number = () => 0): TestServer {
  const url = (database: string): string => withDatabase(baseUrl(), database);
  return {
    get pid() {
      return pid();
    },
    url,
    async createDatabase(name?: string): Promise<string> {
      const database = name ?? `t_${crypto.randomBytes(6).toString('hex')}`;
      if (!DATABASE_NAME.test(database)) throw new Error(`database name must match ${DATABASE_NAME}: ${JSON.stringify(database)}`);
      // Connect without a default database: the one we are creating does not exist yet.
      const conn = await mysql.createConnection({ uri: withDatabase(baseUrl(), ''), connectTimeout: 10_000 });
      try {
        await conn.query(`CREATE DATABASE \`${database}\` CHARACTER SET utf8mb4`);
      } finally {
        await conn.end();
      }
      return url(database);
    },
    ...ops,
  };
}

const unsupported = (what: string) => async (): Promise<void> => {
  throw new Error(`${what} is not supported with KVSQL_TEST_MYSQL_URL (check canRestart)`);
};

async function chooseSource(): Promise<'local' | 'container'> {
  const forced = process.env.KVSQL_TEST_MYSQL_SOURCE;
  if (forced === 'local' || forced === 'container') return forced;
  if (forced !== undefined && forced !== '') throw new Error(`KVSQL_TEST_MYSQL_SOURCE must be "local" or "container", not ${JSON.stringify(forced)}`);
  return (await dockerEngineReachable()) ? 'container' : 'local';
}

const quietLog = (msg: string): void => {
  if (process.env.KVSQL_TEST_MYSQL_DEBUG) console.error(`[test-mysql] ${msg}`);
};

/**
 * `tls`: the server also speaks TLS with these files. Always a local server then (a container or
 * an external URL cannot be given our test certificates).
 */
export async function startTestServer(opts: { tls?: MysqldTls } = {}): Promise<TestServer> {
  const external = process.env.KVSQL_TEST_MYSQL_URL;
  if (opts.tls === undefined && external !== undefined && external !== '') {
    return makeServer(() => external, {
      canRestart: false,
      stop: async () => undefined, // not ours to stop
      kill: unsupported('kill()'),
      restart: unsupported('restart()'),
    });
  }

  if (opts.tls === undefined && (await chooseSource()) === 'container') {
    const container = await startMysqlContainer({ database: 'kvsql', bufferPoolMb: 64, log: quietLog });
    return makeServer(() => container.url, {
      canRestart: true,
      stop: () => container.remove(),
      kill: () => container.kill(),
      restart: () => container.restart(),
    });
  }

  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-test-'));
  try {
    const server = await startLocalMysqld({ dataDir, port: 0, database: 'kvsql', bufferPoolMb: 64, log: quietLog, tls: opts.tls });
    return makeServer(
      () => server.url,
      {
        canRestart: true,
        async stop() {
          // A crash test may leave it killed; stop() is then a no-op and the dir still goes.
          await server.stop();
          fs.rmSync(dataDir, { recursive: true, force: true });
        },
        kill: () => server.kill(),
        restart: () => server.restart(),
      },
      () => server.pid,
    );
  } catch (err) {
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}
