/**
 * Owns a minimal HTTP/1.1 keep-alive load client over raw sockets, for what autocannon cannot do:
 * open-loop load (latency measured from each request's *intended* send time, wrk2 style) and
 * many thousands of connections opened at a controlled pace. Relies on node:net.
 * Speaks only what the kvsql gateway answers: every response has Content-Length or no body
 * (204/304), no chunked encoding, no pipelining (one request per connection at a time).
 *
 *   Conn: idle ──send(req, t0)──> busy ──response parsed──> onResponse(status, t0) ──> idle
 *   buffer: | parsed responses (dropped) | partial response (kept until complete) |
 */
import net from 'node:net';
import { LatencyHistogram, percentilesOf } from './histogram';
import type { Row } from './result';

export interface Target {
  host: string;
  port: number;
}

export function targetOf(base: string): Target {
  const u = new URL(base);
  return { host: u.hostname, port: Number(u.port || 80) };
}

type Done = (status: number, startedAt: number) => void;

const HEADER_END = Buffer.from('\r\n\r\n');

class Conn {
  socket: net.Socket | null = null;
  busy = false;
  open = false;
  private buf: Buffer | null = null;
  private startedAt = 0;
  private done: Done | null = null;
  constructor(
    private readonly target: Target,
    private readonly onError: (conn: Conn, err: Error) => void,
  ) {}

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = net.connect(this.target.port, this.target.host);
      s.setNoDelay(true);
      this.socket = s;
      let settled = false;
      s.once('connect', () => {
        settled = true;
        this.open = true;
        resolve();
      });
      s.on('data', (chunk) => this.onData(chunk));
      s.on('error', (err) => {
        if (!settled) {
          settled = true;
          reject(err);
        }
      });
      s.on('close', () => {
        const wasOpen = this.open;
        this.open = false;
        if (this.busy) {
          this.busy = false;
          const d = this.done;
          this.done = null;
          this.buf = null;
          if (wasOpen) this.onError(this, new Error('connection closed with a request in flight'));
          d?.(0, this.startedAt);
        } else if (wasOpen) {
          this.onError(this, new Error('connection closed'));
        }
      });
    });
  }

  send(req: Buffer, startedAt: number, done: Done): void {
    this.busy = true;
    this.startedAt = startedAt;
    this.done = done;
    this.socket!.write(req);
  }

  private onData(chunk: Buffer): void {
    let buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      const end = buf.indexOf(HEADER_END);
      if (end === -1) break;
      // "HTTP/1.1 200 OK": the status is bytes 9..11.
      const status = (buf[9] - 48) * 100 + (buf[10] - 48) * 10 + (buf[11] - 48);
      const head = buf.toString('latin1', 0, end);
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      const bodyLength = m ? Number(m[1]) : 0;
      const total = end + 4 + bodyLength;
      if (buf.length < total) break;
      buf = buf.subarray(total);
      const d = this.done;
      this.done = null;
      this.busy = false;
      d?.(status, this.startedAt);
    }
    this.buf = buf.length === 0 ? null : buf;
  }

  close(): void {
    this.open = false;
    this.socket?.destroy();
  }
}

export interface RawLoadResult {
  hist: LatencyHistogram;
  ok: number;
  /** Responses with status >= 400, by status. */
  non2xx: Record<number, number>;
  /** Connection errors, requests lost with a closed connection, connect failures. */
  errors: number;
  elapsedMs: number;
}

/**
 * The report row of one raw HTTP load: its rate, latency and duration, with every non-2xx status
 * and connection error counted in `errors` and listed in `errorDetail` ("503 x12, connection errors x1").
 */
export function rawLoadRow(r: RawLoadResult, row: Pick<Row, 'name' | 'scenario' | 'cpu' | 'notes' | 'extra'>): Row {
  const non2xx = Object.values(r.non2xx).reduce((a, b) => a + b, 0);
  return {
    name: row.name,
    scenario: row.scenario,
    api: 'http',
    opsPerSec: r.ok / (r.elapsedMs / 1000),
    latency: percentilesOf(r.hist),
    errors: r.errors + non2xx,
    errorDetail: Object.entries(r.non2xx)
      .map(([s, n]) => `${s} x${n}`)
      .concat(r.errors ? [`connection errors x${r.errors}`] : [])
      .join(', '),
    durationS: r.elapsedMs / 1000,
    cpu: row.cpu,
    notes: row.notes,
    extra: row.extra,
  };
}

/** A pool of keep-alive connections to one gateway. */
export class RawHttpPool {
  readonly conns: Conn[] = [];
  errors = 0;
  lastError = '';
  private constructor(private readonly target: Target) {}

  /**
   * Opens `n` connections, at most `batch` connecting at once: a listen backlog (uWS: 512)
   * overflowed by a burst of SYNs makes the kernel drop some, and those retry only after 1-3 s.
   */
  static async open(base: string, n: number, opts: { batch?: number; onProgress?: (opened: number) => void } = {}): Promise<RawHttpPool> {
    const pool = new RawHttpPool(targetOf(base));
    const batch = opts.batch ?? 256;
    const onError = (_c: Conn, err: Error) => {
      pool.errors++;
      pool.lastError = err.message;
    };
    for (let i = 0; i < n; i += batch) {
      const group = Array.from({ length: Math.min(batch, n - i) }, () => new Conn(pool.target, onError));
      const results = await Promise.allSettled(group.map((c) => c.connect()));
      results.forEach((r, j) => {
        if (r.status === 'fulfilled') pool.conns.push(group[j]);
        else {
          pool.errors++;
          pool.lastError = (r.reason as Error).message;
        }
      });
      opts.onProgress?.(pool.conns.length);
    }
    return pool;
  }

  get size(): number {
    return this.conns.length;
  }

  /**
   * Reconnects every connection the server closed. uWebSockets.js closes an idle HTTP connection
   * after about 10 s, so a pool that waited (e.g. while the storm's keys loaded) must call this.
   */
  async reopen(batch = 256): Promise<void> {
    const closed = this.conns.filter((c) => !c.open);
    for (let i = 0; i < closed.length; i += batch) {
      const results = await Promise.allSettled(closed.slice(i, i + batch).map((c) => c.connect()));
      for (const r of results) {
        if (r.status === 'rejected') {
          this.errors++;
          this.lastError = (r.reason as Error).message;
        }
      }
    }
  }

  /**
   * Closed loop: every connection sends its next request as soon as the previous answers, until
   * `durationMs` has passed. `makeRequest(connIndex)` returns the bytes of the next request.
   */
  closedLoop(durationMs: number, makeRequest: (connIndex: number) => Buffer, onTick?: (r: RawLoadResult) => void): Promise<RawLoadResult> {
    const result: RawLoadResult = { hist: new LatencyHistogram(), ok: 0, non2xx: {}, errors: 0, elapsedMs: 0 };
    const errorsBefore = this.errors;
    const t0 = performance.now();
    const deadline = t0 + durationMs;
    return new Promise((resolve) => {
      let active = 0;
      const finishOne = () => {
        if (--active === 0) {
          clearInterval(ticker);
          result.elapsedMs = performance.now() - t0;
          result.errors += this.errors - errorsBefore;
          resolve(result);
        }
      };
      const ticker = setInterval(() => onTick?.(result), 250);
      this.conns.forEach((conn, i) => {
        if (!conn.open) return;
        active++;
        const done: Done = (status, startedAt) => {
          const now = performance.now();
          if (status >= 200 && status < 400) {
            result.ok++;
            result.hist.recordMs(now - startedAt);
          } else if (status >= 400) {
            result.non2xx[status] = (result.non2xx[status] ?? 0) + 1;
          }
          if (now >= deadline || !conn.open) return finishOne();
          conn.send(makeRequest(i), now, done);
        };
        conn.send(makeRequest(i), performance.now(), done);
      });
      if (active === 0) {
        clearInterval(ticker);
        resolve(result);
      }
    });
  }

  /**
   * Open loop at `ratePerSec` for `durationMs`: request k is due at t0 + k/rate whatever happened
   * before; it goes out on an idle connection, or waits in a FIFO for one. Its latency is counted
   * from when it was due, so queueing behind slow responses is measured, not hidden.
   */
  openLoop(
    ratePerSec: number,
    durationMs: number,
    makeRequest: () => Buffer,
    onTick?: (r: RawLoadResult, sent: number) => void,
    /** Ends the schedule early (checked every millisecond tick). */
    shouldStop?: () => boolean,
  ): Promise<RawLoadResult> {
    const result: RawLoadResult = { hist: new LatencyHistogram(), ok: 0, non2xx: {}, errors: 0, elapsedMs: 0 };
    const errorsBefore = this.errors;
    const idle: Conn[] = this.conns.filter((c) => c.open);
    // FIFO of due times waiting for a connection: ring-free head index, compacted when drained.
    let waiting: number[] = [];
    let head = 0;
    let sent = 0;
    let answered = 0;
    const t0 = performance.now();
    let total = Math.floor((ratePerSec * durationMs) / 1000);
    return new Promise((resolve) => {
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        clearInterval(ticker);
        result.elapsedMs = performance.now() - t0;
        result.errors += this.errors - errorsBefore;
        resolve(result);
      };
      const onDone =
        (conn: Conn): Done =>
        (status, dueAt) => {
          const now = performance.now();
          answered++;
          if (status >= 200 && status < 400) {
            result.ok++;
            result.hist.recordMs(now - dueAt);
          } else if (status >= 400) {
            result.non2xx[status] = (result.non2xx[status] ?? 0) + 1;
          }
          if (conn.open) {
            if (head < waiting.length) conn.send(makeRequest(), waiting[head++], dones.get(conn)!);
            else idle.push(conn);
          }
          if (answered >= total) finish();
        };
      const dones = new Map<Conn, Done>(this.conns.map((c) => [c, onDone(c)]));
      const ticker = setInterval(() => onTick?.(result, sent), 250);
      let timer: NodeJS.Timeout;
      const pump = () => {
        const now = performance.now();
        if (shouldStop?.() === true) {
          total = sent;
          if (answered >= total) return finish();
        }
        const due = Math.min(total, Math.floor(((now - t0) * ratePerSec) / 1000));
        while (sent < due) {
          const dueAt = t0 + (sent * 1000) / ratePerSec;
          sent++;
          let conn = idle.pop();
          while (conn !== undefined && !conn.open) conn = idle.pop();
          if (conn !== undefined) conn.send(makeRequest(), dueAt, dones.get(conn)!);
          else waiting.push(dueAt);
        }
        if (head > 4096 && head * 2 > waiting.length) {
          waiting = waiting.slice(head);
          head = 0;
        }
        if (sent < total) timer = setTimeout(pump, 1);
        // Stop waiting for stragglers a while after the schedule ends (they count as errors).
        else
          timer = setTimeout(() => {
            result.errors += total - answered;
            finish();
          }, 30_000);
      };
      pump();
      if (total === 0) finish();
    });
  }

  close(): void {
    for (const c of this.conns) c.close();
  }
}

/** Request bytes builders (no allocation per request beyond the buffer itself). */
export function getRequest(host: string, path: string): Buffer {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`, 'latin1');
}

export function putRequest(host: string, path: string, body: Buffer): Buffer {
  const head = Buffer.from(
    `PUT ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`,
    'latin1',
  );
  return Buffer.concat([head, body]);
}
