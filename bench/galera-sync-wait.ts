#!/usr/bin/env node
/**
 * Owns measuring what wsrep_sync_wait=1 costs on a 3-node Galera cluster: the latency of the
 * actor's statement shapes (a 16-key read, a 16-key write transaction) with 0 and 1, one client,
 * interleaved in rounds so machine noise hits both alike. Relies on src/embedded.
 *
 *   flock /tmp/kvsql-bench.lock node dist/bench/galera-sync-wait.js [--rounds=5] [--ops=500]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { ensureGalera, ensureMysqlBinary } from '../src/embedded/mysql-binary';
import { startGaleraShard } from '../src/embedded/galera-cluster';
import { schemaStatements } from '../src/shard-actor/shard-store';
import { numberFlag as arg } from './options';

const ROUNDS = arg('rounds', 5);
const OPS = arg('ops', 500);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main(): Promise<void> {
  const binary = await ensureMysqlBinary(console.log);
  const { provider } = await ensureGalera(console.log);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'galera-syncwait-'));
  fs.chmodSync(dir, 0o755);
  const shard = await startGaleraShard({ shard: 0, replicas: 3, dir: path.join(dir, 'shard-0'), sqlBase: 0, galeraBase: 0, database: 'kvsql', binary, provider, log: () => undefined });
  const conns = await Promise.all([0, 1].map(async (w) => {
    const c = await mysql.createConnection({ uri: shard.nodes[0].url, multipleStatements: true });
    await c.query(`SET SESSION wsrep_sync_wait = ${w}; SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED`);
    return c;
  }));
  for (const sql of schemaStatements()) await conns[0].query(sql);
  const keys = Array.from({ length: 16 }, (_, i) => Buffer.from(`k${i}`));
  const ph = keys.map(() => '?').join(',');
  const readSql = `SELECT k, v, version FROM kv WHERE k IN (${ph})`;
  const writeSql = `START TRANSACTION; SELECT k, version FROM kv WHERE k IN (${ph}) ORDER BY k FOR UPDATE; ` +
    `INSERT INTO kv (k, v, version, expires_at) VALUES ${keys.map(() => '(?,?,?,NULL)').join(',')} ON DUPLICATE KEY UPDATE v = VALUES(v), version = VALUES(version); COMMIT`;
  const res: Record<string, number[]> = { 'read sync_wait=0': [], 'read sync_wait=1': [], 'write sync_wait=0': [], 'write sync_wait=1': [] };
  let version = 1;
  for (let round = 0; round < ROUNDS; round++) {
    for (const w of [0, 1]) {
      let t = process.hrtime.bigint();
      for (let i = 0; i < OPS; i++) await conns[w].query(readSql, keys);
      res[`read sync_wait=${w}`].push(Number(process.hrtime.bigint() - t) / 1000 / OPS);
      t = process.hrtime.bigint();
      for (let i = 0; i < OPS; i++) {
        const params: unknown[] = [...keys];
        for (const k of keys) params.push(k, Buffer.from('v'), version++);
        await conns[w].query(writeSql, params);
      }
      res[`write sync_wait=${w}`].push(Number(process.hrtime.bigint() - t) / 1000 / OPS);
    }
  }
  for (const [name, xs] of Object.entries(res)) console.log(`${name}: median ${median(xs).toFixed(0)} us per statement (rounds: ${xs.map((x) => x.toFixed(0)).join(', ')})`);
  for (const c of conns) await c.end();
  await shard.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
