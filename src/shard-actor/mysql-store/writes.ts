/**
 * Owns a shard's write transactions: locking a batch's slots and rows, applying the changes its
 * decide callback plans, the version recheck, COMMIT; settling a COMMIT whose connection was lost
 * in flight; and reserving version blocks. Relies on ShardConnections, STATEMENTS and sql-format.
 * Must not decide anything: which rows change and how is the write plan's job; when to run is the
 * actor's.
 *
 * A write transaction is three round trips:
 *   1. START TRANSACTION; SELECT ... WHERE k IN (sorted keys) ORDER BY k FOR UPDATE; SELECT now
 *   2. INSERT ... ON DUPLICATE KEY UPDATE ...; UPDATE ... CASE ...; DELETE ...
 *   3. COMMIT
 * When it INSERTs keys that had no row, round trip 2 also reads kv_seq (the version recheck, see
 * Recheck), and in the rare case that another actor reserved a block meanwhile one more round
 * trip rewrites those rows with fresh versions before COMMIT:
 *   2. INSERT ...; (the other statements); SELECT next_version FROM kv_seq
 *   2b. INSERT ... ON DUPLICATE KEY UPDATE ... with new versions   (only then)
 * READ COMMITTED takes no gap locks, so only existing rows in the batch are locked, in key order.
 * COMMIT travels alone so that a connection lost before it was sent is a clean, retryable failure
 * (the server rolls back), and only a connection lost while COMMIT was in flight leaves the
 * outcome unknown (TxControl.phase says which).
 */
import type { PoolConnection, RowDataPacket, ResultSetHeader } from 'mysql2/promise';
import { slotOf } from '../../protocol/slot-map';
import { isConnectionFatal } from '../mysql-errors';
import { formatSql } from '../sql-format';
import { newTxControl, type Decide, type FeedWrite, type LockedRow, type Recheck, type RowMutations, type SlotStates, type TxControl } from '../shard-store';
import { abandonedError, PROBE_TIMEOUT_MS, type ShardConnections } from './connections';
import { connectedAtOf, destroyHard } from './mysql2-adapter';
import { STATEMENTS } from './statements';

/** The parameters of insertBatch / upsertBatch for `list`: key, value, version, expiry, slot per row. */
function rowParams(list: RowMutations['upserts'], hashTags: boolean): unknown[] {
  const params: unknown[] = [];
  for (const u of list) params.push(u[0], u[1], u[2], u[3], slotOf(u[0], hashTags));
  return params;
}

/** The parameters of feedInsert: key, version, at, type, expiry per row. */
function feedParams(list: FeedWrite[], now: number): unknown[] {
  const params: unknown[] = [];
  for (const f of list) params.push(f[0], f[1], now, f[2], f[3]);
  return params;
}

export class StoreWrites {
  /** Node of each COMMIT in flight, by `<threadId>:<connectedAt>` (settle must ask that node). */
  private readonly commitNode = new Map<string, number>();

  /** The store's hash rule (kv_shard.hash_rule), set at init: the `slot` column is computed with it. */
  hashTags = true;

  constructor(private readonly c: ShardConnections) {}

  async transact(
    sortedKeys: Buffer[],
    sortedSlots: number[],
    decide: Decide,
    ctl: TxControl = newTxControl(),
    recheck?: Recheck,
    withValues = false,
  ): Promise<void> {
    // One attempt: a COMMIT of an earlier attempt that failed was answered (rolled back).
    ctl.phase = 'work';
    const node = this.c.writer;
    const conn: PoolConnection = await this.c.acquire();
    if (ctl.abandoned) {
      conn.release();
      throw abandonedError();
    }
    ctl.cut = () => destroyHard(conn);
    let broken = false;
    try {
      const [results] = await conn.query<RowDataPacket[][]>({
        sql: formatSql((withValues ? STATEMENTS.lockBatchValues : STATEMENTS.lockBatch).sql(sortedKeys.length, sortedSlots.length), [
          ...sortedSlots,
          ...sortedKeys,
        ]),
        timeout: this.c.timeout,
      });
      const slotStates: SlotStates = new Map();
      for (const r of results[1]) slotStates.set(Number(r.slot), Number(r.state));
      const lockedRows = results[2];
      const now = Number(results[3][0].now_ms);
      const issuedBelow = Number(results[3][0].next_version);
      const locked = new Map<string, LockedRow>();
      for (const r of lockedRows) {
        const row: LockedRow = { version: Number(r.version), expiresAt: r.expires_at === null ? null : Number(r.expires_at) };
        if (withValues) row.value = r.v as Buffer;
        locked.set((r.k as Buffer).toString('latin1'), row);
      }
      const m = await decide(locked, now, issuedBelow, slotStates);
      // Each statement formatted on its own (sql-format caches per template), joined by ';'.
      let sql = '';
      if (m.inserts.length > 0) sql += formatSql(STATEMENTS.insertBatch.sql(m.inserts.length), rowParams(m.inserts, this.hashTags)) + ';';
      if (m.upserts.length > 0) sql += formatSql(STATEMENTS.upsertBatch.sql(m.upserts.length), rowParams(m.upserts, this.hashTags)) + ';';
      if (m.ttlUpdates.length > 0) {
        const params: unknown[] = [];
        for (const t of m.ttlUpdates) params.push(t[0], t[1]);
        for (const t of m.ttlUpdates) params.push(t[0]);
        sql += formatSql(STATEMENTS.ttlBatch.sql(m.ttlUpdates.length), params) + ';';
      }
      if (m.deletes.length > 0) sql += formatSql(STATEMENTS.deleteBatch.sql(m.deletes.length), m.deletes) + ';';
      if (m.changed !== undefined && m.changed.length > 0) {
        const params: unknown[] = [];
        for (const c of m.changed) params.push(c[0], c[1]);
        sql += formatSql(STATEMENTS.logChanges.sql(m.changed.length), params) + ';';
      }
      const feed = m.feed;
      if (feed !== undefined && feed.length > 0) sql += formatSql(STATEMENTS.feedInsert.sql(feed.length), feedParams(feed, now)) + ';';
      if (m.inserts.length > 0 && recheck !== undefined) {
        // Nothing is committed yet: an error here rolls back and may be retried.
        const [res] = await conn.query<RowDataPacket[][]>({ sql: sql + STATEMENTS.readSeq.sql(1), timeout: this.c.timeout });
        const fix = await recheck(Number(res[res.length - 1][0].next_version));
        sql =
          fix !== null && fix.upserts.length > 0 ? formatSql(STATEMENTS.upsertBatch.sql(fix.upserts.length), rowParams(fix.upserts, this.hashTags)) + ';' : '';
        if (fix !== null && feed !== undefined && feed.length > 0 && fix.feed !== undefined) {
          const firstId = (res[res.length - 2] as unknown as ResultSetHeader).insertId;
          const pairs: unknown[] = [];
          const olds: number[] = [];
          for (let i = 0; i < feed.length; i++) {
            if (feed[i][1] === fix.feed[i][1] || olds.includes(feed[i][1])) continue;
            pairs.push(feed[i][1], fix.feed[i][1]);
            olds.push(feed[i][1]);
          }
          if (olds.length > 0) sql += formatSql(STATEMENTS.feedRenumber.sql(olds.length), [...pairs, firstId, ...olds]) + ';';
        }
      }
      if (sql.length > 0) await conn.query({ sql: sql.slice(0, -1), timeout: this.c.timeout });
      // The last moment to give up cleanly: past this line the server may commit.
      if (ctl.abandoned) throw abandonedError();
      ctl.phase = 'commit';
      ctl.threadId = conn.threadId;
      ctl.connectedAt = connectedAtOf(conn);
      const doubt = `${ctl.threadId}:${ctl.connectedAt}`;
      if (this.c.isGroup) {
        this.commitNode.set(doubt, node);
        if (this.commitNode.size > 1024) this.commitNode.delete(this.commitNode.keys().next().value!);
      }
      await conn.query({ sql: 'COMMIT', timeout: this.c.timeout });
      this.commitNode.delete(doubt);
    } catch (err) {
      this.c.suspect(err);
      broken = isConnectionFatal(err) || ctl.abandoned;
      if (!broken) {
        try {
          await conn.query({ sql: 'ROLLBACK', timeout: this.c.timeout });
        } catch {
          broken = true;
        }
      }
      throw err;
    } finally {
      ctl.cut = null;
      if (broken) destroyHard(conn);
      else conn.release();
    }
  }

  async settle(threadId: number, connectedAt: number): Promise<boolean> {
    if (this.c.isGroup) {
      const key = `${threadId}:${connectedAt}`;
      const node = this.commitNode.get(key);
      this.commitNode.delete(key);
      // The COMMIT ran on a node that is no longer the writer: thread ids are per node, so it
      // cannot be looked up (or KILLed) here. Settled anyway: the write-set was either certified
      // (then every node applies it, in order) or it can never commit, because a commit there
      // must pass certification, which orders it against anything written since; a late one
      // conflicting with a later write to its key is aborted, never applied after it.
      if (node !== undefined && node !== this.c.writer) return true;
    }
    const conn = await this.c.acquire(PROBE_TIMEOUT_MS);
    try {
      const [up] = await conn.query<RowDataPacket[]>({ sql: STATEMENTS.uptime.sql, timeout: PROBE_TIMEOUT_MS });
      const uptimeMs = Number(up[0]?.Value ?? up[0]?.VALUE) * 1000;
      // Started after that connection was made: the connection died with the old server, and
      // InnoDB recovery decided its transaction. (Thread ids restart after a restart, so KILL
      // by id could hit an unrelated connection.)
      if (connectedAt > 0 && uptimeMs + 1500 < Date.now() - connectedAt) {
        conn.release();
        return true;
      }
      try {
        await conn.query({ sql: STATEMENTS.killConnection.sql, timeout: PROBE_TIMEOUT_MS }, [threadId]);
      } catch (err) {
        if ((err as { code?: string }).code !== 'ER_NO_SUCH_THREAD') throw err;
      }
      const [rows] = await conn.query<RowDataPacket[]>({ sql: STATEMENTS.threadAlive.sql, timeout: PROBE_TIMEOUT_MS }, [threadId]);
      conn.release();
      return Number(rows[0].n) === 0;
    } catch (err) {
      if (isConnectionFatal(err)) destroyHard(conn);
      else conn.release();
      throw err;
    }
  }

  async reserveVersionBlock(size: number, above: number): Promise<number> {
    // GREATEST keeps versions above rows restored from a backup taken after the counter's.
    const results = await this.c.query<RowDataPacket[][]>(STATEMENTS.reserveVersions.sql, [above, size]);
    return Number(results[1][0].end_version) - size;
  }
}
