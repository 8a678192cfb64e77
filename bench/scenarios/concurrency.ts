/**
 * Owns the concurrency rows: --ws-concurrency WebSocket connections (in child load-generator
 * processes, --connections-per-process each) and --http-concurrency HTTP keep-alive connections
 * (raw sockets in this process) open at once, every one issuing ops in a closed loop with one op
 * in flight (a --read-ratio mix of GET and PUT on the key space). Reports throughput and latency
 * per API, and the gateway's RSS per connection: (RSS with all connections open, at the end of
 * the load) minus (RSS before any was opened), divided by the connections.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { ensurePreloaded, KEY_PREFIX, measured, type BenchContext } from '../context';
import { LatencyHistogram, percentilesOf } from '../histogram';
import { rssBytes } from '../proc-stats';
import { fmtInt, log, progress, clearProgress } from '../progress';
import { RawHttpPool, getRequest, putRequest, rawLoadRow, targetOf } from '../raw-http';
import { skippedRow, type Row } from '../result';
import type { FromChild, ToChild } from '../ws-loadgen-child';

const CHILD = path.join(__dirname, '..', 'ws-loadgen-child.js');
const MiB = 1024 * 1024;

class LoadgenChild {
  readonly proc: ChildProcess;
  opened = 0;
  failed = 0;
  private waiters: Array<{ type: FromChild['type']; resolve: (m: FromChild) => void; reject: (e: Error) => void }> = [];
  constructor(readonly index: number) {
    this.proc = fork(CHILD, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (m: FromChild) => {
      if (m.type === 'progress') {
        this.opened = m.opened;
        this.failed = m.failed;
        return;
      }
      if (m.type === 'fatal') {
        for (const w of this.waiters.splice(0)) w.reject(new Error(`load generator ${index}: ${m.message}`));
        return;
      }
      const i = this.waiters.findIndex((w) => w.type === m.type);
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(m);
    });
    this.proc.on('exit', (code) => {
      for (const w of this.waiters.splice(0)) w.reject(new Error(`load generator ${index} exited with ${code}`));
    });
  }

  send(m: ToChild): void {
    this.proc.send(m);
  }

  next<T extends FromChild['type']>(type: T): Promise<Extract<FromChild, { type: T }>> {
    return new Promise((resolve, reject) => this.waiters.push({ type, resolve: resolve as (m: FromChild) => void, reject }));
  }

  async close(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    try {
      this.send({ type: 'close' });
    } catch {
      /* already gone */
    }
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(t);
  }
}

export async function runConcurrency(ctx: BenchContext, runLabel: string): Promise<Row[]> {
  const { opts } = ctx;
  await ensurePreloaded(ctx);
  const wsN = opts.wsConcurrency;
  const httpN = opts.httpConcurrency;
  const pid = ctx.gatewayPid;
  const rssBefore = pid ? rssBytes(pid) : NaN;
  const children: LoadgenChild[] = [];
  let pool: RawHttpPool | null = null;
  const rows: Row[] = [];
  try {
    // 1. Open everything, WebSockets (children, in parallel) and HTTP (here).
    const procs = Math.ceil(wsN / opts.connectionsPerProcess);
    for (let i = 0; i < procs; i++) {
      const c = new LoadgenChild(i);
      children.push(c);
      const share = Math.min(opts.connectionsPerProcess, wsN - i * opts.connectionsPerProcess);
      c.send({
        type: 'start',
        base: ctx.base,
        connections: share,
        keys: opts.keys,
        keyPrefix: KEY_PREFIX,
        valueSize: opts.valueSize,
        readRatio: opts.readRatio,
      });
    }
    const openedAll = Promise.all(children.map((c) => c.next('opened')));
    let httpOpened = 0;
    const showOpen = setInterval(() => {
      const ws = children.reduce((a, c) => a + c.opened, 0);
      progress(`${runLabel}concurrency: opening ${fmtInt(ws)}/${fmtInt(wsN)} WebSockets, ${fmtInt(httpOpened)}/${fmtInt(httpN)} HTTP connections`);
    }, 250);
    try {
      // WebSockets first: the server closes an HTTP connection idle for ~10 s, and opening
      // thousands of WebSockets can take longer than that.
      const opened = await openedAll;
      pool = await RawHttpPool.open(ctx.base, httpN, { batch: 200, onProgress: (n) => (httpOpened = n) });
      const wsOpen = opened.reduce((a, m) => a + m.opened, 0);
      const wsFailed = opened.reduce((a, m) => a + m.failed, 0);
      log(
        `concurrency: ${fmtInt(wsOpen)} WebSockets open (${wsFailed} failed${wsFailed ? `: ${opened.find((m) => m.error)?.error}` : ''}), ${fmtInt(pool.size)} HTTP connections open${pool.errors ? ` (${pool.errors} failed: ${pool.lastError})` : ''}`,
      );
    } finally {
      clearInterval(showOpen);
      clearProgress();
    }
    const rssOpen = pid ? rssBytes(pid) : NaN;

    // 2. Everyone issues ops for --duration seconds.
    const host = targetOf(ctx.base).host;
    const bodies = Buffer.alloc(opts.valueSize, 0x62);
    const mixedReq = () => {
      const p = `/v1/kv/${KEY_PREFIX}${Math.floor(Math.random() * opts.keys)}`;
      return Math.random() < opts.readRatio ? getRequest(host, p) : putRequest(host, p, bodies);
    };
    const durationMs = opts.duration * 1000;
    const watchCtx: BenchContext = { ...ctx, watched: [...ctx.watched, ...children.map((c) => ({ label: `ws loadgen ${c.index}`, pid: c.proc.pid ?? 0 }))] };
    let rssLoaded = NaN;
    const t0 = performance.now();
    const { value, window } = await measured(watchCtx, ctx.base, async () => {
      const results = Promise.all(children.map((c) => c.next('result')));
      for (const c of children) c.send({ type: 'go', durationMs });
      const http = pool!.closedLoop(durationMs, mixedReq, (r) => {
        progress(
          `${runLabel}concurrency: ${((performance.now() - t0) / 1000).toFixed(1)}/${opts.duration}s  http ${fmtInt(r.ok / ((performance.now() - t0) / 1000))} ops/s`,
        );
        if (pid) rssLoaded = Math.max(Number.isFinite(rssLoaded) ? rssLoaded : 0, rssBytes(pid));
      });
      return { ws: await results, http: await http };
    });
    clearProgress();
    if (pid) rssLoaded = Math.max(Number.isFinite(rssLoaded) ? rssLoaded : 0, rssBytes(pid));

    const conns = wsN + pool.size;
    const perConn = (rss: number) => (Number.isFinite(rss - rssBefore) && conns > 0 ? (rss - rssBefore) / conns : NaN);
    const rssNote =
      `gateway RSS ${(rssBefore / MiB).toFixed(0)} MiB before, ${(rssOpen / MiB).toFixed(0)} MiB with ${fmtInt(conns)} connections open (idle), ` +
      `${(rssLoaded / MiB).toFixed(0)} MiB peak under load: ${(perConn(rssLoaded) / 1024).toFixed(1)} KiB per connection (${(perConn(rssOpen) / 1024).toFixed(1)} KiB idle)`;
    const memExtra = {
      rssBeforeBytes: rssBefore,
      rssOpenBytes: rssOpen,
      rssLoadedBytes: rssLoaded,
      rssPerConnectionBytes: perConn(rssLoaded),
      rssPerIdleConnectionBytes: perConn(rssOpen),
      connections: conns,
    };

    if (wsN > 0) {
      const hist = new LatencyHistogram();
      let ok = 0;
      let errors = 0;
      let elapsed = 0;
      const details: string[] = [];
      for (const r of value.ws) {
        hist.merge(r.hist);
        ok += r.ok;
        errors += r.errors + r.misses;
        elapsed = Math.max(elapsed, r.elapsedS);
        if (r.errorDetail) details.push(r.errorDetail);
      }
      rows.push({
        name: `concurrency ws (${fmtInt(wsN)} conns)`,
        scenario: 'concurrency',
        api: 'ws',
        opsPerSec: ok / elapsed,
        latency: percentilesOf(hist),
        errors,
        errorDetail: details.join('; '),
        durationS: elapsed,
        cpu: window.cpu,
        notes: [`${fmtInt(wsN)} WebSockets in ${children.length} child processes, 1 op in flight each, ${Math.round(opts.readRatio * 100)}% GET`, rssNote],
        extra: memExtra,
      });
    } else {
      rows.push(skippedRow(`concurrency ws (${fmtInt(opts.wsConcurrency)} conns)`, 'concurrency', '--ws-concurrency=0'));
    }
    rows.push(
      rawLoadRow(value.http, {
        name: `concurrency http (${fmtInt(pool.size)} conns)`,
        scenario: 'concurrency',
        cpu: window.cpu,
        notes: [
          `${fmtInt(pool.size)} HTTP keep-alive connections, 1 request in flight each, same mix${wsN > 0 ? ', at the same time as the WebSockets' : ''}`,
          rssNote,
        ],
        extra: memExtra,
      }),
    );
  } finally {
    pool?.close();
    await Promise.all(children.map((c) => c.close()));
  }
  return rows;
}
