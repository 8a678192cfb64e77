/**
 * Owns WebSocket load through the project's client: closed loop (C connections x depth ops in
 * flight, each op replaced as soon as it answers) and open loop (ops due at a fixed rate,
 * latency from the due time). Relies on kv-client.ts. The client pipelines: ops issued in one
 * tick leave in one frame, so `depth` ops per connection are real pipelining.
 */
import { LatencyHistogram } from './histogram';
import type { KvClient } from './kv-client';

export type WsMix = 'get' | 'put' | 'mixed';

export interface WsOpSpec {
  mix: WsMix;
  keys: number;
  keyPrefix: string;
  value: Buffer;
  readRatio: number;
  /** GETs of keys that must exist: a miss counts as an error. */
  missIsError: boolean;
}

export interface WsLoadResult {
  hist: LatencyHistogram;
  ok: number;
  errors: number;
  misses: number;
  errorDetail: string;
  elapsedS: number;
}

class Tally {
  readonly hist = new LatencyHistogram();
  ok = 0;
  errors = 0;
  misses = 0;
  readonly codes = new Map<string, number>();
  error(err: unknown): void {
    this.errors++;
    const e = err as { code?: string; message?: string };
    const code = e?.code ?? e?.message?.slice(0, 60) ?? String(err);
    this.codes.set(code, (this.codes.get(code) ?? 0) + 1);
  }
  result(elapsedMs: number): WsLoadResult {
    const detail = [...this.codes].map(([c, n]) => `${c} x${n}`);
    if (this.misses > 0) detail.push(`misses x${this.misses}`);
    return { hist: this.hist, ok: this.ok, errors: this.errors, misses: this.misses, errorDetail: detail.join(', '), elapsedS: elapsedMs / 1000 };
  }
}

/** Returns a function issuing one random op per the spec; resolves true on success. */
function opIssuer(spec: WsOpSpec): (client: KvClient) => Promise<boolean> {
  const { keys, keyPrefix, value, readRatio } = spec;
  const get = (c: KvClient) => c.get(keyPrefix + Math.floor(Math.random() * keys)).then((r) => r !== null || !spec.missIsError);
  const put = (c: KvClient) => c.put(keyPrefix + Math.floor(Math.random() * keys), value).then(() => true);
  switch (spec.mix) {
    case 'get':
      return get;
    case 'put':
      return put;
    case 'mixed':
      return (c) => (Math.random() < readRatio ? get(c) : put(c));
  }
}

export function wsClosedLoop(
  clients: KvClient[],
  depth: number,
  durationMs: number,
  spec: WsOpSpec,
  onTick?: (t: { ok: number; errors: number }) => void,
): Promise<WsLoadResult> {
  const tally = new Tally();
  const issue = opIssuer(spec);
  const t0 = performance.now();
  const deadline = t0 + durationMs;
  return new Promise((resolve) => {
    let active = 0;
    const ticker = setInterval(() => onTick?.(tally), 250);
    const finishOne = () => {
      if (--active === 0) {
        clearInterval(ticker);
        resolve(tally.result(performance.now() - t0));
      }
    };
    const loop = (client: KvClient) => {
      const started = performance.now();
      issue(client).then(
        (ok) => {
          const now = performance.now();
          if (ok) {
            tally.ok++;
            tally.hist.recordMs(now - started);
          } else tally.misses++;
          if (now < deadline) loop(client);
          else finishOne();
        },
        (err) => {
          tally.error(err);
          // Back off a little so a dead connection does not spin.
          if (performance.now() < deadline) setTimeout(() => loop(client), 10);
          else finishOne();
        },
      );
    };
    for (const c of clients) {
      for (let d = 0; d < depth; d++) {
        active++;
        loop(c);
      }
    }
    if (active === 0) {
      clearInterval(ticker);
      resolve(tally.result(0));
    }
  });
}

/**
 * Open loop: op k is due at t0 + k/rate and is issued then (round-robin over the clients),
 * whatever is still in flight; latency counts from the due time.
 */
export function wsOpenLoop(
  clients: KvClient[],
  ratePerSec: number,
  durationMs: number,
  spec: WsOpSpec,
  onTick?: (t: { ok: number; errors: number }, sent: number) => void,
): Promise<WsLoadResult> {
  const tally = new Tally();
  const issue = opIssuer(spec);
  const total = Math.floor((ratePerSec * durationMs) / 1000);
  const t0 = performance.now();
  let sent = 0;
  let answered = 0;
  let rr = 0;
  return new Promise((resolve) => {
    let finished = false;
    let timer: NodeJS.Timeout;
    const ticker = setInterval(() => onTick?.(tally, sent), 250);
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      clearInterval(ticker);
      resolve(tally.result(performance.now() - t0));
    };
    const one = (dueAt: number) => {
      const client = clients[rr];
      rr = (rr + 1) % clients.length;
      issue(client).then(
        (ok) => {
          if (ok) {
            tally.ok++;
            tally.hist.recordMs(performance.now() - dueAt);
          } else tally.misses++;
          if (++answered >= total) finish();
        },
        (err) => {
          tally.error(err);
          if (++answered >= total) finish();
        },
      );
    };
    const pump = () => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) * ratePerSec) / 1000));
      while (sent < due) one(t0 + (sent++ * 1000) / ratePerSec);
      if (sent < total) timer = setTimeout(pump, 1);
      // Stragglers still unanswered 30 s after the schedule ends count as errors.
      else
        timer = setTimeout(() => {
          tally.errors += total - answered;
          finish();
        }, 30_000);
    };
    if (total === 0 || clients.length === 0) finish();
    else pump();
  });
}
