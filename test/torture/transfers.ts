/**
 * Owns the transaction part of a torture run: a few accounts (keys of ONE slot, so no slot move
 * can split them) that clients move amounts between with transactions (half over HTTP POST
 * /v1/txn, half over the WebSocket client's txn(), alternating gateways op by op), and read all
 * together with a read-only transaction. Relies on src/client and checker/history's outcome
 * rules. Runs beside workload.ts and counters.ts on its own keys.
 *
 * What must hold (the accounts start at START each, created by one transaction):
 *   whole      every read that sees the accounts sees all of them, summing to ACCOUNTS * START:
 *              a transfer is applied whole or not at all, whatever its outcome was told
 *              (ok, failed, unknown), so no read may ever see one half applied
 *   final      the final read (every gateway) agrees and sums to the same
 *   moved      the final balances are reachable: each account's change is within what the
 *              acknowledged and unknown transfers touching it could have moved
 */
import { performance } from 'node:perf_hooks';
import { KvClient } from '../../src/client';
import { KvClientError } from '../../src/client/errors';
import { slotOf } from '../../src/protocol/slot-map';
import { outcomeOfError, type Outcome } from '../checker/history';
import { sleep } from '../helpers/wait';

export const ACCOUNTS = 4;
export const START = 1000;

export interface TransferOp {
  client: number;
  kind: 'transfer' | 'read' | 'create';
  invoke: number;
  complete: number;
  outcome: Outcome;
  /** transfer: [from, to, amount]. */
  transfer?: [number, number, number];
  /** read: the balances seen (null: the accounts were not created yet). */
  balances?: number[] | null;
  note?: string;
}

export interface TransferWorkload {
  stop(): Promise<void>;
  /** Reads the accounts through every gateway until each answers; the balances (all agree). */
  finalBalances(timeoutMs?: number): Promise<number[]>;
  readonly history: TransferOp[];
}

/** `n` keys `${prefix}${i}` that share one slot (so one shard serves them all, through any move). */
export function sameSlotKeys(prefix: string, n: number): string[] {
  const bySlot = new Map<number, string[]>();
  for (let i = 0; ; i++) {
    const k = `${prefix}${i}`;
    const s = slotOf(Buffer.from(k));
    const list = bySlot.get(s) ?? [];
    list.push(k);
    bySlot.set(s, list);
    if (list.length === n) return list;
  }
}

export function startTransferWorkload(opts: { gateways: string[]; clients: number; keyPrefix?: string; opTimeoutMs?: number }): TransferWorkload {
  const history: TransferOp[] = [];
  const timeoutMs = opts.opTimeoutMs ?? 15_000;
  const keys = sameSlotKeys(opts.keyPrefix ?? 'tt', ACCOUNTS);
  let stopping = false;
  const ws = opts.gateways.map((b) => new KvClient(`${b.replace(/^http/, 'ws')}/v1/ws`, { timeoutMs, reconnectMinDelayMs: 50, reconnectMaxDelayMs: 1000 }));

  /** One transaction over HTTP: {succeeded, results} or the failure's outcome. */
  const http = async (gateway: number, body: object): Promise<{ outcome: Outcome; json?: any; note?: string }> => {
    try {
      const res = await fetch(`${opts.gateways[gateway]}/v1/txn`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
      const json = (await res.json()) as any;
      if (res.status >= 400)
        return { outcome: res.status < 500 ? 'fail' : outcomeOfError(json.error?.code), note: `http ${res.status} ${json.error?.code ?? ''}` };
      return { outcome: 'ok', json };
    } catch (err) {
      const code = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      return { outcome: outcomeOfError(code), note: `http ${code}` };
    }
  };
  const wsFailure = (err: unknown): { outcome: Outcome; note: string } => {
    if (!(err instanceof KvClientError)) throw err;
    if (err.code === 'KV_ERR_TIMEOUT' && /not sent/.test(err.message)) return { outcome: 'fail', note: `ws ${err.code} (not sent)` };
    return { outcome: outcomeOfError(err.code), note: `ws ${err.code}` };
  };

  const create = async (client: number, gateway: number): Promise<Pick<TransferOp, 'outcome' | 'note'>> => {
    const compare = keys.map((key) => ({ key, exists: false }));
    const success = keys.map((key) => ({ op: 'put' as const, key, value: String(START) }));
    if (client % 2 === 0) return http(gateway, { compare, success });
    try {
      await ws[gateway].txn({ compare, success });
      return { outcome: 'ok' };
    } catch (err) {
      return wsFailure(err);
    }
  };
  const transfer = async (client: number, gateway: number, t: [number, number, number]): Promise<Pick<TransferOp, 'outcome' | 'note'>> => {
    const [from, to, amount] = t;
    const ops = [
      { op: 'incr' as const, key: keys[from], by: -amount },
      { op: 'incr' as const, key: keys[to], by: amount },
    ];
    // Only between created accounts: an incr would create a missing one at 0.
    const compare = keys.map((key) => ({ key, exists: true }));
    if (client % 2 === 0) {
      const r = await http(gateway, { compare, success: ops });
      return r.outcome === 'ok' && !r.json.succeeded ? { outcome: 'fail', note: 'not created yet' } : r;
    }
    try {
      const r = await ws[gateway].txn({ compare, success: ops });
      return r.succeeded ? { outcome: 'ok' } : { outcome: 'fail', note: 'not created yet' };
    } catch (err) {
      return wsFailure(err);
    }
  };
  const read = async (client: number, gateway: number): Promise<Pick<TransferOp, 'outcome' | 'note' | 'balances'>> => {
    const success = keys.map((key) => ({ op: 'get' as const, key }));
    if (client % 2 === 0) {
      const r = await http(gateway, { success });
      if (r.outcome !== 'ok') return r;
      const vals = (r.json.results as Array<{ status: number; value?: string }>).map((x) =>
        x.status === 200 ? Number(Buffer.from(x.value!, 'base64').toString()) : null,
      );
      return { outcome: 'ok', balances: vals.every((v) => v === null) ? null : (vals as number[]) };
    }
    try {
      const r = await ws[gateway].txn({ success });
      const vals = r.results.map((x) => (x === null ? null : Number((x as { value: Buffer }).value.toString())));
      return { outcome: 'ok', balances: vals.every((v) => v === null) ? null : (vals as number[]) };
    } catch (err) {
      return wsFailure(err);
    }
  };

  const clients: Array<Promise<void>> = [];
  for (let c = 0; c < opts.clients; c++) {
    clients.push(
      (async () => {
        for (let seq = 0; !stopping; seq++) {
          const gateway = seq % opts.gateways.length;
          const invoke = performance.now();
          let op: Omit<TransferOp, 'invoke' | 'complete'>;
          if (seq === 0) op = { client: c, kind: 'create', ...(await create(c, gateway)) };
          else if (seq % 3 === 0) op = { client: c, kind: 'read', ...(await read(c, gateway)) };
          else {
            const from = (c + seq) % ACCOUNTS;
            const t: [number, number, number] = [from, (from + 1 + (seq % (ACCOUNTS - 1))) % ACCOUNTS, 1 + (seq % 7)];
            op = { client: c, kind: 'transfer', transfer: t, ...(await transfer(c, gateway, t)) };
          }
          history.push({ ...op, invoke, complete: performance.now() });
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
    async finalBalances(finalTimeoutMs = 60_000) {
      let seen: number[] | null | undefined;
      for (let g = 0; g < opts.gateways.length; g++) {
        const deadline = Date.now() + finalTimeoutMs;
        for (;;) {
          const r = await read(1, g);
          if (r.outcome === 'ok') {
            if (seen !== undefined && JSON.stringify(seen) !== JSON.stringify(r.balances))
              throw new Error(`final reads of the accounts disagree between gateways: ${JSON.stringify(seen)} and ${JSON.stringify(r.balances)}`);
            seen = r.balances;
            break;
          }
          if (Date.now() > deadline) throw new Error(`final read of the accounts kept failing: ${r.note}`);
          await sleep(200);
        }
      }
      for (const c of ws) await c.close();
      return seen ?? [];
    },
  };
}

/** Every violation of the rules above, one line each (empty: every transaction was whole). */
export function checkTransfers(history: TransferOp[], finals: number[]): string[] {
  const out: string[] = [];
  const total = ACCOUNTS * START;
  const sum = (b: number[]): number => b.reduce((x, y) => x + y, 0);
  for (const r of history) {
    if (r.kind !== 'read' || r.outcome !== 'ok' || r.balances === null || r.balances === undefined) continue;
    if (r.balances.some((v) => v === null)) out.push(`a read saw some accounts but not others: ${JSON.stringify(r.balances)}`);
    else if (sum(r.balances) !== total)
      out.push(`a read saw balances summing to ${sum(r.balances)}, not ${total}: a transfer half applied (${JSON.stringify(r.balances)})`);
  }
  if (finals.length > 0) {
    if (sum(finals) !== total) out.push(`final balances sum to ${sum(finals)}, not ${total}: ${JSON.stringify(finals)}`);
    for (let a = 0; a < ACCOUNTS; a++) {
      let most = 0;
      for (const t of history) if (t.kind === 'transfer' && t.outcome !== 'fail' && (t.transfer![0] === a || t.transfer![1] === a)) most += t.transfer![2];
      if (Math.abs(finals[a] - START) > most) out.push(`account ${a} moved by ${finals[a] - START}, more than every transfer touching it could move (${most})`);
    }
  }
  return out;
}
