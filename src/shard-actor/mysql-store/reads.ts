/**
 * Owns a shard's reads: point reads of a batch's keys, key-range scans, the values of a scan's
 * page and live keys per slot, each paired with the set of slots this shard served in the same
 * read view, and the cache of that served set. Relies on ShardConnections (readRows: cut when the
 * batch is abandoned), STATEMENTS and kv_slots_epoch (every change of the served set adds 1 to it,
 * schema-migration BUMP_SLOTS_EPOCH). Must not write.
 *
 *   served (cache): { epoch: n, slots } ── a read whose `ep` = n uses it (one epoch row read)
 *                                       └─ else the read checks its own slots, and the whole set
 *                                          is reloaded in the background (at most once a second)
 */
import type { RowDataPacket } from 'mysql2/promise';
import type { ScanRequest } from '../../protocol/listing';
import { StoreError } from '../mysql-errors';
import type { CountResult, LiveRow, ReadResult, ScanResult, ScanRow, ServedSet, TxControl } from '../shard-store';
import type { ShardConnections } from './connections';
import { STATEMENTS } from './statements';

/** Reads of a scan's rows before its served set is given up on (see withServedSet). */
const SCAN_EPOCH_ATTEMPTS = 3;
/** Least time between two reloads of the served set (see loadServed). */
const SERVED_RELOAD_MS = 1000;

/** The rows of a read statement that are rows (the LEFT JOIN's all-NULL row is not). */
function liveRows(rows: RowDataPacket[]): LiveRow[] {
  const live: LiveRow[] = [];
  for (const r of rows) if (r.k !== null) live.push(r as LiveRow);
  return live;
}

export class StoreReads {
  /** The served set and the epoch it was read at (null: not read yet, or seen to be stale). */
  private served: ServedSet | null = null;
  private servedLoading = false;
  private servedLoadedAt = -Infinity;
  /** Read batches answered through the epoch (fast) and through the slots' rows (for tests and profiling). */
  readonly readPaths = { epoch: 0, slots: 0 };

  constructor(private readonly c: ShardConnections) {}

  /**
   * Reads the whole served set and its epoch, once at a time, in the background (a read batch
   * that found the epoch moved, or none cached yet, has already checked its own slots).
   */
  private loadServed(): void {
    if (this.servedLoading) return;
    // While a move changes kv_slots every few hundred ms, a reload (the whole served set, up to
    // 16,384 rows) would be stale again at once: at most one a second; reads meanwhile check
    // their own slots, as they did before the cache existed.
    const now = performance.now();
    if (now - this.servedLoadedAt < SERVED_RELOAD_MS) return;
    this.servedLoadedAt = now;
    this.servedLoading = true;
    this.c
      .query<RowDataPacket[]>(STATEMENTS.servedSlots.sql, undefined)
      .then((rows) => {
        const epoch = Number(rows[0]?.ep);
        const slots = new Set<number>();
        for (const r of rows) if (r.slot !== null) slots.add(Number(r.slot));
        // Epochs only grow: never replace a newer set with an older one read concurrently.
        if (Number.isFinite(epoch) && (this.served === null || epoch >= this.served.epoch)) this.served = { epoch, slots };
      })
      .catch(() => undefined) // the next read batch tries again; reads stay correct meanwhile
      .finally(() => (this.servedLoading = false));
  }

  async readLive(keys: Buffer[], slots: number[], ctl?: TxControl): Promise<ReadResult> {
    const cached = this.served;
    if (cached !== null) {
      const fast = await this.c.readRows(STATEMENTS.readLiveEpoch.sql(keys.length), keys, ctl);
      if (Number(fast[0]?.ep) === cached.epoch) {
        this.readPaths.epoch++;
        return { rows: liveRows(fast), served: cached.slots };
      }
      // kv_slots changed since the set was read: check this batch's own slots, and reload.
      if (this.served === cached) this.served = null;
    }
    this.loadServed();
    this.readPaths.slots++;
    const rows = await this.c.readRows(STATEMENTS.readLive.sql(keys.length, slots.length), [...slots, ...keys], ctl);
    const served = new Set<number>();
    const list = rows[0]?.served as string | null | undefined;
    if (list) for (const x of String(list).split(',')) served.add(Number(x));
    return { rows: liveRows(rows), served };
  }

  /**
   * The served set read now (servedSlots), also kept as the cache when it is newer than the
   * cached one. For scans, which need the whole set (reads only need their slots' rows).
   */
  private async readServed(ctl: TxControl | undefined): Promise<ServedSet> {
    const rows = await this.c.readRows(STATEMENTS.servedSlots.sql, [], ctl);
    const set: ServedSet = { epoch: Number(rows[0]?.ep), slots: new Set() };
    for (const r of rows) if (r.slot !== null) set.slots.add(Number(r.slot));
    if (Number.isFinite(set.epoch) && (this.served === null || set.epoch >= this.served.epoch)) this.served = set;
    return set;
  }

  /**
   * A statement whose results carry kv_slots_epoch.n (the `ep` row), paired with the served set
   * of that epoch: the cached set when it matches, else one read now; when that is newer still
   * (a flip in between), the statement runs again. The same rule as readLive: a served set is
   * used only with rows read at its epoch. At most SCAN_EPOCH_ATTEMPTS rounds (a move flips a
   * range in milliseconds), then KV_SERVED_SET_MOVING (the gateway retries the page).
   */
  private async withServedSet(sql: string, params: unknown[], ctl: TxControl | undefined): Promise<{ rows: RowDataPacket[]; served: ServedSet }> {
    for (let attempt = 1; ; attempt++) {
      const rows = await this.c.readRows(sql, params, ctl);
      let ep = NaN;
      for (const r of rows) if (r.ep !== null && r.ep !== undefined) ep = Number(r.ep);
      let served = this.served;
      if (served === null || served.epoch !== ep) served = await this.readServed(ctl);
      if (served.epoch === ep) return { rows, served };
      if (attempt >= SCAN_EPOCH_ATTEMPTS) throw new StoreError('KV_SERVED_SET_MOVING', `the served set changed during ${attempt} reads of a scan`);
    }
  }

  async scanRange(q: ScanRequest, end: Buffer | null, ctl?: TxControl): Promise<ScanResult> {
    const params: unknown[] = [Buffer.from(q.prefix)];
    if (q.after !== null) params.push(Buffer.from(q.after));
    if (end !== null) params.push(end);
    params.push(q.limit);
    const variant = (q.after !== null ? 1 : 0) | (end !== null ? 2 : 0) | (q.values ? 4 : 0);
    const { rows, served } = await this.withServedSet(STATEMENTS.scanRange.sql(variant), params, ctl);
    const out: ScanRow[] = [];
    for (const r of rows) {
      if (r.k === null) continue;
      out.push({ k: r.k as Buffer, expires_at: r.expires_at === null ? null : Number(r.expires_at), len: q.values ? Number(r.len) : undefined });
    }
    // MariaDB and MySQL return the ordered part of a UNION ALL in its order, but SQL does not
    // promise it; the page's upTo and byte cut depend on it (at most limit rows: cheap).
    out.sort((a, b) => Buffer.compare(a.k, b.k));
    return { rows: out, served };
  }

  async readValues(keys: Buffer[], ctl?: TxControl): Promise<Map<string, { v: Buffer; expires_at: number | null }>> {
    const out = new Map<string, { v: Buffer; expires_at: number | null }>();
    if (keys.length === 0) return out;
    const rows = await this.c.readRows(STATEMENTS.scanValues.sql(keys.length), keys, ctl);
    for (const r of rows) out.set((r.k as Buffer).toString('latin1'), { v: r.v as Buffer, expires_at: r.expires_at === null ? null : Number(r.expires_at) });
    return out;
  }

  async countBySlot(ctl?: TxControl): Promise<CountResult> {
    const { rows, served } = await this.withServedSet(STATEMENTS.countBySlot.sql, [], ctl);
    const counts = new Map<number, number>();
    for (const r of rows) {
      if (r.slot === null) continue;
      const slot = Number(r.slot);
      counts.set(slot, (counts.get(slot) ?? 0) + Number(r.c));
    }
    return { counts, served };
  }
}
