/**
 * Owns measurement F1 (DESIGN.md §16): change-feed event delay at a steady, unsaturated write
 * rate, and expired-event delay. Starts a store on a throwaway local MySQL (test helpers: 2
 * shards), one watcher on every key (client.watch('')), and:
 *   1. puts at --rate ops/s for --seconds: delay = arrival - `at` (the transaction's NOW(3) on the
 *      shard: before the COMMIT, so this includes the commit), and whether every acked put arrived;
 *   2. --expiring keys whose TTLs end over 2 s: delay = arrival of `expired` - the key's expiresAt.
 * The shard is local: its clock and this process's are the same clock.
 *
 *   node dist/bench/measure/feed-delay.js [--rate=2000] [--seconds=10] [--expiring=20000]
 */
import fs from 'node:fs';
import path from 'node:path';
import { createClient } from '../../src/client';
import { startTestStore } from '../../test/helpers/store';
import { numberFlag } from '../options';

function pct(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function main(): Promise<void> {
  const rate = numberFlag('rate', 2000);
  const seconds = numberFlag('seconds', 10);
  const expiring = numberFlag('expiring', 20_000);
  const store = await startTestStore({ config: { queueWaitMs: 0 } });
  const url = `ws://127.0.0.1:${store.port}/v1/ws`;
  const writer = createClient(url, { maxInflight: 4096 });
  const watcher = createClient(url);
  const w = watcher.watch('');
  await w.ready;
  const putDelays: number[] = [];
  const expiredDelays: number[] = [];
  const expiresAt = new Map<string, number>();
  let events = 0;
  const consuming = (async () => {
    for await (const e of w) {
      events++;
      const now = Date.now();
      if (e.type === 'put' && e.key[0] === 0x72 /* r */) putDelays.push(now - e.at);
      else if (e.type === 'expired') {
        const due = expiresAt.get(e.key.toString());
        if (due !== undefined) expiredDelays.push(now - due);
      }
    }
  })();

  // 1. Steady puts: a tick every 10 ms sends rate/100 puts.
  const perTick = Math.max(1, Math.round(rate / 100));
  let acked = 0;
  const t0 = Date.now();
  const pending: Array<Promise<unknown>> = [];
  for (let tick = 0; Date.now() - t0 < seconds * 1000; tick++) {
    for (let i = 0; i < perTick; i++) pending.push(writer.put(`r:${tick % 1000}:${i}`, 'v').then(() => acked++));
    const next = t0 + (tick + 1) * 10;
    await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
  }
  await Promise.all(pending);
  const until = Date.now() + 5000;
  while (putDelays.length < acked && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  const puts = [...putDelays].sort((a, b) => a - b);
  console.log(
    `F1 puts: ${acked} acked at ${rate}/s for ${seconds} s, ${puts.length} put events; delay at->arrival p50 ${pct(puts, 0.5)} ms, p99 ${pct(puts, 0.99)} ms, max ${puts[puts.length - 1]} ms`,
  );

  // 2. Expiring keys, TTLs spread over 2 s.
  const batch: Array<Promise<unknown>> = [];
  for (let i = 0; i < expiring; i++) {
    const key = `x:${i}`;
    batch.push(writer.put(key, 'v', { ttl: 1000 + Math.floor((i / expiring) * 2000) }).then((r) => expiresAt.set(key, r.expiresAt!)));
    if (batch.length >= 2000) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
  const until2 = Date.now() + 60_000;
  while (expiredDelays.length < expiring && Date.now() < until2) await new Promise((r) => setTimeout(r, 100));
  const exp = [...expiredDelays].sort((a, b) => a - b);
  console.log(
    `F1 expiry: ${expiring} keys, ${exp.length} expired events; delay expiresAt->arrival p50 ${pct(exp, 0.5)} ms, p99 ${pct(exp, 0.99)} ms, max ${exp[exp.length - 1]} ms`,
  );
  console.log(`F1 total events ${events}`);
  const out = {
    id: 'F1',
    at: new Date().toISOString(),
    options: { rate, seconds, expiring },
    puts: { acked, events: puts.length, p50Ms: pct(puts, 0.5), p99Ms: pct(puts, 0.99), maxMs: puts[puts.length - 1] },
    expiry: { keys: expiring, events: exp.length, p50Ms: pct(exp, 0.5), p99Ms: pct(exp, 0.99), maxMs: exp[exp.length - 1] },
  };
  const file = path.join(__dirname, '..', '..', '..', 'bench', 'evidence', 'F1.json');
  fs.writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
  console.log(`saved ${path.relative(process.cwd(), file)}`);
  w.close();
  await consuming.catch(() => undefined);
  await writer.close();
  await watcher.close();
  await store.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
