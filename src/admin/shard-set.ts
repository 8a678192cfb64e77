/**
 * Owns the admin tools' connections to a store's shards: which databases are members (kv_shard),
 * which other shards they know (kv_peers), the slot rows of each (kv_slots), the store's key
 * hashing rule (kv_shard.hash_rule), and the store-wide mover lock. Relies on mysql2 and the schema the actors apply. Runs in the CLI process, never in
 * a gateway: gateways only learn the results through kv_slots.
 *
 *   urls given ──> kv_shard.shard_index of each ──> kv_peers of each ──> every member, by index
 */
import mysql from 'mysql2/promise';
import type { Pool, RowDataPacket } from 'mysql2/promise';
import { STATEMENTS } from '../shard-actor/mysql-store/statements';
import { hostOf, sslOption } from '../shard-actor/mysql-store/tls';
import { onNewConnection } from '../shard-actor/mysql-store/mysql2-adapter';
import { migrateSchema, schemaStatements } from '../shard-actor/schema-migration';
import { STATUS_SQL, stateOf } from '../shard-actor/node-selector';
import { shardNodes } from '../config/config';
import { HASH_RULE_NAMES, HASH_TAGS, HASH_WHOLE_KEY, type MoveProgress } from '../protocol/slot-map';
import type { MysqlTls } from '../protocol/port-messages';

export interface Member {
  index: number;
  /** The shard's entry as configured (a Galera group's node URLs joined by `|`). */
  url: string;
  /** The node the admin tools talk to (see adminNode). */
  node: string;
  pool: Pool;
}

/** How the admin tools connect: TLS as the gateways use it (KVSQL_MYSQL_TLS). */
export interface AdminOptions {
  tls?: MysqlTls | null;
}

const connOptions = (node: string, o: AdminOptions) => ({ uri: node, connectTimeout: 3000, ssl: sslOption(o.tls, hostOf(node)) });

/** One plain connection to a node, as the admin tools make them (TLS included). */
export function openConnection(node: string, o: AdminOptions = {}): Promise<mysql.Connection> {
  return mysql.createConnection(connOptions(node, o));
}

/**
 * The node of a shard entry the admin tools talk to. For a Galera group (`|`-joined URLs): the
 * first node, in the entry's order, that is Synced in the Primary component, the node every
 * gateway writes through while the group is healthy (NodeSelector). The mover's fence relies on
 * that: a write-set certifies against the fence only if they conflict on a row, and a shared lock
 * is local to its node (DESIGN.md §10). For one URL, that URL.
 */
export async function adminNode(entry: string, o: AdminOptions = {}): Promise<string> {
  const nodes = shardNodes(entry);
  if (nodes.length === 1) return nodes[0];
  for (const node of nodes) if (await isSynced(node, o)) return node;
  throw new Error(`no node of the shard group ${redact(entry)} is Synced in the Primary component`);
}

/** True when the Galera node answers and is Synced in the Primary component; false otherwise. */
export async function isSynced(node: string, o: AdminOptions = {}): Promise<boolean> {
  const conn = await mysql.createConnection(connOptions(node, o)).catch(() => null);
  if (conn === null) return false;
  try {
    const [rows] = await conn.query<RowDataPacket[]>(STATUS_SQL);
    const vars = new Map<string, string>();
    for (const r of rows) vars.set(String(r.Variable_name).toLowerCase(), String(r.Value));
    return stateOf(vars) === 'synced';
  } catch {
    return false; // not usable
  } finally {
    conn.destroy();
  }
}

export interface SlotRow {
  shard: number;
  slot: number;
  state: number;
  epoch: number;
  peer: number | null;
}

/** A pool on one node (`galera`: that node is part of a group; reads wait for the cluster). */
export function openPool(node: string, o: AdminOptions = {}, galera = false): Pool {
  const pool = mysql.createPool({ ...connOptions(node, o), connectionLimit: 4, multipleStatements: true, supportBigNumbers: true, bigNumberStrings: false });
  // The actors' session (READ COMMITTED, UTC), plus a short lock wait: a mover step that waits
  // behind writes is retried (runUnits) rather than holding its locks for long.
  const setup = `${STATEMENTS.sessionSetup.sql}; SET SESSION innodb_lock_wait_timeout = 5` + (galera ? `; ${STATEMENTS.galeraSyncWait.sql}` : '');
  onNewConnection(pool, (conn) =>
    conn.query(setup, (err) => {
      if (err) conn.destroy();
    }),
  );
  return pool;
}

export class ShardSet {
  readonly members = new Map<number, Member>();
  private readonly lockConns: mysql.Connection[] = [];
  /** Server thread ids of this set's own sessions, by node URL (told apart from gateways' sessions). */
  private readonly threads = new Map<string, Set<number>>();

  private constructor(readonly opts: AdminOptions) {}

  /** A pool on the entry's admin node. */
  private async openEntry(url: string): Promise<{ node: string; pool: Pool }> {
    const node = await adminNode(url, this.opts);
    const pool = openPool(node, this.opts, shardNodes(url).length > 1);
    onNewConnection(pool, (conn) => this.ownThread(node, conn.threadId));
    return { node, pool };
  }

  private ownThread(node: string, id: number | null): void {
    if (id === null) return;
    let ids = this.threads.get(node);
    if (ids === undefined) this.threads.set(node, (ids = new Set()));
    ids.add(id);
  }

  /** Thread ids of this set's own sessions on `node` (pools and mover locks). */
  ownThreads(node: string): ReadonlySet<number> {
    return this.threads.get(node) ?? new Set();
  }

  /** Connect to every member reachable from `urls` (directly or through kv_peers). */
  static async open(urls: string[], opts: AdminOptions = {}): Promise<ShardSet> {
    const set = new ShardSet(opts);
    const queue = [...urls];
    const seen = new Set<string>();
    try {
      while (queue.length > 0) {
        const url = queue.shift()!;
        if (seen.has(url)) continue;
        seen.add(url);
        const { node, pool } = await set.openEntry(url);
        let results: RowDataPacket[][];
        try {
          [results] = await pool.query<RowDataPacket[][]>('SELECT shard_index FROM kv_shard WHERE id = 1; SELECT shard_index, url FROM kv_peers');
        } catch (err) {
          await pool.end();
          if ((err as { errno?: number }).errno === 1146) continue; // ER_NO_SUCH_TABLE: an empty database, not a member
          throw new ShardReachError(url, node, err);
        }
        if (results[0].length === 0) {
          await pool.end();
          continue; // not a member (yet): `shards add` handles it
        }
        const index = Number(results[0][0].shard_index);
        if (set.members.has(index)) {
          await pool.end();
          continue;
        }
        set.members.set(index, { index, url, node, pool });
        for (const p of results[1]) queue.push(String(p.url));
      }
    } catch (err) {
      await set.close();
      throw err;
    }
    if (set.members.size === 0) throw new Error('none of the shard URLs holds a kvsql store (start kvsql once to create it)');
    return set;
  }

  member(index: number): Member {
    const m = this.members.get(index);
    if (!m) throw new Error(`shard ${index} is not a member of this store (members: ${[...this.members.keys()].join(', ')})`);
    return m;
  }

  /**
   * One mover at a time per store: GET_LOCK on every member, in index order, without waiting.
   * The locks go with their connections: a killed mover releases them by dying. Idempotent for
   * this set. A member added later (addShard) is not locked: one mover at a time is already
   * assured by the members locked before it.
   */
  async lockMovers(): Promise<void> {
    if (this.lockConns.length > 0) return; // held already (e.g. `shards add` then its rebalance)
    for (const m of [...this.members.values()].sort((a, b) => a.index - b.index)) {
      const conn = await mysql.createConnection(connOptions(m.node, this.opts));
      this.lockConns.push(conn);
      this.ownThread(m.node, conn.threadId);
      const [rows] = await conn.query<RowDataPacket[]>("SELECT GET_LOCK(CONCAT('kvsql-mover:', DATABASE()), 0) AS got");
      if (Number(rows[0].got) !== 1) throw new Error(`another mover is running on shard ${m.index} (kvsql slots status shows its progress)`);
    }
  }

  /** Every member's kv_slots rows. */
  async slotRows(): Promise<SlotRow[]> {
    const all: SlotRow[] = [];
    await Promise.all(
      [...this.members.values()].map(async (m) => {
        const [rows] = await m.pool.query<RowDataPacket[]>('SELECT slot, state, epoch, peer FROM kv_slots');
        for (const r of rows)
          all.push({ shard: m.index, slot: Number(r.slot), state: Number(r.state), epoch: Number(r.epoch), peer: r.peer === null ? null : Number(r.peer) });
      }),
    );
    return all;
  }

  /**
   * Every member's kv_shard.hash_rule (HASH_*). A member whose kv_shard predates the column (no
   * gateway of this version started on it yet) hashes whole keys, the column's default.
   */
  async hashRules(): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    await Promise.all(
      [...this.members.values()].map(async (m) => {
        const [rows] = await m.pool.query<RowDataPacket[]>('SELECT * FROM kv_shard WHERE id = 1');
        out.set(m.index, rows.length === 0 || rows[0].hash_rule === undefined ? HASH_WHOLE_KEY : Number(rows[0].hash_rule));
      }),
    );
    return out;
  }

  /** The store hashes {tags} (true) or whole keys (false); throws while the members disagree or switch. */
  async hashTags(): Promise<boolean> {
    const rules = await this.hashRules();
    const distinct = new Set(rules.values());
    if (distinct.size === 1 && (distinct.has(HASH_TAGS) || distinct.has(HASH_WHOLE_KEY))) return distinct.has(HASH_TAGS);
    const each = [...rules].map(([i, r]) => `shard ${i}: ${HASH_RULE_NAMES[r] ?? `rule ${r}`}`).join(', ');
    throw new Error(`the shards do not record one key hashing rule (${each}); run \`kvsql hashtags enable\` to finish switching`);
  }

  /** Store the mover's progress on every member (gateways export it in /metrics). */
  async writeProgress(p: MoveProgress): Promise<void> {
    await Promise.all(
      [...this.members.values()].map((m) =>
        m.pool.query(
          'REPLACE INTO kv_move_progress (id, state, slots_total, slots_done, rows_copied, started_at, updated_at, pause_p99_ms) VALUES (1, ?, ?, ?, ?, ?, ?, ?)',
          [p.state, p.slotsTotal, p.slotsDone, p.rowsCopied, p.startedAt, p.updatedAt, p.pauseP99Ms],
        ),
      ),
    );
  }

  /** Tell every member about every other (so gateways with an old shard list find them all). */
  async publishPeers(): Promise<void> {
    const list = [...this.members.values()];
    await Promise.all(
      list.map((m) =>
        m.pool.query(
          `INSERT INTO kv_peers (shard_index, url) VALUES ${list.map(() => '(?, ?)').join(',')} ON DUPLICATE KEY UPDATE url = VALUES(url)`,
          list.flatMap((p) => [p.index, p.url]),
        ),
      ),
    );
  }

  /**
   * Make an empty database a member with the next free index and no slots. Idempotent: a
   * database that is already a member keeps its index.
   */
  async addShard(url: string): Promise<number> {
    const { node, pool } = await this.openEntry(url);
    try {
      const conn = await pool.getConnection();
      try {
        for (const sql of schemaStatements()) await conn.query(sql);
        await migrateSchema(conn);
        const [rows] = await conn.query<RowDataPacket[]>('SELECT shard_index FROM kv_shard WHERE id = 1');
        let index: number;
        if (rows.length > 0) index = Number(rows[0].shard_index);
        else {
          const [count] = await conn.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM kv');
          if (Number(count[0].n) > 0) throw new Error(`${redact(url)} has rows in kv but no kv_shard identity; refusing to add it`);
          index = Math.max(...this.members.keys()) + 1;
          // slots_seeded = 1 and slot_ranges '[]': it starts with no slots; moves give it some.
          // hash_rule: the store's, so its actors compute the slots every other shard does.
          const rule = (await this.hashTags()) ? HASH_TAGS : HASH_WHOLE_KEY;
          await conn.query(
            'INSERT IGNORE INTO kv_shard (id, shard_index, shard_count, slot_ranges, created_at, slots_seeded, hash_rule) VALUES (1, ?, 0, ?, ?, 1, ?)',
            [index, '[]', Date.now(), rule],
          );
          const [again] = await conn.query<RowDataPacket[]>('SELECT shard_index FROM kv_shard WHERE id = 1');
          index = Number(again[0].shard_index);
        }
        if (!this.members.has(index)) this.members.set(index, { index, url, node, pool });
        else await pool.end();
        return index;
      } finally {
        conn.release();
      }
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw err;
    }
  }

  async close(): Promise<void> {
    for (const c of this.lockConns) await c.end().catch(() => c.destroy());
    this.lockConns.length = 0;
    for (const m of this.members.values()) await m.pool.end().catch(() => undefined);
    this.members.clear();
  }
}

/**
 * A shard that could not be read: names the entry (password redacted) and the host:port tried,
 * keeps the driver's error as `cause` (its `code`, e.g. ECONNREFUSED, stays readable as `code`).
 */
export class ShardReachError extends Error {
  readonly code: string | undefined;
  constructor(entry: string, node: string, cause: unknown) {
    const u = new URL(node);
    super(`cannot read shard ${redact(entry)} at ${u.hostname}:${u.port || '3306'}: ${(cause as Error).message}`, { cause });
    this.name = 'ShardReachError';
    this.code = (cause as { code?: string }).code;
  }
}

/** A URL without its password, for messages. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}
