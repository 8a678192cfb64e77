/**
 * Owns the answer to Redis's WAIT on one Galera shard group: how many nodes besides one (Redis's
 * "master": the node written through) have committed the connection's writes. Relies on mysql2
 * (one status connection per node, opened at the first WAIT) and the clock. Must not touch the
 * actor's pools, queues or the node selector: it reads status variables only, never data.
 *
 * Galera numbers every committed write-set in one sequence for the whole group, and each node's
 * `wsrep_last_committed` is the highest it has committed (in order: every lower one is committed
 * too). A write acknowledged to the client was committed on the node written through before the
 * reply, so that node's counter was already at or above the write's number when WAIT arrived:
 *
 *   target = max(wsrep_last_committed of every node that answers)    at WAIT's arrival
 *   node has the write  <=  its wsrep_last_committed >= target       (polled every POLL_MS)
 *   answer = nodes that have it - 1, as soon as that reaches `want`, or when the time is up
 *
 * Conservative: the target may include other clients' later writes, so a node may be counted
 * later than strictly needed, never earlier. "Has it" means committed (readable there), not
 * merely received: Galera's commit already guarantees every node of the primary component
 * received and certified the write-set before the COMMIT returned; a node counts here once it
 * has also applied it.
 */
import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';

/** How often a node that has not reached the target is asked again. */
const POLL_MS = 10;
/** Longest one status query may take (a hung node must not hold the answer past the timeout). */
const QUERY_TIMEOUT_MS = 1000;

const STATUS_SQL = "SHOW GLOBAL STATUS LIKE 'wsrep_last_committed'";

export class ReplicaWait {
  /** Per node: its status connection, being opened or open (null: none; replaced after an error). */
  private readonly conns: Array<Promise<mysql.Connection> | null>;

  constructor(
    private readonly urls: string[],
    private readonly clock: () => number = Date.now,
  ) {
    this.conns = urls.map(() => null);
  }

  /**
   * The number of nodes, besides one, that have committed everything the group had committed
   * when this was called; resolves once it reaches `want`, or at `timeoutMs` with what it is.
   * Rejects when no node answers at all.
   */
  async wait(want: number, timeoutMs: number): Promise<number> {
    const deadline = this.clock() + timeoutMs;
    const first = await Promise.all(this.urls.map((_, i) => this.lastCommitted(i).catch(() => -1)));
    const target = Math.max(...first);
    if (target < 0) throw new Error(`no node of the shard group answered (${this.urls.length} nodes)`);
    const reached = new Set<number>();
    for (let i = 0; i < first.length; i++) if (first[i] >= target) reached.add(i);
    // The target is right only if the node written through answered: it holds the write, so the
    // highest answer is at or past it. A node that did not answer may be that node, and then the
    // others can all be behind the write: count one fewer for each node missing, never early.
    const missing = first.filter((n) => n < 0).length;
    const answer = (): number => Math.max(0, reached.size - 1 - missing);
    if (answer() >= want || this.clock() >= deadline || reached.size === this.urls.length) return answer();
    return new Promise((resolve) => {
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(answer());
      };
      const timer = setTimeout(finish, Math.max(0, deadline - this.clock()));
      for (let i = 0; i < this.urls.length; i++) {
        if (reached.has(i)) continue;
        void (async () => {
          while (!done) {
            const n = await this.lastCommitted(i).catch(() => -1);
            if (done) return;
            if (n >= target) {
              reached.add(i);
              if (answer() >= want || reached.size === this.urls.length) finish();
              return;
            }
            await new Promise((r) => setTimeout(r, POLL_MS));
          }
        })();
      }
    });
  }

  async stop(): Promise<void> {
    await Promise.all(this.conns.map((p) => p?.then((c) => c.end().catch(() => c.destroy())).catch(() => undefined)));
  }

  private async lastCommitted(i: number): Promise<number> {
    let p = this.conns[i];
    if (p === null) {
      p = this.conns[i] = mysql.createConnection({ uri: this.urls[i], connectTimeout: QUERY_TIMEOUT_MS }).then((c) => {
        c.on('error', () => undefined); // replaced at the next query
        return c;
      });
    }
    try {
      const conn = await p;
      const [rows] = await conn.query<RowDataPacket[]>({ sql: STATUS_SQL, timeout: QUERY_TIMEOUT_MS });
      const v = rows[0]?.Value;
      return v === undefined ? -1 : Number(v);
    } catch (err) {
      if (this.conns[i] === p) this.conns[i] = null;
      p.then((c) => c.destroy()).catch(() => undefined);
      throw err;
    }
  }
}
