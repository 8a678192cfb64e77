/**
 * Owns a shard's connections: one pool per node of its group (only the writer's open), the node
 * selector that says which node is the writer, the session every connection gets, and the rules
 * for taking a connection and giving it back. Relies on mysql2 (through mysql2-adapter.ts for its
 * private fields), node-selector.ts, mysql-errors.ts and tls.ts. Must not know any statement but
 * the session setup and the probe: the store's concept files bring their own.
 *
 * Every wait is bounded, whatever the server does (a hung server accepts TCP and then says
 * nothing): a connection is acquired within ACQUIRE_TIMEOUT_MS (mysql2's own pool queue has no
 * timeout), every statement has a timeout, and a connection whose statement timed out or was cut
 * is destroyed, never returned to the pool (mysql2 keeps a timed-out statement as the connection's
 * active command until the server answers, so a reused connection would queue behind it).
 *
 *   nodes:    [ node 0 | node 1 | node 2 ]      (one URL: a single server, pools[0] forever)
 *   pools:    [  null  |  Pool  |  null  ]      opened when a node becomes the writer,
 *                          ^ selector.writer    dropped when it stops being it (dropPool)
 */
import mysql from 'mysql2/promise';
import type { Pool, PoolConnection, RowDataPacket } from 'mysql2/promise';
import type { GroupStats, MysqlTls } from '../../protocol/port-messages';
import { classify, isConnectionFatal, StoreError } from '../mysql-errors';
import { DEFAULT_SELECTOR_OPTIONS, NodeSelector, type SelectorLog, type SelectorOptions } from '../node-selector';
import { formatSql } from '../sql-format';
import type { TxControl } from '../shard-store';
import { destroyAllSockets, destroyHard, onNewConnection, stampConnectedAt } from './mysql2-adapter';
import { STATEMENTS } from './statements';
import { hostOf, sslOption, tlsIdentityError } from './tls';

/** Longest wait for a pooled connection (a new one includes connect and session setup). */
export const ACQUIRE_TIMEOUT_MS = 3000;
/**
 * Timeout of the health probe's query, and separately of its connection acquire. Not shorter: a
 * new connection over a slow link costs several round trips, and a false "down" abandons every
 * batch in flight.
 */
export const PROBE_TIMEOUT_MS = 3000;

export interface StoreOptions {
  url: string;
  /** The shard group's node URLs (a Galera cluster); absent or one entry: a single server. */
  nodes?: string[];
  poolSize: number;
  queryTimeoutMs: number;
  /** TLS to the server; null/undefined = clear text. */
  tls?: MysqlTls | null;
  /** How long an expirer lease lasts without renewal (the holder renews it every check). */
  leaseMs?: number;
  selector?: Partial<SelectorOptions>;
  log?: SelectorLog;
}

export class ShardConnections {
  private readonly nodes: string[];
  /** One pool per node, opened when the node becomes the writer, dropped when it stops being it. */
  private readonly pools: Array<Pool | null>;
  /** Null for a single server: then pools[0] is the one pool, forever. */
  private readonly selector: NodeSelector | null = null;
  private selectorStarted = false;
  /** Every statement's timeout (KVSQL_QUERY_TIMEOUT_MS). */
  readonly timeout: number;
  /** The last new pool connection's certificate-name failure (IP hosts; see sslOption). */
  private tlsError: Error | null = null;

  constructor(private readonly opts: StoreOptions) {
    this.timeout = opts.queryTimeoutMs;
    this.nodes = opts.nodes !== undefined && opts.nodes.length > 0 ? opts.nodes : [opts.url];
    this.pools = this.nodes.map(() => null);
    if (this.nodes.length > 1) {
      this.selector = new NodeSelector(
        this.nodes,
        { ...DEFAULT_SELECTOR_OPTIONS, ...opts.selector },
        (from, _to, reason) => this.dropPool(from, reason.startsWith('failback')),
        opts.log ?? (() => undefined),
      );
    } else {
      this.pools[0] = this.createPool(this.nodes[0]);
    }
  }

  /** True for a shard group (several nodes, a selector); false for a single server. */
  get isGroup(): boolean {
    return this.selector !== null;
  }

  /** The writer node's index (0 for a single server; -1 while a group has none). */
  get writer(): number {
    return this.selector === null ? 0 : this.selector.writer;
  }

  /** The writer node's pool. Throws (a connection-class error) when the group has no usable node. */
  private get pool(): Pool {
    const w = this.writer;
    if (w < 0) throw new StoreError('KV_NO_WRITER_NODE', 'no node of the shard group is Synced in the Primary component');
    return (this.pools[w] ??= this.createPool(this.nodes[w]));
  }

  /** The writer's pool if it is open now, else null; never opens one (for best-effort statements). */
  openWriterPool(): Pool | null {
    const w = this.writer;
    return w >= 0 ? this.pools[w] : null;
  }

  /** Writer node and per-node health of a shard group; null for a single server. */
  groupStats(): GroupStats | null {
    return this.selector?.stats() ?? null;
  }

  /**
   * The writer moved away from node `i`. New statements go to the new writer at once. A node
   * that failed: its statements in flight fail now (a hung node would hold them until the query
   * timeout); a COMMIT among them answers KV_ERR_OUTCOME_UNKNOWN. A healthy node left by a
   * failback: what runs there finishes, and the pool closes after the query timeout.
   */
  private dropPool(i: number, graceful: boolean): void {
    const pool = i >= 0 ? this.pools[i] : null;
    if (!pool) return;
    this.pools[i] = null;
    if (graceful) {
      setTimeout(() => void pool.end().catch(() => undefined), this.timeout + 1000).unref();
      return;
    }
    destroyAllSockets(pool, codedError('PROTOCOL_CONNECTION_LOST', 'the shard group switched away from this node'));
    void pool.end().catch(() => undefined);
  }

  /** A connection error may mean the writer died or hung: re-probe the group at once. */
  suspect(err: unknown): void {
    if (this.selector !== null && classify(err) === 'connection') void this.selector.refresh();
  }

  private createPool(url: string): Pool {
    const host = hostOf(url);
    const pool = mysql.createPool({
      uri: url,
      ssl: sslOption(this.opts.tls, host),
      connectionLimit: this.opts.poolSize,
      maxIdle: this.opts.poolSize,
      waitForConnections: true,
      queueLimit: 0, // the actor bounds work in flight; the pool never holds more than that
      multipleStatements: true,
      connectTimeout: 3000,
      enableKeepAlive: true,
      supportBigNumbers: true,
      bigNumberStrings: false,
      // No stack trace captured per statement (mysql2 does by default: Error.captureStackTrace on
      // every query, ~1.3% of a worker's CPU in the HTTP GET profile). Store errors are
      // classified by code (mysql-errors.ts); their stacks were never read.
      trace: false,
    });
    // Every connection: READ COMMITTED (no gap locks) and UTC so NOW(3) maps 1:1 to unix time.
    // With a callback: an error here (server shutting down, KILL) must not be an unhandled
    // 'error' event, which would end the worker; the broken connection is dropped instead.
    // In a Galera group also wsrep_sync_wait = 1: every SELECT and START TRANSACTION first waits
    // until this node has applied every write-set committed anywhere in the cluster before it,
    // so a read after a switch (or through another gateway on another node) sees every write
    // acknowledged before it (DESIGN.md §9 measures the cost).
    const setup = STATEMENTS.sessionSetup.sql + (this.selector !== null ? '; ' + STATEMENTS.galeraSyncWait.sql : '');
    onNewConnection(pool, (conn) => {
      this.tlsError = tlsIdentityError(this.opts.tls, host, conn.stream);
      if (this.tlsError !== null) return conn.destroy();
      stampConnectedAt(conn, Date.now());
      conn.query(setup, (err) => {
        if (err) conn.destroy();
      });
    });
    return pool;
  }

  /** A pooled connection within `timeoutMs`, or a connection-class error (KV_ACQUIRE_TIMEOUT). */
  acquire(timeoutMs: number = ACQUIRE_TIMEOUT_MS): Promise<PoolConnection> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        const err = new StoreError('KV_ACQUIRE_TIMEOUT', `no MySQL connection within ${timeoutMs} ms (server hung or unreachable)`);
        this.suspect(err);
        reject(err);
      }, timeoutMs);
      this.pool.getConnection().then(
        (conn) => {
          if (settled)
            conn.release(); // the waiter gave up; the connection is healthy
          else {
            settled = true;
            clearTimeout(timer);
            resolve(conn);
          }
        },
        (err) => {
          this.suspect(err);
          if (!settled) {
            settled = true;
            clearTimeout(timer);
            reject(err);
          }
        },
      );
    });
  }

  /**
   * One statement on a pooled connection, released after, or destroyed when it failed in a way
   * that leaves the connection unusable (timed out, lost).
   */
  async query<T>(sql: string, params: unknown[] | undefined, timeout: number = this.timeout, acquireMs = ACQUIRE_TIMEOUT_MS): Promise<T> {
    const conn = await this.acquire(Math.min(acquireMs, timeout));
    try {
      const [rows] = await conn.query({ sql: params === undefined ? sql : formatSql(sql, params), timeout });
      conn.release();
      return rows as T;
    } catch (err) {
      this.suspect(err);
      if (isConnectionFatal(err)) destroyHard(conn);
      else conn.release();
      throw err;
    }
  }

  /** One read statement on one pooled connection, cut by `ctl` when its batch is abandoned. */
  async readRows(sql: string, params: unknown[], ctl: TxControl | undefined): Promise<RowDataPacket[]> {
    const conn = await this.acquire();
    if (ctl !== undefined) {
      if (ctl.abandoned) {
        conn.release();
        throw abandonedError();
      }
      ctl.cut = () => destroyHard(conn);
    }
    try {
      const [rows] = await conn.query<RowDataPacket[]>({ sql: formatSql(sql, params), timeout: this.timeout });
      conn.release();
      return rows;
    } catch (err) {
      this.suspect(err);
      if (isConnectionFatal(err)) destroyHard(conn);
      else conn.release();
      throw err;
    } finally {
      if (ctl !== undefined) ctl.cut = null;
    }
  }

  /**
   * Runs setup statements (schema, migrations, identity) on one connection: the writer chosen
   * first, TLS names checked; a connection that failed is destroyed (a schema statement may still
   * be running in a hung server).
   */
  async withSetupConnection<T>(fn: (conn: PoolConnection) => Promise<T>): Promise<T> {
    if (this.selector !== null) {
      if (!this.selectorStarted) {
        this.selectorStarted = true;
        this.selector.start();
      }
      await this.selector.refresh();
    }
    const conn = await this.acquire();
    if (this.tlsError !== null) {
      conn.destroy();
      throw this.tlsError; // says which name the certificate lacks (the pool hook can only drop it)
    }
    let result: T;
    try {
      result = await fn(conn);
    } catch (err) {
      destroyHard(conn);
      throw err;
    }
    conn.release();
    return result;
  }

  /** The shard's clock, in unix ms; the health probe: a read-only server fails it. */
  async probe(): Promise<number> {
    // The health probe of a group: re-decide the writer first, so a dead writer is replaced
    // rather than the whole shard reported down.
    if (this.selector !== null) await this.selector.refresh();
    const rows = await this.query<RowDataPacket[]>(STATEMENTS.probe.sql, undefined, Math.min(this.timeout, PROBE_TIMEOUT_MS), PROBE_TIMEOUT_MS);
    if (Number(rows[0].ro) === 1) {
      // A demoted primary or a replica during a failover: it answers, but must not take writes.
      // Reporting it as down keeps the shard from flapping between "probe ok" and failed writes.
      throw new StoreError('KV_SHARD_READ_ONLY', 'shard is read-only (failover in progress, or the URL names a replica)');
    }
    return Number(rows[0].now_ms);
  }

  /** Stops the selector and ends every pool (after the store's last statement). */
  async close(): Promise<void> {
    await this.selector?.stop();
    await Promise.all(this.pools.map((p) => p?.end().catch(() => undefined)));
  }
}

function codedError(code: string, message: string): Error {
  const err = new Error(message);
  (err as { code?: string }).code = code;
  return err;
}

/** The actor gave up on this batch (op deadline): nothing further is sent, COMMIT never. */
export function abandonedError(): StoreError {
  return new StoreError('KV_ABANDONED', 'batch abandoned at the op deadline');
}
