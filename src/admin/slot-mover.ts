/**
 * Owns moving a range of slots from the shard that owns them to another, online, and resuming a
 * move that was interrupted. Relies on ShardSet (connections, slot rows) and the kv_slots state
 * machine in protocol/slot-map.ts. Must not run twice at once: the caller holds the mover lock.
 *
 * One move of slots [lo, hi] from A to B (every step one autocommit statement guarded by the
 * state it expects, so a step that already happened is a no-op when the command runs again):
 *
 *   1 B: IMPORTING(E, peer A), stale rows of the range deleted      E = A's highest epoch + 1
 *   2 A: OWNED -> COPYING(peer B)     waits for A's writes in flight (they share-lock the rows);
 *                                     from now on A's writes log their keys in kv_slot_changes
 *   3 copy A -> B in pages, keyset order (slot, k) on the kv_slot index; live rows only
 *   4 catch up: apply logged keys (current row, or delete) to B, drop each entry unless bumped
 *   5 A: COPYING -> FENCED           waits for writes in flight; later writes are held by A's actor
 *   6 final catch-up (the log only shrinks now); B.kv_seq >= A.kv_seq
 *   7 A: FENCED -> MOVED(E, peer B)   A refuses the range; held writes are re-routed
 *   8 B: IMPORTING -> OWNED(E)        B serves the range
 *   9 A: delete the range's rows in pages
 *
 * The write pause of the range is steps 5-8: one lock wait for writes in flight, the changes
 * made since the last catch-up round, four small statements. It does not grow with the range's
 * size: rounds of step 4 repeat until little is left before fencing.
 */
import type { RowDataPacket, ResultSetHeader, Pool } from 'mysql2/promise';
import { SLOT_COPYING, SLOT_FENCED, SLOT_IMPORTING, SLOT_MOVED, SLOT_OWNED, STATE_NAMES } from '../protocol/slot-map';
import { NOW_MS } from '../shard-actor/mysql-store/statements';
import { BUMP_SLOTS_EPOCH, UNSLOTTED } from '../shard-actor/schema-migration';
import type { ShardSet, SlotRow } from './shard-set';

export interface MoveHooks {
  /** Rows copied (step 3) or caught up (steps 4, 6). */
  onRows?(n: number): void;
  /** The write pause of one range (steps 5-8), in ms. */
  onPause?(ms: number, lo: number, hi: number, parts: PauseParts): void;
  log?(msg: string): void;
  /** Test seam: called before each step with its number; a throw simulates a crash there. */
  beforeStep?(step: number, lo: number, hi: number): void | Promise<void>;
}

/** Where a write pause went: waiting for writes in flight, the last catch-up, the two flips. */
export interface PauseParts {
  fenceMs: number;
  catchUpMs: number;
  flipMs: number;
}

export interface MoveOptions {
  /** Rows per copy page. */
  pageRows: number;
  /** Fence once a catch-up round finds at most this many changed keys. */
  fenceBelow: number;
  /** Catch-up rounds before fencing anyway. */
  maxRounds: number;
}

export const DEFAULT_MOVE_OPTIONS: MoveOptions = { pageRows: 1000, fenceBelow: 200, maxRounds: 20 };

/** Bytes of values per INSERT sent to the target (well under max_allowed_packet). */
const INSERT_BYTES = 4 * 1024 * 1024;

type Kind = 'done' | 'start' | 'copy' | 'final' | 'flip';

/** What one slot needs, from every shard's rows for it. */
export interface SlotSituation {
  kind: Kind;
  source: number;
  target: number;
}

/**
 * The situation of one slot. At most one shard serves a slot (owned, copying or fenced); if none
 * does, the highest-epoch MOVED row names the importing target (a flip to finish).
 */
export function situationOf(rows: SlotRow[], slot: number, wanted: number): SlotSituation {
  const serving = rows.filter((r) => r.state === SLOT_OWNED || r.state === SLOT_COPYING || r.state === SLOT_FENCED);
  if (serving.length > 1) throw new Error(`slot ${slot} is served by shards ${serving.map((r) => r.shard).join(' and ')}: refusing to touch it`);
  if (serving.length === 1) {
    const a = serving[0];
    if (a.state === SLOT_OWNED) return { kind: a.shard === wanted ? 'done' : 'start', source: a.shard, target: wanted };
    // An interrupted move continues towards the target it started with.
    return { kind: a.state === SLOT_COPYING ? 'copy' : 'final', source: a.shard, target: a.peer! };
  }
  const moved = rows.filter((r) => r.state === SLOT_MOVED).sort((x, y) => y.epoch - x.epoch)[0];
  const importing = moved && rows.find((r) => r.shard === moved.peer && r.state === SLOT_IMPORTING && r.epoch === moved.epoch);
  if (!moved || !importing) {
    throw new Error(
      `slot ${slot} has no owner in any reachable shard (${rows.map((r) => `shard ${r.shard}: ${STATE_NAMES[r.state]}`).join(', ') || 'no rows'}); is a shard down?`,
    );
  }
  return { kind: 'flip', source: moved.shard, target: importing.shard };
}

export class SlotMover {
  constructor(
    private readonly set: ShardSet,
    private readonly opts: MoveOptions = DEFAULT_MOVE_OPTIONS,
    private readonly hooks: MoveHooks = {},
  ) {}

  /** Move (or finish moving) slots [lo, hi] to `target`, in sub-ranges of equal situation. */
  async moveRange(lo: number, hi: number, target: number, rows?: SlotRow[]): Promise<void> {
    const all = rows ?? (await this.set.slotRows());
    const bySlot = new Map<number, SlotRow[]>();
    for (const r of all) if (r.slot >= lo && r.slot <= hi) (bySlot.get(r.slot) ?? bySlot.set(r.slot, []).get(r.slot)!).push(r);
    let start = lo;
    let cur = situationOf(bySlot.get(lo) ?? [], lo, target);
    for (let s = lo + 1; s <= hi + 1; s++) {
      const next = s <= hi ? situationOf(bySlot.get(s) ?? [], s, target) : null;
      if (next && next.kind === cur.kind && next.source === cur.source && next.target === cur.target) continue;
      await this.runUnit(start, s - 1, cur, bySlot);
      if (next) {
        start = s;
        cur = next;
      }
    }
  }

  private async runUnit(lo: number, hi: number, sit: SlotSituation, bySlot: Map<number, SlotRow[]>): Promise<void> {
    if (sit.kind === 'done') return;
    const a = this.set.member(sit.source).pool;
    const b = this.set.member(sit.target).pool;
    const n = hi - lo + 1;
    const range = [lo, hi];
    const step = async (i: number) => this.hooks.beforeStep?.(i, lo, hi);
    let epoch = 0;
    for (let s = lo; s <= hi; s++) for (const r of bySlot.get(s) ?? []) if (r.shard === sit.source || r.shard === sit.target) epoch = Math.max(epoch, r.epoch);
    if (sit.kind === 'start') {
      epoch += 1;
      this.hooks.log?.(`slots ${lo}-${hi}: shard ${sit.source} -> shard ${sit.target} (epoch ${epoch})`);
      await requireSlotted(a, sit.source);
      await requireSlotted(b, sit.target);
      await step(1);
      await deleteRange(b, lo, hi);
      const now = Date.now();
      await b.query(
        `INSERT INTO kv_slots (slot, state, epoch, peer, updated_at) VALUES ${new Array(n).fill('(?, 5, ?, ?, ?)').join(',')} ` +
          'ON DUPLICATE KEY UPDATE state = VALUES(state), epoch = VALUES(epoch), peer = VALUES(peer), updated_at = VALUES(updated_at)',
        Array.from({ length: n }, (_, i) => [lo + i, epoch, sit.source, now]).flat(),
      );
      await a.query('DELETE FROM kv_slot_changes WHERE slot BETWEEN ? AND ?', range);
      await step(2);
      await expectAll(
        a,
        `UPDATE kv_slots SET state = ${SLOT_COPYING}, peer = ?, updated_at = ? WHERE slot BETWEEN ? AND ? AND state = ${SLOT_OWNED}`,
        [sit.target, Date.now(), lo, hi],
        n,
        'start copying',
      );
    } else {
      this.hooks.log?.(`slots ${lo}-${hi}: resuming (${sit.kind}) shard ${sit.source} -> shard ${sit.target} (epoch ${epoch})`);
    }
    if (sit.kind === 'start' || sit.kind === 'copy') {
      await step(3);
      await this.copy(a, b, lo, hi);
      await step(4);
      // Rounds until one finds few changes: the fence then waits only for what the last round
      // left, which depends on the write rate, not on the range's size.
      for (let round = 0; round < this.opts.maxRounds; round++) {
        const changed = await this.catchUp(a, b, lo, hi, this.opts.fenceBelow);
        if (changed <= this.opts.fenceBelow) break;
      }
      await step(5);
    }
    let pauseStart = 0;
    // A's kv_seq as read after the fence: every version of the range's keys is below it.
    let seqAbove = 0;
    let tFence = 0;
    let tCatch = 0;
    if (sit.kind !== 'flip') {
      pauseStart = performance.now();
      if (sit.kind !== 'final') {
        await expectAll(
          a,
          `UPDATE kv_slots SET state = ${SLOT_FENCED}, updated_at = ? WHERE slot BETWEEN ? AND ? AND state = ${SLOT_COPYING}`,
          [Date.now(), lo, hi],
          n,
          'fence',
        );
      }
      tFence = performance.now();
      await step(6);
      await this.finalCatchUp(a, b, lo, hi);
      tCatch = performance.now();
      await step(7);
      // One transaction, so the served set and its epoch change together (readLive trusts n).
      const res = await transaction<Array<ResultSetHeader | RowDataPacket[]>>(
        a,
        `START TRANSACTION; UPDATE kv_slots SET state = ${SLOT_MOVED}, epoch = ?, updated_at = ? WHERE slot BETWEEN ? AND ? AND state = ${SLOT_FENCED}; ` +
          `${BUMP_SLOTS_EPOCH}; SELECT next_version FROM kv_seq WHERE id = 1; COMMIT`,
        [epoch, Date.now(), lo, hi],
      );
      const moved = (res[1] as ResultSetHeader).affectedRows;
      if (moved !== n) throw new Error(`hand off: expected ${n} fenced slot rows, changed ${moved}; run the command again`);
      seqAbove = Number((res[3] as RowDataPacket[])[0].next_version);
    } else {
      const [seq] = await a.query<RowDataPacket[]>('SELECT next_version FROM kv_seq WHERE id = 1');
      seqAbove = Number(seq[0].next_version);
    }
    await step(8);
    // B's versions continue above A's (a key deleted on A and created again on B still gets a
    // higher version), in the same transaction that makes B serve the range.
    const res = await transaction<ResultSetHeader[]>(
      b,
      `START TRANSACTION; UPDATE kv_seq SET next_version = GREATEST(next_version, ?) WHERE id = 1; ` +
        `UPDATE kv_slots SET state = ${SLOT_OWNED}, peer = NULL, updated_at = ? WHERE slot BETWEEN ? AND ? AND state = ${SLOT_IMPORTING}; ${BUMP_SLOTS_EPOCH}; COMMIT`,
      [seqAbove, Date.now(), lo, hi],
    );
    if (res[2].affectedRows !== n)
      throw new Error(`take over: expected ${n} importing slot rows on shard ${sit.target}, changed ${res[2].affectedRows}; run the command again`);
    if (pauseStart > 0) {
      const end = performance.now();
      this.hooks.onPause?.(end - pauseStart, lo, hi, { fenceMs: tFence - pauseStart, catchUpMs: tCatch - tFence, flipMs: end - tCatch });
    }
    await step(9);
    await deleteRange(a, lo, hi);
    await a.query('DELETE FROM kv_slot_changes WHERE slot BETWEEN ? AND ?', range);
  }

  /** Step 3: every live row of the range, in (slot, k) pages on the kv_slot index. */
  private async copy(a: Pool, b: Pool, lo: number, hi: number): Promise<void> {
    let slot = lo;
    let key: Buffer | null = null;
    for (;;) {
      const [rows] =
        key === null
          ? await a.query<RowDataPacket[]>(
              `SELECT k, v, version, expires_at, slot FROM kv FORCE INDEX (kv_slot) WHERE slot BETWEEN ? AND ? AND (expires_at IS NULL OR expires_at > ${NOW_MS}) ORDER BY slot, k LIMIT ?`,
              [lo, hi, this.opts.pageRows],
            )
          : await a.query<RowDataPacket[]>(
              `SELECT k, v, version, expires_at, slot FROM kv FORCE INDEX (kv_slot) WHERE ((slot = ? AND k > ?) OR (slot > ? AND slot <= ?)) ` +
                `AND (expires_at IS NULL OR expires_at > ${NOW_MS}) ORDER BY slot, k LIMIT ?`,
              [slot, key, slot, hi, this.opts.pageRows],
            );
      if (rows.length === 0) return;
      await upsertRows(b, rows);
      this.hooks.onRows?.(rows.length);
      const last = rows[rows.length - 1];
      slot = Number(last.slot);
      key = last.k as Buffer;
      if (rows.length < this.opts.pageRows) return;
    }
  }

  /**
   * Step 4: bring B up to date for keys written on A since copying began; each applied entry is
   * deleted unless a write bumped it meanwhile. Stops after a page of at most `stopBelow`
   * entries; returns how many entries it applied.
   */
  private async catchUp(a: Pool, b: Pool, lo: number, hi: number, stopBelow: number): Promise<number> {
    let total = 0;
    for (;;) {
      const log = await readChanges(a, lo, hi, null, this.opts.pageRows);
      if (log.length === 0) break;
      await applyChanges(b, log);
      // An entry bumped since we read it stays for the next round.
      await a.query(
        `DELETE FROM kv_slot_changes WHERE ${log.map(() => '(slot = ? AND k = ? AND n = ?)').join(' OR ')}`,
        log.flatMap((r) => [r.slot, r.k, r.n]),
      );
      this.hooks.onRows?.(log.length);
      total += log.length;
      if (log.length <= stopBelow) break;
    }
    return total;
  }

  /**
   * Step 6, inside the write pause: the range is fenced, so the log no longer grows; walk it
   * once by key (two round trips per page, usually one page). Entries are deleted at step 9.
   */
  private async finalCatchUp(a: Pool, b: Pool, lo: number, hi: number): Promise<void> {
    let after: { slot: number; k: Buffer } | null = null;
    for (;;) {
      const log = await readChanges(a, lo, hi, after, this.opts.pageRows);
      if (log.length > 0) {
        await applyChanges(b, log);
        this.hooks.onRows?.(log.length);
      }
      if (log.length < this.opts.pageRows) return;
      after = { slot: Number(log[log.length - 1].slot), k: log[log.length - 1].k as Buffer };
    }
  }
}

/**
 * A page of the change log with each key's current row, in ONE statement (one read view): a
 * writer commits its row and its log entry together, so each row is at least as new as the write
 * that set the entry's n. A key with no row (deleted) comes back with k NULL.
 */
async function readChanges(a: Pool, lo: number, hi: number, after: { slot: number; k: Buffer } | null, limit: number): Promise<RowDataPacket[]> {
  const where = after === null ? 'slot BETWEEN ? AND ?' : '((slot = ? AND k > ?) OR (slot > ? AND slot <= ?))';
  const params = after === null ? [lo, hi, limit] : [after.slot, after.k, after.slot, hi, limit];
  const [rows] = await a.query<RowDataPacket[]>(
    `SELECT c.slot AS slot, c.k AS ck, c.n AS n, kv.k AS k, kv.v AS v, kv.version AS version, kv.expires_at AS expires_at ` +
      `FROM (SELECT slot, k, n FROM kv_slot_changes WHERE ${where} ORDER BY slot, k LIMIT ?) c LEFT JOIN kv ON kv.k = c.k ORDER BY c.slot, c.k`,
    params,
  );
  for (const r of rows) {
    r.present = r.k !== null;
    r.k = r.ck;
  }
  return rows;
}

/** Apply a page of changes to B: upsert the present rows, delete the gone ones. */
async function applyChanges(b: Pool, log: RowDataPacket[]): Promise<void> {
  const present = log.filter((r) => r.present);
  const gone = log.filter((r) => !r.present).map((r) => r.k as Buffer);
  if (present.length > 0) await upsertRows(b, present);
  if (gone.length > 0) await b.query(`DELETE FROM kv WHERE k IN (${gone.map(() => '?').join(',')})`, gone);
}

async function upsertRows(b: Pool, rows: RowDataPacket[]): Promise<void> {
  let i = 0;
  while (i < rows.length) {
    let bytes = 0;
    let j = i;
    while (j < rows.length && (j === i || bytes + (rows[j].v as Buffer).length < INSERT_BYTES)) bytes += (rows[j++].v as Buffer).length;
    const page = rows.slice(i, j);
    await b.query(
      `INSERT INTO kv (k, v, version, expires_at, slot) VALUES ${page.map(() => '(?,?,?,?,?)').join(',')} ` +
        'ON DUPLICATE KEY UPDATE v = VALUES(v), version = VALUES(version), expires_at = VALUES(expires_at), slot = VALUES(slot)',
      page.flatMap((r) => [r.k, r.v, r.version, r.expires_at, r.slot]),
    );
    i = j;
  }
}

/** Delete a range's rows on a shard that does not serve it, in pages (bounded lock time). */
async function deleteRange(p: Pool, lo: number, hi: number): Promise<void> {
  for (;;) {
    const [res] = await p.query<ResultSetHeader>('DELETE FROM kv WHERE slot BETWEEN ? AND ? LIMIT 1000', [lo, hi]);
    if (res.affectedRows < 1000) return;
  }
}

/** A state change of every slot of a range, or an error naming what was found instead. */
/**
 * A multi-statement transaction on one connection, rolled back if any statement fails: a lock
 * wait timeout rolls back only its statement, and the connection must not go back to the pool
 * with the rest of the transaction (and its locks) still open.
 */
async function transaction<T>(p: Pool, sql: string, params: unknown[]): Promise<T> {
  const conn = await p.getConnection();
  try {
    const [res] = await conn.query(sql, params);
    conn.release();
    return res as T;
  } catch (err) {
    await conn.query('ROLLBACK').then(
      () => conn.release(),
      () => conn.destroy(),
    );
    throw err;
  }
}

async function expectAll(p: Pool, sql: string, params: unknown[], n: number, what: string): Promise<void> {
  const [res] = await p.query<ResultSetHeader>(sql, params);
  if (res.affectedRows !== n) {
    throw new Error(
      `${what}: expected ${n} slot rows in the right state, changed ${res.affectedRows}; another mover, or a concurrent change? Run the command again.`,
    );
  }
}

async function requireSlotted(p: Pool, shard: number): Promise<void> {
  const [rows] = await p.query<RowDataPacket[]>('SELECT 1 FROM kv WHERE slot = ? LIMIT 1', [UNSLOTTED]);
  if (rows.length > 0) {
    throw new Error(
      `shard ${shard} still has rows from before the slot column (a gateway fills them in pages after it starts); run the command again when that is done`,
    );
  }
}
