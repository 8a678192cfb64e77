/**
 * Owns one shard's key-range scans (listing, SCAN, KEYS) and slot counts (DBSIZE): a lane of their
 * own beside the per-key read and write batches, bounded in count, bytes and time. Relies on
 * ShardStore (scanRange, readValues, countBySlot), mysql-errors and listing. Must not touch the
 * KeyScheduler: a scan holds no key and orders against no write (a listing is not a snapshot;
 * each key is seen as it was at some moment of the request).
 *
 *   submit ─> waiting (at most MAX_WAITING, else 503 OVERLOADED) ─> running (at most
 *   SCANS_IN_FLIGHT, each holding one of the actor's read slots, so one of its pooled read
 *   connections: the pool does not grow for scans) ─> answer, the read slot given back
 *   every job: a timer at arrival + opDeadlineMs answers 503 SHARD_UNAVAILABLE if nothing did,
 *   and cuts its statement (TxControl), as the actor's deadline sweep does for a read batch
 *
 * What must stay true: each job is answered exactly once; a job answered by its deadline runs no
 * further statement; a page's value bytes stay near MAX_PAGE_VALUE_BYTES (values are read only
 * for the rows that fit, chosen from the rows' lengths).
 */
import type { ErrorData } from '../protocol/errors';
import { MAX_PAGE_VALUE_BYTES, prefixEnd, servedBitmap, type ScanRequest, type ShardPage } from '../protocol/listing';
import { slotOf } from '../protocol/slot-map';
import { toKvError } from './mysql-errors';
import { UNSLOTTED } from './schema-migration';
import { newTxControl, type ServedSet, type ShardStore, type TxControl } from './shard-store';

/**
 * Scans running at once per shard actor. Each takes one of the actor's read slots (readsInFlight,
 * 4 by default), so point reads keep the others; the actor offers a freed slot to a waiting scan
 * before its next read batch (kick), so reads cannot starve scans either.
 */
export const SCANS_IN_FLIGHT = 1;

/** The actor's read slots, shared with its read batches. */
export interface ReadSlots {
  /** Takes a slot if one is free. */
  take(): boolean;
  /** Gives it back (the actor then starts what waits for it). */
  give(): void;
}
/** Scans waiting per shard actor beyond those running; more are answered 503 at once. */
const MAX_WAITING = 64;

export type ScanAnswer = { page: ShardPage } | { count: number; served: Uint8Array } | { error: ErrorData };

interface Job {
  /** A page of keys, or (null) a count of the served slots' keys. */
  request: ScanRequest | null;
  answer: (a: ScanAnswer) => void;
  done: boolean;
  ctl: TxControl;
  timer: NodeJS.Timeout | null;
}

export class ScanLane {
  private readonly waiting: Job[] = [];
  private running = 0;
  private readonly active = new Set<Job>();
  /** The bitmap of the last served set seen (sent with every page; rebuilt when the set changes). */
  private bitmap: { of: ServedSet; bits: Uint8Array } | null = null;

  constructor(
    private readonly store: ShardStore,
    private readonly shard: number,
    private readonly deadlineMs: number,
    /** The store's hash rule (ActorState.hashTags): a row counts only if its slot is served. */
    private readonly hashTags: () => boolean,
    private readonly slots: ReadSlots,
  ) {}

  /** A read slot may have freed: start a waiting scan. Cheap when none waits (after every batch). */
  kick(): void {
    if (this.waiting.length > 0) this.next();
  }

  /** A page of one key range (`request`) or the count of every served key (null). */
  submit(request: ScanRequest | null, answer: (a: ScanAnswer) => void): void {
    if (this.waiting.length >= MAX_WAITING) {
      answer({ error: { code: 'KV_ERR_OVERLOADED', message: `shard ${this.shard}: ${MAX_WAITING} scans are waiting` } });
      return;
    }
    const job: Job = { request, answer, done: false, ctl: newTxControl(), timer: null };
    job.timer = setTimeout(
      () =>
        this.finish(job, {
          error: { code: 'KV_ERR_SHARD_UNAVAILABLE', message: `shard ${this.shard}: the scan got no answer within the op deadline (${this.deadlineMs} ms)` },
        }),
      this.deadlineMs,
    );
    job.timer.unref();
    this.waiting.push(job);
    this.next();
  }

  /** The shard is down or stopping: answer everything, cut what runs. */
  failAll(error: ErrorData): void {
    for (const job of this.waiting.splice(0)) this.finish(job, { error });
    // Running jobs fail with their statements (cut below); answer them now all the same.
    for (const job of this.active) this.finish(job, { error });
  }

  private next(): void {
    while (this.running < SCANS_IN_FLIGHT && this.waiting.length > 0) {
      if (this.waiting[0].done) {
        this.waiting.shift(); // answered by its deadline while it waited
        continue;
      }
      if (!this.slots.take()) return; // kicked again when a read batch ends
      const job = this.waiting.shift()!; // at most MAX_WAITING: a shift is cheap here
      this.running++;
      this.active.add(job);
      void this.run(job)
        .then(
          (a) => this.finish(job, a),
          (err) => this.finish(job, { error: scanError(err, this.shard) }),
        )
        .finally(() => {
          this.running--;
          this.active.delete(job);
          this.slots.give();
        });
    }
  }

  private finish(job: Job, a: ScanAnswer): void {
    if (job.done) return;
    job.done = true;
    if (job.timer !== null) clearTimeout(job.timer);
    if (!job.ctl.abandoned) {
      job.ctl.abandoned = true; // no further statement; a statement in flight is cut
      job.ctl.cut?.();
    }
    job.answer(a);
  }

  private bits(served: ServedSet): Uint8Array {
    if (this.bitmap === null || this.bitmap.of !== served) this.bitmap = { of: served, bits: servedBitmap(served.slots) };
    return this.bitmap.bits;
  }

  private async run(job: Job): Promise<ScanAnswer> {
    const q = job.request;
    if (q === null) {
      const { counts, served } = await this.store.countBySlot(job.ctl);
      let count = 0;
      // Slot 65535 holds rows written before the slot column existed: the mover refuses a shard
      // that has any, so they are still in the slots this shard was created with, all served.
      for (const [slot, n] of counts) if (served.slots.has(slot) || slot === UNSLOTTED) count += n;
      return { count, served: this.bits(served) };
    }
    const { rows, served } = await this.store.scanRange(q, prefixEnd(q.prefix), job.ctl);
    const page: ShardPage = {
      keys: [],
      values: q.values ? [] : null,
      expiresAt: q.values ? [] : null,
      upTo: rows.length === q.limit ? rows[rows.length - 1].k : null,
      served: this.bits(served),
    };
    if (!q.values) {
      const tags = this.hashTags();
      for (const r of rows) if (served.slots.has(slotOf(r.k, tags))) page.keys.push(r.k);
      return { page };
    }
    // Values: take served rows while their bytes fit (at least one), then read those values.
    const chosen: Buffer[] = [];
    let bytes = 0;
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      if (chosen.length > 0 && bytes + r.len! > MAX_PAGE_VALUE_BYTES) {
        page.upTo = rows[i - 1].k; // stopped early: everything up to the previous row is examined
        break;
      }
      if (!served.slots.has(slotOf(r.k, this.hashTags()))) continue;
      chosen.push(r.k);
      bytes += r.len!;
    }
    const values = await this.store.readValues(chosen, job.ctl);
    for (const k of chosen) {
      const row = values.get(k.toString('latin1'));
      if (row === undefined) continue; // deleted or expired since the range was read
      page.keys.push(k);
      page.values!.push(row.v);
      page.expiresAt!.push(row.expires_at);
    }
    return { page };
  }
}

function scanError(err: unknown, shard: number): ErrorData {
  if ((err as { code?: unknown })?.code === 'KV_SERVED_SET_MOVING')
    return { code: 'KV_ERR_SLOT_MOVING', message: `shard ${shard}: slots are moving; retry the page` };
  return toKvError(err, shard).toData();
}
