/**
 * Owns the HA tests' shared pieces: two gateways on one Galera shard group, a mixed load that
 * keeps its own record of acknowledged writes, and the checks on that record. Relies on
 * test/helpers/galera and the gateway. Must not assume which node is the writer: it asks /readyz.
 *
 * Two checks of the same run: a simple record (each worker owns its keys and writes them in
 * sequence, so for every key the acceptable reads are its last acknowledged value or a later
 * attempted one whose outcome is unknown; a read older than the last acknowledged write is stale,
 * a value never written a phantom), and the shared consistency checker (test/checker: named
 * anomalies and a per-key linearizability search) over the full history.
 */
import assert from 'node:assert/strict';
import { configFrom, type Config } from '../../src/config/config';
import { createLogger, startServer, type Server } from '../../src/gateway/server';
import { nodeName } from '../../src/shard-actor/node-selector';
import { onNode, startTestGalera, type TestGalera } from './galera';
import { checkHistory, describeReport, violationCount } from '../checker/check';
import { outcomeOfError, type HistoryOp } from '../checker/history';
import { sleep, waitFor } from './wait';

/** Two gateways (each with its own actors, node selectors and pools) on the group. */
export class HaStore {
  gateways: Server[] = [];
  constructor(
    readonly galera: TestGalera,
    readonly config: Readonly<Config> = configFrom({
      port: 0,
      redisPort: 0,
      logLevel: process.env.KVSQL_TEST_LOG_LEVEL ?? 'silent',
      expiryLockRetryMs: 500,
      expiryTickMs: 50,
    }),
  ) {}

  bases(): string[] {
    return this.gateways.map((g) => `http://127.0.0.1:${g.port}`);
  }

  async startGateways(): Promise<void> {
    const log = createLogger(this.config.logLevel);
    // One at a time into the list, so that after() closes whatever started if the second fails.
    this.gateways = [];
    for (let i = 0; i < 2; i++) this.gateways.push(await startServer(this.config, [this.galera.url], log));
  }

  async closeGateways(): Promise<void> {
    for (const g of this.gateways) await g.close();
    this.gateways = [];
  }

  /** Closes the gateways, then stops the nodes and deletes their data. */
  async close(): Promise<void> {
    await this.closeGateways();
    await this.galera.dispose();
  }

  /** Index of the node gateway `g` writes through, -1 when none. */
  async writerIndex(g: number): Promise<number> {
    const body = (await (await fetch(`${this.bases()[g]}/readyz`)).json()) as Readyz;
    const w = body.groups?.[0]?.writer;
    return this.galera.shard.nodes.findIndex((n) => nodeName(n.url) === w);
  }

  async writers(): Promise<number[]> {
    return Promise.all(this.gateways.map((_, g) => this.writerIndex(g)));
  }

  async allSynced(timeoutMs = 90_000): Promise<void> {
    const nodes = this.galera.shard.nodes;
    await Promise.all(
      nodes.map((n) =>
        n.waitSynced(
          timeoutMs,
          nodes.filter((p) => p !== n),
        ),
      ),
    );
  }
}

/**
 * A 3-node Galera group (test/helpers/galera) with two gateways on it, `config` for both (the HA
 * tests' settings when absent). A suite starts it in `before` and closes it in `after`; when the
 * gateways fail to start, what did start is closed here.
 */
export async function startHaStore(config?: Readonly<Config>): Promise<HaStore> {
  const store = new HaStore(await startTestGalera(3), config);
  try {
    await store.startGateways();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

export interface Readyz {
  status: string;
  groups?: Array<{ writer: string | null; switches: number; nodes: Array<{ node: string; state: string }> }>;
}

/** Per-key record of what may be read: the last acknowledged value and later unknown outcomes. */
export class Record {
  readonly acked = new Map<string, number>();
  readonly unknown = new Map<string, Set<number>>();
  readonly versions: string[] = [];
  ackedWrites = 0;
  failedWrites = 0;
  reads = 0;
  readonly violations: string[] = [];
  ackTimes: number[] = [];
  /** The same run as the checker's history (values made unique per key: `<key>#<n>`). */
  readonly history: HistoryOp[] = [];
  private nextId = 1;

  /** Records one op for test/checker. `status` 0 = no answer (network error, timeout). */
  op(kind: 'put' | 'get', key: string, client: number, invoke: number, status: number, body: string, etag: string | null, value?: number): void {
    const op: HistoryOp = { id: this.nextId++, client, key, kind, invoke, complete: performance.now(), outcome: 'ok' };
    const version = etag ? Number(etag.replace(/"/g, '')) : undefined;
    if (kind === 'put') {
      op.value = `${key}#${value}`;
      op.ttl = false;
    }
    if (status === 200 || status === 201) {
      op.found = true;
      op.version = version;
      if (kind === 'put') op.created = status === 201;
      else op.readValue = `${key}#${body}`;
    } else if (status === 404 && kind === 'get') {
      op.found = false;
    } else {
      let code: string | undefined;
      try {
        code = (JSON.parse(body) as { code?: string }).code;
      } catch {
        code = undefined;
      }
      op.outcome = kind === 'get' ? 'fail' : outcomeOfError(code);
      op.note = `${status} ${code ?? ''}`;
    }
    this.history.push(op);
  }

  /** Runs test/checker over the history; throws with its report on any violation. */
  assertConsistent(): void {
    const report = checkHistory(this.history);
    assert.equal(violationCount(report), 0, describeReport(report));
  }

  wrote(key: string, v: number, status: number, etag: string | null): void {
    if (status === 200 || status === 201) {
      this.acked.set(key, v);
      this.unknown.delete(key);
      this.ackedWrites++;
      this.ackTimes.push(Date.now());
      if (etag) this.versions.push(etag);
    } else {
      // 503 (unavailable, outcome unknown) or a network error: may or may not be applied.
      let s = this.unknown.get(key);
      if (!s) this.unknown.set(key, (s = new Set()));
      s.add(v);
      this.failedWrites++;
    }
  }

  /** `value` null = 404. Checked against what was known when the read was sent. */
  check(key: string, value: number | null, ackedWhenSent: number | undefined, unknownWhenSent: number[], where: string): void {
    this.reads++;
    if (value === null) {
      if (ackedWhenSent !== undefined) this.violations.push(`${where}: ${key} read 404 after ${ackedWhenSent} was acknowledged`);
      return;
    }
    if (value === ackedWhenSent) return;
    if (unknownWhenSent.includes(value)) return;
    this.violations.push(`${where}: ${key} read ${value}; acknowledged ${ackedWhenSent}, unknown [${unknownWhenSent.join(',')}]`);
  }
}

/** Workers alternating between the gateways: PUT a key they own, then GET another of theirs. */
export function startLoad(store: HaStore, rec: Record, opts: { workers: number; keysPerWorker: number; prefix: string }): { stop(): Promise<void> } {
  let stopped = false;
  const loops = Array.from({ length: opts.workers }, async (_, w) => {
    let seq = 0;
    const keyOf = (j: number) => `${opts.prefix}-${w}-${j}`;
    while (!stopped) {
      const key = keyOf(seq % opts.keysPerWorker);
      const v = ++seq;
      const base = store.bases()[(w + seq) % 2];
      const putAt = performance.now();
      try {
        const r = await fetch(`${base}/v1/kv/${key}`, { method: 'PUT', body: String(v), signal: AbortSignal.timeout(30_000) });
        const text = await r.text();
        rec.wrote(key, v, r.status, r.headers.get('etag'));
        rec.op('put', key, w, putAt, r.status, text, r.headers.get('etag'), v);
        if (r.status >= 300) await sleep(100);
      } catch {
        rec.wrote(key, v, 0, null);
        rec.op('put', key, w, putAt, 0, '', null, v);
        await sleep(100);
      }
      const readKey = keyOf((seq * 7) % opts.keysPerWorker);
      const ackedWhenSent = rec.acked.get(readKey);
      const unknownWhenSent = [...(rec.unknown.get(readKey) ?? [])];
      const getAt = performance.now();
      try {
        const r = await fetch(`${store.bases()[(w + seq + 1) % 2]}/v1/kv/${readKey}`, { signal: AbortSignal.timeout(30_000) });
        const body = await r.text();
        rec.op('get', readKey, w, getAt, r.status, body, r.headers.get('etag'));
        if (r.status === 200) rec.check(readKey, Number(body), ackedWhenSent, unknownWhenSent, `GET via gateway ${(w + seq + 1) % 2}`);
        else if (r.status === 404) rec.check(readKey, null, ackedWhenSent, unknownWhenSent, 'GET');
      } catch {
        rec.op('get', readKey, w, getAt, 0, '', null); // a failed read proves nothing either way
      }
    }
  });
  return {
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/** Every key's row, read on one node directly (after it caught up: wsrep_sync_wait). */
export async function rowsOn(url: string, prefix: string): Promise<Map<string, number>> {
  // A causal read (wsrep_sync_wait) fails with ER_LOCK_WAIT_TIMEOUT while membership changes.
  let out = new Map<string, number>();
  await waitFor(
    async () => {
      out = await rowsOnce(url, prefix);
      return true;
    },
    { timeoutMs: 60_000, intervalMs: 100, message: () => `rows on ${url}`, ignoreErrors: true },
  );
  return out;
}

async function rowsOnce(url: string, prefix: string): Promise<Map<string, number>> {
  const rows = await onNode<Array<{ k: Buffer; v: Buffer }>>(url, "SET SESSION wsrep_sync_wait = 1; SELECT k, v FROM kv WHERE k LIKE CONCAT(?, '-%')", [
    prefix,
  ]).then((r) => (r as unknown as unknown[][])[1] as Array<{ k: Buffer; v: Buffer }>);
  return new Map(rows.map((r) => [r.k.toString(), Number(r.v.toString())]));
}

export function assertDurable(rec: Record, rows: Map<string, number>, where: string): void {
  for (const [key, v] of rec.acked) {
    const got = rows.get(key);
    const ok = got === v || (got !== undefined && (rec.unknown.get(key)?.has(got) ?? false));
    assert.ok(ok, `${where}: ${key} holds ${got}, acknowledged ${v}`);
  }
}
