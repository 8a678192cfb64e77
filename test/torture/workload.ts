/**
 * Owns the workload that feeds the consistency checker: concurrent clients, half over HTTP and
 * half over WebSocket (src/client), each a sequential process (one op in flight) that alternates
 * gateways op by op, on a small set of keys, recording every op in the checker's history format
 * with times from one monotonic clock. Relies on test/checker/history and src/client. Must not
 * decide whether a history is correct: that is test/checker's job.
 *
 * Op mix per client (seeded): GET 35%, PUT 24% (an eighth with a TTL, an eighth keepttl),
 * If-Match PUT 10% (on the last version this client saw for the key), If-None-Match PUT 8%,
 * DELETE 13%, TTL set 5%, TTL clear 5%. TTLs are one day: nothing expires during a run, so the
 * checker models a TTL as a flag (see test/checker/linearizability.ts).
 */
import { performance } from 'node:perf_hooks';
import { KvClient } from '../../src/client';
import { KvClientError } from '../../src/client/errors';
import { outcomeOfError, type HistoryOp, type OpKind } from '../checker/history';
import { sleep } from '../helpers/wait';

export const TTL_SECONDS = 86_400;

export interface WorkloadOptions {
  /** Gateway bases, http://127.0.0.1:PORT. */
  gateways: string[];
  clients: number;
  keys: number;
  seed: number;
  /** Per-op timeout (then the outcome is unknown). */
  opTimeoutMs?: number;
  /** Pause between a client's ops, ms (0: back to back). */
  thinkMs?: number;
  /** Keys are `${keyPrefix}${i}` (default "tk"): runs sharing a store use different prefixes. */
  keyPrefix?: string;
  /** 'full' (default): every op kind; 'put-del': PUT 70%, DELETE 30% (the version-bug probe's mix). */
  mix?: 'full' | 'put-del';
}

export interface Workload {
  /** Stop issuing; resolves when every client's last op has settled. */
  stop(): Promise<void>;
  readonly history: HistoryOp[];
  /** Reads every key once through each gateway (retrying errors) and records them as final reads. */
  finalReads(timeoutMs?: number): Promise<void>;
}

/** mulberry32: small, seeded, good enough to pick ops. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Request {
  kind: OpKind;
  key: string;
  value?: string;
  ifVersion?: number;
  ttl?: boolean;
  keepTtl?: boolean;
}

/** What came back: the answer fields of a HistoryOp, or an error code. */
type Answer = Partial<HistoryOp> & { outcome: HistoryOp['outcome'] };

interface Transport {
  run(gateway: number, req: Request): Promise<Answer>;
  close(): Promise<void>;
}

export function startWorkload(opts: WorkloadOptions): Workload {
  const history: HistoryOp[] = [];
  const opTimeoutMs = opts.opTimeoutMs ?? 15_000;
  let nextId = 0;
  let stopping = false;
  const record = (client: number, req: Request, invoke: number, a: Answer): void => {
    history.push({
      id: nextId++,
      client,
      key: req.key,
      kind: req.kind,
      value: req.value,
      ifVersion: req.ifVersion,
      ttl: req.ttl,
      keepTtl: req.keepTtl,
      invoke,
      complete: performance.now(),
      ...a,
    });
  };

  const clients: Array<Promise<void>> = [];
  const transports: Transport[] = [];
  for (let c = 0; c < opts.clients; c++) {
    const transport = c % 2 === 0 ? new HttpTransport(opts.gateways, opTimeoutMs) : new WsTransport(opts.gateways, opTimeoutMs);
    transports.push(transport);
    const random = rng(opts.seed * 1_000_003 + c);
    const lastVersion = new Map<string, number>();
    clients.push(
      (async () => {
        for (let seq = 0; !stopping; seq++) {
          const req = choose(random, c, seq, opts, lastVersion);
          const invoke = performance.now();
          let a: Answer;
          try {
            a = await transport.run(seq % opts.gateways.length, req);
          } catch (err) {
            a = { outcome: 'unknown', note: `workload: ${(err as Error).message}` };
          }
          record(c, req, invoke, a);
          if (a.outcome === 'ok' && a.version !== undefined) lastVersion.set(req.key, a.version);
          if (opts.thinkMs) await sleep(opts.thinkMs);
        }
      })(),
    );
  }

  return {
    history,
    async stop() {
      stopping = true;
      await Promise.all(clients);
      for (const t of transports) await t.close();
    },
    async finalReads(timeoutMs = 60_000) {
      const http = new HttpTransport(opts.gateways, 5000);
      for (let k = 0; k < opts.keys; k++) {
        for (let g = 0; g < opts.gateways.length; g++) {
          const req: Request = { kind: 'get', key: `${opts.keyPrefix ?? 'tk'}${k}` };
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            const invoke = performance.now();
            const a = await http.run(g, req);
            if (a.outcome === 'ok') {
              record(-1, req, invoke, { ...a, final: true });
              break;
            }
            if (Date.now() > deadline) throw new Error(`final read of ${req.key} through gateway ${g} kept failing: ${a.note}`);
            await sleep(200);
          }
        }
      }
    },
  };
}

function choose(random: () => number, client: number, seq: number, opts: WorkloadOptions, lastVersion: Map<string, number>): Request {
  const key = `${opts.keyPrefix ?? 'tk'}${Math.floor(random() * opts.keys)}`;
  const value = `${opts.seed}:${client}:${seq}`;
  const p = random();
  if (opts.mix === 'put-del') return p < 0.7 ? { kind: 'put', key, value, ttl: false } : { kind: 'del', key };
  if (p < 0.35) return { kind: 'get', key };
  if (p < 0.59) {
    const q = random();
    return q < 0.125
      ? { kind: 'put', key, value, ttl: true }
      : q < 0.25
        ? { kind: 'put', key, value, ttl: false, keepTtl: true }
        : { kind: 'put', key, value, ttl: false };
  }
  if (p < 0.69) {
    const v = lastVersion.get(key);
    return v === undefined ? { kind: 'put', key, value, ttl: false } : { kind: 'cas', key, value, ifVersion: v, ttl: false };
  }
  if (p < 0.77) return { kind: 'create', key, value, ttl: false };
  if (p < 0.9) return { kind: 'del', key };
  if (p < 0.95) return { kind: 'expire', key };
  return { kind: 'persist', key };
}

class HttpTransport implements Transport {
  constructor(
    private readonly gateways: string[],
    private readonly timeoutMs: number,
  ) {}

  async run(gateway: number, req: Request): Promise<Answer> {
    const base = this.gateways[gateway];
    const key = encodeURIComponent(req.key);
    let url: string;
    let method: string;
    const headers: Record<string, string> = {};
    let body: string | undefined;
    switch (req.kind) {
      case 'get':
        [url, method] = [`${base}/v1/kv/${key}`, 'GET'];
        break;
      case 'put':
      case 'cas':
      case 'create':
        url = `${base}/v1/kv/${key}${req.ttl ? `?ttl=${TTL_SECONDS}` : req.keepTtl ? '?keepttl=true' : ''}`;
        method = 'PUT';
        body = req.value;
        if (req.kind === 'cas') headers['if-match'] = `"${req.ifVersion}"`;
        if (req.kind === 'create') headers['if-none-match'] = '*';
        break;
      case 'del':
        [url, method] = [`${base}/v1/kv/${key}`, 'DELETE'];
        break;
      case 'expire':
        [url, method] = [`${base}/v1/ttl/${key}?ttl=${TTL_SECONDS}`, 'PUT'];
        break;
      case 'persist':
        [url, method] = [`${base}/v1/ttl/${key}`, 'DELETE'];
        break;
    }
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
      text = await res.text();
    } catch (err) {
      const code = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      return { outcome: outcomeOfError(code), note: `http ${code}: ${(err as Error).message}` };
    }
    const s = res.status;
    const note = `http ${s}`;
    if (s === 404 || s === 412) return { outcome: 'ok', found: false, note };
    if (s >= 400) {
      let code: string | undefined;
      try {
        code = JSON.parse(text).error?.code;
      } catch {
        /* not JSON */
      }
      // 4xx other than 404/412: refused before anything was written.
      return { outcome: s < 500 ? 'fail' : outcomeOfError(code), note: `${note} ${code ?? text.slice(0, 80)}` };
    }
    switch (req.kind) {
      case 'get':
        return {
          outcome: 'ok',
          found: true,
          readValue: text,
          version: Number(res.headers.get('etag')!.replace(/"/g, '')),
          hasTtl: res.headers.get('x-expires-at') !== null,
          note,
        };
      case 'put':
      case 'cas':
      case 'create':
        return { outcome: 'ok', found: true, version: JSON.parse(text).version, created: s === 201, note };
      default:
        return { outcome: 'ok', found: true, note };
    }
  }

  async close(): Promise<void> {}
}

class WsTransport implements Transport {
  private readonly clients: KvClient[];
  constructor(gateways: string[], timeoutMs: number) {
    this.clients = gateways.map((b) => new KvClient(`${b.replace(/^http/, 'ws')}/v1/ws`, { timeoutMs, reconnectMinDelayMs: 50, reconnectMaxDelayMs: 1000 }));
  }

  async run(gateway: number, req: Request): Promise<Answer> {
    const c = this.clients[gateway];
    const note = 'ws';
    try {
      switch (req.kind) {
        case 'get': {
          const r = await c.get(req.key);
          return r === null
            ? { outcome: 'ok', found: false, note }
            : { outcome: 'ok', found: true, readValue: r.value.toString('utf8'), version: r.version, hasTtl: r.expiresAt !== null, note };
        }
        case 'put':
        case 'cas':
        case 'create': {
          const r = await c.put(req.key, req.value!, {
            ttl: req.ttl ? TTL_SECONDS * 1000 : undefined,
            keepTtl: req.keepTtl || undefined,
            ifAbsent: req.kind === 'create' || undefined,
            ifVersion: req.kind === 'cas' ? req.ifVersion : undefined,
          });
          return { outcome: 'ok', found: true, version: r.version, created: r.created, note };
        }
        case 'del':
          return { outcome: 'ok', found: await c.del(req.key), note };
        case 'expire':
          return { outcome: 'ok', found: (await c.pexpire(req.key, TTL_SECONDS * 1000)) !== null, note };
        case 'persist':
          return { outcome: 'ok', found: await c.persist(req.key), note };
      }
    } catch (err) {
      if (!(err instanceof KvClientError)) throw err;
      if (err.code === 'KV_ERR_PRECONDITION_FAILED') return { outcome: 'ok', found: false, note: 'ws 412' };
      if (err.code === 'KV_ERR_TIMEOUT' && /not sent/.test(err.message)) return { outcome: 'fail', note: `ws ${err.code} (not sent)` };
      return { outcome: outcomeOfError(err.code), note: `ws ${err.code}` };
    }
    throw new Error(`unknown op ${req.kind}`);
  }

  async close(): Promise<void> {
    for (const c of this.clients) await c.close();
  }
}
