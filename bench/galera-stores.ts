#!/usr/bin/env node
/**
 * Owns the databases of the 3-node vs 1-node throughput comparison: N single local MariaDB
 * shards and N 3-node Galera shard groups, on free ports in a temp dir, running until SIGTERM.
 * Prints two lines, `single=<KVSQL_SHARDS>` and `galera=<KVSQL_SHARDS>`, for two gateways that
 * `npm run bench -- --url=...` then measures in the same run (see DESIGN.md §9).
 *
 *   node dist/bench/galera-stores.js [--shards=2]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureGalera, ensureMysqlBinary } from '../src/embedded/mysql-binary';
import { startGaleraShard, type GaleraShard } from '../src/embedded/galera-cluster';
import { startLocalMysqld } from '../src/embedded/local-mysqld';
import { numberFlag } from './options';

const SHARDS = numberFlag('shards', 2);

async function main(): Promise<void> {
  const binary = await ensureMysqlBinary(console.error);
  const { provider } = await ensureGalera(console.error);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'galera-stores-'));
  fs.chmodSync(dir, 0o755);
  const singles = await Promise.all(
    Array.from({ length: SHARDS }, (_, i) =>
      startLocalMysqld({ dataDir: path.join(dir, `single-${i}`), port: 0, database: 'kvsql', binary, bufferPoolMb: 128 }),
    ),
  );
  const groups: GaleraShard[] = [];
  for (let i = 0; i < SHARDS; i++) {
    groups.push(
      await startGaleraShard({
        shard: i,
        replicas: 3,
        dir: path.join(dir, `galera-${i}`),
        sqlBase: 0,
        galeraBase: 0,
        database: 'kvsql',
        binary,
        provider,
        log: console.error,
      }),
    );
  }
  console.log(`single=${singles.map((s) => s.url).join(',')}`);
  console.log(`galera=${groups.map((g) => g.url).join(',')}`);
  const stop = async (): Promise<void> => {
    await Promise.all([...singles.map((s) => s.stop()), ...groups.map((g) => g.stop())]);
    fs.rmSync(dir, { recursive: true, force: true });
    process.exit(0);
  };
  // Nothing else keeps the event loop alive (the servers are unref'd children): wait for a signal.
  setInterval(() => undefined, 1 << 30);
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}

void main().catch((err) => {
  console.error(err);
  process.exit(1);
});
