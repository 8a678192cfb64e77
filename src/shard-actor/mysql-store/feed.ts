/**
 * Owns the statements of a shard's change feed (kv_feed) outside write transactions: where a
 * tailer starts, its polls, catch-up reads, filler rows proving holes, and bounded retention.
 * Relies on ShardConnections and STATEMENTS; feed rows are written by writes.ts (in the batch's
 * transaction) and expiry.ts (with the reap). Must not decide when to poll or trim (feed-tailer.ts
 * and the actor do).
 */
import type { ResultSetHeader, RowDataPacket } from 'mysql2/promise';
import type { FeedRow } from '../../protocol/feed';
import type { FeedHead, FeedRetention } from '../shard-store';
import type { ShardConnections } from './connections';
import { STATEMENTS } from './statements';

/** Bytes of a kv_feed row besides its key: id, version, at, expires_at, type, InnoDB row header. */
export const FEED_ROW_OVERHEAD_BYTES = 48;
/** Rows one trim DELETE removes at most (a bounded page, like a reap). */
export const FEED_TRIM_PAGE = 1000;
/** Ids one trim pass marks at most: the trim mark never runs far ahead of the deletes. */
const FEED_TRIM_SPAN = 10_000;

function feedRows(rows: RowDataPacket[]): FeedRow[] {
  const out: FeedRow[] = [];
  for (const r of rows)
    out.push([Number(r.id), r.k as Buffer, Number(r.version), Number(r.at), Number(r.type), r.expires_at === null ? null : Number(r.expires_at)]);
  return out;
}

export class StoreFeed {
  constructor(private readonly c: ShardConnections) {}

  async feedHead(window: number): Promise<FeedHead> {
    const rows = await this.c.query<RowDataPacket[]>(STATEMENTS.feedHead.sql, []);
    const max = rows[0].m === null ? 0 : Number(rows[0].m);
    const trimmed = Number(rows[0].t ?? 0);
    const from = Math.max(trimmed, max - window);
    const ids = max > from ? await this.c.query<RowDataPacket[]>(STATEMENTS.feedIdsIn.sql, [from, max]) : [];
    return { max, trimmed, from, present: ids.map((r) => Number(r.id)) };
  }

  async feedTail(after: number, holes: number[], limit: number): Promise<FeedRow[]> {
    const res = await this.c.query<RowDataPacket[] | RowDataPacket[][]>(STATEMENTS.feedTail.sql(holes.length), [after, limit, ...holes]);
    if (holes.length === 0) return feedRows(res as RowDataPacket[]);
    const [tail, filled] = res as RowDataPacket[][];
    return feedRows(filled).concat(feedRows(tail));
  }

  async feedRange(after: number, upto: number, limit: number): Promise<{ rows: FeedRow[]; trimmed: number }> {
    const rows = await this.c.query<RowDataPacket[]>(STATEMENTS.feedRange.sql, [after, upto, limit]);
    let trimmed = 0;
    const data: RowDataPacket[] = [];
    for (const r of rows) {
      if (Number(r.type) === 255) trimmed = Number(r.id);
      else data.push(r);
    }
    return { rows: feedRows(data).sort((a, b) => a[0] - b[0]), trimmed };
  }

  async feedFill(ids: number[]): Promise<void> {
    await this.c.query(STATEMENTS.feedFill.sql(ids.length), ids);
  }

  async feedTrim(now: number, limits: FeedRetention): Promise<number> {
    const rows = await this.c.query<RowDataPacket[]>(STATEMENTS.feedStats.sql, [now - limits.retentionMs]);
    const r = rows[0];
    if (r.lo === null) return 0;
    const lo = Number(r.lo);
    const hi = Number(r.hi);
    // Rows are counted as the id span (exact on one server; an overestimate under Galera's
    // auto_increment_increment, which then keeps fewer rows than allowed, never more).
    const rowBytes = Number(r.klen ?? 0) + FEED_ROW_OVERHEAD_BYTES;
    const keep = Math.min(limits.maxRows, Math.floor(limits.maxBytes / rowBytes));
    let upto = Math.max(hi - keep, r.old === null ? 0 : Number(r.old));
    if (upto < lo) return 0;
    upto = Math.min(upto, lo + FEED_TRIM_SPAN - 1);
    await this.c.query(STATEMENTS.feedTrimMark.sql, [upto]);
    const res = await this.c.query<ResultSetHeader>(STATEMENTS.feedTrimPage.sql, [upto, FEED_TRIM_PAGE]);
    return res.affectedRows;
  }
}
