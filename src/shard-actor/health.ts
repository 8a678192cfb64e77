/**
 * Owns whether one shard is up: the first start, the probe (one cheap query that also measures
 * the clock offset), and the steps that follow a (re)connect: init (schema, identity) and filling
 * the slot column of old rows. Relies on ActorState (store, flags, clock) and mysql-errors. Must
 * not answer ops itself: when the shard goes down it tells the actor (onDown), which answers what
 * waits and gives up on what runs.
 *
 *   start ─> init ──ok──> up                  probe ─> (init or syncClock) ──ok──> up ("back")
 *               └─connection error─> down              └─error, and no batch succeeded since
 *                                                        the probe began─> down, onDown()
 *
 * What must stay true: a probe that failed before a batch succeeded is stale news and never marks
 * the shard down (it would abandon healthy work); one probe runs at a time.
 */
import { errLog, type ErrorData } from '../protocol/errors';
import type { ActorState } from './actor-state';
import { classify } from './mysql-errors';

export type HealthListener = (up: boolean, error?: ErrorData) => void;

/** Rows whose slot was never computed (written before the column existed) filled per page. */
const FILL_SLOTS_PAGE = 1000;

export class ShardHealth {
  private probing = false;
  private initialized = false;
  private filling = false;

  constructor(
    private readonly s: ActorState,
    private readonly onHealth: HealthListener,
    /** The shard was just found down: answer what waits, abandon what runs. */
    private readonly onDown: () => void,
  ) {}

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
      this.s.up = false;
      this.s.log('error', 'shard is down at start', { err: errLog(err) });
      this.onHealth(false, { code: 'KV_ERR_SHARD_UNAVAILABLE', message: String((err as Error)?.message ?? err) });
    }
  }

  probeIfDown(): void {
    if (!this.s.up) void this.probe();
  }

  /** Decide up/down from one cheap query. While down, every new op gets 503 at once. */
  async probe(): Promise<void> {
    const s = this.s;
    if (this.probing) return;
    this.probing = true;
    const startedAt = s.localClock();
    try {
      if (this.initialized) await this.syncClock();
      else await this.init();
      if (!s.up) {
        s.up = true;
        s.log('info', 'shard is back');
        this.onHealth(true);
      }
    } catch (err) {
      // A batch that succeeded after this probe began is newer evidence: the fault (a slow link,
      // a brief hang) is over, and declaring the shard down now would abandon healthy work.
      if (s.up && s.lastOkAt <= startedAt) {
        s.up = false;
        s.log('error', 'shard is down', { err: errLog(err) });
        this.onHealth(false, { code: 'KV_ERR_SHARD_UNAVAILABLE', message: String((err as Error)?.message ?? err) });
        this.onDown();
      }
    } finally {
      this.probing = false;
    }
  }

  private async init(): Promise<void> {
    const got = await this.s.store.init();
    this.s.shardIndex = got.shardIndex;
    this.s.hashTags = got.hashTags;
    this.initialized = true;
    await this.syncClock();
    void this.fillSlots();
  }

  /**
   * Compute `slot` for rows written before the column existed, one page per turn, beside the
   * traffic. Idempotent: several gateways may do it at once. On error it stops; the next start
   * (or probe re-init) resumes.
   */
  private async fillSlots(): Promise<void> {
    const s = this.s;
    if (this.filling) return;
    this.filling = true;
    try {
      let total = 0;
      for (let n = await s.store.fillSlots(FILL_SLOTS_PAGE); n > 0 && !s.stopping; n = await s.store.fillSlots(FILL_SLOTS_PAGE)) total += n;
      if (total > 0) s.log('info', 'filled the slot column of rows from an older version', { rows: total });
    } catch (err) {
      s.log('warn', 'filling the slot column failed; it resumes at the next start', {
        code: (err as { code?: string })?.code,
        message: (err as Error)?.message,
      });
    } finally {
      this.filling = false;
    }
  }

  private async syncClock(): Promise<void> {
    const t0 = this.s.localClock();
    const shardNow = await this.s.store.now();
    const t1 = this.s.localClock();
    this.s.clockOffset = shardNow - Math.round((t0 + t1) / 2);
  }
}
