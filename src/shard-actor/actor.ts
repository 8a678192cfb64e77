/**
 * Owns one shard's work as a whole: accepts operations from the gateway (intake), keeps per-key
 * order (KeyScheduler), and decides when batches start (the flush policy: one SELECT for reads,
 * one transaction for writes, a bounded number at once); it wires the parts that run them and is
 * the worker's one object (main.ts). Relies on ActorState and its parts: ReadPath, WritePath,
 * ReapLane, BatchWatch (deadlines), ShardHealth, SlotRefusals, ScanLane, Expirer, FeedTailer.
 * Must not touch sockets or HTTP: replies leave through `send` (the Outbox).
 *
 *   gateway frame ─> receive ─> KeyScheduler ─> ready reads ──> ReadPath  (≤ readsInFlight)
 *                                           ├─> ready chains ─> WritePath (≤ writesInFlight)
 *                                           ├─> ready txns ───> WritePath (a user write slot)
 *                                           └─> ready reaps ──> ReapLane  (one at a time)
 *                     replies <─ Outbox (one postMessage per completed batch)
 *
 *   read-path.ts     one SELECT of many keys' live rows
 *   write-path.ts    one transaction of chains or transactions/scripts; settle of in-doubt COMMITs
 *   slot-refusals.ts slots not owned (WRONG_SHARD) or fenced by a move (held, retried)
 *   reap-lane.ts     expiry tick, reap-only chains, change-feed retention
 *   deadlines.ts     every user op answered by its deadline, however MySQL behaves (abandon)
 *   health.ts        up/down, probe, init, clock offset
 *   actor-state.ts   what they share; outbox.ts the one way an op is answered
 *
 * Batching: a flush runs on setImmediate after ops arrive (so everything that arrived in one
 * event-loop turn shares a batch) or at once when maxBatchOps are ready; while all batch slots are
 * busy, ready ops accumulate and the next batch is larger. With batching off every batch is one op.
 */
import { errorReply, OP_EVAL, OP_REAP, type OpCode, type Request } from '../protocol/ops';
import type { ActorConfig, ShardStats } from '../protocol/port-messages';
import type { FeedRow } from '../protocol/feed';
import type { ScanRequest } from '../protocol/listing';
import { slotOf, type ShardOwnership } from '../protocol/slot-map';
import { OP_TXN, txnDone, unpackEval, unpackTxn } from '../protocol/txn';
import { ActorState, type ActorHooks } from './actor-state';
import { BatchWatch, DEADLINE_TICK_MS } from './deadlines';
import { Expirer, type Log } from './expirer';
import { FeedTailer, type PostFeed } from './feed-tailer';
import { ShardHealth, type HealthListener } from './health';
import { KeyScheduler } from './key-scheduler';
import { createScriptRunner } from './lua-runner';
import type { ScriptRunner } from './lua-sandbox';
import { Outbox, type SendReplies } from './outbox';
import type { PendingOp } from './pending-op';
import { ReadPath } from './read-path';
import { ReapLane } from './reap-lane';
import { ScanLane, type ScanAnswer } from './scan-lane';
import { runScript, SCRIPT_WRITE_COMMANDS } from './script-session';
import { MAX_REAP_KEYS, type ShardIdentity, type ShardStore } from './shard-store';
import { SlotRefusals } from './slot-refusals';
import { scriptOp, txnOp } from './txn-plan';
import { VersionAllocator } from './version-allocator';
import { WritePath } from './write-path';

export type { SendReplies } from './outbox';
export type { HealthListener } from './health';

/** Hard cap on ops held by the actor; the gateway's own bound is lower, this guards bugs. */
const HARD_QUEUE_LIMIT = 1_000_000;
const PROBE_INTERVAL_MS = 1000;
const CLOCK_SYNC_MS = 5000;
/** A script's time budget: at most this, and a quarter of the op deadline. */
const SCRIPT_MAX_MS = 1000;
/** A script's Lua heap bound (the VM's, compiled scripts included). */
const SCRIPT_MEMORY_BYTES = 64 * 1024 * 1024;

export class ShardActor {
  private readonly s: ActorState;
  private readonly scheduler: KeyScheduler;
  readonly expirer: Expirer;
  /** Key-range scans and counts: a lane of their own (scan-lane.ts). */
  private readonly scans: ScanLane;
  /** Follows kv_feed for the gateway's watchers (null: KVSQL_FEED off). */
  readonly feed: FeedTailer | null = null;
  private readonly watch: BatchWatch;
  private readonly health: ShardHealth;
  private readonly reads: ReadPath;
  private readonly writes: WritePath;
  private readonly reaps: ReapLane;
  private flushScheduled = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private drainWaiters: Array<() => void> = [];
  private readonly maxBatchOps: number;
  /** Ready ops (or chains) needed to open a second, third... batch of a kind in parallel. */
  private readonly parallelThreshold: number;
  private readonly maxBatchBytes: number;
  /** Keys per reap statement: the configured page, at most MAX_REAP_KEYS (see there). */
  private readonly reapBatchKeys: number;

  constructor(
    private readonly cfg: ActorConfig,
    private readonly store: ShardStore,
    send: SendReplies,
    onHealth: HealthListener,
    private readonly log: Log,
    /** The process clock; the actor corrects it by the shard's offset. Injected for tests. */
    localClock: () => number = Date.now,
    /** Where the change-feed tailer sends what it finds (absent: no tailer). */
    postFeed?: PostFeed,
  ) {
    if (cfg.feed?.enabled === true && postFeed !== undefined) this.feed = new FeedTailer(store, cfg.feed.pollMs, postFeed, log);
    this.maxBatchOps = cfg.batching ? cfg.maxBatchOps : 1;
    this.maxBatchBytes = cfg.batching ? cfg.maxBatchBytes : Infinity;
    this.reapBatchKeys = Math.min(cfg.expiry.reapBatch, MAX_REAP_KEYS);
    this.parallelThreshold = cfg.batching ? Math.max(1, Math.floor(cfg.maxBatchOps / 8)) : 1;
    this.scheduler = new KeyScheduler(cfg.batching ? cfg.maxBatchOps : 1);
    const hooks: ActorHooks = {
      afterBatch: () => this.afterBatch(),
      requestFlush: () => this.requestFlush(),
      probe: () => void this.health.probe(),
    };
    const s = (this.s = new ActorState(cfg, store, this.scheduler, new Outbox(send), log, localClock, hooks, this.feed));
    const versions = new VersionAllocator((size, above) => this.store.reserveVersionBlock(size, above));
    this.expirer = new Expirer(cfg.expiry, store, (key, dueAt) => this.reaps.submit(key, dueAt), log, s.now());
    this.watch = new BatchWatch(s);
    this.health = new ShardHealth(s, onHealth, () => this.onDown());
    const refusals = new SlotRefusals(s, this.expirer);
    this.reads = new ReadPath(s, this.watch, refusals);
    this.writes = new WritePath(s, this.watch, refusals, versions, this.expirer, () => this.scriptRunner());
    this.reaps = new ReapLane(s, this.expirer);
    this.scans = new ScanLane(store, cfg.shard, cfg.opDeadlineMs, () => s.hashTags, {
      take: () => {
        if (s.readsInFlight >= this.cfg.readsInFlight) return false;
        s.readsInFlight++;
        return true;
      },
      give: () => {
        s.readsInFlight--;
        this.afterBatch();
      },
    });
  }

  /** This shard's index (kv_shard), known after init; null while the database is not a member. */
  get shardIndex(): number | null {
    return this.s.shardIndex;
  }

  /**
   * A page of one key range (`request`), or the count of every served key (null): answered
   * once, within opDeadlineMs, at once with 503 while the shard is down or stopping.
   */
  scan(request: ScanRequest | null, answer: (a: ScanAnswer) => void): void {
    if (!this.s.up || this.s.stopping) {
      answer({
        error: {
          code: this.s.stopping ? 'KV_ERR_SHUTTING_DOWN' : 'KV_ERR_SHARD_UNAVAILABLE',
          message: `shard ${this.cfg.shard} is ${this.s.stopping ? 'stopping' : 'unavailable'}`,
        },
      });
      return;
    }
    this.scans.submit(request, answer);
  }

  /** The shard's clock, estimated locally: process clock plus the measured offset. */
  now(): number {
    return this.s.now();
  }

  /**
   * Applies the schema and checks the shard's identity (health.ts: a shard that cannot be
   * reached starts down), then starts the timers: probe, clock sync, deadline sweep, expiry tick.
   */
  async start(): Promise<void> {
    await this.health.start();
    // While up: every 5 s, measure the clock offset; the same query is the health probe, so a
    // shard that turned read-only (a failover) is marked down even if no write failed yet.
    this.timers.push(setInterval(() => void (this.s.up ? this.health.probe() : undefined), CLOCK_SYNC_MS));
    this.timers.push(setInterval(() => this.health.probeIfDown(), PROBE_INTERVAL_MS));
    this.timers.push(setInterval(() => this.sweepDeadlines(), DEADLINE_TICK_MS));
    for (const t of this.timers) t.unref();
    if (this.cfg.expiry.enabled) this.reaps.scheduleTick();
  }

  /** A frame of requests from the gateway. */
  receive(requests: Request[]): void {
    const s = this.s;
    const now = s.localClock();
    for (const r of requests) {
      if (!s.up || s.stopping) {
        s.out.push(
          errorReply(
            r[0],
            s.stopping ? 'KV_ERR_SHUTTING_DOWN' : 'KV_ERR_SHARD_UNAVAILABLE',
            `shard ${this.cfg.shard} is ${s.stopping ? 'stopping' : 'unavailable'}`,
          ),
        );
        continue;
      }
      if (this.scheduler.size >= HARD_QUEUE_LIMIT) {
        s.out.push(errorReply(r[0], 'KV_ERR_OVERLOADED', `shard ${this.cfg.shard} queue is full`));
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
        slot: slotOf(key, this.s.hashTags),
        value: r[3] === null ? null : asBuffer(r[3]),
        ttlMs: r[4],
        flags: r[5],
        ifVersion: r[6],
        dueAt: 0,
        deadline: now + this.cfg.opDeadlineMs,
        answered: false,
        batch: null,
      };
      this.watch.admit(op);
      this.scheduler.submit(op);
    }
    s.out.flush();
    this.requestFlush();
  }

  /** A transaction (protocol/txn.ts): checked, then scheduled on every key it names. */
  private receiveTxn(r: Request, now: number): void {
    const program = r[3] === null ? 'transaction has no program' : unpackTxn(r[3]);
    if (typeof program === 'string') {
      this.s.out.push(errorReply(r[0], 'KV_ERR_BAD_REQUEST', program));
      return;
    }
    if (program[0].length + program[1].length + program[2].length === 0) {
      this.s.out.push(txnDone(r[0], true, []));
      return;
    }
    const op = txnOp(r[0], program, now + this.cfg.opDeadlineMs, this.s.hashTags);
    this.watch.admit(op);
    this.scheduler.submit(op);
  }

  /**
   * A script (OP_EVAL): scheduled like a transaction on its declared keys; one that declares no
   * key touches no row (every keyed command is refused) and runs at once, outside MySQL.
   */
  private receiveEval(r: Request, now: number): void {
    const program = r[3] === null ? 'script has no program' : unpackEval(r[3]);
    if (typeof program === 'string') {
      this.s.out.push(errorReply(r[0], 'KV_ERR_BAD_REQUEST', program));
      return;
    }
    const op = scriptOp(r[0], program, now + this.cfg.opDeadlineMs, this.s.hashTags);
    if (op.txn!.keys.length === 0) {
      void this.scriptRunner()
        .then((runner) => {
          this.s.out.push([op.id, 200, runScript(runner, op.txn!.script!, new Set(), new Map(), this.now(), this.cfg.maxValueBytes).out]);
        })
        .catch((err: Error) => {
          // The VM could not load or run: answered, never left to the gateway's backstop.
          this.s.out.push(errorReply(op.id, 'KV_ERR_INTERNAL', `script failed: ${err.message}`));
        })
        .finally(() => this.s.out.flush());
      return;
    }
    this.watch.admit(op);
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
    const s = this.s;
    return {
      shard: this.cfg.shard,
      up: s.up,
      queued: this.scheduler.size,
      readsInFlight: s.readsInFlight,
      writesInFlight: s.writesInFlight,
      readBatches: s.stats.readBatches,
      writeBatches: s.stats.writeBatches,
      readBatchOps: s.stats.readBatchOps,
      writeBatchOps: s.stats.writeBatchOps,
      readBatchSizes: s.stats.readBatchSizes.slice(),
      writeBatchSizes: s.stats.writeBatchSizes.slice(),
      retries: s.stats.retries,
      inDoubt: this.writes.inDoubt,
      expiry: this.expirer.stats(),
      group: this.store.groupStats?.() ?? null,
    };
  }

  /** Resolves when every accepted operation has been answered. New work is refused meanwhile. */
  drain(): Promise<void> {
    this.s.stopping = true;
    if (this.scheduler.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.s.stopping = true;
    this.s.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.reaps.stopTicks();
    this.feed?.stop();
    await this.expirer.stop();
    await this.store.close();
  }

  /** A catch-up read of the change feed for a watcher resuming from a cursor. */
  feedRange(after: number, upto: number, limit: number): Promise<{ rows: FeedRow[]; trimmed: number }> {
    return this.store.feedRange(after, upto, limit);
  }

  /** First start of a store: this database becomes shard `identity.shard` with its slots. */
  async bootstrap(identity: ShardIdentity): Promise<void> {
    const got = await this.store.bootstrap(identity);
    this.s.shardIndex = got.shardIndex;
    this.s.hashTags = got.hashTags;
  }

  ownership(): Promise<ShardOwnership> {
    return this.store.ownership();
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
    const s = this.s;
    while (
      this.scheduler.readyReadCount > 0 &&
      s.readsInFlight < this.cfg.readsInFlight &&
      (s.readsInFlight === 0 || this.scheduler.readyReadCount >= this.parallelThreshold)
    ) {
      void this.reads.run(this.scheduler.takeReads(this.maxBatchOps));
    }
    while (
      this.scheduler.readyWriteCount > 0 &&
      s.writesInFlight < this.cfg.writesInFlight &&
      (s.writesInFlight === 0 || this.scheduler.readyWriteCount >= this.parallelThreshold)
    ) {
      void this.writes.run(this.scheduler.takeWrites(this.maxBatchOps, this.maxBatchBytes));
    }
    // Transactions (and scripts) hold disjoint keys: the ready ones share one MySQL transaction,
    // in a user write slot of their own (never mixed with chains).
    while (this.scheduler.readyTxnCount > 0 && s.writesInFlight < this.cfg.writesInFlight) {
      const txns: PendingOp[] = [];
      for (const t of this.scheduler.takeTxns(this.maxBatchOps)) {
        if (t.answered)
          this.scheduler.txnDone(t); // answered while it waited: never applied
        else txns.push(t);
      }
      if (txns.length > 0) void this.writes.run([], txns);
    }
    // Expiry has its own lane: at most one reap transaction at a time, never holding a user
    // write slot, so a storm of expiring keys costs foreground traffic one connection's worth of
    // MySQL work, not all of it.
    if (this.scheduler.readyReapCount > 0 && !this.reaps.running) {
      void this.reaps.run(this.scheduler.takeReaps(this.reapBatchKeys));
    }
  }

  private afterBatch(): void {
    this.s.out.flush();
    this.scans.kick(); // before the reads: a waiting scan gets the freed read slot first
    this.flush();
    this.checkDrained();
  }

  /** Every DEADLINE_TICK_MS: answer what passed its deadline; probe if a batch stalls. */
  private sweepDeadlines(): void {
    if (this.watch.sweep()) void this.health.probe();
    this.checkDrained();
  }

  private checkDrained(): void {
    if (this.drainWaiters.length > 0 && this.scheduler.size === 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** The shard was found down: waiting ops would only time out one by one; answer them now, and give up on what runs. */
  private onDown(): void {
    for (const op of this.scheduler.drainWaiting()) {
      if (op.op === OP_REAP) this.expirer.onReapFailed(op.key);
      else this.s.out.answer(op, errorReply(op.id, 'KV_ERR_SHARD_UNAVAILABLE', `shard ${this.cfg.shard} is unavailable`));
    }
    this.watch.abandonAll('shard is down');
    this.scans.failAll({ code: 'KV_ERR_SHARD_UNAVAILABLE', message: `shard ${this.cfg.shard} is unavailable` });
    this.afterBatch();
  }
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
