#!/usr/bin/env node
/**
 * Owns the failover benchmark of a Galera shard group: time from `kill -9` of the writer node to
 * the first acknowledged write sent after the kill (so committed on another node), and acknowledged
 * writes lost, over N trials under a PUT load from two gateways. Relies on test/helpers/ha-load (a
 * 3-node cluster in a temp dir on free ports, two gateways on it, in this process). Run it alone:
 *
 *   flock /tmp/kvsql-bench.lock node dist/bench/galera-failover.js [--trials=10] [--workers=16]
 *
 * Between trials the killed node rejoins (6 s delay + IST) and the writer fails back to node-0
 * after 10 s Synced; the next trial kills whichever node is the writer then.
 */
import mysql from 'mysql2/promise';
import { configFrom } from '../src/config/config';
import { startHaStore } from '../test/helpers/ha-load';
import { numberFlag as arg, runScript } from './options';
import { median } from './result';

const TRIALS = arg('trials', 10);
const WORKERS = arg('workers', 16);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const store = await startHaStore(configFrom({ port: 0, redisPort: null, logLevel: 'silent' }));
  const shard = store.galera.shard;
  const bases = store.bases();

  const results: Array<{ failoverMs: number; acked: number; lost: number; errors: number; victim: number }> = [];
  for (let trial = 0; trial < TRIALS; trial++) {
    // Settle: every node Synced and both gateways on the same writer.
    await store.allSynced(180_000);
    for (;;) {
      const w = await store.writers();
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
    const victim = await store.writerIndex(0);
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
    console.log(
      `trial ${trial + 1}/${TRIALS}: killed node-${victim}, first acknowledged write after ${r.failoverMs} ms; acked ${r.acked}, lost ${r.lost}, failed requests ${r.errors}`,
    );
  }
  const times = results.map((r) => r.failoverMs).sort((a, b) => a - b);
  console.log(
    `failover: median ${median(times)} ms, min ${times[0]} ms, max ${times[times.length - 1]} ms over ${times.length} trials; acknowledged writes lost: ${results.reduce((a, r) => a + r.lost, 0)} of ${results.reduce((a, r) => a + r.acked, 0)}`,
  );
  await store.close();
}

runScript(main);
