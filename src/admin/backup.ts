/**
 * Owns taking a backup of a running store: one consistent snapshot per shard, streamed to files,
 * then the manifest. Relies on ShardSet (members, the mover lock, the slot rows), backup-format
 * (files, manifest) and mysql2. Reads only; never writes to a shard except the mover lock, which
 * it holds from before the first snapshot until the manifest is written.
 *
 *   lock movers on every shard ─> refuse if any slot is mid-move ─> per shard, one connection:
 *     START TRANSACTION WITH CONSISTENT SNAPSHOT (REPEATABLE READ) + its binlog position
 *   ─> all shards in parallel: kv streamed to shard-<i>.rows, the other tables to JSON
 *   ─> COMMIT ─> backup.json written last (tmp + fsync + rename) ─> unlock
 *
 * Why logical (SELECT in a snapshot) and not physical (mariadb-backup): it runs against any
 * MySQL 8 / MariaDB the store can reach, needs no file access to the data dir, copies one
 * database (several shards may share a server), and here it was faster to take and to restore
 * (DESIGN.md §8, measured). Consistency across shards: each shard's snapshot is one instant of
 * that shard; the shards' instants differ by the time it takes to open them (milliseconds), and
 * no slot can move in between (the mover lock), so every key is in exactly one shard's snapshot.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';
import { ShardSet, isSynced, redact, type AdminOptions } from './shard-set';
import { currentOwners } from './rebalance';
import { SLOT_COUNT, SLOT_OWNED, SLOT_MOVED } from '../protocol/slot-map';
import { hostOf, sslOption } from '../shard-actor/mysql-store/tls';
import { shardNodes } from '../config/config';
import {
  FORMAT,
  RowFileWriter,
  encodeCell,
  writeJsonFile,
  writeManifest,
  type BinlogPosition,
  type Manifest,
  type ShardManifest,
  type TableDump,
} from './backup-format';

/** Bytes of rows per page read from a shard (a target: a page's row count follows the row size). */
const PAGE_BYTES = 4 << 20;
const PAGE_ROWS_MAX = 10_000;

/** Every table of the schema besides kv, copied whole: restore and binlog replay need them all. */
export const OTHER_TABLES = ['kv_seq', 'kv_shard', 'kv_slots', 'kv_slots_epoch', 'kv_slot_changes', 'kv_peers', 'kv_move_progress', 'kv_lease'];

export interface BackupProgress {
  shards: number;
  bytes: number;
  /** Estimated from the tables' statistics; 0 when unknown. */
  estimatedBytes: number;
  rows: number;
  startedAt: number;
  done: boolean;
}

export interface BackupOptions extends AdminOptions {
  log?: (msg: string) => void;
  progress?: (p: BackupProgress) => void;
}

/** Directory name of a server in a binlog archive (and in the manifest): host-port. */
export function serverKey(node: string): string {
  const u = new URL(node);
  return `${u.hostname.replace(/[^A-Za-z0-9.-]/g, '_')}-${u.port || '3306'}`;
}

/**
 * The node to snapshot: for a Galera group the last Synced node of the entry (not the writer,
 * which is the first: the snapshot's long read transaction then holds purge back on a node that
 * takes no client writes), read with wsrep_sync_wait so it has applied everything committed; for
 * one URL, that URL.
 */
async function snapshotNode(entry: string, o: AdminOptions): Promise<{ node: string; galera: boolean }> {
  const nodes = shardNodes(entry);
  if (nodes.length === 1) return { node: nodes[0], galera: false };
  for (const node of [...nodes].reverse()) if (await isSynced(node, o)) return { node, galera: true };
  throw new Error(`no node of the shard group ${redact(entry)} is Synced: cannot back it up now`);
}

export function connOptions(node: string, o: AdminOptions) {
  return {
    uri: node,
    connectTimeout: 5000,
    ssl: sslOption(o.tls, hostOf(node)),
    // BIGINTs as numbers while exact, as decimal strings beyond 2^53.
    supportBigNumbers: true,
    multipleStatements: true,
  };
}

interface Snapshot {
  index: number;
  url: string;
  node: string;
  conn: mysql.Connection;
  info: Omit<ShardManifest, 'rows' | 'files'>;
  estimatedBytes: number;
}

/** Opens shard `index`'s snapshot: a REPEATABLE READ transaction and the binlog position it sees. */
async function openSnapshot(index: number, url: string, o: AdminOptions): Promise<Snapshot> {
  const { node, galera } = await snapshotNode(url, o);
  const conn = await mysql.createConnection(connOptions(node, o));
  try {
    await conn.query("SET SESSION time_zone = '+00:00'; SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ");
    // A Galera node answers this only once it has applied every write-set committed before it.
    if (galera) await conn.query('SET SESSION wsrep_sync_wait = 1; SELECT 1 FROM kv_shard LIMIT 1; SET SESSION wsrep_sync_wait = 0');
    await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT');
    // MariaDB: Binlog_snapshot_file/position are the binlog position of exactly this snapshot
    // (commits are ordered the same in InnoDB and the binlog). Empty without a binlog.
    const [status] = await conn.query<RowDataPacket[]>("SHOW STATUS LIKE 'Binlog_snapshot_%'");
    const st = new Map(status.map((r) => [String(r.Variable_name).toLowerCase(), String(r.Value)]));
    const [vars] = await conn.query<RowDataPacket[]>(
      'SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) AS now_ms, @@version AS version, @@log_bin AS log_bin, DATABASE() AS db',
    );
    const v = vars[0];
    let gtid: string | null = null;
    if (/mariadb/i.test(String(v.version))) {
      const [g] = await conn.query<RowDataPacket[]>('SELECT @@gtid_binlog_pos AS gtid');
      gtid = String(g[0].gtid);
    }
    const file = st.get('binlog_snapshot_file') ?? '';
    const binlog: BinlogPosition | null = Number(v.log_bin) === 1 && file !== '' ? { file, position: Number(st.get('binlog_snapshot_position')), gtid } : null;
    const [size] = await conn.query<RowDataPacket[]>(
      "SELECT COALESCE(SUM(data_length), 0) AS bytes FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'kv'",
    );
    const u = new URL(node);
    return {
      index,
      url,
      node,
      conn,
      estimatedBytes: Number(size[0].bytes),
      info: {
        index,
        url: redact(url),
        node: `${u.hostname}:${u.port || '3306'}`,
        database: String(v.db),
        serverKey: serverKey(node),
        serverVersion: String(v.version),
        snapshotAt: Number(v.now_ms),
        binlog,
      },
    };
  } catch (err) {
    conn.destroy();
    throw err;
  }
}

/** Streams kv, then reads the other tables, all inside the snapshot's transaction. */
async function dumpShard(s: Snapshot, dir: string, onRows: (rows: number, bytes: number) => void): Promise<ShardManifest> {
  const writer = new RowFileWriter(path.join(dir, `shard-${s.index}.rows`));
  try {
    // Keyset pages in primary-key order, all inside the snapshot; a page holds about PAGE_BYTES
    // (its row count follows the last page's row size), so a shard of large values stays bounded
    // in memory. One buffer and one file write per page.
    let after: Buffer | null = null;
    let pageRows = 8; // grows at most 8x a page: a shard of 16 MiB values never reads a huge first page
    for (;;) {
      const [rows] = await s.conn.query<RowDataPacket[]>({
        sql:
          after === null
            ? 'SELECT k, v, version, expires_at, slot FROM kv ORDER BY k LIMIT ?'
            : 'SELECT k, v, version, expires_at, slot FROM kv WHERE k > ? ORDER BY k LIMIT ?',
        values: after === null ? [pageRows] : [after, pageRows],
        rowsAsArray: true,
      });
      const page = rows as unknown as unknown[][];
      if (page.length === 0) break;
      const before = writer.bytes;
      await writer.writePage(page);
      onRows(page.length, writer.bytes - before);
      after = page[page.length - 1][0] as Buffer;
      pageRows = Math.max(1, Math.min(PAGE_ROWS_MAX, pageRows * 8, Math.floor((PAGE_BYTES * page.length) / (writer.bytes - before))));
    }
    const rowsFile = await writer.finish();
    const tables: Record<string, TableDump> = {};
    for (const t of OTHER_TABLES) {
      const [rows, fields] = await s.conn.query<RowDataPacket[]>({ sql: `SELECT * FROM \`${t}\``, rowsAsArray: true });
      tables[t] = { columns: fields.map((f) => f.name), rows: (rows as unknown as unknown[][]).map((row) => row.map(encodeCell)) };
    }
    const tablesFile = writeJsonFile(path.join(dir, `shard-${s.index}.tables.json`), { tables });
    await s.conn.query('COMMIT');
    return { ...s.info, rows: writer.rows, files: [rowsFile, tablesFile] };
  } catch (err) {
    writer.abort();
    throw err;
  }
}

/** A new backup directory under `parent`: its UTC start time, then random digits (never reused). */
function newBackupDir(parent: string, startedAt: number): { id: string; dir: string } {
  fs.mkdirSync(parent, { recursive: true });
  const id = `${new Date(startedAt)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}-${crypto.randomBytes(2).toString('hex')}`;
  const dir = path.join(parent, id);
  fs.mkdirSync(dir);
  return { id, dir };
}

function toolVersions(): Record<string, string> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pkg = require('../../../package.json') as { version: string };
  return { kvsql: pkg.version, node: process.version, format: FORMAT };
}

/**
 * Backs up every member of the store reachable from `urls` into a new directory under `parent`;
 * its path and manifest. Refused while a slot move runs or was left unfinished. A failure (or a
 * kill) leaves the directory without a manifest: never a backup that restore would take.
 */
export async function takeBackup(urls: string[], parent: string, o: BackupOptions = {}): Promise<{ dir: string; manifest: Manifest }> {
  const log = o.log ?? (() => undefined);
  const set = await ShardSet.open(urls, o);
  const snapshots: Snapshot[] = [];
  try {
    // Held until the manifest is written: no move can start meanwhile, so the slot map below is
    // every shard's map for the whole backup.
    await set.lockMovers();
    const rows = await set.slotRows();
    const moving = rows.filter((r) => r.state !== SLOT_OWNED && r.state !== SLOT_MOVED);
    if (moving.length > 0) {
      throw new Error(
        `${moving.length} slot rows are mid-move (e.g. slot ${moving[0].slot} on shard ${moving[0].shard}); finish the move first (kvsql rebalance), then back up`,
      );
    }
    const owner = currentOwners(rows);
    const ranges: Array<[number, number, number]> = [];
    for (let s = 0, start = 0; s <= SLOT_COUNT; s++) {
      if (s === SLOT_COUNT || owner[s] !== owner[start]) {
        ranges.push([start, s - 1, owner[start]]);
        start = s;
      }
    }
    const epoch = rows.reduce((e, r) => Math.max(e, r.epoch), 0);
    const startedAt = Date.now();
    const { id, dir } = newBackupDir(parent, startedAt);
    log(`backup ${id} into ${dir}`);
    // Snapshots one after another, as close together as the round trips allow; copies in parallel.
    for (const m of [...set.members.values()].sort((a, b) => a.index - b.index)) snapshots.push(await openSnapshot(m.index, m.url, o));
    for (const s of snapshots) {
      const b = s.info.binlog;
      log(
        `shard ${s.index}: snapshot at ${new Date(s.info.snapshotAt).toISOString()} on ${s.info.node}/${s.info.database}${b ? `, binlog ${b.file}:${b.position}` : ', no binlog (no point-in-time recovery from this backup)'}`,
      );
    }
    const progress: BackupProgress = {
      shards: snapshots.length,
      bytes: 0,
      estimatedBytes: snapshots.reduce((n, s) => n + s.estimatedBytes, 0),
      rows: 0,
      startedAt,
      done: false,
    };
    const shards = await Promise.all(
      snapshots.map((s) =>
        dumpShard(s, dir, (r, b) => {
          progress.rows += r;
          progress.bytes += b;
          o.progress?.(progress);
        }),
      ),
    );
    const manifest: Manifest = { format: FORMAT, id, startedAt, endedAt: Date.now(), tools: toolVersions(), slotMap: { epoch, ranges }, shards };
    writeManifest(dir, manifest);
    progress.done = true;
    o.progress?.(progress);
    return { dir, manifest };
  } finally {
    for (const s of snapshots) s.conn.destroy();
    await set.close();
  }
}
