/**
 * Owns the messages between the gateway (main thread) and a shard actor (worker thread): one
 * discriminated union per direction, here and nowhere else. Relies on ops.ts. Pure: no I/O.
 *
 * The hot path is a bare Uint8Array: a msgpack array of Requests (gateway -> actor) or Replies
 * (actor -> gateway), gathered within one event-loop turn so one postMessage carries many ops.
 * Control messages are small plain objects; errors inside them are `{code, message}` data.
 */
import type { ErrorData } from './errors';
import type { ShardOwnership } from './slot-map';
import type { ScanRequest, ShardPage } from './listing';
import type { FeedRow } from './feed';

export interface ShardStats {
  shard: number;
  up: boolean;
  queued: number;
  readsInFlight: number;
  writesInFlight: number;
  readBatches: number;
  writeBatches: number;
  /** Ops over all read / write batches (the batch-size histograms' _sum). */
  readBatchOps: number;
  writeBatchOps: number;
  /** Histogram of batch sizes: counts per bucket, upper bounds in BATCH_SIZE_BUCKETS. */
  readBatchSizes: number[];
  writeBatchSizes: number[];
  retries: number;
  /** Write batches whose COMMIT was in doubt and is not settled yet; their keys are held. */
  inDoubt: number;
  expiry: ExpiryStats;
  /** Writer node and node health of a Galera shard group; null for a single server. */
  group: GroupStats | null;
}

export interface GroupStats {
  /** Index of the writer node in the shard's node list; -1 when no node is usable. */
  writer: number;
  /** Writer switches since the actor started. */
  switches: number;
  lastSwitchReason: string;
  nodes: Array<{ node: string; state: string; clusterSize: number; flowControlPaused: number; recvQueue: number }>;
}

export interface ExpiryStats {
  isExpirer: boolean;
  expired: number;
  wheelSize: number;
  backlog: number;
  /** Histogram of expiry lag in ms: counts per bucket, upper bounds in EXPIRY_LAG_BUCKETS_MS. */
  lag: number[];
  lagSumMs: number;
}

export const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
export const EXPIRY_LAG_BUCKETS_MS = [10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000];

export type ToActor =
  | Uint8Array
  | { type: 'stats'; id: number }
  | { type: 'ownership'; id: number }
  | { type: 'bootstrap'; id: number; shard: number; shardCount: number; slotRanges: string }
  /** A page of one key range (listing, SCAN, KEYS); answered by 'scanned' with the same id. */
  | { type: 'scan'; id: number; request: ScanRequest }
  /** The live keys of every slot the shard serves (DBSIZE); answered by 'counted'. */
  | { type: 'count'; id: number }
  /** Follow the shard's change feed (this gateway has watchers on it) or stop following it. */
  | { type: 'feedWatch'; on: boolean }
  /** A catch-up read of kv_feed ids in (after, upto]; answered by 'feedRange' with the same id. */
  | { type: 'feedRange'; id: number; after: number; upto: number; limit: number }
  /** Redis WAIT on a Galera shard: nodes besides one that committed what the group had (replica-wait.ts); answered by 'waited'. */
  | { type: 'wait'; id: number; replicas: number; timeoutMs: number }
  | { type: 'drain' }
  | { type: 'stop' };

export type FromActor =
  | Uint8Array
  | { type: 'ready'; shardIndex: number | null }
  | { type: 'ownership'; id: number; ownership?: ShardOwnership; error?: ErrorData }
  | { type: 'bootstrapped'; id: number; error?: ErrorData }
  | { type: 'health'; up: boolean; error?: ErrorData }
  | { type: 'stats'; id: number; stats: ShardStats }
  | { type: 'scanned'; id: number; page?: ShardPage; error?: ErrorData }
  | { type: 'counted'; id: number; count?: number; served?: Uint8Array; error?: ErrorData }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; msg: string; data?: Record<string, unknown> }
  | { type: 'fatal'; error: ErrorData }
  /**
   * Rows the tailer found (FeedRow[] as msgpack, transferred; null: none), each once, ascending
   * id, and its low-water mark:
   * every id <= low was delivered or is dead. `start` on the first message after feedWatch on:
   * nothing at or below `floor` will be delivered by this run of the tailer.
   */
  | { type: 'feed'; rows: Uint8Array | null; low: number; start: { floor: number } | null }
  | { type: 'feedRange'; id: number; rows?: FeedRow[]; trimmed?: number; error?: ErrorData }
  | { type: 'waited'; id: number; count?: number; error?: ErrorData }
  | { type: 'drained' }
  | { type: 'stopped' };

/** Everything an actor needs, resolved once by the gateway and passed as workerData. */
/** How an actor's MySQL connections use TLS. The CA's PEM text travels in workerData (read once). */
export interface MysqlTls {
  /** PEM CA certificates; null = Node's built-in root CAs. */
  ca: string | null;
  /** Verify the certificate chain and that it names the host in the shard URL. */
  verify: boolean;
}

export interface ActorConfig {
  /** The gateway's handle for this actor (logs, metrics); the shard's own index is in kv_shard. */
  shard: number;
  /** The shard's entry as configured: one URL, or a Galera cluster's node URLs joined by `|`. */
  url: string;
  /** The node URLs of `url` (one for a single server). */
  nodes: string[];
  /** How long a write to a fenced (moving) slot is held before it is answered KV_ERR_SLOT_MOVING. */
  slotHoldMs: number;
  batching: boolean;
  maxBatchOps: number;
  maxBatchBytes: number;
  readsInFlight: number;
  writesInFlight: number;
  queryTimeoutMs: number;
  /** The actor answers every op within this many ms of receiving it (a little under KVSQL_OP_DEADLINE_MS). */
  opDeadlineMs: number;
  maxRetries: number;
  /** KVSQL_MAX_VALUE_BYTES: a script's SETRANGE may not make a value longer. */
  maxValueBytes: number;
  /** TLS to the shard (KVSQL_MYSQL_TLS); null = clear text. */
  tls: MysqlTls | null;
  /** The change feed (KVSQL_FEED*); absent: off. */
  feed?: {
    enabled: boolean;
    pollMs: number;
    retentionMs: number;
    maxRows: number;
    maxBytes: number;
  };
  expiry: {
    enabled: boolean;
    tickMs: number;
    horizonMs: number;
    reapBatch: number;
    reapsInFlight: number;
    maxWheelKeys: number;
    lockRetryMs: number;
  };
}
