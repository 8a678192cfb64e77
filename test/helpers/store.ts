/**
 * Owns starting a whole kvsql store for a test: a real MySQL (test/helpers/mysql), one database
 * per shard on it, and a gateway on port 0 in this process. Relies on startServer and
 * startTestServer. Every suite calls it once in `before` and closes it in `after`.
 */
import mysql2 from 'mysql2/promise';
import { configFrom, type Config } from '../../src/gateway/config';
import { createLogger, startServer, type Server } from '../../src/gateway/server';
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
  startAnotherGateway(overrides?: Partial<Config>): Promise<Server>;
  /** Rows in every shard's kv table, expired or not: anything a request wrote. */
  rowCount(): Promise<number>;
  close(): Promise<void>;
}

export async function startTestStore(opts: { shards?: number; config?: Partial<Config>; mysql?: TestServer } = {}): Promise<TestStore> {
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
    async startAnotherGateway(overrides = {}) {
      const s = await startServer({ ...config, ...overrides }, urls, log);
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
