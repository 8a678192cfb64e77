/**
 * Owns what the parts of one shard actor share: its config, store, clock and log, the key
 * scheduler, the outbox, the shard's flags (up, stopping, stopped), the batch slots in use, the
 * batch stats, and the one retry policy. Relies on KeyScheduler, Outbox and mysql-errors. Must not
 * decide anything itself: the intake and flush policy (actor.ts), the read path, the write path,
 * the reap lane, the deadlines and the health probe each decide their part and meet here.
 *
 *   ShardActor ──> ActorState ──> scheduler, out (Outbox), flags, slots, stats, withRetries
 *       │              ^
 *       ├── ReadPath ──┤   deadlines.ts   BatchWatch    admitted ops, running batches, abandon
 *       ├── WritePath ─┤   slot-refusals.ts             wrong-shard and fenced slots
 *       ├── ReapLane ──┤   health.ts      ShardHealth   probe, init, clock offset
 *       └── ...        └── hooks: afterBatch, requestFlush (the actor's), probe (health's)
 */
import { errLog } from '../protocol/errors';
import { BATCH_SIZE_BUCKETS, type ActorConfig } from '../protocol/port-messages';
import type { Log } from './expirer';
import type { FeedTailer } from './feed-tailer';
import type { KeyScheduler } from './key-scheduler';
import { classify } from './mysql-errors';
import type { Outbox } from './outbox';
import type { ShardStore, TxControl } from './shard-store';

/** What the parts call back into: set once by the actor, never per op. */
export interface ActorHooks {
  /** A batch (or a scan) ended: flush replies, start what is ready, wake drain waiters. */
  afterBatch(): void;
  /** Ops became ready: flush now if a batch is full, else on setImmediate (actor.ts). */
  requestFlush(): void;
  /** Ask the shard whether it is up (health.ts); a no-op while a probe runs. */
  probe(): void;
}

export type Attempted<T> = { ok: true; value: T } | { ok: false; error: unknown };

export class ActorState {
  /** False while the shard is down: every new op gets 503 at once. */
  up = true;
  /** Draining or stopped: new work is refused. */
  stopping = false;
  stopped = false;
  /** The shard's clock minus the process clock, measured by the health probe. */
  clockOffset = 0;
  /** When a batch last succeeded (local clock): a probe that failed before it is stale news. */
  lastOkAt = 0;
  /** This shard's index (kv_shard), known after init; null while the database is not a member. */
  shardIndex: number | null = null;
  /**
   * The store's hash rule (kv_shard.hash_rule), known after init or bootstrap: every slot this
   * actor computes (ownership checks, the slot column) uses it, as every gateway's actors do.
   */
  hashTags = true;
  /** Read slots in use (read batches and scans) and user write slots in use. */
  readsInFlight = 0;
  writesInFlight = 0;
  readonly stats = {
    readBatches: 0,
    writeBatches: 0,
    readBatchOps: 0,
    writeBatchOps: 0,
    retries: 0,
    abandoned: 0,
    readBatchSizes: new Array<number>(BATCH_SIZE_BUCKETS.length + 1).fill(0),
    writeBatchSizes: new Array<number>(BATCH_SIZE_BUCKETS.length + 1).fill(0),
  };
  /** KVSQL_FEED: writes and reaps log to kv_feed. */
  readonly feedOn: boolean;

  constructor(
    readonly cfg: ActorConfig,
    readonly store: ShardStore,
    readonly scheduler: KeyScheduler,
    readonly out: Outbox,
    readonly log: Log,
    /** The process clock; now() corrects it by the shard's offset. Injected for tests. */
    readonly localClock: () => number,
    private readonly hooks: ActorHooks,
    /** Follows kv_feed for the gateway's watchers (null: KVSQL_FEED off, or no tailer): kicked after a write that logged. */
    readonly feed: FeedTailer | null,
  ) {
    this.feedOn = cfg.feed?.enabled === true;
  }

  /** The shard's clock, estimated locally: process clock plus the measured offset. */
  now(): number {
    return this.localClock() + this.clockOffset;
  }

  afterBatch(): void {
    this.hooks.afterBatch();
  }

  requestFlush(): void {
    this.hooks.requestFlush();
  }

  /** A statement failed: a lost connection triggers a probe, a fatal error is logged. */
  onStoreError(err: unknown): void {
    if (classify(err) === 'connection') {
      this.log('warn', 'shard connection error', { err: errLog(err) });
      this.hooks.probe();
    } else if (classify(err) === 'fatal') {
      this.log('error', 'shard statement failed', { err: errLog(err) });
    }
  }

  /**
   * Run `attempt` until it succeeds, `retryable` refuses its error, or KVSQL_MAX_RETRIES retries (with
   * backoff) are spent. The one retry policy of reads, writes and reaps; each passes its predicate.
   */
  async withRetries<T>(attempt: () => Promise<T>, retryable: (err: unknown) => boolean, ctl?: TxControl): Promise<Attempted<T>> {
    for (let n = 0; ; n++) {
      try {
        return { ok: true, value: await attempt() };
      } catch (err) {
        if (n >= this.cfg.maxRetries || !retryable(err) || ctl?.abandoned) return { ok: false, error: err };
        this.stats.retries++;
        await backoff(n);
      }
    }
  }
}

/** Counts a batch of `n` ops in its size bucket. */
export function observe(hist: number[], n: number): void {
  let i = 0;
  while (i < BATCH_SIZE_BUCKETS.length && n > BATCH_SIZE_BUCKETS[i]) i++;
  hist[i]++;
}

function backoff(attempt: number): Promise<void> {
  const ms = Math.min(200, 5 * 2 ** attempt) * (0.5 + Math.random());
  return new Promise((r) => setTimeout(r, ms));
}
