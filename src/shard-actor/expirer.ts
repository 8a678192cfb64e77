/**
 * Owns physical deletion of one shard's expired rows. Relies on ShardStore (scans, expirer lock),
 * TimerWheel, and the actor's `submitReap`, which sends a reap through the same per-key scheduler
 * as user writes (so a reap never races a write to its key in this process). Reap-only batches
 * run in their own lane, one conditional DELETE at a time per shard, beside the user write slots.
 * Never reads the clock: `now` is passed to `tick`.
 *
 * Visibility does not depend on this module: reads treat a row with expires_at <= now as absent.
 * This module bounds how long such a row occupies disk, with bounded work per tick:
 *
 *   MySQL index on expires_at
 *   ──────────────┬───────────────────────────┬───────────────────────────>
 *      overdue    │ now        loaded (wheel)  │ coveredUpTo     not in memory
 *   (sweep pages) │                            │ (loader pages move this right, up to now+horizon)
 *
 * - loader: pages `(coveredUpTo, now + horizon]` into the wheel, in (expires_at, k) order.
 * - wheel: hands out due keys; each becomes a reap op (at most `reapsInFlight` at once).
 * - sweep: when the wheel has nothing due, pages `expires_at <= now` (rows the wheel never knew:
 *   a restart, an outage, another gateway's writes, a full wheel) and reaps them.
 * - role: only the holder of the shard's expirer lease (a row in kv_lease, renewed every
 *   lockRetryMs, expiring after 3x that on the shard's clock) does any of this; the role moves by
 *   itself when a holder dies, and a replicated row holds for a whole Galera group (GET_LOCK is
 *   per node). Two holders at once (clock skew, a partition) only waste work: every reap
 *   re-checks the row under its lock, and Galera certification orders conflicting deletes.
 */
import { errLog } from '../protocol/errors';
import type { ActorConfig, ExpiryStats } from '../protocol/port-messages';
import { EXPIRY_LAG_BUCKETS_MS } from '../protocol/port-messages';
import type { ShardStore } from './shard-store';
import { TimerWheel } from './timer-wheel';

export type ExpirerConfig = ActorConfig['expiry'];

export type SubmitReap = (key: Buffer, dueAt: number) => void;
export type Log = (level: 'info' | 'warn' | 'error', msg: string, data?: Record<string, unknown>) => void;

const LOAD_PAGE = 2000;
const LOAD_PAGES_PER_TICK = 4;
const SWEEP_INTERVAL_MS = 1000;

export class Expirer {
  isExpirer = false;
  private wheel: TimerWheel;
  /** Every row with expires_at <= coveredUpTo was (or is being) loaded, or is overdue. */
  private coveredUpTo = 0;
  /** Position of the loader inside the covered range: (ts, key) of the last row loaded. */
  private loadTs = 0;
  private loadKey: Buffer | null = null;
  private loading = false;
  private sweeping = false;
  private lastSweep = 0;
  private sweepBacklog = 0;
  private lockBusy = false;
  private lastLockTry = -Infinity;
  private readonly reaping = new Set<string>();
  private expired = 0;
  private readonly lag = new Array<number>(EXPIRY_LAG_BUCKETS_MS.length + 1).fill(0);
  private lagSumMs = 0;
  private stopped = false;

  constructor(
    private readonly cfg: ExpirerConfig,
    private readonly store: ShardStore,
    private readonly submitReap: SubmitReap,
    private readonly log: Log,
    now: number,
  ) {
    this.wheel = new TimerWheel(cfg.tickMs, Math.ceil(cfg.horizonMs / cfg.tickMs) + 4, now);
  }

  /** One tick: role check, wheel advance, reaps within budget, loader and sweep pages. */
  tick(now: number): void {
    if (this.stopped) return;
    if (now - this.lastLockTry >= this.cfg.lockRetryMs) this.checkRole(now);
    if (!this.isExpirer) return;
    this.wheel.advance(now);
    const budget = this.cfg.reapsInFlight - this.reaping.size;
    if (budget > 0 && this.wheel.dueCount > 0) {
      for (const e of this.wheel.takeDue(budget)) this.reap(e.key, e.dueAt);
    }
    if (!this.loading && this.wheel.size < this.cfg.maxWheelKeys && this.coveredUpTo < now + this.cfg.horizonMs) {
      void this.load(now);
    }
    if (
      !this.sweeping &&
      this.wheel.dueCount === 0 &&
      this.reaping.size < this.cfg.reapsInFlight / 2 &&
      (this.sweepBacklog > 0 || now - this.lastSweep >= SWEEP_INTERVAL_MS)
    ) {
      void this.sweep(now);
    }
  }

  /** A committed write gave `key` this expiry. Add it if the loader has already passed it. */
  onExpirySet(key: Buffer, expiresAt: number): void {
    if (!this.isExpirer || expiresAt > this.coveredUpTo) return;
    if (this.wheel.size >= this.cfg.maxWheelKeys) return; // the sweep finds it once overdue
    this.wheel.add(key, expiresAt);
  }

  /** A reap finished: `deleted` says whether the row was still expired and is now gone. */
  onReaped(key: Buffer, dueAt: number, deleted: boolean, now: number): void {
    this.reaping.delete(key.toString('latin1'));
    if (!deleted) return;
    this.expired++;
    const lag = Math.max(0, now - dueAt);
    this.lagSumMs += lag;
    let i = 0;
    while (i < EXPIRY_LAG_BUCKETS_MS.length && lag > EXPIRY_LAG_BUCKETS_MS[i]) i++;
    this.lag[i]++;
  }

  /**
   * A reap batch finished: `deleted` of its rows were still expired and are gone (the others
   * were rewritten or got a new TTL meanwhile). One statement reports only the count, so the lag
   * of the first `deleted` entries stands for the batch: exact when all were deleted, the usual
   * case.
   */
  onReapedBatch(due: Array<{ key: Buffer; dueAt: number }>, deleted: number, now: number): void {
    for (let i = 0; i < due.length; i++) this.onReaped(due[i].key, due[i].dueAt, i < deleted, now);
  }

  /** A reap failed (shard down, contention): forget it; the sweep finds the row again. */
  onReapFailed(key: Buffer): void {
    this.reaping.delete(key.toString('latin1'));
  }

  stats(): ExpiryStats {
    return {
      isExpirer: this.isExpirer,
      expired: this.expired,
      wheelSize: this.wheel.size,
      backlog: this.wheel.dueCount + this.reaping.size + this.sweepBacklog,
      lag: this.lag.slice(),
      lagSumMs: this.lagSumMs,
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.isExpirer = false;
    await this.store.releaseExpirerLock().catch(() => undefined);
  }

  private reap(key: Buffer, dueAt: number): void {
    const keyStr = key.toString('latin1');
    if (this.reaping.has(keyStr)) return;
    this.reaping.add(keyStr);
    this.submitReap(key, dueAt);
  }

  private checkRole(now: number): void {
    if (this.lockBusy) return;
    this.lockBusy = true;
    this.lastLockTry = now;
    this.store.tryExpirerLock().then(
      (got) => {
        this.lockBusy = false;
        if (got && !this.isExpirer && !this.stopped) this.becomeExpirer(now);
        else if (!got && this.isExpirer) this.loseRole('lock held elsewhere');
      },
      (err) => {
        this.lockBusy = false;
        if (this.isExpirer) this.loseRole(`lock connection failed: ${(err as Error).message}`);
      },
    );
  }

  private becomeExpirer(now: number): void {
    this.isExpirer = true;
    this.wheel.clear(now);
    // Everything due by now is the sweep's; the loader starts at now. Rebuilt from MySQL only.
    this.coveredUpTo = now;
    this.loadTs = now;
    this.loadKey = null;
    this.lastSweep = -Infinity;
    this.log('info', 'became expirer');
  }

  private loseRole(why: string): void {
    this.isExpirer = false;
    this.wheel.clear(0);
    this.log('warn', 'lost expirer role', { why });
  }

  private async load(now: number): Promise<void> {
    this.loading = true;
    try {
      const upto = now + this.cfg.horizonMs;
      // Claim the range before reading it: writes that commit meanwhile with expires_at <= upto
      // are added by onExpirySet, so none falls between the scan and the claim.
      this.coveredUpTo = Math.max(this.coveredUpTo, upto);
      for (let page = 0; page < LOAD_PAGES_PER_TICK && this.isExpirer; page++) {
        if (this.wheel.size >= this.cfg.maxWheelKeys) return;
        if (this.loadKey !== null) {
          // Rows at exactly loadTs after the last key loaded (many keys share a millisecond).
          const ties = await this.store.scanDueTies(this.loadTs, this.loadKey, LOAD_PAGE);
          if (!this.isExpirer) return;
          for (const r of ties) this.wheel.add(r.k, r.expires_at);
          this.loadKey = ties.length === LOAD_PAGE ? ties[ties.length - 1].k : null;
          continue;
        }
        const rows = await this.store.scanDueWindow(this.loadTs, upto, LOAD_PAGE);
        if (!this.isExpirer) return;
        for (const r of rows) this.wheel.add(r.k, r.expires_at);
        if (rows.length < LOAD_PAGE) {
          this.loadTs = upto; // window exhausted
          return;
        }
        const last = rows[rows.length - 1];
        this.loadTs = last.expires_at;
        this.loadKey = last.k;
      }
    } catch (err) {
      this.log('warn', 'expiry loader page failed', { err: errLog(err) });
    } finally {
      this.loading = false;
    }
  }

  private async sweep(now: number): Promise<void> {
    this.sweeping = true;
    this.lastSweep = now;
    try {
      const rows = await this.store.scanOverdue(this.cfg.reapBatch);
      if (!this.isExpirer) return;
      for (const r of rows) {
        if (this.reaping.size >= this.cfg.reapsInFlight) break;
        this.reap(r.k, r.expires_at); // skips keys already being reaped
      }
      // A full page means more may wait: sweep again next tick instead of next interval.
      this.sweepBacklog = rows.length === this.cfg.reapBatch ? rows.length : 0;
    } catch (err) {
      this.log('warn', 'expiry sweep failed', { err: errLog(err) });
    } finally {
      this.sweeping = false;
    }
  }
}
