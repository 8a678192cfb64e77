/**
 * Owns starting a whole kvsql store for a test: a real MySQL (test/helpers/mysql), one database
 * per shard on it, and a gateway on port 0 in this process, optionally with an HTTP client on it
 * (test/helpers/http-client). Relies on startServer and startTestServer. Every suite calls it once
 * in `before` and closes it in `after`.
 */
import mysql2 from 'mysql2/promise';
import { configFrom, type Config } from '../../src/config/config';
import { createLogger, startServer, type Server, type ServerOptions } from '../../src/gateway/server';
import { SlotMap } from '../../src/protocol/slot-map';
import { HttpClient } from './http-client';
import { startTestServer, type TestServer } from './mysql';

export interface TestStore {
  /** http://127.0.0.1:PORT */
  base: string;
  port: number;
  server: Server;
  mysql: TestServer;
  urls: string[];
  config: Readonly<Config>;
  /** Start another gateway process-equivalent on the same shards (a second gateway). */
  startAnotherGateway(overrides?: Partial<Config>, opts?: ServerOptions): Promise<Server>;
  /** Rows in every shard's kv table, expired or not: anything a request wrote. */
  rowCount(): Promise<number>;
  close(): Promise<void>;
}

export interface TestStoreOptions {
  /** Databases (shards) on the one MySQL; 2 when absent. */
  shards?: number;
  config?: Partial<Config>;
  /** A MySQL to put the shards on (the caller stops it); a fresh one when absent. */
  mysql?: TestServer;
}

export async function startTestStore(opts: TestStoreOptions = {}): Promise<TestStore> {
  const mysql = opts.mysql ?? (await startTestServer());
  const urls: string[] = [];
  for (let i = 0; i < (opts.shards ?? 2); i++) urls.push(await mysql.createDatabase());
  const config = configFrom({ port: 0, redisPort: 0, logLevel: process.env.KVSQL_TEST_LOG_LEVEL ?? 'silent', ...opts.config });
  const log = createLogger(config.logLevel);
  const server = await startServer(config, urls, log);
  const others: Server[] = [];
  let conns: mysql2.Connection[] | null = null;
  return {
    base: `http://127.0.0.1:${server.port}`,
    port: server.port,
    server,
    mysql,
    urls,
    config,
    async startAnotherGateway(overrides = {}, serverOpts = {}) {
      const s = await startServer({ ...config, ...overrides }, urls, log, serverOpts);
      others.push(s);
      return s;
    },
    async rowCount() {
      conns ??= await Promise.all(urls.map((uri) => mysql2.createConnection({ uri })));
      let n = 0;
      for (const c of conns) {
        const [rows] = await c.query('SELECT COUNT(*) AS n FROM kv');
        n += Number((rows as Array<{ n: number }>)[0].n);
      }
      return n;
    },
    async close() {
      for (const c of conns ?? []) await c.end();
      for (const s of others) await s.close();
      await server.close();
      if (!opts.mysql) await mysql.stop();
    },
  };
}

/** A store and a keep-alive HTTP client talking to it: what an HTTP suite needs. */
export interface HttpTestStore {
  store: TestStore;
  http: HttpClient;
}

/**
 * Starts a store and an HttpClient on it (`maxSockets` keep-alive sockets). A suite calls it in
 * `before` and hands both to closeHttpTestStore in `after`:
 *
 *   before(async () => ({ store, http } = await startHttpTestStore({ shards: 2 })));
 *   after(() => closeHttpTestStore({ store, http }));
 */
export async function startHttpTestStore(opts: TestStoreOptions = {}, maxSockets?: number): Promise<HttpTestStore> {
  const store = await startTestStore(opts);
  return { store, http: new HttpClient(store.port, maxSockets) };
}

/** Closes the client, then the store; either may be missing when `before` failed part way. */
export async function closeHttpTestStore(started: Partial<HttpTestStore>): Promise<void> {
  started.http?.close();
  await started.store?.close();
}

/**
 * The first key `${prefix}${i}` (i = 0, 1, ...) that a store of `shards` shards with its slots
 * divided evenly (as startTestStore makes it) keeps on `shard`, by the gateway's own slot map.
 */
export function keyOnShard(shard: number, prefix: string, shards = 2): string {
  const map = SlotMap.even(shards);
  for (let i = 0; ; i++) if (map.shardOf(Buffer.from(`${prefix}${i}`)) === shard) return `${prefix}${i}`;
}
