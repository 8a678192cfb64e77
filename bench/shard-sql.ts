/**
 * Owns the harness's direct SQL access to the shards: counting our rows (physical deletion
 * progress) and emptying the kv table of a store the harness started itself. Relies on mysql2.
 * Never writes to a store it did not start (run.ts only calls truncate for its own store).
 */
import mysql from 'mysql2/promise';

export class ShardSql {
  private constructor(private readonly conns: mysql.Connection[]) {}

  static async connect(urls: string[]): Promise<ShardSql> {
    const conns = await Promise.all(urls.map((uri) => mysql.createConnection({ uri, connectTimeout: 5000 })));
    return new ShardSql(conns);
  }

  /** Rows whose key starts with `prefix`, per shard (a primary-key range scan). */
  async countPrefix(prefix: string): Promise<number[]> {
    const lo = Buffer.from(prefix, 'latin1');
    const hi = Buffer.from(lo);
    hi[hi.length - 1]++;
    return Promise.all(
      this.conns.map(async (c) => {
        const [rows] = await c.query('SELECT COUNT(*) AS n FROM kv WHERE k >= ? AND k < ?', [lo, hi]);
        return Number((rows as Array<{ n: number }>)[0].n);
      }),
    );
  }

  async truncate(): Promise<void> {
    await Promise.all(this.conns.map((c) => c.query('TRUNCATE TABLE kv')));
  }

  async close(): Promise<void> {
    await Promise.all(this.conns.map((c) => c.end().catch(() => undefined)));
  }
}
