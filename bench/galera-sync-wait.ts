#!/usr/bin/env node
/**
 * Owns measuring what wsrep_sync_wait=1 costs on a 3-node Galera cluster: the latency of the
 * actor's statement shapes (a 16-key read, a 16-key write transaction) with 0 and 1, one client,
 * interleaved in rounds so machine noise hits both alike. Relies on src/embedded.
 *
 *   flock /tmp/kvsql-bench.lock node dist/bench/galera-sync-wait.js [--rounds=5] [--ops=500]
 */
import mysql from 'mysql2/promise';
import { schemaStatements } from '../src/shard-actor/schema-migration';
import { startTestGalera } from '../test/helpers/galera';
import { numberFlag as arg, runScript } from './options';
import { median } from './result';

const ROUNDS = arg('rounds', 5);
const OPS = arg('ops', 500);

async function main(): Promise<void> {
  const galera = await startTestGalera(3);
  const shard = galera.shard;
  const conns = await Promise.all(
    [0, 1].map(async (w) => {
      const c = await mysql.createConnection({ uri: shard.nodes[0].url, multipleStatements: true });
      await c.query(`SET SESSION wsrep_sync_wait = ${w}; SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED`);
      return c;
    }),
  );
  for (const sql of schemaStatements()) await conns[0].query(sql);
  const keys = Array.from({ length: 16 }, (_, i) => Buffer.from(`k${i}`));
  const ph = keys.map(() => '?').join(',');
  const readSql = `SELECT k, v, version FROM kv WHERE k IN (${ph})`;
  const writeSql =
    `START TRANSACTION; SELECT k, version FROM kv WHERE k IN (${ph}) ORDER BY k FOR UPDATE; ` +
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
  for (const [name, xs] of Object.entries(res))
    console.log(`${name}: median ${median(xs).toFixed(0)} us per statement (rounds: ${xs.map((x) => x.toFixed(0)).join(', ')})`);
  for (const c of conns) await c.end();
  await galera.dispose();
}

runScript(main);
