#!/usr/bin/env node
/**
 * Owns the slot-move benchmark (issue 11): a store of two shards on one local MariaDB, loaded
 * with --rows rows, a closed-loop GET/PUT load through two in-process gateways; steady state,
 * then a third shard is added and the slots rebalanced while the load runs. Reports rows moved
 * per second, the write pause per moved range, p99 latency of ops on the range being moved and on
 * other slots vs steady state, and throughput during the rebalance as a fraction of steady state.
 * Relies on the embedded local-mysqld, startServer and the admin mover. Run it only as
 *   flock /tmp/kvsql-bench.lock node dist/bench/rebalance.js [--rows=N] [--conns=N] ...
 * Data lives under a fresh temp dir, deleted at the end. The result line is also written to
 * bench/evidence/M11-<time>.json (DESIGN.md §10 cites those files).
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { startLocalMysqld } from '../src/embedded/local-mysqld';
import { configFrom } from '../src/config/config';
import { createLogger, startServer } from '../src/gateway/server';
import { SlotMap, slotOf } from '../src/protocol/slot-map';
import { ShardSet } from '../src/admin/shard-set';
import { planRebalance } from '../src/admin/rebalance';
import { runUnits } from '../src/admin/commands';

import { numberFlag as arg } from './options';

const ROWS = arg('rows', 100_000);
const VALUE_BYTES = arg('value-bytes', 100);
const CONNS = arg('conns', 32);
const STEADY_MS = arg('steady-ms', 8000);
const SLOTS_PER_MOVE = arg('slots-per-move', 64);
const PORT = arg('mysql-port', 0);

interface Sample {
  t: number;
  ms: number;
  slot: number;
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slots-bench-'));
  const db = await startLocalMysqld({ dataDir: dir, port: PORT, database: 'kvsql', bufferPoolMb: 512, log: () => undefined });
  const gateways: Awaited<ReturnType<typeof startServer>>[] = [];
  try {
    const admin = await mysql.createConnection({ uri: db.url });
    for (const name of ['kvsql_b', 'kvsql_c']) await admin.query(`CREATE DATABASE IF NOT EXISTS ${name}`);
    await admin.end();
    const urls = [db.url, db.url.replace(/\/kvsql$/, '/kvsql_b'), db.url.replace(/\/kvsql$/, '/kvsql_c')];
    const config = configFrom({ port: 0, redisPort: 0, logLevel: 'silent' });
    const log = createLogger('silent');
    gateways.push(await startServer(config, urls.slice(0, 2), log));
    gateways.push(await startServer(config, urls.slice(0, 2), log));

    // Bulk load straight into the shards (the slot computed as the actor would).
    const map = SlotMap.even(2);
    const value = Buffer.alloc(VALUE_BYTES, 'x');
    const keys = Array.from({ length: ROWS }, (_, i) => Buffer.from(`key-${i}`));
    const t0 = Date.now();
    for (let shard = 0; shard < 2; shard++) {
      const conn = await mysql.createConnection({ uri: urls[shard] });
      const mine = keys.filter((k) => map.shardOf(k) === shard);
      for (let i = 0; i < mine.length; i += 2000) {
        await conn.query('INSERT INTO kv (k, v, version, expires_at, slot) VALUES ?', [
          mine.slice(i, i + 2000).map((k, j) => [k, value, i + j + 1, null, slotOf(k)]),
        ]);
      }
      await conn.query('UPDATE kv_seq SET next_version = ? WHERE id = 1', [ROWS + 1]);
      await conn.end();
    }
    console.log(`loaded ${ROWS} rows of ${VALUE_BYTES} B in ${Date.now() - t0} ms`);

    const agents = gateways.map(() => new http.Agent({ keepAlive: true, maxSockets: CONNS }));
    const samples: Sample[] = [];
    let running = true;
    let errors = 0;
    const request = (g: number, method: string, key: Buffer): Promise<number> =>
      new Promise((resolve) => {
        const req = http.request({ host: '127.0.0.1', port: gateways[g].port, method, path: `/v1/kv/${key.toString()}`, agent: agents[g] }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', () => resolve(0));
        req.end(method === 'PUT' ? value : undefined);
      });
    const loop = async (c: number): Promise<void> => {
      for (let n = 0; running; n++) {
        const key = keys[Math.floor(Math.random() * keys.length)];
        const start = performance.now();
        const status = await request(c % 2, n % 2 === 0 ? 'GET' : 'PUT', key);
        if (status >= 500 || status === 0) errors++;
        samples.push({ t: start, ms: performance.now() - start, slot: slotOf(key) });
      }
    };
    const loops = Array.from({ length: CONNS }, (_, c) => loop(c));

    await new Promise((r) => setTimeout(r, 1000)); // warm-up, not measured
    const steadyFrom = performance.now();
    await new Promise((r) => setTimeout(r, STEADY_MS));
    const moveFrom = performance.now();
    const units: Array<{ from: number; to: number; lo: number; hi: number }> = [];
    let current: { from: number; to: number; lo: number; hi: number } | null = null;
    const set = await ShardSet.open(urls.slice(0, 2));
    let progress;
    const parts: Array<{ fenceMs: number; catchUpMs: number; flipMs: number }> = [];
    try {
      await set.lockMovers();
      await set.addShard(urls[2]);
      await set.publishPeers();
      const plan = planRebalance(await set.slotRows(), [...set.members.keys()], new Set(), SLOTS_PER_MOVE);
      progress = await runUnits(
        set,
        plan,
        () => {
          if (current) {
            current.to = performance.now();
            units.push(current);
            current = null;
          }
        },
        {
          beforeStep: (step, lo, hi) => {
            if (step === 1 || current === null) current = { from: performance.now(), to: 0, lo, hi };
          },
          onPause: (_ms, _lo, _hi, p) => void parts.push(p),
        },
      );
    } finally {
      await set.close();
    }
    const moveTo = performance.now();
    running = false;
    await Promise.all(loops);

    const steady = samples.filter((s) => s.t >= steadyFrom && s.t < moveFrom);
    const during = samples.filter((s) => s.t >= moveFrom && s.t < moveTo);
    const moving = during.filter((s) => units.some((u) => s.t >= u.from && s.t <= u.to && s.slot >= u.lo && s.slot <= u.hi));
    const movingSet = new Set(moving);
    const others = during.filter((s) => !movingSet.has(s));
    const steadyRate = steady.length / ((moveFrom - steadyFrom) / 1000);
    const duringRate = during.length / ((moveTo - moveFrom) / 1000);
    const secs = (moveTo - moveFrom) / 1000;
    const result = {
      rows: ROWS,
      valueBytes: VALUE_BYTES,
      conns: CONNS,
      slotsPerMove: SLOTS_PER_MOVE,
      moves: progress!.unitsTotal,
      rowsMoved: progress!.rows,
      rebalanceSeconds: +secs.toFixed(1),
      rowsPerSecond: Math.round(progress!.rows / secs),
      pauseMs: { p50: +pct(progress!.pauses, 0.5).toFixed(1), p99: +pct(progress!.pauses, 0.99).toFixed(1), max: +Math.max(...progress!.pauses).toFixed(1) },
      pauseParts_p50: {
        fence: +pct(
          parts.map((p) => p.fenceMs),
          0.5,
        ).toFixed(1),
        catchUp: +pct(
          parts.map((p) => p.catchUpMs),
          0.5,
        ).toFixed(1),
        flip: +pct(
          parts.map((p) => p.flipMs),
          0.5,
        ).toFixed(1),
      },
      steadyOpsPerSec: Math.round(steadyRate),
      duringOpsPerSec: Math.round(duringRate),
      throughputRatio: +(duringRate / steadyRate).toFixed(2),
      p99Ms: {
        steady: +pct(
          steady.map((s) => s.ms),
          0.99,
        ).toFixed(1),
        duringOtherSlots: +pct(
          others.map((s) => s.ms),
          0.99,
        ).toFixed(1),
        duringMovingSlots: +pct(
          moving.map((s) => s.ms),
          0.99,
        ).toFixed(1),
      },
      opsOnMovingSlots: moving.length,
      errors,
    };
    console.log(JSON.stringify(result));
    const evidence = path.join(__dirname, '..', '..', 'bench', 'evidence');
    fs.mkdirSync(evidence, { recursive: true });
    const measuredAt = new Date().toISOString();
    fs.writeFileSync(
      path.join(evidence, `M11-${measuredAt.replace(/[:.]/g, '-')}.json`),
      JSON.stringify(
        {
          id: 'M11',
          what: 'rebalance 2 -> 3 shards under load (bench/rebalance.ts)',
          measuredAt,
          node: process.version,
          host: `${os.cpus().length} cores`,
          loadAverage: os.loadavg(),
          result,
        },
        null,
        1,
      ) + '\n',
    );
    for (const a of agents) a.destroy();
  } finally {
    for (const g of gateways) await g.close();
    await db.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
