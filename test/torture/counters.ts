/**
 * Owns the counter part of a torture run: clients that increment a few counter keys by 1 (half
 * over HTTP `POST ?incr=1`, half over the WebSocket client's incr, alternating gateways op by op)
 * and read them, and the check of what they saw. Relies on src/client and checker/history's
 * outcome rules. Runs beside workload.ts on its own keys.
 *
 * What must hold for each counter (every increment is +1, the key starts absent):
 *   distinct    no two acknowledged increments answered the same value
 *   bounded     acknowledged <= final value <= acknowledged + unknown (none lost, none invented)
 *   in range    every answered value is in 1..final
 *   real time   an increment acknowledged before another began answered a smaller value; a read
 *               that ended before an increment began saw less than its value, one that began
 *               after an increment ended saw at least its value
 */
import { performance } from 'node:perf_hooks';
import { KvClient } from '../../src/client';
import { KvClientError } from '../../src/client/errors';
import { outcomeOfError, type Outcome } from '../checker/history';
import { sleep } from '../helpers/wait';

export interface CounterOp {
  client: number;
  key: string;
  kind: 'incr' | 'get';
  invoke: number;
  complete: number;
  outcome: Outcome;
  /** incr: the value answered; get: the value read (0 when absent). */
  value?: number;
  note?: string;
}

export interface CounterWorkload {
  stop(): Promise<void>;
  /** Reads every counter through every gateway until it answers; returns the final values. */
  finalValues(timeoutMs?: number): Promise<Map<string, number>>;
  readonly history: CounterOp[];
}

export function startCounterWorkload(opts: { gateways: string[]; clients: number; keys: number; keyPrefix?: string; opTimeoutMs?: number }): CounterWorkload {
  const history: CounterOp[] = [];
  const timeoutMs = opts.opTimeoutMs ?? 15_000;
  const keyOf = (i: number) => `${opts.keyPrefix ?? 'tc'}${i}`;
  let stopping = false;
  const ws = opts.gateways.map((b) => new KvClient(`${b.replace(/^http/, 'ws')}/v1/ws`, { timeoutMs, reconnectMinDelayMs: 50, reconnectMaxDelayMs: 1000 }));
  const run = async (
    client: number,
    gateway: number,
    key: string,
    kind: CounterOp['kind'],
  ): Promise<Omit<CounterOp, 'client' | 'key' | 'kind' | 'invoke' | 'complete'>> => {
    if (client % 2 === 0) {
      const url = `${opts.gateways[gateway]}/v1/kv/${encodeURIComponent(key)}${kind === 'incr' ? '?incr=1' : ''}`;
      try {
        const res = await fetch(url, { method: kind === 'incr' ? 'POST' : 'GET', signal: AbortSignal.timeout(timeoutMs) });
        const text = await res.text();
        if (res.status === 404 && kind === 'get') return { outcome: 'ok', value: 0 };
        if (res.status >= 400) {
          let code: string | undefined;
          try {
            code = JSON.parse(text).error?.code;
          } catch {
            /* not JSON */
          }
          return { outcome: res.status < 500 ? 'fail' : outcomeOfError(code), note: `http ${res.status} ${code ?? ''}` };
        }
        return { outcome: 'ok', value: Number(kind === 'incr' ? JSON.parse(text).value : text) };
      } catch (err) {
        const code = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
        return { outcome: outcomeOfError(code), note: `http ${code}` };
      }
    }
    const c = ws[gateway];
    try {
      if (kind === 'incr') return { outcome: 'ok', value: Number((await c.incr(key)).value) };
      const r = await c.get(key);
      return { outcome: 'ok', value: r === null ? 0 : Number(r.value.toString()) };
    } catch (err) {
      if (!(err instanceof KvClientError)) throw err;
      if (err.code === 'KV_ERR_TIMEOUT' && /not sent/.test(err.message)) return { outcome: 'fail', note: `ws ${err.code} (not sent)` };
      return { outcome: outcomeOfError(err.code), note: `ws ${err.code}` };
    }
  };
  const clients: Array<Promise<void>> = [];
  for (let c = 0; c < opts.clients; c++) {
    clients.push(
      (async () => {
        for (let seq = 0; !stopping; seq++) {
          const key = keyOf((c + seq) % opts.keys);
          const kind = seq % 4 === 3 ? 'get' : 'incr';
          const invoke = performance.now();
          const a = await run(c, seq % opts.gateways.length, key, kind);
          history.push({ client: c, key, kind, invoke, complete: performance.now(), ...a });
        }
      })(),
    );
  }
  return {
    history,
    async stop() {
      stopping = true;
      await Promise.all(clients);
    },
    async finalValues(finalTimeoutMs = 60_000) {
      const finals = new Map<string, number>();
      for (let k = 0; k < opts.keys; k++) {
        for (let g = 0; g < opts.gateways.length; g++) {
          const deadline = Date.now() + finalTimeoutMs;
          for (;;) {
            const a = await run(0, g, keyOf(k), 'get');
            if (a.outcome === 'ok') {
              const seen = finals.get(keyOf(k));
              if (seen !== undefined && seen !== a.value) throw new Error(`final reads of ${keyOf(k)} disagree between gateways: ${seen} and ${a.value}`);
              finals.set(keyOf(k), a.value!);
              break;
            }
            if (Date.now() > deadline) throw new Error(`final read of ${keyOf(k)} kept failing: ${a.note}`);
            await sleep(200);
          }
        }
      }
      for (const c of ws) await c.close();
      return finals;
    },
  };
}

/** Every violation of the rules above, one line each (empty: the counters are correct). */
export function checkCounters(history: CounterOp[], finals: Map<string, number>): string[] {
  const out: string[] = [];
  for (const [key, final] of finals) {
    const ops = history.filter((o) => o.key === key);
    const acked = ops.filter((o) => o.kind === 'incr' && o.outcome === 'ok');
    const unknown = ops.filter((o) => o.kind === 'incr' && o.outcome === 'unknown').length;
    const byValue = new Map<number, CounterOp>();
    for (const o of acked) {
      const other = byValue.get(o.value!);
      if (other !== undefined) out.push(`${key}: two acknowledged increments answered ${o.value} (clients ${other.client} and ${o.client})`);
      byValue.set(o.value!, o);
      if (o.value! < 1 || o.value! > final) out.push(`${key}: an increment answered ${o.value}, outside 1..${final} (the final value)`);
    }
    if (final < acked.length) out.push(`${key}: final value ${final} < ${acked.length} acknowledged increments: increments lost`);
    if (final > acked.length + unknown)
      out.push(`${key}: final value ${final} > ${acked.length} acknowledged + ${unknown} unknown increments: increments invented`);
    // Real time: sorted by completion, the largest value acknowledged so far must be below the
    // value of any op that began after those completions.
    const done = [...acked].sort((a, b) => a.complete - b.complete);
    const maxDoneBefore = (t: number): number => {
      let m = 0;
      for (const d of done) {
        if (d.complete >= t) break;
        if (d.value! > m) m = d.value!;
      }
      return m;
    };
    for (const o of acked) {
      const before = maxDoneBefore(o.invoke);
      if (o.value! <= before) out.push(`${key}: an increment answered ${o.value} though one acknowledged before it began answered ${before}`);
    }
    for (const r of ops.filter((o) => o.kind === 'get' && o.outcome === 'ok')) {
      const before = maxDoneBefore(r.invoke);
      if (r.value! < before) out.push(`${key}: a read saw ${r.value} after an increment to ${before} was acknowledged`);
      const later = acked.filter((a) => a.invoke > r.complete && a.value! <= r.value!);
      if (later.length > 0) out.push(`${key}: a read saw ${r.value} before an increment that then answered ${later[0].value} began`);
    }
  }
  return out;
}
