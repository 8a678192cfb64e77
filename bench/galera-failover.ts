#!/usr/bin/env node
/**
 * Owns the failover benchmark of a Galera shard group: time from `kill -9` of the writer node to
 * the first acknowledged write sent after the kill (so committed on another node), and acknowledged
 * writes lost, over N trials under a PUT load from two gateways. Relies on src/embedded (a 3-node
 * cluster in a temp dir on free ports) and the gateway, in this process. Run it alone:
 *
 *   flock /tmp/kvsql-bench.lock node dist/bench/galera-failover.js [--trials=10] [--workers=16]
 *
 * Between trials the killed node rejoins (6 s delay + IST) and the writer fails back to node-0
 * after 10 s Synced; the next trial kills whichever node is the writer then.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { ensureGalera, ensureMysqlBinary } from '../src/embedded/mysql-binary';
import { startGaleraShard } from '../src/embedded/galera-cluster';
import { configFrom } from '../src/gateway/config';
import { createLogger, startServer } from '../src/gateway/server';
import { nodeName } from '../src/shard-actor/node-selector';
import { numberFlag as arg } from './options';

const TRIALS = arg('trials', 10);
const WORKERS = arg('workers', 16);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const binary = await ensureMysqlBinary(console.log);
  const { provider } = await ensureGalera(console.log);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'galera-bench-'));
  fs.chmodSync(dir, 0o755);
  const shard = await startGaleraShard({ shard: 0, replicas: 3, dir: path.join(dir, 'shard-0'), sqlBase: 0, galeraBase: 0, database: 'kvsql', binary, provider, log: () => undefined });
  const cfg = configFrom({ port: 0, redisPort: null, logLevel: 'silent' });
  const log = createLogger('silent');
  const gws = [await startServer(cfg, [shard.url], log), await startServer(cfg, [shard.url], log)];
  const bases = gws.map((g) => `http://127.0.0.1:${g.port}`);
  const writer = async (g: number): Promise<number> => {
    const body = (await (await fetch(`${bases[g]}/readyz`)).json()) as { groups?: Array<{ writer: string | null }> };
    return shard.nodes.findIndex((n) => nodeName(n.url) === body.groups?.[0]?.writer);
  };

  const results: Array<{ failoverMs: number; acked: number; lost: number; errors: number; victim: number }> = [];
  for (let trial = 0; trial < TRIALS; trial++) {
    // Settle: every node Synced and both gateways on the same writer.
    await Promise.all(shard.nodes.map((n) => n.waitSynced(180_000)));
    for (;;) {
      const w = await Promise.all([writer(0), writer(1)]);
      if (w[0] >= 0 && w[0] === w[1]) break;
      await sleep(200);
    }
    const acked = new Map<string, string>();
    let errors = 0;
    let killAt = 0;
    let firstAfter = 0;
    let stop = false;
    let seq = 0;
    const loops = Array.from({ length: WORKERS }, async (_, w) => {
      while (!stop) {
        const key = `t${trial}-${w}-${seq++}`;
        const sent = Date.now();
        try {
          const r = await fetch(`${bases[seq % 2]}/v1/kv/${key}`, { method: 'PUT', body: key });
          await r.arrayBuffer();
          if (r.status < 300) {
            acked.set(key, key);
            if (killAt > 0 && sent > killAt && firstAfter === 0) firstAfter = Date.now();
          } else {
            errors++;
            await sleep(50);
          }
        } catch {
          errors++;
          await sleep(50);
        }
      }
    });
    await sleep(3000);
    const victim = await writer(0);
    killAt = Date.now();
    await shard.nodes[victim].kill();
    const deadline = Date.now() + 60_000;
    while (firstAfter === 0 && Date.now() < deadline) await sleep(20);
    await sleep(2000);
    stop = true;
    await Promise.all(loops);
    // Every acknowledged write, read on a surviving node after it caught up.
    const survivor = shard.nodes[(victim + 1) % 3];
    const conn = await mysql.createConnection({ uri: survivor.url, multipleStatements: true });
    const [res] = await conn.query('SET SESSION wsrep_sync_wait = 1; SELECT k FROM kv WHERE k LIKE ?', [`t${trial}-%`]);
    await conn.end();
    const present = new Set(((res as unknown[])[1] as Array<{ k: Buffer }>).map((r) => r.k.toString()));
    let lost = 0;
    for (const k of acked.keys()) if (!present.has(k)) lost++;
    const r = { failoverMs: firstAfter === 0 ? NaN : firstAfter - killAt, acked: acked.size, lost, errors, victim };
    results.push(r);
    console.log(`trial ${trial + 1}/${TRIALS}: killed node-${victim}, first acknowledged write after ${r.failoverMs} ms; acked ${r.acked}, lost ${r.lost}, failed requests ${r.errors}`);
  }
  const times = results.map((r) => r.failoverMs).sort((a, b) => a - b);
  const median = times.length % 2 ? times[(times.length - 1) / 2] : (times[times.length / 2 - 1] + times[times.length / 2]) / 2;
  console.log(`failover: median ${median} ms, min ${times[0]} ms, max ${times[times.length - 1]} ms over ${times.length} trials; acknowledged writes lost: ${results.reduce((a, r) => a + r.lost, 0)} of ${results.reduce((a, r) => a + r.acked, 0)}`);
  for (const g of gws) await g.close();
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
