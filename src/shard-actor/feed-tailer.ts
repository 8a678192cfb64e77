/**
 * Owns following one shard's change feed (kv_feed) for this gateway while it has watchers: polls
 * new rows every pollMs (and soon after this actor's own commits), resolves holes, and hands
 * batches of rows with the low-water mark to `post` (the gateway's feed hub). Relies on
 * ShardStore. Must not filter or fan out: every row goes to the hub once.
 *
 * Ids are allocated at INSERT and committed in any order, so rows appear with holes:
 *
 *      delivered or dead        holes (allocated, not seen)       delivered
 *   ... ───────────────── low | h1 .. delivered .. h2 .. delivered | max
 *
 * - A row above `max` is delivered at once; the ids it skipped become holes.
 * - Each poll also asks for the holes' rows: one that committed meanwhile is delivered then. That
 *   is safe for per-key order: a row committed later than a higher id of the same key cannot
 *   exist, because the feed INSERT runs while the batch holds its key's row lock, so a later
 *   transaction on that key allocates its id after this one committed.
 * - A hole older than HOLE_WAIT_MS is filled (STATEMENTS.feedFill): the INSERT waits for an
 *   uncommitted owner, so afterwards the id holds either the real row (delivered by the next poll)
 *   or a filler (dead). `low` (every id <= it delivered or dead) is what cursors are made of.
 */
import { FEED_FILLER, type FeedRow } from '../protocol/feed';
import type { Log } from './expirer';
import type { ShardStore } from './shard-store';

/** Rows per poll. */
const POLL_ROWS = 1000;
/** Holes asked about per poll (the oldest first). */
const HOLES_PER_POLL = 256;
/** A hole this old is filled: its transaction is long committed or rolled back, or it never was one. */
export const HOLE_WAIT_MS = 500;
/** At start, ids this far below the highest are checked for holes (transactions in flight then). */
const START_WINDOW = 16_384;
/** A jump of more ids than this past `max` is not a set of holes (e.g. an auto-increment reset). */
const MAX_NEW_HOLES = 100_000;
/**
 * The soonest poll after a commit of this actor, and between polls while commits keep coming
 * (under load they come every millisecond: one poll then gathers many batches' rows).
 */
const KICK_DELAY_MS = 5;

export type PostFeed = (rows: FeedRow[], low: number, start: { floor: number } | null) => void;

export class FeedTailer {
  private active = false;
  private started = false;
  private polling = false;
  private again = false;
  private filling = false;
  private timer: NodeJS.Timeout | null = null;
  private low = 0;
  private max = 0;
  /** Hole id -> when first seen (local ms); insertion order is ascending id order. */
  private readonly holes = new Map<number, number>();
  /** Bumped at each (re)start, so a poll of an earlier run delivers nothing. */
  private generation = 0;
  /** Polls failed in a row (logged once per streak: a down shard fails every poll). */
  private failures = 0;

  constructor(
    private readonly store: ShardStore,
    private readonly pollMs: number,
    private readonly post: PostFeed,
    private readonly log: Log,
    private readonly clock: () => number = Date.now,
  ) {}

  /** The gateway has watchers on this shard (true) or none (false). */
  watch(on: boolean): void {
    if (on === this.active) return;
    this.active = on;
    this.generation++;
    this.started = false;
    this.holes.clear();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (on) this.schedule(0);
  }

  /** This actor committed a change: poll soon. */
  kick(): void {
    if (!this.active || !this.started) return;
    if (this.polling) this.again = true;
    else this.schedule(KICK_DELAY_MS);
  }

  stop(): void {
    this.watch(false);
  }

  private schedule(ms: number): void {
    if (this.timer !== null) {
      if (ms >= this.pollMs) return;
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(this.run, ms);
    this.timer.unref();
  }

  private readonly run = (): void => {
    this.timer = null;
    if (!this.active || this.polling) return;
    this.polling = true;
    this.again = false;
    const gen = this.generation;
    const work = this.started ? this.poll(gen) : this.start(gen);
    work
      .then(
        (more) => {
          if (this.failures > 0) this.log('info', 'change feed polls work again', { failed: this.failures });
          this.failures = 0;
          return more;
        },
        (err: unknown) => {
          if (this.failures++ === 0)
            this.log('warn', 'change feed poll failed; retrying every poll interval', {
              code: (err as { code?: string })?.code,
              message: (err as Error)?.message,
            });
          return false;
        },
      )
      .then((more) => {
        this.polling = false;
        if (!this.active || gen !== this.generation) return;
        this.schedule(more ? 0 : this.again ? KICK_DELAY_MS : this.pollMs);
      });
  };

  private async start(gen: number): Promise<boolean> {
    const head = await this.store.feedHead(START_WINDOW);
    if (gen !== this.generation) return false;
    const present = new Set(head.present);
    // Ids below the highest that are missing may belong to transactions in flight: holes, to be
    // filled at once if nobody holds them.
    const old = this.clock() - HOLE_WAIT_MS;
    for (let id = head.from + 1; id <= head.max; id++) if (!present.has(id)) this.holes.set(id, old);
    this.max = head.max;
    this.low = this.lowMark();
    this.started = true;
    this.post([], this.low, { floor: head.max });
    this.fillOldHoles();
    return false;
  }

  /** One poll; true when more rows are likely waiting. */
  private async poll(gen: number): Promise<boolean> {
    const ask: number[] = [];
    for (const id of this.holes.keys()) {
      if (ask.length >= HOLES_PER_POLL) break;
      ask.push(id);
    }
    const rows = await this.store.feedTail(this.max, ask, POLL_ROWS);
    if (gen !== this.generation) return false;
    const now = this.clock();
    const out: FeedRow[] = [];
    let tail = 0;
    for (const r of rows) {
      const id = r[0];
      if (id <= this.max) {
        if (this.holes.delete(id) && r[4] !== FEED_FILLER) out.push(r);
        continue;
      }
      tail++;
      if (id - this.max - 1 <= MAX_NEW_HOLES) for (let h = this.max + 1; h < id; h++) this.holes.set(h, now);
      else this.log('warn', 'change feed ids jumped; the skipped ids are taken as unused', { from: this.max, to: id });
      this.max = id;
      if (r[4] !== FEED_FILLER) out.push(r);
    }
    const low = this.lowMark();
    if (out.length > 0 || low !== this.low) {
      this.low = low;
      this.post(out, low, null);
    }
    this.fillOldHoles();
    return tail >= POLL_ROWS;
  }

  private lowMark(): number {
    for (const id of this.holes.keys()) return id - 1;
    return this.max;
  }

  /** Fill holes older than HOLE_WAIT_MS, one statement at a time, beside the polls. */
  private fillOldHoles(): void {
    if (this.filling || this.holes.size === 0) return;
    const cutoff = this.clock() - HOLE_WAIT_MS;
    const ids: number[] = [];
    for (const [id, seen] of this.holes) {
      if (seen > cutoff || ids.length >= POLL_ROWS) break;
      ids.push(id);
    }
    if (ids.length === 0) return;
    this.filling = true;
    this.store.feedFill(ids).then(
      () => {
        this.filling = false;
        this.kick();
      },
      (err: unknown) => {
        this.filling = false;
        this.log('warn', 'change feed hole fill failed; retrying', { code: (err as { code?: string })?.code, message: (err as Error)?.message });
      },
    );
  }
}
