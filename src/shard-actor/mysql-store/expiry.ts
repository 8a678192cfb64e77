/**
 * Owns the statements of a shard's expiry: the expirer's scans of due and overdue rows, its
 * reaps (deletes re-checked under each row's lock, with `expired` feed rows when the change feed
 * is on), and the expirer lease that lets one gateway's expirer run per shard. Relies on
 * ShardConnections and STATEMENTS. Must not decide which keys to reap or when (expirer.ts and the
 * actor do); never reads the local clock for expiry (NOW(3) on the server decides).
 */
import { randomBytes } from 'node:crypto';
import type { ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import { isConnectionFatal } from '../mysql-errors';
import { formatSql } from '../sql-format';
import type { DueRow } from '../shard-store';
import type { ShardConnections } from './connections';
import { destroyHard } from './mysql2-adapter';
import { STATEMENTS } from './statements';

export class StoreExpiry {
  /** Identifies this store as the holder of the expirer lease. */
  private readonly leaseHolder = `${process.pid}-${randomBytes(6).toString('hex')}`;

  constructor(
    private readonly c: ShardConnections,
    /** How long a lease lasts without renewal. */
    private readonly leaseMs: number,
  ) {}

  async reap(keys: Buffer[]): Promise<number> {
    const res = await this.c.query<ResultSetHeader>(STATEMENTS.reapBatch.sql(keys.length), keys);
    return res.affectedRows;
  }

  async reapWithFeed(keys: Buffer[]): Promise<number> {
    const conn = await this.c.acquire();
    try {
      const [res] = await conn.query<ResultSetHeader[]>({
        sql: formatSql(STATEMENTS.reapFeedBatch.sql(keys.length), [...keys, ...keys]),
        timeout: this.c.timeout,
      });
      conn.release();
      return res[5].affectedRows;
    } catch (err) {
      this.c.suspect(err);
      // A statement failed inside the transaction (a lock wait timeout rolls back only the
      // statement): never leave it open on a pooled connection.
      let broken = isConnectionFatal(err);
      if (!broken) await conn.query({ sql: 'ROLLBACK', timeout: this.c.timeout }).catch(() => (broken = true));
      if (broken) destroyHard(conn);
      else conn.release();
      throw err;
    }
  }

  async scanDueWindow(afterTs: number, uptoTs: number, limit: number): Promise<DueRow[]> {
    const rows = await this.c.query<RowDataPacket[]>(STATEMENTS.dueWindow.sql, [afterTs, uptoTs, limit]);
    return normalizeDue(rows);
  }

  async scanDueTies(ts: number, afterKey: Buffer, limit: number): Promise<DueRow[]> {
    const rows = await this.c.query<RowDataPacket[]>(STATEMENTS.dueTies.sql, [ts, afterKey, limit]);
    return normalizeDue(rows);
  }

  async scanOverdue(limit: number): Promise<DueRow[]> {
    const rows = await this.c.query<RowDataPacket[]>(STATEMENTS.overdue.sql, [limit]);
    return normalizeDue(rows);
  }

  /**
   * The expirer lease: one row in kv_lease, taken when free or expired and renewed by its holder,
   * with the expiry on the shard's clock (NOW(3) of the writer node). A replicated row, unlike
   * GET_LOCK (which Galera does not replicate), so there is one holder per shard group whichever
   * node each gateway talks to; two gateways racing through two nodes conflict in certification
   * and one gets ER_LOCK_DEADLOCK (reported as "not taken" by the expirer's error path).
   * FOUND_ROWS (mysql2's default) makes affectedRows count matched rows, so a renewal within the
   * same millisecond still reports 1.
   */
  async tryExpirerLock(): Promise<boolean> {
    const res = await this.c.query<ResultSetHeader>(
      STATEMENTS.takeLease.sql,
      [this.leaseHolder, this.leaseMs, this.leaseHolder],
      Math.min(this.c.timeout, 3000),
    );
    return res.affectedRows === 1;
  }

  async releaseExpirerLock(): Promise<void> {
    // Best effort: a lease not released expires by itself after leaseMs.
    const pool = this.c.openWriterPool();
    if (!pool) return;
    await pool.query({ sql: STATEMENTS.releaseLease.sql, timeout: 2000 }, [this.leaseHolder]).catch(() => undefined);
  }
}

function normalizeDue(rows: RowDataPacket[]): DueRow[] {
  for (const r of rows) r.expires_at = Number(r.expires_at);
  return rows as DueRow[];
}
