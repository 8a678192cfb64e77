/**
 * Owns measurement W3 (DESIGN.md §16): many change-feed watchers on one gateway. Starts a store on
 * a throwaway local MySQL (test helpers: 2 shards, the gateway in this process), then a child
 * process that opens --watchers watches (op 15) over --sockets WebSockets, each on its own prefix
 * `w:<i>:`; measures this process's memory before and after (after a GC: the gateway's cost per
 * watcher, the hub's subscriptions and the connections); then puts at --rate ops/s for --seconds,
 * each to a random watcher's prefix, and the child reports each event's delay (arrival - the
 * commit's `at`; same clock, all local).
 *
 *   node --expose-gc dist/bench/measure/feed-watchers.js [--watchers=10000] [--sockets=100] [--rate=2000] [--seconds=10]
 */
import { fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createClient } from '../../src/client';
import { startTestStore } from '../../test/helpers/store';
import { numberFlag, runScript } from '../options';

const CHILD = process.argv.includes('--child');

function pct(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

/** The child: open the watches, then record delays until told to report. */
async function child(): Promise<void> {
  const { default: WebSocket } = await import('ws');
  const { Packr } = await import('msgpackr');
  const packr = new Packr({ useRecords: false, moreTypes: false });
  const port = numberFlag('port', 0);
  const watchers = numberFlag('watchers', 10_000);
  const sockets = numberFlag('sockets', 100);
  const delays: number[] = [];
  let ready = 0;
  const conns: Array<InstanceType<typeof WebSocket>> = [];
  for (let s = 0; s < sockets; s++) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws`, { perMessageDeflate: false });
    conns.push(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.on('message', (data: Buffer) => {
      const now = Date.now();
      for (const r of packr.unpack(data) as unknown[][]) {
        if (r[1] === 200) ready++;
        else if (r[1] === 206) delays.push(now - Number(r[5]));
        else if ((r[1] as number) >= 400) console.error('watch error', JSON.stringify(r[2]));
      }
    });
    const frame: unknown[] = [];
    for (let w = s; w < watchers; w += sockets) frame.push([w + 1, 15, `w:${w}:`]);
    ws.send(packr.pack(frame));
  }
  while (ready < watchers) await new Promise((r) => setTimeout(r, 50));
  process.send!({ ready });
  process.on('message', (m: { report?: boolean }) => {
    if (!m.report) return;
    delays.sort((a, b) => a - b);
    process.send!({ events: delays.length, p50: pct(delays, 0.5), p99: pct(delays, 0.99), max: delays[delays.length - 1] });
    for (const c of conns) c.close();
    setTimeout(() => process.exit(0), 200);
  });
  await new Promise(() => undefined); // lives until the report (runScript exits when main resolves)
}

async function main(): Promise<void> {
  if (CHILD) return child();
  const watchers = numberFlag('watchers', 10_000);
  const sockets = numberFlag('sockets', 100);
  const rate = numberFlag('rate', 2000);
  const seconds = numberFlag('seconds', 10);
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with node --expose-gc');
  const store = await startTestStore({ config: { queueWaitMs: 0 } });
  const writer = createClient(`ws://127.0.0.1:${store.port}/v1/ws`, { maxInflight: 4096 });
  await writer.put('warm', 'v');
  gc();
  const before = process.memoryUsage();
  const kid = fork(__filename, ['--child', `--port=${store.port}`, `--watchers=${watchers}`, `--sockets=${sockets}`], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const next = (): Promise<Record<string, number>> => new Promise((resolve) => kid.once('message', (m) => resolve(m as Record<string, number>)));
  const opened = Date.now();
  await next();
  const openMs = Date.now() - opened;
  gc();
  const after = process.memoryUsage();
  const perWatcher = (k: 'heapUsed' | 'rss' | 'external') => Math.round((after[k] - before[k]) / watchers);
  console.log(
    `W3 ${watchers} watches on ${sockets} sockets open in ${openMs} ms; gateway process per watcher: heap ${perWatcher('heapUsed')} B, external ${perWatcher('external')} B, rss ${perWatcher('rss')} B`,
  );
  const perTick = Math.max(1, Math.round(rate / 100));
  let acked = 0;
  const t0 = Date.now();
  const pending: Array<Promise<unknown>> = [];
  for (let tick = 0; Date.now() - t0 < seconds * 1000; tick++) {
    for (let i = 0; i < perTick; i++) pending.push(writer.put(`w:${Math.floor(Math.random() * watchers)}:${tick}`, 'v').then(() => acked++));
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + (tick + 1) * 10 - Date.now())));
  }
  await Promise.all(pending);
  await new Promise((r) => setTimeout(r, 2000));
  const report = next();
  kid.send({ report: true });
  const d = await report;
  console.log(`W3 puts ${acked} at ${rate}/s: ${d.events} events delivered; delay at->arrival p50 ${d.p50} ms, p99 ${d.p99} ms, max ${d.max} ms`);
  const out = {
    id: 'W3',
    at: new Date().toISOString(),
    options: { watchers, sockets, rate, seconds },
    openMs,
    perWatcherBytes: { heap: perWatcher('heapUsed'), external: perWatcher('external'), rss: perWatcher('rss') },
    puts: acked,
    delivery: d,
  };
  fs.writeFileSync(path.join(__dirname, '..', '..', '..', 'bench', 'evidence', 'W3.json'), JSON.stringify(out, null, 1) + '\n');
  await writer.close();
  await store.close();
}

runScript(main);
