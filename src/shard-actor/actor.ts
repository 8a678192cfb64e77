/**
 * Owns one shard's work: accepts operations from the gateway, keeps per-key order (KeyScheduler),
 * gathers ready operations into batches (one SELECT for reads, one transaction for writes), runs a
 * bounded number of batches at once, retries what MySQL asks to retry, answers every operation
 * exactly once, and watches the shard's health. Relies on ShardStore, KeyScheduler, write-plan,
 * VersionAllocator and Expirer. Must not touch sockets or HTTP: replies leave through `send`.
 *
 *   gateway frame ─> submit ─> KeyScheduler ─> ready reads ──> readLive (≤ readsInFlight)
 *                                           └─> ready chains ─> transact (≤ writesInFlight)
 *                               replies <─ outbox (one postMessage per completed batch)
 *
 * Deadline (rule 5): every user op gets `deadline = arrival + opDeadlineMs` and is appended to
 * `admitted` (arrival order = deadline order). A 50 ms sweep pops its head: an op past its
 * deadline and still unanswered is answered there and then, however MySQL behaves:
 *
 *   waiting (key queue or ready queue)  -> 503 SHARD_UNAVAILABLE, marked answered, pruned before
 *                                          its batch starts: never applied
 *   in a read batch                     -> the batch is abandoned: 503 SHARD_UNAVAILABLE
 *   in a write batch, COMMIT not sent   -> abandoned: 503 SHARD_UNAVAILABLE; COMMIT is never
 *                                          sent (TxControl), the connection is destroyed: rollback
 *   in a write batch, COMMIT sent       -> abandoned: 500 OUTCOME_UNKNOWN; the connection is
 *                                          destroyed and the batch's keys STAY held in the
 *                                          scheduler until the server has settled that
 *                                          transaction (store.settle: its thread is gone), so
 *                                          no later write to those keys can overtake a COMMIT
 *                                          that may still apply
 *
 * An abandoned batch frees its slot at once (its statement may never return), triggers a health
 * probe, and a shard found down abandons every running batch the same way.
 *
 * Reaps (the expirer's conditional deletes) take one of two paths, both live: a chain of reaps
 * only runs in the reap lane (runReaps: one `DELETE ... AND expires_at <= NOW(3)` in autocommit,
 * one batch at a time, never holding a user write slot); a reap that the scheduler chained with
 * user writes on its key runs inside their transaction (runWrites, decided by planWrites), so the
 * user writes never wait for the reap lane. key-scheduler.ts says when each happens.
 *
 * Batching: a flush runs on setImmediate after ops arrive (so everything that arrived in one
 * event-loop turn shares a batch) or at once when maxBatchOps are ready; while all batch slots are
 * busy, ready ops accumulate and the next batch is larger. With batching off every batch is one op.
 */
import {
  errorReply,
  getHit,
  needsValue,
  notFound,
  OP_GET,
  OP_REAP,
  reapDeleted,
  replyOf,
  ttlHit,
  type OpCode,
  type Reply,
  type Request,
} from '../protocol/ops';
import { errLog, type ErrorData } from '../protocol/errors';
import { BATCH_SIZE_BUCKETS, type ActorConfig, type ShardStats } from '../protocol/port-messages';
import { classify, StoreError, toKvError } from './mysql-errors';
import { KeyScheduler, type Chain } from './key-scheduler';
import type { Batch, PendingOp } from './pending-op';
import {
  MAX_REAP_KEYS,
  newTxControl,
  type LiveRow,
  type LockedRow,
  type RowMutations,
  type ShardIdentity,
  type ShardStore,
  type SlotStates,
  type TxControl,
} from './shard-store';
import { SLOT_COPYING, SLOT_FENCED, SLOT_OWNED, slotOf, type ShardOwnership } from '../protocol/slot-map';
import { Fifo } from './fifo';
import { VersionAllocator, type Versions } from './version-allocator';
import { planWrites, versionDemand, type WritePlan } from './write-plan';
import { Expirer, type Log } from './expirer';
import { ScanLane, type ScanAnswer } from './scan-lane';
import { choose, comparesHold, scriptOp, txnChains, txnOp, txnReply } from './txn-plan';
import { OP_TXN, txnDone, unpackEval, unpackTxn } from '../protocol/txn';
import { OP_EVAL } from '../protocol/ops';
import { createScriptRunner, type ScriptRunner } from './lua-sandbox';
import { runScript, SCRIPT_WRITE_COMMANDS } from './script-session';
import type { ScanRequest } from '../protocol/listing';
import type { FeedRow } from '../protocol/feed';
import { FeedTailer, type PostFeed } from './feed-tailer';

export type SendReplies = (replies: Reply[]) => void;
export type HealthListener = (up: boolean, error?: ErrorData) => void;

/** Hard cap on ops held by the actor; the gateway's own bound is lower, this guards bugs. */
const HARD_QUEUE_LIMIT = 1_000_000;
const PROBE_INTERVAL_MS = 1000;
const CLOCK_SYNC_MS = 5000;
/** Reply frames to the gateway are cut at about this many value bytes. */
const OUTBOX_FLUSH_BYTES = 4 * 1024 * 1024;
/** Resolution of the op deadline sweep. */
const DEADLINE_TICK_MS = 50;
/** A batch running longer than this triggers a health probe (a hung server is found early). */
const STALL_PROBE_MS = 1000;
/** How far past a wheel slot's end the expiry tick fires (see scheduleExpiryTick). */
const EXPIRY_TICK_MARGIN_MS = 2;
/** Least time between two change-feed retention steps (each one bounded page). */
const FEED_TRIM_INTERVAL_MS = 1000;
/** Retry interval of settling an in-doubt COMMIT while the server cannot be asked. */
const SETTLE_RETRY_MS = 500;

export class ShardActor {
  private readonly scheduler: KeyScheduler;
  private readonly versions: VersionAllocator;
  readonly expirer: Expirer;
  /** Key-range scans and counts: a lane of their own (scan-lane.ts). */
  private readonly scans: ScanLane;
  /** Follows kv_feed for the gateway's watchers (null: KVSQL_FEED off). */
  readonly feed: FeedTailer | null = null;
  private readonly feedOn: boolean;
  private trimming = false;
  private lastTrim = -Infinity;
  private outbox: Reply[] = [];
  private outboxBytes = 0;
  private readsInFlight = 0;
  private writesInFlight = 0;
  /** A reap statement is running (the reap lane runs one at a time). */
  private reapRunning = false;
  private flushScheduled = false;
  private up = true;
  private probing = false;
  private initialized = false;
  private stopping = false;
  private stopped = false;
  private clockOffset = 0;
  private nextReapId = -1;
  private readonly timers: NodeJS.Timeout[] = [];
  /** Every user op accepted and not yet popped by the deadline sweep, in arrival order. */
  private readonly admitted = new Fifo<PendingOp>();
  private readonly running = new Set<Batch>();
  /** Write batches whose COMMIT outcome is being settled (their keys stay held). */
  private settling = 0;
  /** When a batch last succeeded (local clock): a probe that failed before it is stale news. */
  private lastOkAt = 0;
  private drainWaiters: Array<() => void> = [];
  /** This shard's index (kv_shard), known after init; null while the database is not a member. */
  shardIndex: number | null = null;
  /** Chains (and transactions) held by a fence: when each was first held. */
  private readonly heldSince = new Map<Chain | PendingOp, number>();
  private filling = false;
  private readonly stats = {
    readBatches: 0,
    writeBatches: 0,
    readBatchOps: 0,
    writeBatchOps: 0,
    retries: 0,
    abandoned: 0,
    readBatchSizes: new Array<number>(BATCH_SIZE_BUCKETS.length + 1).fill(0),
    writeBatchSizes: new Array<number>(BATCH_SIZE_BUCKETS.length + 1).fill(0),
  };
  private readonly maxBatchOps: number;
  /** Ready ops (or chains) needed to open a second, third... batch of a kind in parallel. */
  private readonly parallelThreshold: number;
  private readonly maxBatchBytes: number;
  /** Keys per reap statement: the configured page, at most MAX_REAP_KEYS (see there). */
  private readonly reapBatchKeys: number;

  constructor(
    private readonly cfg: ActorConfig,
    private readonly store: ShardStore,
    private readonly send: SendReplies,
    private readonly onHealth: HealthListener,
    private readonly log: Log,
    /** The process clock; the actor corrects it by the shard's offset. Injected for tests. */
    private readonly localClock: () => number = Date.now,
    /** Where the change-feed tailer sends what it finds (absent: no tailer). */
    postFeed?: PostFeed,
  ) {
    this.feedOn = cfg.feed?.enabled === true;
    if (this.feedOn && postFeed !== undefined) this.feed = new FeedTailer(store, cfg.feed!.pollMs, postFeed, log);
    this.maxBatchOps = cfg.batching ? cfg.maxBatchOps : 1;
    this.maxBatchBytes = cfg.batching ? cfg.maxBatchBytes : Infinity;
    this.reapBatchKeys = Math.min(cfg.expiry.reapBatch, MAX_REAP_KEYS);
    this.parallelThreshold = cfg.batching ? Math.max(1, Math.floor(cfg.maxBatchOps / 8)) : 1;
    this.scheduler = new KeyScheduler(cfg.batching ? cfg.maxBatchOps : 1);
    this.versions = new VersionAllocator((size, above) => this.store.reserveVersionBlock(size, above));
    this.expirer = new Expirer(cfg.expiry, store, (key, dueAt) => this.submitReap(key, dueAt), log, this.now());
    this.scans = new ScanLane(store, cfg.shard, cfg.opDeadlineMs, {
      take: () => {
        if (this.readsInFlight >= this.cfg.readsInFlight) return false;
        this.readsInFlight++;
        return true;
      },
      give: () => {
        this.readsInFlight--;
        this.afterBatch();
      },
    });
  }

  /**
   * A page of one key range (`request`), or the count of every served key (null): answered
   * once, within opDeadlineMs, at once with 503 while the shard is down or stopping.
   */
  scan(request: ScanRequest | null, answer: (a: ScanAnswer) => void): void {
    if (!this.up || this.stopping) {
      answer({
        error: {
          code: this.stopping ? 'KV_ERR_SHUTTING_DOWN' : 'KV_ERR_SHARD_UNAVAILABLE',
          message: `shard ${this.cfg.shard} is ${this.stopping ? 'stopping' : 'unavailable'}`,
        },
      });
      return;
    }
    this.scans.submit(request, answer);
  }

  /** The shard's clock, estimated locally: process clock plus the measured offset. */
  now(): number {
    return this.localClock() + this.clockOffset;
  }

  /**
   * Applies the schema and checks the shard's identity. A shard that cannot be reached starts
   * "down" (its keys get 503) and is initialised by the probe when it comes back; a shard that
   * answers with the wrong identity is fatal.
   */
  async start(): Promise<void> {
    try {
      await this.init();
    } catch (err) {
      if (classify(err) !== 'connection') throw err;
      this.up = false;
      this.log('error', 'shard is down at start', { err: errLog(err) });
      this.onHealth(false, { code: 'KV_ERR_SHARD_UNAVAILABLE', message: String((err as Error)?.message ?? err) });
    }
    // While up: every 5 s, measure the clock offset; the same query is the health probe, so a
    // shard that turned read-only (a failover) is marked down even if no write failed yet.
    this.timers.push(setInterval(() => void (this.up ? this.probe() : undefined), CLOCK_SYNC_MS));
    this.timers.push(setInterval(() => this.probeIfDown(), PROBE_INTERVAL_MS));
    this.timers.push(setInterval(() => this.sweepDeadlines(), DEADLINE_TICK_MS));
    for (const t of this.timers) t.unref();
    if (this.cfg.expiry.enabled) this.scheduleExpiryTick();
  }

  /** A frame of requests from the gateway. */
  receive(requests: Request[]): void {
    const now = this.localClock();
    for (const r of requests) {
      if (!this.up || this.stopping) {
        this.outbox.push(
          errorReply(
            r[0],
            this.stopping ? 'KV_ERR_SHUTTING_DOWN' : 'KV_ERR_SHARD_UNAVAILABLE',
            `shard ${this.cfg.shard} is ${this.stopping ? 'stopping' : 'unavailable'}`,
          ),
        );
        continue;
      }
      if (this.scheduler.size >= HARD_QUEUE_LIMIT) {
        this.outbox.push(errorReply(r[0], 'KV_ERR_OVERLOADED', `shard ${this.cfg.shard} queue is full`));
        continue;
      }
      if (r[1] === OP_TXN) {
        this.receiveTxn(r, now);
        continue;
      }
      if (r[1] === OP_EVAL) {
        this.receiveEval(r, now);
        continue;
      }
      const key = asBuffer(r[2]);
      const op: PendingOp = {
        id: r[0],
        op: r[1] as OpCode,
        key,
        keyStr: key.toString('latin1'),
        slot: slotOf(key),
        value: r[3] === null ? null : asBuffer(r[3]),
        ttlMs: r[4],
        flags: r[5],
        ifVersion: r[6],
        dueAt: 0,
        deadline: now + this.cfg.opDeadlineMs,
        answered: false,
        batch: null,
      };
      this.admitted.push(op);
      this.scheduler.submit(op);
    }
    this.flushOutbox();
    this.requestFlush();
  }

  /** A transaction (protocol/txn.ts): checked, then scheduled on every key it names. */
  private receiveTxn(r: Request, now: number): void {
    const program = r[3] === null ? 'transaction has no program' : unpackTxn(r[3]);
    if (typeof program === 'string') {
      this.outbox.push(errorReply(r[0], 'KV_ERR_BAD_REQUEST', program));
      return;
    }
    if (program[0].length + program[1].length + program[2].length === 0) {
      this.outbox.push(txnDone(r[0], true, []));
      return;
    }
    const op = txnOp(r[0], program, now + this.cfg.opDeadlineMs);
    this.admitted.push(op);
    this.scheduler.submit(op);
  }

  /**
   * A script (OP_EVAL): scheduled like a transaction on its declared keys; one that declares no
   * key touches no row (every keyed command is refused) and runs at once, outside MySQL.
   */
  private receiveEval(r: Request, now: number): void {
    const program = r[3] === null ? 'script has no program' : unpackEval(r[3]);
    if (typeof program === 'string') {
      this.outbox.push(errorReply(r[0], 'KV_ERR_BAD_REQUEST', program));
      return;
    }
    const op = scriptOp(r[0], program, now + this.cfg.opDeadlineMs);
    if (op.txn!.keys.length === 0) {
      void this.scriptRunner().then((runner) => {
        this.outbox.push([op.id, 200, runScript(runner, op.txn!.script!, new Set(), new Map(), this.now()).out]);
        this.flushOutbox();
      });
      return;
    }
    this.admitted.push(op);
    this.scheduler.submit(op);
  }

  /** This actor's Lua VM, made at the first script (about 100 ms, 16 MB). */
  private runner: Promise<ScriptRunner> | null = null;
  private scriptRunner(): Promise<ScriptRunner> {
    this.runner ??= createScriptRunner(
      // A script holds its keys' row locks while it runs: its budget is a fraction of the op deadline.
      { timeBudgetMs: Math.min(SCRIPT_MAX_MS, Math.floor(this.cfg.opDeadlineMs / 4)), memoryBytes: SCRIPT_MEMORY_BYTES },
      { isWriteCommand: (name) => SCRIPT_WRITE_COMMANDS.has(name), log: (level, message) => this.log(level >= 3 ? 'warn' : 'info', 'redis.log', { message }) },
    );
    return this.runner;
  }

  statsSnapshot(): ShardStats {
    return {
      shard: this.cfg.shard,
      up: this.up,
      queued: this.scheduler.size,
      readsInFlight: this.readsInFlight,
      writesInFlight: this.writesInFlight,
      readBatches: this.stats.readBatches,
      writeBatches: this.stats.writeBatches,
      readBatchOps: this.stats.readBatchOps,
      writeBatchOps: this.stats.writeBatchOps,
      readBatchSizes: this.stats.readBatchSizes.slice(),
      writeBatchSizes: this.stats.writeBatchSizes.slice(),
      retries: this.stats.retries,
      expiry: this.expirer.stats(),
      group: this.store.groupStats?.() ?? null,
    };
  }

  /** Resolves when every accepted operation has been answered. New work is refused meanwhile. */
  drain(): Promise<void> {
    this.stopping = true;
    if (this.scheduler.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    if (this.expiryTimer !== null) clearTimeout(this.expiryTimer);
    this.feed?.stop();
    await this.expirer.stop();
    await this.store.close();
  }

  /**
   * The expiry tick, on the wheel's slot boundaries of the shard's clock: a slot moves to the due
   * queue only once it has wholly elapsed, so a tick at a free-running phase let every key wait
   * up to one more tick after its slot ended (expiry lag up to 2 ticks before the reap even
   * started). Aimed EXPIRY_TICK_MARGIN_MS past the boundary, so the server's NOW(3) (which the
   * reap's re-check reads) has passed every key of the slot despite the clock offset's error.
   *
   *   slot s            slot s+1
   *   |-----------------|-----------------|
   *   ^ keys due here    ^+margin: tick -> slot s is due, reaps start
   */
  private expiryTimer: NodeJS.Timeout | null = null;
  private scheduleExpiryTick(): void {
    if (this.stopped) return;
    const tickMs = this.cfg.expiry.tickMs;
    const now = this.now();
    const wait = tickMs - (((now % tickMs) + tickMs) % tickMs) + EXPIRY_TICK_MARGIN_MS;
    this.expiryTimer = setTimeout(this.expiryTick, wait);
    this.expiryTimer.unref();
  }

  private readonly expiryTick = (): void => {
    this.expiryTimer = null;
    if (this.up) this.expirer.tick(this.now());
    if (this.up && this.feedOn && this.expirer.isExpirer) this.trimFeed();
    this.scheduleExpiryTick();
  };

  /**
   * Change-feed retention, by the expirer lease holder only, on the expiry tick: at most one
   * bounded step (one page of DELETE) per FEED_TRIM_INTERVAL_MS, or back to back while a step
   * deletes a full page (a backlog).
   */
  private trimFeed(): void {
    const now = this.now();
    if (this.trimming || now - this.lastTrim < FEED_TRIM_INTERVAL_MS) return;
    this.trimming = true;
    const f = this.cfg.feed!;
    this.store.feedTrim(now, { retentionMs: f.retentionMs, maxRows: f.maxRows, maxBytes: f.maxBytes }).then(
      (n) => {
        this.trimming = false;
        this.lastTrim = n >= 1000 ? -Infinity : this.now();
      },
      (err: unknown) => {
        this.trimming = false;
        this.lastTrim = this.now();
        this.log('warn', 'change feed trim failed', { err: errLog(err) });
      },
    );
  }

  /** A catch-up read of the change feed for a watcher resuming from a cursor. */
  feedRange(after: number, upto: number, limit: number): Promise<{ rows: FeedRow[]; trimmed: number }> {
    return this.store.feedRange(after, upto, limit);
  }

  private submitReap(key: Buffer, dueAt: number): void {
    if (!this.up || this.stopping) {
      this.expirer.onReapFailed(key);
      return;
    }
    this.scheduler.submit({
      id: this.nextReapId--,
      op: OP_REAP,
      key,
      keyStr: key.toString('latin1'),
      slot: slotOf(key),
      value: null,
      ttlMs: 0,
      flags: 0,
      ifVersion: 0,
      dueAt,
      deadline: Infinity,
      answered: false,
      batch: null,
    });
    this.requestFlush();
  }

  private requestFlush(): void {
    if (this.scheduler.readyReadCount >= this.maxBatchOps || this.scheduler.readyWriteCount >= this.maxBatchOps) {
      this.flush();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushNow);
    }
  }

  private readonly flushNow = (): void => {
    this.flushScheduled = false;
    this.flush();
  };

  /**
   * Start batches. The first batch of a kind starts as soon as anything is ready; a further one
   * in parallel only when enough is waiting to fill a good share of a batch. Under light load
   * ops then gather behind the batch in flight (few, large batches: each batch costs syscalls,
   * thread wake-ups and a MySQL round trip whatever its size); under heavy load every slot runs.
   */
  private flush(): void {
    while (
      this.scheduler.readyReadCount > 0 &&
      this.readsInFlight < this.cfg.readsInFlight &&
      (this.readsInFlight === 0 || this.scheduler.readyReadCount >= this.parallelThreshold)
    ) {
      void this.runReads(this.scheduler.takeReads(this.maxBatchOps));
    }
    while (
      this.scheduler.readyWriteCount > 0 &&
      this.writesInFlight < this.cfg.writesInFlight &&
      (this.writesInFlight === 0 || this.scheduler.readyWriteCount >= this.parallelThreshold)
    ) {
      void this.runWrites(this.scheduler.takeWrites(this.maxBatchOps, this.maxBatchBytes));
    }
    // Transactions (and scripts) hold disjoint keys: the ready ones share one MySQL transaction,
    // in a user write slot of their own (never mixed with chains).
    while (this.scheduler.readyTxnCount > 0 && this.writesInFlight < this.cfg.writesInFlight) {
      const txns: PendingOp[] = [];
      for (const t of this.scheduler.takeTxns(this.maxBatchOps)) {
        if (t.answered)
          this.scheduler.txnDone(t); // answered while it waited: never applied
        else txns.push(t);
      }
      if (txns.length > 0) void this.runWrites([], txns);
    }
    // Expiry has its own lane: at most one reap transaction at a time, never holding a user
    // write slot, so a storm of expiring keys costs foreground traffic one connection's worth of
    // MySQL work, not all of it.
    if (this.scheduler.readyReapCount > 0 && !this.reapRunning) {
      void this.runReaps(this.scheduler.takeReaps(this.reapBatchKeys));
    }
  }

  private async runReads(taken: PendingOp[]): Promise<void> {
    // Ops answered while they waited (deadline, shard down) are not run.
    let batch = taken;
    for (const op of taken) {
      if (op.answered) {
        batch = taken.filter((o) => !o.answered);
        for (const o of taken) if (o.answered) this.scheduler.readDone(o);
        break;
      }
    }
    if (batch.length === 0) return;
    this.readsInFlight++;
    this.stats.readBatches++;
    observe(this.stats.readBatchSizes, batch.length);
    this.stats.readBatchOps += batch.length;
    const keys: Buffer[] = [];
    const seen = new Set<string>();
    const slotSet = new Set<number>();
    for (const op of batch) {
      slotSet.add(op.slot);
      if (!seen.has(op.keyStr)) {
        seen.add(op.keyStr);
        keys.push(op.key);
      }
    }
    const slots = [...slotSet];
    const b = this.begin('read', batch);
    // A read is idempotent: retried on anything but a fatal error.
    const result = await this.race(
      b,
      this.withRetries(
        () => this.store.readLive(keys, slots, b.ctl),
        (err) => classify(err) !== 'fatal',
        b.ctl,
      ),
    );
    this.end(b);
    this.readsInFlight--;
    if (result === null) {
      // Abandoned at the deadline: abandon() answered every op.
    } else if (result.ok) {
      this.lastOkAt = this.localClock();
      const byKey = new Map<string, LiveRow>();
      for (const r of result.value.rows) byKey.set(r.k.toString('latin1'), r);
      const served = result.value.served;
      let refused: PendingOp[] | undefined;
      for (const op of batch) {
        const row = byKey.get(op.keyStr);
        if (!served.has(op.slot)) (refused ??= []).push(op);
        else if (row === undefined) this.answer(op, notFound(op.id));
        else if (op.op === OP_GET) {
          this.answer(op, getHit(op.id, row.v, Number(row.version), row.expires_at === null ? null : Number(row.expires_at)));
          // Many GETs of one large value share one row but each reply carries a copy: send in
          // frames of a few MiB so one batch never packs gigabytes into one buffer.
          this.outboxBytes += row.v.length;
          if (this.outboxBytes >= OUTBOX_FLUSH_BYTES) this.flushOutbox();
        } else this.answer(op, ttlHit(op.id, row.expires_at === null ? null : Number(row.expires_at), Number(row.now_ms), Number(row.version)));
      }
      if (refused !== undefined) this.refuse(refused);
    } else {
      this.onStoreError(result.error);
      const e = toKvError(result.error, this.cfg.shard);
      for (const op of batch) this.answer(op, errorReply(op.id, e.code, e.message));
    }
    for (const op of batch) this.scheduler.readDone(op);
    this.afterBatch();
  }

  /**
   * Reap-only chains: one conditional DELETE (autocommit), no locking read first. The keys are
   * held by the scheduler, so no write of this process races it; a row rewritten or given a new
   * TTL by another gateway fails the `expires_at <= NOW(3)` re-check under its row lock and stays.
   */
  private async runReaps(chains: Chain[]): Promise<void> {
    this.reapRunning = true;
    const due: Array<{ key: Buffer; dueAt: number }> = [];
    for (const c of chains) for (const op of c.ops) due.push({ key: op.key, dueAt: op.dueAt });
    // Only lock conflicts are retried here; anything else leaves the rows to a later sweep.
    const keys = chains.map((c) => c.key);
    const result = await this.withRetries(
      () => (this.feedOn ? this.store.reapWithFeed(keys) : this.store.reap(keys)),
      (err) => classify(err) === 'retry',
    );
    if (result.ok && result.value > 0) this.feed?.kick();
    if (!result.ok) this.onStoreError(result.error);
    this.reapRunning = false;
    if (result.ok) this.expirer.onReapedBatch(due, result.value, this.now());
    else for (const d of due) this.expirer.onReapFailed(d.key);
    for (const c of chains) this.scheduler.chainDone(c);
    this.afterBatch();
  }

  /**
   * One write transaction: ready chains, or ready transaction ops (`txns`, each with an empty chain
   * per key it names, no key shared; which of a transaction's op lists runs, or what a script
   * writes, is decided from the locked rows: txn-plan.ts, script-session.ts).
   */
  private async runWrites(taken: Chain[], txns: PendingOp[] = []): Promise<void> {
    // Ops answered while they waited (deadline, shard down) were told "not applied": drop them.
    const chains: Chain[] = [];
    const chainsOf = new Map<PendingOp, Chain[]>();
    for (const t of txns) {
      const own = txnChains(t.txn!);
      chainsOf.set(t, own);
      chains.push(...own);
    }
    for (const c of taken) if (this.scheduler.prune(c, isUnanswered)) chains.push(c);
    if (chains.length === 0) return;
    this.writesInFlight++;
    this.stats.writeBatches++;
    let opCount = 0;
    for (const c of chains) opCount += c.ops.length;
    observe(this.stats.writeBatchSizes, opCount);
    this.stats.writeBatchOps += opCount;
    // Lock order: every transaction locks its rows in ascending key order.
    chains.sort((a, b) => Buffer.compare(a.key, b.key));
    const keys = chains.map((c) => c.key);
    const slotSet = new Set<number>();
    for (const c of chains) slotSet.add(c.slot);
    const slots = [...slotSet].sort((a, b) => a - b);
    const userOps: PendingOp[] = [...txns];
    // incr, append, getdel, getex and put-returning-the-old-value decide from the row's value:
    // lock it with its value then.
    let withValues = txns.some((t) => t.txn!.withValues);
    for (const c of chains) {
      for (const op of c.ops) {
        if (op.op !== OP_REAP) userOps.push(op);
        if (needsValue(op.op, op.flags)) withValues = true;
      }
    }
    // A transaction's compares decide which of its op lists runs, a script's calls what it
    // writes: `active` holds the chains to plan, `decisions` each transaction's outcome.
    let active = chains;
    let decisions = new Map<PendingOp, { succeeded: boolean; scriptOut: Buffer | null }>();
    /** The transaction each planned op belongs to. */
    let ownerOf = new Map<PendingOp, PendingOp>();
    const b = this.begin('write', userOps);
    const result = await this.race(
      b,
      this.withRetries(
        async () => {
          let plan: WritePlan | undefined;
          let taken: Versions | null = null;
          let decided: { locked: Map<string, LockedRow>; now: number; needed: number } | undefined;
          await this.store.transact(
            keys,
            slots,
            async (locked, now, issuedBelow = 0, states: SlotStates) => {
              const changed = checkSlots(chains, states);
              if (txns.length > 0) {
                active = [];
                decisions = new Map();
                ownerOf = new Map();
                for (const t of txns) {
                  const script = t.txn!.script;
                  let own: Chain[];
                  let succeeded = true;
                  let scriptOut: Buffer | null = null;
                  if (script !== undefined) {
                    const ran = runScript(await this.scriptRunner(), script, new Set(chainsOf.get(t)!.map((c) => c.keyStr)), locked, now);
                    own = ran.chains;
                    scriptOut = ran.out;
                  } else {
                    succeeded = comparesHold(t.txn!, locked, now);
                    own = choose(t.txn!, succeeded);
                  }
                  for (const c of own) for (const op of c.ops) ownerOf.set(op, t);
                  decisions.set(t, { succeeded, scriptOut });
                  active.push(...own);
                }
                active.sort((x, y) => Buffer.compare(x.key, y.key));
              }
              // A re-created key must get a version above its deleted past, which may have been
              // issued through another gateway: check kv_seq then (see VersionAllocator.take).
              const demand = versionDemand(active, locked);
              taken = demand.count > 0 ? await this.versions.take(demand.count, demand.above, demand.createsKey ? issuedBelow : 0) : null;
              decided = { locked, now, needed: demand.count };
              plan = planWrites(active, locked, now, taken?.first ?? 0, this.feedOn);
              if (changed !== undefined) plan.mutations.changed = changed;
              return plan.mutations;
            },
            b.ctl,
            // After INSERTing keys that had no row: a key absent at the locking read was not
            // locked, so between that read and the INSERT another gateway may have created it
            // with a version from a newer block and deleted it again. Our INSERT then succeeds,
            // but with versions below that incarnation's: the key's versions would go backwards
            // (issue 8). The INSERT now holds those keys; if any actor reserved a block after
            // ours, take versions from a block reserved now (above all issued so far) instead.
            async (issuedNow) => {
              if (taken === null || issuedNow <= taken.blockEnd) return null;
              const fresh = await this.versions.take(decided!.needed, issuedNow - 1);
              const replanned = planWrites(active, decided!.locked, decided!.now, fresh.first, this.feedOn);
              if (!sameRows(plan!.mutations, replanned.mutations)) throw versionsMoved();
              replanned.mutations.changed = plan!.mutations.changed;
              plan = replanned;
              // Rows created and deleted again in the batch stay deleted.
              const deleted = new Set(replanned.mutations.deletes.map((k) => k.toString('latin1')));
              return {
                upserts: [...replanned.mutations.inserts, ...replanned.mutations.upserts].filter((r) => !deleted.has(r[0].toString('latin1'))),
                feed: replanned.mutations.feed,
              };
            },
            withValues,
          );
          return plan!;
        },
        (err) => !(err instanceof SlotsRefused) && classify(err) !== 'fatal' && !lostDuringCommit(err, b.ctl),
        b.ctl,
      ),
    );
    this.end(b);
    this.writesInFlight--;
    if (result !== null && !result.ok && result.error instanceof SlotsRefused) {
      if (txns.length === 0) this.onSlotsRefused(chains, result.error);
      else this.onTxnSlotsRefused(txns, chainsOf, result.error);
      return;
    }
    for (const c of chains) this.heldSince.delete(c);
    for (const t of txns) this.heldSince.delete(t);
    const release = (): void => {
      for (const t of txns) this.scheduler.txnDone(t);
      if (txns.length === 0) for (const c of chains) this.scheduler.chainDone(c);
    };
    // In doubt: COMMIT was sent and no answer came (deadline, or the connection broke).
    let inDoubt = false;
    if (result === null) {
      inDoubt = b.ctl.phase === 'commit';
    } else if (result.ok) {
      this.lastOkAt = this.localClock();
      const committed = result.value;
      const now = this.now();
      if (txns.length > 0) {
        const planned = new Map<PendingOp, Array<[PendingOp, Reply]>>(txns.map((t) => [t, []]));
        for (const pr of committed.replies) planned.get(ownerOf.get(pr[0])!)!.push(pr);
        for (const t of txns) {
          const d = decisions.get(t)!;
          if (d.scriptOut !== null) this.answer(t, [t.id, 200, d.scriptOut]);
          else this.answer(t, txnReply(t, d.succeeded, planned.get(t)!));
        }
      } else {
        for (const [op, reply] of committed.replies) {
          if (op.op === OP_REAP) this.expirer.onReaped(op.key, op.dueAt, reapDeleted(replyOf(OP_REAP, reply)), now);
          else this.answer(op, reply);
        }
      }
      for (const [key, at] of committed.expiries) this.expirer.onExpirySet(key, at);
      if (committed.mutations.feed !== undefined && committed.mutations.feed.length > 0) this.feed?.kick();
    } else {
      this.onStoreError(result.error);
      inDoubt = lostDuringCommit(result.error, b.ctl);
      // A connection lost while COMMIT was in flight may or may not have committed.
      const e = inDoubt
        ? {
            code: 'KV_ERR_OUTCOME_UNKNOWN' as const,
            message: `shard ${this.cfg.shard}: connection lost during commit; the write may or may not have been applied`,
          }
        : toKvError(result.error, this.cfg.shard);
      for (const op of userOps) this.answer(op, errorReply(op.id, e.code, e.message));
    }
    // A reap that did not commit is the expirer's to try again.
    const reapsFailed = (): void => {
      for (const c of chains) for (const op of c.ops) if (op.op === OP_REAP) this.expirer.onReapFailed(op.key);
    };
    if (inDoubt) {
      for (const op of userOps) op.value = null; // sent already; not needed again
      this.settleThenRelease(
        () => {
          reapsFailed();
          release();
        },
        b.ctl,
        chains.length,
      );
    } else {
      if (result === null || !result.ok) reapsFailed();
      release();
    }
    this.afterBatch();
  }

  /**
   * Transactions touched slots this shard must not write now: as onSlotsRefused, each whole. One
   * with a slot not owned is refused (the gateway re-routes it), one with a fenced slot is kept
   * and tried again (at most KVSQL_SLOT_HOLD_MS), the others run at once.
   */
  private onTxnSlotsRefused(txns: PendingOp[], chainsOf: Map<PendingOp, Chain[]>, refused: SlotsRefused): void {
    const now = this.localClock();
    const rest: PendingOp[] = [];
    const held: PendingOp[] = [];
    for (const t of txns) {
      const slots = chainsOf.get(t)!.map((c) => c.slot);
      const since = this.heldSince.get(t);
      if (slots.some((s) => refused.wrong.has(s))) {
        this.heldSince.delete(t);
        this.refuse([t]);
        this.scheduler.txnDone(t);
      } else if (slots.some((s) => refused.held.has(s))) {
        if (since !== undefined && now - since >= this.cfg.slotHoldMs) {
          this.heldSince.delete(t);
          this.answer(
            t,
            errorReply(
              t.id,
              'KV_ERR_SLOT_MOVING',
              `slot ${slots.find((s) => refused.held.has(s))} is being moved; it stayed fenced for ${this.cfg.slotHoldMs} ms`,
            ),
          );
          this.scheduler.txnDone(t);
        } else {
          if (since === undefined) this.heldSince.set(t, now);
          held.push(t);
        }
      } else rest.push(t);
    }
    if (rest.length > 0) void this.runWrites([], rest);
    if (held.length > 0) {
      const waited = now - (this.heldSince.get(held[0]) ?? now);
      const delay = Math.min(HOLD_RETRY_MAX_MS, Math.max(HOLD_RETRY_MS, waited / 2));
      setTimeout(() => void this.runWrites([], held), delay);
    }
    this.afterBatch();
  }

  /**
   * Keeps the keys of an in-doubt transaction held until the server has finished it (committed
   * or rolled back), asking again every SETTLE_RETRY_MS while it cannot be reached. Only then may
   * a later write to those keys lock their rows and see the outcome.
   */
  private settleThenRelease(release: () => void, ctl: TxControl, keys: number): void {
    this.settling++;
    const started = this.localClock();
    const attempt = async (): Promise<void> => {
      let settled = false;
      try {
        settled = await this.store.settle(ctl.threadId, ctl.connectedAt);
      } catch {
        settled = false;
      }
      if (!settled) {
        if (!this.stopped) setTimeout(() => void attempt(), SETTLE_RETRY_MS).unref();
        return;
      }
      this.settling--;
      this.log('info', 'in-doubt commit settled; its keys are free again', { thread: ctl.threadId, keys, ms: this.localClock() - started });
      release();
      this.afterBatch();
    };
    void attempt();
  }

  private begin(kind: Batch['kind'], ops: PendingOp[]): Batch {
    let giveUp!: () => void;
    const gaveUp = new Promise<null>((resolve) => (giveUp = () => resolve(null)));
    const b: Batch = { kind, ops, ctl: newTxControl(), startedAt: this.localClock(), finished: false, gaveUp, giveUp };
    for (const op of ops) op.batch = b;
    this.running.add(b);
    return b;
  }

  private end(b: Batch): void {
    b.finished = true;
    this.running.delete(b);
    for (const op of b.ops) op.batch = null;
  }

  /** The batch's work, or null as soon as it is abandoned (its work may never settle). */
  private race<T>(b: Batch, work: Promise<Attempted<T>>): Promise<Attempted<T> | null> {
    return Promise.race([work, b.gaveUp]);
  }

  /**
   * Gives up on a running batch: answers its ops now (see the header for which answer), makes
   * sure COMMIT is never sent if it was not, and destroys its connection.
   */
  private abandon(b: Batch, why: string): void {
    if (b.finished || b.ctl.abandoned) return;
    b.ctl.abandoned = true;
    b.ctl.cut?.();
    this.stats.abandoned++;
    const unknown = b.kind === 'write' && b.ctl.phase === 'commit';
    const code = unknown ? 'KV_ERR_OUTCOME_UNKNOWN' : 'KV_ERR_SHARD_UNAVAILABLE';
    const message = unknown
      ? `shard ${this.cfg.shard}: ${why} after COMMIT was sent; the write may or may not have been applied`
      : `shard ${this.cfg.shard}: ${why}; the operation was not applied`;
    for (const op of b.ops) this.answer(op, errorReply(op.id, code, message));
    this.flushOutbox();
    this.log('warn', 'batch abandoned', { why, kind: b.kind, ops: b.ops.length, commitSent: b.ctl.phase === 'commit', ageMs: this.localClock() - b.startedAt });
    b.giveUp();
  }

  /** Every DEADLINE_TICK_MS: answer what passed its deadline; probe if a batch stalls. */
  private sweepDeadlines(): void {
    const now = this.localClock();
    for (let op = this.admitted.peek(); op !== undefined; op = this.admitted.peek()) {
      if (!op.answered && op.deadline! > now) break;
      this.admitted.shift();
      if (op.answered) continue;
      if (op.batch) this.abandon(op.batch, `no answer within the op deadline (${this.cfg.opDeadlineMs} ms)`);
      else
        this.answer(
          op,
          errorReply(
            op.id,
            'KV_ERR_SHARD_UNAVAILABLE',
            `shard ${this.cfg.shard}: not started within the op deadline (${this.cfg.opDeadlineMs} ms); the operation was not applied`,
          ),
        );
    }
    this.flushOutbox();
    for (const b of this.running) {
      if (now - b.startedAt > STALL_PROBE_MS) {
        void this.probe();
        break;
      }
    }
    this.checkDrained();
  }

  /** The one way a user op is answered: at most once, and its value freed once it cannot run again. */
  private answer(op: PendingOp, reply: Reply): void {
    if (op.answered) return;
    op.answered = true;
    if (!op.batch || op.batch.finished) op.value = null;
    this.outbox.push(reply);
  }

  /**
   * Split a refused batch: chains of slots this shard does not own are answered (the gateway
   * re-routes them); chains of fenced slots are kept, still holding their keys in the scheduler
   * so later ops on those keys stay behind them, and tried again shortly; the rest run at once.
   */
  private onSlotsRefused(chains: Chain[], slotsRefused: SlotsRefused): void {
    const refused = slotsRefused;
    let wrong: PendingOp[] | undefined;
    const rest: Chain[] = [];
    const held: Chain[] = [];
    const now = this.localClock();
    for (const c of chains) {
      const slot = c.slot;
      const since = this.heldSince.get(c);
      if (refused.wrong.has(slot)) {
        this.heldSince.delete(c);
        for (const op of c.ops) {
          if (op.op === OP_REAP) this.expirer.onReapFailed(op.key);
          else (wrong ??= []).push(op);
        }
        this.scheduler.chainDone(c);
      } else if (refused.held.has(slot)) {
        if (since !== undefined && now - since >= this.cfg.slotHoldMs) {
          this.heldSince.delete(c);
          for (const op of c.ops) {
            if (op.op === OP_REAP) this.expirer.onReapFailed(op.key);
            else this.answer(op, errorReply(op.id, 'KV_ERR_SLOT_MOVING', `slot ${slot} is being moved; it stayed fenced for ${this.cfg.slotHoldMs} ms`));
          }
          this.scheduler.chainDone(c);
        } else {
          if (since === undefined) this.heldSince.set(c, now);
          held.push(c);
        }
      } else rest.push(c);
    }
    if (wrong !== undefined) this.refuse(wrong);
    if (rest.length > 0) void this.runWrites(rest);
    if (held.length > 0) {
      const waited = now - (this.heldSince.get(held[0]) ?? now);
      const delay = Math.min(HOLD_RETRY_MAX_MS, Math.max(HOLD_RETRY_MS, waited / 2));
      setTimeout(() => void this.runWrites(held), delay);
    }
    this.afterBatch();
  }

  /**
   * Answer ops whose slot this shard does not own KV_ERR_WRONG_SHARD, with the new owner's index
   * when this shard moved the slot away, or its own when it is taking the slot over (the gateway
   * then re-routes at once, or comes back shortly, without re-reading the whole map). The hint is looked up after the refusal, so it is only a hint. Refusals are
   * answered in the order they were decided.
   */
  private refusing: Promise<void> = Promise.resolve();
  private refuse(ops: PendingOp[]): void {
    const slots = [...new Set(ops.map((o) => o.slot))];
    this.refusing = this.refusing.then(async () => {
      const hints = await this.store.movedTo(slots).catch(() => new Map<number, number>());
      for (const op of ops) this.answer(op, wrongShard(op.id, this.shardIndex, op.slot, hints.get(op.slot) ?? -1));
      this.flushOutbox();
    });
  }

  /**
   * Run `attempt` until it succeeds, `retryable` refuses its error, or KVSQL_MAX_RETRIES retries (with
   * backoff) are spent. The one retry policy of reads, writes and reaps; each passes its predicate.
   */
  private async withRetries<T>(attempt: () => Promise<T>, retryable: (err: unknown) => boolean, ctl?: TxControl): Promise<Attempted<T>> {
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

  private afterBatch(): void {
    this.flushOutbox();
    this.scans.kick(); // before the reads: a waiting scan gets the freed read slot first
    this.flush();
    this.checkDrained();
  }

  private checkDrained(): void {
    if (this.drainWaiters.length > 0 && this.scheduler.size === 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  private flushOutbox(): void {
    if (this.outbox.length === 0) return;
    const out = this.outbox;
    this.outbox = [];
    this.outboxBytes = 0;
    this.send(out);
  }

  private onStoreError(err: unknown): void {
    if (classify(err) === 'connection') {
      this.log('warn', 'shard connection error', { err: errLog(err) });
      void this.probe();
    } else if (classify(err) === 'fatal') {
      this.log('error', 'shard statement failed', { err: errLog(err) });
    }
  }

  private probeIfDown(): void {
    if (!this.up) void this.probe();
  }

  /** Decide up/down from one cheap query. While down, every new op gets 503 at once. */
  private async probe(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    const startedAt = this.localClock();
    try {
      if (this.initialized) await this.syncClock();
      else await this.init();
      if (!this.up) {
        this.up = true;
        this.log('info', 'shard is back');
        this.onHealth(true);
      }
    } catch (err) {
      // A batch that succeeded after this probe began is newer evidence: the fault (a slow link,
      // a brief hang) is over, and declaring the shard down now would abandon healthy work.
      if (this.up && this.lastOkAt <= startedAt) {
        this.up = false;
        this.log('error', 'shard is down', { err: errLog(err) });
        this.onHealth(false, { code: 'KV_ERR_SHARD_UNAVAILABLE', message: String((err as Error)?.message ?? err) });
        // Waiting ops would only time out one by one; answer them now, and give up on what runs.
        for (const op of this.scheduler.drainWaiting()) {
          if (op.op === OP_REAP) this.expirer.onReapFailed(op.key);
          else this.answer(op, errorReply(op.id, 'KV_ERR_SHARD_UNAVAILABLE', `shard ${this.cfg.shard} is unavailable`));
        }
        for (const b of [...this.running]) this.abandon(b, 'shard is down');
        this.scans.failAll({ code: 'KV_ERR_SHARD_UNAVAILABLE', message: `shard ${this.cfg.shard} is unavailable` });
        this.afterBatch();
      }
    } finally {
      this.probing = false;
    }
  }

  private async init(): Promise<void> {
    this.shardIndex = await this.store.init();
    this.initialized = true;
    await this.syncClock();
    void this.fillSlots();
  }

  /** First start of a store: this database becomes shard `identity.shard` with its slots. */
  async bootstrap(identity: ShardIdentity): Promise<void> {
    await this.store.bootstrap(identity);
    this.shardIndex = identity.shard;
  }

  ownership(): Promise<ShardOwnership> {
    return this.store.ownership();
  }

  /**
   * Compute `slot` for rows written before the column existed, one page per turn, beside the
   * traffic. Idempotent: several gateways may do it at once. On error it stops; the next start
   * (or probe re-init) resumes.
   */
  private async fillSlots(): Promise<void> {
    if (this.filling) return;
    this.filling = true;
    try {
      let total = 0;
      for (let n = await this.store.fillSlots(FILL_SLOTS_PAGE); n > 0 && !this.stopping; n = await this.store.fillSlots(FILL_SLOTS_PAGE)) total += n;
      if (total > 0) this.log('info', 'filled the slot column of rows from an older version', { rows: total });
    } catch (err) {
      this.log('warn', 'filling the slot column failed; it resumes at the next start', {
        code: (err as { code?: string })?.code,
        message: (err as Error)?.message,
      });
    } finally {
      this.filling = false;
    }
  }

  private async syncClock(): Promise<void> {
    const t0 = this.localClock();
    const shardNow = await this.store.now();
    const t1 = this.localClock();
    this.clockOffset = shardNow - Math.round((t0 + t1) / 2);
  }
}

/**
 * A write batch touched slots this shard must not write now: `wrong` ones it does not own
 * (answered KV_ERR_WRONG_SHARD: the gateway re-routes), `held` ones are fenced by a move (kept
 * and tried again until the flip, at most KVSQL_SLOT_HOLD_MS). Thrown inside the transaction,
 * which then rolls back having written nothing.
 */
class SlotsRefused extends Error {
  constructor(
    readonly wrong: Set<number>,
    readonly held: Set<number>,
  ) {
    super('slots refused');
  }
}

/** A script's time budget: at most this, and a quarter of the op deadline. */
const SCRIPT_MAX_MS = 1000;
/** A script's Lua heap bound (the VM's, compiled scripts included). */
const SCRIPT_MEMORY_BYTES = 64 * 1024 * 1024;

/** Rows whose slot was never computed (written before the column existed) filled per page. */
const FILL_SLOTS_PAGE = 1000;
/** First retry of a write held by a fence; doubles up to HOLD_RETRY_MAX_MS. */
const HOLD_RETRY_MS = 5;
const HOLD_RETRY_MAX_MS = 20;

type Attempted<T> = { ok: true; value: T } | { ok: false; error: unknown };

const isUnanswered = (op: PendingOp): boolean => op.answered !== true;

/**
 * The connection broke during the COMMIT round trip: the outcome is unknown, never retried.
 * `ctl.phase` is the phase of the attempt that threw `err` (the store resets it per attempt).
 */
function lostDuringCommit(err: unknown, ctl: TxControl): boolean {
  return ctl.phase === 'commit' && classify(err) === 'connection';
}

/**
 * Which slots of a write batch this shard may write now. Throws SlotsRefused if any is not owned
 * or fenced; returns the [slot, key] pairs to log for slots being copied away (else undefined).
 */
function checkSlots(chains: Chain[], states: SlotStates): Array<[number, Buffer]> | undefined {
  let refused: SlotsRefused | undefined;
  let changed: Array<[number, Buffer]> | undefined;
  for (const c of chains) {
    const slot = c.slot;
    const state = states.get(slot);
    if (state === SLOT_OWNED) continue;
    if (state === SLOT_COPYING) (changed ??= []).push([slot, c.key]);
    else if (state === SLOT_FENCED) (refused ??= new SlotsRefused(new Set(), new Set())).held.add(slot);
    else (refused ??= new SlotsRefused(new Set(), new Set())).wrong.add(slot);
  }
  if (refused !== undefined) throw refused;
  return changed;
}

/**
 * The refusal the gateway consumes (it never reaches a client as is): the third payload element,
 * where other errors carry Retry-After, holds the new owner's shard index, or -1 if unknown.
 */
function wrongShard(id: number, shardIndex: number | null, slot: number, movedTo: number): Reply {
  return [id, 503, 'KV_ERR_WRONG_SHARD', `shard ${shardIndex ?? '?'} does not own slot ${slot}`, movedTo];
}

/**
 * True when two plans of one batch change the same rows the same way (versions aside). New
 * versions change a decision only for a conditional write on a version issued in the same chain,
 * which a client cannot know in advance; then the batch is decided again from scratch.
 */
function sameRows(a: RowMutations, b: RowMutations): boolean {
  const keys = (rows: Array<[Buffer, ...unknown[]]>) => rows.map((r) => r[0].toString('latin1')).join('\0');
  return (
    keys(a.inserts) === keys(b.inserts) &&
    keys(a.upserts) === keys(b.upserts) &&
    keys(a.ttlUpdates) === keys(b.ttlUpdates) &&
    a.deletes.map((k) => k.toString('latin1')).join('\0') === b.deletes.map((k) => k.toString('latin1')).join('\0') &&
    a.ttlUpdates.every((t, i) => t[1] === b.ttlUpdates[i][1]) &&
    a.inserts.every((r, i) => r[3] === b.inserts[i][3]) &&
    a.upserts.every((r, i) => r[3] === b.upserts[i][3])
  );
}

/** Rolls the batch back to be decided again (classified 'retry', like a deadlock). */
function versionsMoved(): StoreError {
  return new StoreError('KV_VERSIONS_MOVED', 'a conditional write depended on versions that had to be taken again');
}

function observe(hist: number[], n: number): void {
  let i = 0;
  while (i < BATCH_SIZE_BUCKETS.length && n > BATCH_SIZE_BUCKETS[i]) i++;
  hist[i]++;
}

function backoff(attempt: number): Promise<void> {
  const ms = Math.min(200, 5 * 2 ** attempt) * (0.5 + Math.random());
  return new Promise((r) => setTimeout(r, ms));
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
