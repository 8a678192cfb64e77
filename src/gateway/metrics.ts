/**
 * Owns the gateway's counters and their Prometheus text rendering. Relies on port-messages for
 * the actors' stats shape. Counting is a few array writes per request; rendering happens only on
 * a scrape of /metrics.
 */
import { readdirSync } from 'node:fs';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { BATCH_SIZE_BUCKETS, EXPIRY_LAG_BUCKETS_MS, type ShardStats } from '../protocol/port-messages';
import type { MoveProgress } from '../protocol/slot-map';

/** The Content-Type of /metrics: Prometheus text format 0.0.4, UTF-8. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const LATENCY_BUCKETS_S = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

class Histogram {
  readonly counts = new Array<number>(LATENCY_BUCKETS_S.length + 1).fill(0);
  sum = 0;
  count = 0;
  observe(v: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS_S.length && v > LATENCY_BUCKETS_S[i]) i++;
    this.counts[i]++;
    this.sum += v;
    this.count++;
  }
}

export class Metrics {
  private readonly requests = new Map<string, number>();
  private readonly latency = new Map<string, Histogram>();
  private wsConnections = 0;
  /** Open Redis-protocol connections, read at scrape time. */
  redisConnections: () => number = () => 0;
  /** Event-loop delay of the main thread, sampled every 10 ms, reset at each scrape. */
  private readonly loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });

  constructor() {
    this.loopDelay.enable();
  }

  close(): void {
    this.loopDelay.disable();
  }

  observe(api: 'http' | 'ws' | 'redis', op: string, status: number, seconds: number): void {
    const key = `${api}\u0000${op}\u0000${status}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    const lk = `${api}\u0000${op}`;
    let h = this.latency.get(lk);
    if (h === undefined) {
      h = new Histogram();
      this.latency.set(lk, h);
    }
    h.observe(seconds);
  }

  wsOpened(): void {
    this.wsConnections++;
  }

  wsClosed(): void {
    this.wsConnections--;
  }

  /** Hand-offs between the main thread and each shard's actor (ops per frame = ops / frames). */
  renderHandoffs(shards: Array<{ framesSent: number; opsSent: number; replyFrames: number }>): string {
    const out = [
      '# HELP kvsql_port_frames_total Frames handed between the main thread and a shard actor, by direction.',
      '# TYPE kvsql_port_frames_total counter',
    ];
    shards.forEach((h, i) =>
      out.push(
        `kvsql_port_frames_total{shard="${i}",direction="to_actor"} ${h.framesSent}`,
        `kvsql_port_frames_total{shard="${i}",direction="from_actor"} ${h.replyFrames}`,
      ),
    );
    out.push('# HELP kvsql_port_ops_total Operations handed to a shard actor (in the to_actor frames).', '# TYPE kvsql_port_ops_total counter');
    shards.forEach((h, i) => out.push(`kvsql_port_ops_total{shard="${i}"} ${h.opsSent}`));
    return out.join('\n') + '\n';
  }

  /** The slot map this gateway routes by, and the progress of the store's slot mover. */
  renderSlots(s: { epoch: number; moving: number; redirects: number; refreshes: number; progress: MoveProgress | null }): string {
    const out: string[] = [];
    const gauge = (name: string, help: string, v: number, type = 'gauge') => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${v}`);
    gauge('kvsql_slot_map_epoch', "Highest slot epoch in this gateway's map (grows by one per move of a slot).", s.epoch);
    gauge('kvsql_slots_moving', 'Slots in the middle of a move (copying, fenced or importing) at the last map refresh.', s.moving);
    gauge('kvsql_slot_redirects_total', 'Ops re-routed because a shard no longer owned their slot.', s.redirects, 'counter');
    gauge('kvsql_slot_map_refreshes_total', 'Slot map reads from the shards.', s.refreshes, 'counter');
    const p = s.progress;
    if (p) {
      const secs = Math.max(0.001, (p.updatedAt - p.startedAt) / 1000);
      const frac = p.slotsTotal === 0 ? 1 : p.slotsDone / p.slotsTotal;
      gauge('kvsql_move_running', 'A slot mover is running (1) or last finished or failed (0).', p.state === 'running' ? 1 : 0);
      gauge('kvsql_move_slots_total', 'Slots the current (or last) rebalance moves.', p.slotsTotal);
      gauge('kvsql_move_slots_done', 'Slots it has moved so far.', p.slotsDone);
      gauge('kvsql_move_rows_copied', 'Rows it has copied (including catch-up).', p.rowsCopied);
      gauge('kvsql_move_rows_per_second', 'Its copy rate so far.', Math.round(p.rowsCopied / secs));
      gauge('kvsql_move_eta_seconds', 'Estimated seconds left.', p.state === 'running' && frac > 0 ? Math.round((secs / frac) * (1 - frac)) : 0);
      gauge('kvsql_move_write_pause_p99_ms', 'p99 of the write pause per moved range so far.', p.pauseP99Ms);
    }
    return out.join('\n') + '\n';
  }

  render(stats: Array<ShardStats | null>, depths: number[], rejected: number): string {
    const out: string[] = [];
    out.push('# HELP kvsql_requests_total Requests answered, by API, operation and status.');
    out.push('# TYPE kvsql_requests_total counter');
    for (const [k, v] of this.requests) {
      const [api, op, status] = k.split('\u0000');
      out.push(`kvsql_requests_total{api="${api}",op="${op}",status="${status}"} ${v}`);
    }
    out.push('# HELP kvsql_request_duration_seconds Time from request to reply, by API and operation.');
    out.push('# TYPE kvsql_request_duration_seconds histogram');
    for (const [k, h] of this.latency) {
      const [api, op] = k.split('\u0000');
      let cum = 0;
      for (let i = 0; i < LATENCY_BUCKETS_S.length; i++) {
        cum += h.counts[i];
        out.push(`kvsql_request_duration_seconds_bucket{api="${api}",op="${op}",le="${LATENCY_BUCKETS_S[i]}"} ${cum}`);
      }
      out.push(`kvsql_request_duration_seconds_bucket{api="${api}",op="${op}",le="+Inf"} ${h.count}`);
      out.push(`kvsql_request_duration_seconds_sum{api="${api}",op="${op}"} ${h.sum}`);
      out.push(`kvsql_request_duration_seconds_count{api="${api}",op="${op}"} ${h.count}`);
    }
    out.push('# HELP kvsql_websocket_connections Open WebSocket connections.');
    out.push('# TYPE kvsql_websocket_connections gauge');
    out.push(`kvsql_websocket_connections ${this.wsConnections}`);
    out.push('# HELP kvsql_redis_connections Open Redis-protocol connections.');
    out.push('# TYPE kvsql_redis_connections gauge');
    out.push(`kvsql_redis_connections ${this.redisConnections()}`);
    out.push('# HELP kvsql_shard_queue_depth Operations sent to a shard actor and not yet answered.');
    out.push('# TYPE kvsql_shard_queue_depth gauge');
    depths.forEach((d, i) => out.push(`kvsql_shard_queue_depth{shard="${i}"} ${d}`));

    const gauge = (name: string, help: string, pick: (s: ShardStats) => number) => {
      out.push(`# HELP ${name} ${help}`);
      out.push(`# TYPE ${name} gauge`);
      for (const s of stats) if (s) out.push(`${name}{shard="${s.shard}"} ${pick(s)}`);
    };
    const counter = (name: string, help: string, pick: (s: ShardStats) => number) => {
      out.push(`# HELP ${name} ${help}`);
      out.push(`# TYPE ${name} counter`);
      for (const s of stats) if (s) out.push(`${name}{shard="${s.shard}"} ${pick(s)}`);
    };
    gauge('kvsql_shard_up', '1 when the shard answers, 0 when it is down.', (s) => (s.up ? 1 : 0));
    gauge('kvsql_shard_actor_queued', 'Operations held by the shard actor (waiting, ready or running).', (s) => s.queued);
    gauge('kvsql_shard_in_doubt_batches', 'Write batches whose COMMIT outcome is unknown and not yet settled; their keys are held.', (s) => s.inDoubt);
    counter('kvsql_shard_retries_total', 'Batches retried after deadlock, lock wait timeout or lost connection.', (s) => s.retries);
    const batchHist = (name: string, kind: string, pick: (s: ShardStats) => number[], total: (s: ShardStats) => number, ops: (s: ShardStats) => number) => {
      out.push(`# HELP ${name} Operations per ${kind} batch.`);
      out.push(`# TYPE ${name} histogram`);
      for (const s of stats) {
        if (!s) continue;
        const c = pick(s);
        let cum = 0;
        BATCH_SIZE_BUCKETS.forEach((b, i) => {
          cum += c[i];
          out.push(`${name}_bucket{shard="${s.shard}",le="${b}"} ${cum}`);
        });
        out.push(`${name}_bucket{shard="${s.shard}",le="+Inf"} ${cum + c[BATCH_SIZE_BUCKETS.length]}`);
        out.push(`${name}_sum{shard="${s.shard}"} ${ops(s)}`);
        out.push(`${name}_count{shard="${s.shard}"} ${total(s)}`);
      }
    };
    batchHist(
      'kvsql_read_batch_size',
      'read',
      (s) => s.readBatchSizes,
      (s) => s.readBatches,
      (s) => s.readBatchOps,
    );
    batchHist(
      'kvsql_write_batch_size',
      'write',
      (s) => s.writeBatchSizes,
      (s) => s.writeBatches,
      (s) => s.writeBatchOps,
    );
    gauge('kvsql_expiry_is_expirer', "1 when this gateway holds the shard's expirer role.", (s) => (s.expiry.isExpirer ? 1 : 0));
    counter('kvsql_expired_keys_total', 'Expired rows physically deleted by this gateway.', (s) => s.expiry.expired);
    gauge('kvsql_expiry_wheel_keys', 'Keys held in the expiry wheel.', (s) => s.expiry.wheelSize);
    gauge('kvsql_expiry_backlog', 'Keys known to be due and not yet deleted (due in wheel + reaps in flight + last full sweep page).', (s) => s.expiry.backlog);
    out.push('# HELP kvsql_expiry_lag_seconds Time from expires_at to physical delete.');
    out.push('# TYPE kvsql_expiry_lag_seconds histogram');
    for (const s of stats) {
      if (!s) continue;
      let cum = 0;
      EXPIRY_LAG_BUCKETS_MS.forEach((b, i) => {
        cum += s.expiry.lag[i];
        out.push(`kvsql_expiry_lag_seconds_bucket{shard="${s.shard}",le="${b / 1000}"} ${cum}`);
      });
      cum += s.expiry.lag[EXPIRY_LAG_BUCKETS_MS.length];
      out.push(`kvsql_expiry_lag_seconds_bucket{shard="${s.shard}",le="+Inf"} ${cum}`);
      out.push(`kvsql_expiry_lag_seconds_sum{shard="${s.shard}"} ${s.expiry.lagSumMs / 1000}`);
      out.push(`kvsql_expiry_lag_seconds_count{shard="${s.shard}"} ${cum}`);
    }
    renderGroups(out, stats);
    out.push('# HELP kvsql_rejected_total Operations answered 503 by the gateway without reaching a shard actor (queue full, shard down).');
    out.push('# TYPE kvsql_rejected_total counter');
    out.push(`kvsql_rejected_total ${rejected}`);
    this.renderProcess(out);
    return out.join('\n') + '\n';
  }

  /** Process and event-loop metrics, named as prom-client's defaults so dashboards work as is. */
  private renderProcess(out: string[]): void {
    const metric = (name: string, type: string, help: string, value: number) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`);
    };
    const cpu = process.cpuUsage();
    const mem = process.memoryUsage();
    metric('process_cpu_user_seconds_total', 'counter', 'User CPU time of the gateway process (all threads).', cpu.user / 1e6);
    metric('process_cpu_system_seconds_total', 'counter', 'System CPU time of the gateway process (all threads).', cpu.system / 1e6);
    metric('process_cpu_seconds_total', 'counter', 'User and system CPU time of the gateway process.', (cpu.user + cpu.system) / 1e6);
    metric('process_resident_memory_bytes', 'gauge', 'Resident memory of the gateway process (actors included).', mem.rss);
    metric('process_start_time_seconds', 'gauge', 'Start time of the process, unix seconds.', Math.round(Date.now() / 1000 - process.uptime()));
    let fds = NaN;
    try {
      fds = readdirSync('/proc/self/fd').length;
    } catch {
      /* not Linux */
    }
    if (Number.isFinite(fds)) metric('process_open_fds', 'gauge', 'Open file descriptors (sockets included).', fds);
    metric('nodejs_heap_size_used_bytes', 'gauge', 'V8 heap used by the main thread.', mem.heapUsed);
    metric('nodejs_heap_size_total_bytes', 'gauge', 'V8 heap size of the main thread.', mem.heapTotal);
    metric('nodejs_external_memory_bytes', 'gauge', 'Memory of Buffers and other objects outside the V8 heap.', mem.external);
    const d = this.loopDelay;
    const s = (ns: number) => (Number.isFinite(ns) ? ns / 1e9 : 0);
    metric('nodejs_eventloop_lag_mean_seconds', 'gauge', 'Main-thread event-loop delay since the last scrape: mean.', s(d.mean));
    metric('nodejs_eventloop_lag_p50_seconds', 'gauge', 'Main-thread event-loop delay since the last scrape: median.', s(d.percentile(50)));
    metric('nodejs_eventloop_lag_p99_seconds', 'gauge', 'Main-thread event-loop delay since the last scrape: 99th percentile.', s(d.percentile(99)));
    metric('nodejs_eventloop_lag_max_seconds', 'gauge', 'Main-thread event-loop delay since the last scrape: maximum.', s(d.max));
    d.reset();
  }
}

/** Galera shard groups: the writer node, each node's state and replication queues, switches. */
function renderGroups(out: string[], stats: Array<ShardStats | null>): void {
  const groups = stats.filter((s): s is ShardStats & { group: NonNullable<ShardStats['group']> } => s !== null && s.group !== null);
  if (groups.length === 0) return;
  out.push('# HELP kvsql_shard_writer_node 1 for the node of the shard group this gateway writes through.');
  out.push('# TYPE kvsql_shard_writer_node gauge');
  for (const s of groups)
    s.group.nodes.forEach((n, i) => out.push(`kvsql_shard_writer_node{shard="${s.shard}",node="${n.node}"} ${i === s.group.writer ? 1 : 0}`));
  out.push("# HELP kvsql_shard_writer_switches_total Times this gateway moved a shard's writer to another node (reason in the log).");
  out.push('# TYPE kvsql_shard_writer_switches_total counter');
  for (const s of groups) out.push(`kvsql_shard_writer_switches_total{shard="${s.shard}"} ${s.group.switches}`);
  out.push('# HELP kvsql_galera_node_state 1 for the state each node was last seen in (synced, donor, joining, joined, non-primary, not-ready, down, hung).');
  out.push('# TYPE kvsql_galera_node_state gauge');
  for (const s of groups) for (const n of s.group.nodes) out.push(`kvsql_galera_node_state{shard="${s.shard}",node="${n.node}",state="${n.state}"} 1`);
  const perNode = (name: string, help: string, pick: (n: NonNullable<ShardStats['group']>['nodes'][number]) => number): void => {
    out.push(`# HELP ${name} ${help}`);
    out.push(`# TYPE ${name} gauge`);
    for (const s of groups) for (const n of s.group.nodes) out.push(`${name}{shard="${s.shard}",node="${n.node}"} ${pick(n)}`);
  };
  perNode('kvsql_galera_cluster_size', 'wsrep_cluster_size as seen by the node (0 when it does not answer).', (n) => n.clusterSize);
  perNode(
    'kvsql_galera_flow_control_paused',
    'wsrep_flow_control_paused: fraction of time replication was paused by flow control.',
    (n) => n.flowControlPaused,
  );
  perNode('kvsql_galera_recv_queue', 'wsrep_local_recv_queue: write-sets received by the node and not yet applied.', (n) => n.recvQueue);
}
