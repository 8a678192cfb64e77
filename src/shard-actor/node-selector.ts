/**
 * Owns which node of a Galera shard group this actor sends its statements to (the "writer"),
 * and each node's health as last probed. Relies on mysql2 (one probe connection per node) and on
 * the clock it is given. Must not touch the actor's pools or queues: a switch is announced to
 * `onSwitch`, and the store drops the old node's connections there.
 *
 *   every probeIntervalMs, or at once when the store saw a connection error (refresh()):
 *     each node: SHOW GLOBAL STATUS wsrep_* within probeTimeoutMs
 *       -> synced | donor | joining | joined | non-primary | not-ready | down | hung | not-galera
 *     writer healthy?  keep it, unless an earlier node has been healthy for failbackMs (failback)
 *     else             the first healthy node in list order (none: no writer, the shard is down)
 *
 * Healthy = wsrep_local_state 4 (Synced), wsrep_ready ON, wsrep_cluster_status Primary. Every
 * gateway applies the same rule to the same list, so all of them write through the same node
 * once their probes agree: no multi-writer certification conflicts in steady state. While two
 * gateways disagree (for at most a probe interval after a change, or failbackMs on a failback)
 * both nodes take writes; Galera certification then aborts one of two conflicting transactions
 * with ER_LOCK_DEADLOCK, which the actor retries: correctness never depends on agreement.
 */
import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';

export type NodeStateName = 'synced' | 'donor' | 'joining' | 'joined' | 'non-primary' | 'not-ready' | 'down' | 'hung' | 'not-galera' | 'unknown';

export interface NodeStatus {
  /** host:port, as in the shard's URL list (no credentials). */
  node: string;
  state: NodeStateName;
  clusterSize: number;
  /** wsrep_flow_control_paused: fraction of time replication was paused by flow control. */
  flowControlPaused: number;
  /** wsrep_local_recv_queue: write-sets received and not yet applied. */
  recvQueue: number;
}

export interface SelectorStats {
  /** Index of the writer node in the list, -1 when no node is usable. */
  writer: number;
  switches: number;
  lastSwitchReason: string;
  nodes: NodeStatus[];
}

export interface SelectorOptions {
  probeIntervalMs: number;
  probeTimeoutMs: number;
  /** How long an earlier node must stay healthy before the writer moves back to it. */
  failbackMs: number;
}

export const DEFAULT_SELECTOR_OPTIONS: SelectorOptions = { probeIntervalMs: 500, probeTimeoutMs: 1000, failbackMs: 10_000 };

export type SwitchListener = (from: number, to: number, reason: string) => void;
export type SelectorLog = (level: 'info' | 'warn' | 'error', msg: string, data?: Record<string, unknown>) => void;

/** The wsrep status a node's state is read from (stateOf); also the admin tools' node choice. */
export const STATUS_SQL =
  'SHOW GLOBAL STATUS WHERE Variable_name IN ' +
  "('wsrep_local_state', 'wsrep_ready', 'wsrep_cluster_status', 'wsrep_cluster_size', 'wsrep_flow_control_paused', 'wsrep_local_recv_queue')";

const LOCAL_STATES: Record<string, NodeStateName> = { '1': 'joining', '2': 'donor', '3': 'joined', '4': 'synced' };

export function nodeName(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || '3306'}`;
}

/** The state a node's wsrep status variables describe (exported for tests). */
export function stateOf(vars: Map<string, string>): NodeStateName {
  const status = vars.get('wsrep_cluster_status');
  if (status === undefined) return 'not-galera';
  if (status !== 'Primary') return 'non-primary';
  if (vars.get('wsrep_ready') !== 'ON') return 'not-ready';
  return LOCAL_STATES[vars.get('wsrep_local_state') ?? ''] ?? 'unknown';
}

export class NodeSelector {
  writer = -1;
  private switches = 0;
  private lastSwitchReason = '';
  private readonly status: NodeStatus[];
  /** Per node: since when (local ms) it has been healthy without a break; Infinity when not. */
  private readonly healthySince: number[];
  private readonly conns: Array<mysql.Connection | null>;
  private round: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly urls: string[],
    private readonly opts: SelectorOptions,
    private readonly onSwitch: SwitchListener,
    private readonly log: SelectorLog,
    private readonly clock: () => number = Date.now,
  ) {
    this.status = urls.map((u) => ({ node: nodeName(u), state: 'unknown', clusterSize: 0, flowControlPaused: 0, recvQueue: 0 }));
    this.healthySince = urls.map(() => Infinity);
    this.conns = urls.map(() => null);
  }

  start(): void {
    this.timer = setInterval(() => void this.refresh(), this.opts.probeIntervalMs);
    this.timer.unref();
  }

  /** Probe every node and re-decide; concurrent callers share one round. */
  refresh(): Promise<void> {
    if (this.round === null) {
      this.round = this.probeAll().finally(() => {
        this.round = null;
      });
    }
    return this.round;
  }

  stats(): SelectorStats {
    return { writer: this.writer, switches: this.switches, lastSwitchReason: this.lastSwitchReason, nodes: this.status.map((s) => ({ ...s })) };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    await Promise.all(this.conns.map((c) => c?.end().catch(() => c.destroy())));
  }

  private async probeAll(): Promise<void> {
    await Promise.all(this.urls.map((_, i) => this.probe(i)));
    if (!this.stopped) this.decide();
  }

  private async probe(i: number): Promise<void> {
    const s = this.status[i];
    try {
      let conn = this.conns[i];
      if (conn === null) {
        conn = await mysql.createConnection({ uri: this.urls[i], connectTimeout: this.opts.probeTimeoutMs });
        conn.on('error', () => undefined); // a broken probe connection is replaced next round
        this.conns[i] = conn;
      }
      const [rows] = await conn.query<RowDataPacket[]>({ sql: STATUS_SQL, timeout: this.opts.probeTimeoutMs });
      const vars = new Map<string, string>();
      for (const r of rows) vars.set(String(r.Variable_name).toLowerCase(), String(r.Value));
      s.state = stateOf(vars);
      s.clusterSize = Number(vars.get('wsrep_cluster_size') ?? 0);
      s.flowControlPaused = Number(vars.get('wsrep_flow_control_paused') ?? 0);
      s.recvQueue = Number(vars.get('wsrep_local_recv_queue') ?? 0);
    } catch (err) {
      const code = (err as { code?: string }).code;
      // A stopped (SIGSTOP) server still completes TCP handshakes in the kernel: it shows as a
      // timeout, not a refusal.
      s.state = code === 'PROTOCOL_SEQUENCE_TIMEOUT' || code === 'ETIMEDOUT' ? 'hung' : 'down';
      s.clusterSize = 0;
      s.recvQueue = 0;
      const conn = this.conns[i];
      this.conns[i] = null;
      conn?.destroy();
    }
    const now = this.clock();
    if (s.state !== 'synced') this.healthySince[i] = Infinity;
    else if (this.healthySince[i] === Infinity) this.healthySince[i] = now;
  }

  private decide(): void {
    const now = this.clock();
    const healthy = (i: number): boolean => this.healthySince[i] !== Infinity;
    const from = this.writer;
    let to = from;
    let reason = '';
    if (from >= 0 && healthy(from)) {
      for (let i = 0; i < from; i++) {
        if (healthy(i) && now - this.healthySince[i] >= this.opts.failbackMs) {
          to = i;
          reason = `failback: ${this.status[i].node} synced for ${now - this.healthySince[i]} ms`;
          break;
        }
      }
    } else {
      to = -1;
      for (let i = 0; i < this.urls.length; i++) {
        if (healthy(i)) {
          to = i;
          break;
        }
      }
      reason = from < 0 ? 'first healthy node' : `${this.status[from].node} is ${this.status[from].state}`;
    }
    if (to === from) return;
    this.writer = to;
    if (from >= 0) this.switches++;
    this.lastSwitchReason = reason;
    const data = {
      from: from < 0 ? null : this.status[from].node,
      to: to < 0 ? null : this.status[to].node,
      reason,
      nodes: this.status.map((s) => `${s.node}=${s.state}`).join(' '),
    };
    if (to < 0) this.log('error', 'no usable node in the shard group', data);
    else this.log(from < 0 ? 'info' : 'warn', from < 0 ? 'writer node chosen' : 'writer node switched', data);
    this.onSwitch(from, to, reason);
  }
}
