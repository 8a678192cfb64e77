/**
 * Owns the actor's side of expiry: the expiry tick on the wheel's slot boundaries, the reap lane
 * (reap-only chains, one conditional DELETE at a time), and the change feed's retention step that
 * rides the same tick. Relies on ActorState (scheduler, store, clock, flags, retries), the Expirer
 * (which keys are due; told what was reaped) and the FeedTailer (kicked after a reap). Must not
 * hold a user write slot: a reap chained with user writes on its key runs inside their
 * transaction (write-path.ts; key-scheduler.ts says when each happens).
 *
 *   tick (slot boundary + margin) ─> expirer.tick ─> submit(key) ─> scheduler ─> readyReaps
 *       ─> run(chains): DELETE ... AND expires_at <= NOW(3) (autocommit, one batch at a time)
 *       ─> expirer.onReapedBatch / onReapFailed
 *
 * Reaps (the expirer's conditional deletes) take one of two paths, both live: a chain of reaps
 * only runs in this lane (run: one `DELETE ... AND expires_at <= NOW(3)` in autocommit, one batch
 * at a time, never holding a user write slot); a reap that the scheduler chained with user writes
 * on its key runs inside their transaction (WritePath.run, decided by planWrites), so the user
 * writes never wait for the reap lane.
 */
import { errLog } from '../protocol/errors';
import { OP_REAP } from '../protocol/ops';
import { slotOf } from '../protocol/slot-map';
import type { ActorState } from './actor-state';
import type { Expirer } from './expirer';
import type { Chain } from './key-scheduler';
import { classify } from './mysql-errors';

/** How far past a wheel slot's end the expiry tick fires (see scheduleTick). */
const EXPIRY_TICK_MARGIN_MS = 2;
/** Least time between two change-feed retention steps (each one bounded page). */
const FEED_TRIM_INTERVAL_MS = 1000;

export class ReapLane {
  /** A reap statement is running (the reap lane runs one at a time). */
  running = false;
  /** Reaps carry ids of their own, below zero (a user op's id is the gateway's, at least zero). */
  private nextReapId = -1;
  private timer: NodeJS.Timeout | null = null;
  private trimming = false;
  private lastTrim = -Infinity;

  constructor(
    private readonly s: ActorState,
    private readonly expirer: Expirer,
  ) {}

  /** The expirer found `key` due (its expires_at was `dueAt`): queue its reap on the key. */
  submit(key: Buffer, dueAt: number): void {
    const s = this.s;
    if (!s.up || s.stopping) {
      this.expirer.onReapFailed(key);
      return;
    }
    s.scheduler.submit({
      id: this.nextReapId--,
      op: OP_REAP,
      key,
      keyStr: key.toString('latin1'),
      slot: slotOf(key, s.hashTags),
      value: null,
      ttlMs: 0,
      flags: 0,
      ifVersion: 0,
      dueAt,
      deadline: Infinity,
      answered: false,
      batch: null,
    });
    s.requestFlush();
  }

  /**
   * Reap-only chains: one conditional DELETE (autocommit), no locking read first. The keys are
   * held by the scheduler, so no write of this process races it; a row rewritten or given a new
   * TTL by another gateway fails the `expires_at <= NOW(3)` re-check under its row lock and stays.
   */
  async run(chains: Chain[]): Promise<void> {
    const s = this.s;
    this.running = true;
    const due: Array<{ key: Buffer; dueAt: number }> = [];
    for (const c of chains) for (const op of c.ops) due.push({ key: op.key, dueAt: op.dueAt });
    // Only lock conflicts are retried here; anything else leaves the rows to a later sweep.
    const keys = chains.map((c) => c.key);
    const result = await s.withRetries(
      () => (s.feedOn ? s.store.reapWithFeed(keys) : s.store.reap(keys)),
      (err) => classify(err) === 'retry',
    );
    if (result.ok && result.value > 0) s.feed?.kick();
    if (!result.ok) s.onStoreError(result.error);
    this.running = false;
    if (result.ok) this.expirer.onReapedBatch(due, result.value, s.now());
    else for (const d of due) this.expirer.onReapFailed(d.key);
    for (const c of chains) s.scheduler.chainDone(c);
    s.afterBatch();
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
  scheduleTick(): void {
    if (this.s.stopped) return;
    const tickMs = this.s.cfg.expiry.tickMs;
    const now = this.s.now();
    const wait = tickMs - (((now % tickMs) + tickMs) % tickMs) + EXPIRY_TICK_MARGIN_MS;
    this.timer = setTimeout(this.tick, wait);
    this.timer.unref();
  }

  /** No further tick (the actor is stopping). */
  stopTicks(): void {
    if (this.timer !== null) clearTimeout(this.timer);
  }

  private readonly tick = (): void => {
    this.timer = null;
    if (this.s.up) this.expirer.tick(this.s.now());
    if (this.s.up && this.s.feedOn && this.expirer.isExpirer) this.trimFeed();
    this.scheduleTick();
  };

  /**
   * Change-feed retention, by the expirer lease holder only, on the expiry tick: at most one
   * bounded step (one page of DELETE) per FEED_TRIM_INTERVAL_MS, or back to back while a step
   * deletes a full page (a backlog).
   */
  private trimFeed(): void {
    const s = this.s;
    const now = s.now();
    if (this.trimming || now - this.lastTrim < FEED_TRIM_INTERVAL_MS) return;
    this.trimming = true;
    const f = s.cfg.feed!;
    s.store.feedTrim(now, { retentionMs: f.retentionMs, maxRows: f.maxRows, maxBytes: f.maxBytes }).then(
      (n) => {
        this.trimming = false;
        this.lastTrim = n >= 1000 ? -Infinity : s.now();
      },
      (err: unknown) => {
        this.trimming = false;
        this.lastTrim = s.now();
        s.log('warn', 'change feed trim failed', { err: errLog(err) });
      },
    );
  }
}
