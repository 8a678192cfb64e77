/**
 * Owns giving a test a real MariaDB Galera cluster of 3 nodes on loopback (free ports, a fresh
 * temp dir), for the HA tests. Relies on src/embedded/galera-cluster and mysql-binary (which
 * installs galera-4 and rsync when missing, as root). Must not touch any data dir but its own.
 *
 * Cost here (2 shared cores): ~20 s from nothing to 3 Synced nodes (init + bootstrap of node-0,
 * copy of its data dir to the others, two IST joins), a node's rejoin after kill -9 ~10 s.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { ensureGalera, ensureMysqlBinary } from '../../src/embedded/mysql-binary';
import { startGaleraShard, type GaleraShard } from '../../src/embedded/galera-cluster';
import { EMBEDDED_DATABASE } from '../../src/embedded/embedded-cluster';

export interface TestGalera {
  shard: GaleraShard;
  /** The shard entry for KVSQL_SHARDS: node URLs joined by `|`. */
  url: string;
  dir: string;
  /** Stops the nodes and deletes the data. */
  dispose(): Promise<void>;
  /** Stops the nodes gracefully and starts the cluster again on the same data (new ports). */
  restart(): Promise<void>;
}

export async function startTestGalera(replicas = 3): Promise<TestGalera> {
  const log = process.env.KVSQL_TEST_LOG_LEVEL === 'debug' ? (m: string) => console.log(`galera: ${m}`) : () => undefined;
  const binary = await ensureMysqlBinary(log);
  const { provider } = await ensureGalera(log);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-galera-'));
  const start = () =>
    startGaleraShard({ shard: 0, replicas, dir: path.join(dir, 'shard-0'), sqlBase: 0, galeraBase: 0, database: EMBEDDED_DATABASE, binary, provider, log });
  const handle: TestGalera = {
    shard: await start(),
    get url() {
      return this.shard.url;
    },
    dir,
    async dispose() {
      await handle.shard.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await handle.shard.stop();
      handle.shard = await start();
    },
  };
  return handle;
}

/** One query on one node URL (its own connection). */
export async function onNode<T = mysql.RowDataPacket[]>(url: string, sql: string, params: unknown[] = []): Promise<T> {
  const conn = await mysql.createConnection({ uri: url, connectTimeout: 3000, multipleStatements: true });
  try {
    const [rows] = await conn.query({ sql, timeout: 10_000 }, params);
    return rows as T;
  } finally {
    await conn.end().catch(() => conn.destroy());
  }
}
