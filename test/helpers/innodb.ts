/**
 * Owns reading InnoDB's deadlock counter from a server, on MariaDB (SHOW GLOBAL STATUS
 * Innodb_deadlocks) and MySQL 8 (information_schema.INNODB_METRICS lock_deadlocks, enabled by
 * default). The counter is server-wide: every database (shard) on the server counts.
 */
import mysql from 'mysql2/promise';

export async function innodbDeadlocks(url: string): Promise<number> {
  const conn = await mysql.createConnection({ uri: url });
  try {
    const [status] = await conn.query("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'");
    const row = (status as Array<{ Value: string }>)[0];
    if (row !== undefined) return Number(row.Value);
    const [metrics] = await conn.query("SELECT `COUNT` AS n FROM information_schema.INNODB_METRICS WHERE NAME = 'lock_deadlocks'");
    const m = (metrics as Array<{ n: number }>)[0];
    if (m === undefined) throw new Error('this server reports no InnoDB deadlock counter');
    return Number(m.n);
  } finally {
    await conn.end();
  }
}
