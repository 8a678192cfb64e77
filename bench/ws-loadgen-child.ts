/**
 * Owns one child load-generator process of the concurrency scenario: it opens its share of the
 * WebSocket connections (one process cannot hold 10,000 next to everything else: RLIMIT_NOFILE
 * is 20,000 here), waits for the parent's "go", runs a closed loop with one op in flight per
 * connection, and sends back its histogram as data. Relies on kv-client.ts and ws-load.ts.
 *
 *   parent ──{start}──> child: open N clients, ramped ──{opened}──> parent
 *   parent ──{go}─────> child: closed loop for durationMs ──{result}──> parent
 *   parent ──{close}──> child: close clients, exit 0
 */
import type { HistogramData } from './histogram';
import { openClient, type KvClient } from './kv-client';
import { wsClosedLoop } from './ws-load';

export type ToChild =
  | { type: 'start'; base: string; connections: number; keys: number; keyPrefix: string; valueSize: number; readRatio: number }
  | { type: 'go'; durationMs: number }
  | { type: 'close' };

export type FromChild =
  | { type: 'progress'; opened: number; failed: number }
  | { type: 'opened'; opened: number; failed: number; error: string }
  | { type: 'result'; hist: HistogramData; ok: number; errors: number; misses: number; errorDetail: string; elapsedS: number }
  | { type: 'fatal'; message: string };

/** Connections opened at once: a listen backlog overflowed by SYNs costs 1-3 s retransmits. */
const OPEN_BATCH = 200;

function send(m: FromChild): void {
  process.send?.(m);
}

let clients: KvClient[] = [];
let start: Extract<ToChild, { type: 'start' }> | null = null;

async function openAll(m: Extract<ToChild, { type: 'start' }>): Promise<void> {
  let failed = 0;
  let error = '';
  for (let i = 0; i < m.connections; i += OPEN_BATCH) {
    const n = Math.min(OPEN_BATCH, m.connections - i);
    const results = await Promise.allSettled(Array.from({ length: n }, () => openClient(m.base, { maxInflight: 4, timeoutMs: 60_000 })));
    for (const r of results) {
      if (r.status === 'fulfilled') clients.push(r.value);
      else {
        failed++;
        error = (r.reason as Error).message;
      }
    }
    send({ type: 'progress', opened: clients.length, failed });
  }
  send({ type: 'opened', opened: clients.length, failed, error });
}

process.on('message', (m: ToChild) => {
  void (async () => {
    try {
      if (m.type === 'start') {
        start = m;
        await openAll(m);
      } else if (m.type === 'go') {
        const s = start!;
        const r = await wsClosedLoop(clients, 1, m.durationMs, {
          mix: 'mixed',
          keys: s.keys,
          keyPrefix: s.keyPrefix,
          value: Buffer.alloc(s.valueSize, 0x61),
          readRatio: s.readRatio,
          missIsError: true,
        });
        send({ type: 'result', hist: r.hist.toData(), ok: r.ok, errors: r.errors, misses: r.misses, errorDetail: r.errorDetail, elapsedS: r.elapsedS });
      } else if (m.type === 'close') {
        await Promise.allSettled(clients.map((c) => c.close()));
        clients = [];
        process.exit(0);
      }
    } catch (err) {
      send({ type: 'fatal', message: (err as Error).stack ?? String(err) });
      process.exit(1);
    }
  })();
});
process.on('disconnect', () => process.exit(0));
