#!/usr/bin/env node
/**
 * Owns measuring the read statement's shapes against one shard, alone (no gateway, no actor):
 * rows only, rows + the slot subquery (readLive), rows + the epoch row (readLiveEpoch), each sent
 * as text (mysql2 query) and as a prepared statement (execute), at a given batch size, run after
 * run on one connection. DESIGN.md "Per-operation cost" quotes it (E3). Needs a shard with rows:
 * a bench store's (npm run bench leaves 100k keys in bench/.data). Writes bench/evidence/E3-<n>.json.
 *
 *   node dist/bench/measure/read-statement.js --url=mysql://root@127.0.0.1:23306/kvsql [--keys=330] [--iterations=300]
 */
import fs from 'node:fs';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { numberFlag, runScript } from '../options';
import { STATEMENTS } from '../../src/shard-actor/mysql-store/statements';

runScript(async () => {
  const url = process.argv.find((a) => a.startsWith('--url='))?.slice(6) ?? 'mysql://root@127.0.0.1:23306/kvsql';
  const n = numberFlag('keys', 330);
  const iterations = numberFlag('iterations', 300);
  const c = await mysql.createConnection({ uri: url });
  try {
    const [rows] = await c.query<mysql.RowDataPacket[]>('SELECT k, slot FROM kv LIMIT 20000');
    if (rows.length === 0) throw new Error(`no rows in kv at ${url}: load some first (npm run bench -- --scenarios=http-get)`);
    const picked = Array.from({ length: n }, (_, i) => rows[(i * 61) % rows.length]);
    const keys = picked.map((r) => r.k as Buffer);
    const slots = [...new Set(picked.map((r) => Number(r.slot)))];
    const rowsOnly = STATEMENTS.readLiveEpoch.sql(n).replace(/\(SELECT n FROM kv_slots_epoch WHERE id = 1\) AS ep, /, '');
    const shapes: Array<[string, string, unknown[]]> = [
      ['rows only', rowsOnly, keys],
      ['rows + slot subquery (readLive)', STATEMENTS.readLive.sql(n, slots.length), [...slots, ...keys]],
      ['rows + epoch row (readLiveEpoch)', STATEMENTS.readLiveEpoch.sql(n), keys],
    ];
    const results: Record<string, { wallUsPerKey: number; clientCpuUsPerKey: number }> = {};
    for (const mode of ['query', 'execute'] as const) {
      for (const [name, sql, params] of shapes) {
        const run = () => (mode === 'query' ? c.query(sql, params) : c.execute(sql, params as never));
        for (let i = 0; i < 30; i++) await run();
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        for (let i = 0; i < iterations; i++) await run();
        const cpu = process.cpuUsage(cpu0);
        const r = {
          wallUsPerKey: Number((((performance.now() - t0) * 1000) / iterations / n).toFixed(2)),
          clientCpuUsPerKey: Number(((cpu.user + cpu.system) / iterations / n).toFixed(2)),
        };
        results[`${mode}: ${name}`] = r;
        console.log(`${mode.padEnd(8)} ${name.padEnd(34)} ${r.wallUsPerKey} µs/key wall, ${r.clientCpuUsPerKey} µs/key client CPU`);
      }
    }
    const file = path.resolve(__dirname, '..', '..', '..', 'bench', 'evidence', `E3-${n}.json`);
    fs.writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), keys: n, iterations, distinctSlots: slots.length, results }, null, 1) + '\n');
  } finally {
    await c.end();
  }
});
