/**
 * Owns a mixed load with an exact record of what was acknowledged, for tests that change the
 * store underneath (slot moves): each worker owns its keys and sends one op at a time per key, so
 * the last acknowledged state of every key is known. Reads are checked against it while the load
 * runs; `verify` reads every key back at the end. Relies on HttpClient only.
 *
 *   worker w, keys w-0 .. w-(K-1):  PUT (some with a long TTL) | DEL | GET checked against the model
 *   an op answered 5xx leaves its key uncertain (not checked) until the next acknowledged PUT,
 *   except a 503 refusal (OVERLOADED, SHARD_UNAVAILABLE, BUSY): the contract says nothing was
 *   applied, so the key stays certain and `verify` proves it
 */
import { HttpClient, etagVersion, ttlPath } from './http-client';

interface KeyModel {
  /** Last acknowledged value; null = deleted (or never written). */
  value: string | null;
  /** A long TTL was set by the last acknowledged PUT. */
  ttl: boolean;
  version: number;
  uncertain: boolean;
}

export interface LoadStats {
  ops: number;
  acked: number;
  errors5xx: number;
  errorCodes: Record<string, number>;
  /** The first message seen for each error code. */
  errorMessages: Record<string, string>;
  violations: string[];
}

/** 503 codes whose contract is "nothing was applied" (README, error table). */
const REFUSALS = new Set(['KV_ERR_OVERLOADED', 'KV_ERR_SHARD_UNAVAILABLE', 'KV_ERR_BUSY']);

export class KvLoad {
  readonly model = new Map<string, KeyModel>();
  readonly stats: LoadStats = { ops: 0, acked: 0, errors5xx: 0, errorCodes: {}, errorMessages: {}, violations: [] };
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly clients: HttpClient[],
    private readonly workers: number,
    private readonly keysPerWorker: number,
    private readonly prefix = 'load',
  ) {
    for (let w = 0; w < workers; w++)
      for (let k = 0; k < keysPerWorker; k++) this.model.set(`${prefix}-${w}-${k}`, { value: null, ttl: false, version: 0, uncertain: false });
  }

  start(): void {
    this.running = true;
    for (let w = 0; w < this.workers; w++) this.loops.push(this.loop(w));
  }

  async stop(): Promise<LoadStats> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
    return this.stats;
  }

  private async loop(w: number): Promise<void> {
    let seq = 0;
    while (this.running) {
      const key = `${this.prefix}-${w}-${Math.floor(Math.random() * this.keysPerWorker)}`;
      const m = this.model.get(key)!;
      const client = this.clients[(w + seq) % this.clients.length];
      const r = Math.random();
      this.stats.ops++;
      try {
        if (r < 0.6) {
          const value = `${key}#${seq++}`;
          const ttl = Math.random() < 0.2;
          const reply = await client.put(key, value, ttl ? 'ttl=600' : '');
          if (reply.status === 200 || reply.status === 201) {
            const v = etagVersion(reply);
            if (v <= m.version) this.stats.violations.push(`${key}: version ${v} after ${m.version}`);
            Object.assign(m, { value, ttl, version: v, uncertain: false });
            this.stats.acked++;
          } else this.failed(m, reply.status, reply.text());
        } else if (r < 0.7) {
          const reply = await client.del(key);
          if (reply.status === 204 || reply.status === 404) {
            if (reply.status === 404 && m.value !== null && !m.uncertain) this.stats.violations.push(`${key}: DELETE said 404, last acked ${m.value}`);
            Object.assign(m, { value: null, ttl: false });
            this.stats.acked++;
          } else this.failed(m, reply.status, reply.text());
        } else {
          const reply = await client.get(key);
          if (reply.status >= 500) this.failed(m, reply.status, reply.text(), false);
          else if (!m.uncertain) {
            const got = reply.status === 200 ? reply.text() : null;
            if (got !== m.value) this.stats.violations.push(`${key}: read ${got} (status ${reply.status}), last acked ${m.value}`);
          }
        }
      } catch (err) {
        this.failed(m, 0, String(err));
      }
    }
  }

  private failed(m: KeyModel, status: number, body: string, write = true): void {
    this.stats.errors5xx++;
    let code = String(status);
    let message = body;
    try {
      const error = JSON.parse(body).error ?? JSON.parse(body);
      code = error.code ?? code;
      message = error.message ?? body;
    } catch {
      /* not JSON */
    }
    this.stats.errorCodes[code] = (this.stats.errorCodes[code] ?? 0) + 1;
    this.stats.errorMessages[code] ??= message;
    if (write && !(status === 503 && REFUSALS.has(code))) m.uncertain = true;
  }

  /** Read every certain key through `client`; returns the mismatches. */
  async verify(client: HttpClient): Promise<string[]> {
    const bad: string[] = [];
    const entries = [...this.model.entries()].filter(([, m]) => !m.uncertain);
    for (let i = 0; i < entries.length; i += 32) {
      await Promise.all(
        entries.slice(i, i + 32).map(async ([key, m]) => {
          const reply = await client.get(key);
          const got = reply.status === 200 ? reply.text() : null;
          if (got !== m.value) bad.push(`${key}: read ${got} (status ${reply.status}), last acked ${m.value}`);
          else if (m.value !== null) {
            const t = (await client.request('GET', ttlPath(key))).json();
            if (m.ttl !== (t.expiresAt !== null)) bad.push(`${key}: ttl ${JSON.stringify(t)}, expected ${m.ttl ? 'a TTL' : 'none'}`);
          }
        }),
      );
    }
    return bad;
  }
}
