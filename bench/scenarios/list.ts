/**
 * Owns the `list` scenario: how fast the key space is listed by prefix, in keys per second, one
 * listing at a time (a cursor walked page by page, as an application or `SCAN` walks it): over
 * the WebSocket client's `listAll` with pages of 1,000 keys, keys only and with values, and over
 * HTTP `GET /v1/kv?prefix=&limit=1000`. Lists the preloaded key space (`--keys`, default
 * 100,000; the issue's figure is `--keys=1000000`). Relies on the preload and measured() of
 * context.ts and on src/client.
 */
import { performance } from 'node:perf_hooks';
import { KvClient } from '../../src/client';
import { ensurePreloaded, KEY_PREFIX, measured, type BenchContext } from '../context';
import { fmtInt, progress, clearProgress } from '../progress';
import type { Row } from '../result';

const PAGE = 1000;

function row(name: string, api: Row['api'], keys: number, seconds: number, cpu: Row['cpu'], notes: string[]): Row {
  return {
    name,
    scenario: 'list',
    api,
    opsPerSec: keys / seconds,
    latency: null,
    errors: 0,
    errorDetail: '',
    durationS: seconds,
    cpu,
    notes,
    extra: { keys, pageSize: PAGE },
  };
}

export async function runListScenario(ctx: BenchContext, label: string): Promise<Row[]> {
  await ensurePreloaded(ctx);
  const rows: Row[] = [];
  const client = new KvClient(`${ctx.base.replace(/^http/, 'ws')}/v1/ws`, { timeoutMs: 60_000 });
  try {
    for (const values of [false, true]) {
      const name = `list ws${values ? ' with values' : ''}`;
      progress(`${label}${name}: listing prefix "${KEY_PREFIX}"...`, true);
      const started = performance.now();
      const { value: n, window } = await measured(ctx, ctx.base, async () => {
        let count = 0;
        for await (const item of client.listAll({ prefix: KEY_PREFIX, limit: PAGE, values })) {
          void item;
          if (++count % 50_000 === 0) progress(`${label}${name}: ${fmtInt(count)} keys`, true);
        }
        return count;
      });
      const s = (performance.now() - started) / 1000;
      rows.push(row(name, 'ws', n, s, window.cpu, n === ctx.opts.keys ? [] : [`listed ${n} keys of ${ctx.opts.keys} preloaded`]));
    }
  } finally {
    await client.close();
  }
  progress(`${label}list http: listing prefix "${KEY_PREFIX}"...`, true);
  const started = performance.now();
  const { value: n, window } = await measured(ctx, ctx.base, async () => {
    let count = 0;
    let after: string | null = null;
    do {
      const q: string = `prefix=${encodeURIComponent(KEY_PREFIX)}&limit=${PAGE}${after === null ? '' : `&after=${after}`}`;
      const res = await fetch(`${ctx.base}/v1/kv?${q}`);
      if (res.status !== 200) throw new Error(`GET /v1/kv answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
      const page = (await res.json()) as { keys: string[]; next: string | null };
      count += page.keys.length;
      // The keys come percent-encoded as in a path (README, Listing keys): `next` goes back as `after` as it is.
      after = page.next;
    } while (after !== null);
    return count;
  });
  const s = (performance.now() - started) / 1000;
  rows.push(row('list http', 'http', n, s, window.cpu, []));
  clearProgress();
  return rows;
}
