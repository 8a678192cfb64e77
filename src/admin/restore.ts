/**
 * Owns restoring a backup into empty databases, optionally followed by point-in-time recovery
 * (replaying each shard's archived binlog from the backup's position up to a time), and checking
 * a backup without restoring it. Relies on backup-format (manifest, files), binlog-archive (the
 * archive, the client tools), the schema (schema-migration.ts) and mysql2. Writes only to the target
 * databases, and only after every one of them was found empty.
 *
 *   verify manifest + checksums ─> every target empty? ─> per shard, in parallel:
 *     schema; the small tables; kv rows in multi-row INSERTs
 *     [--at T: mariadb-binlog FILE.. --start-position=P --stop-datetime=T --database=src | mariadb]
 *     kv_peers := the targets' URLs; the expirer lease released
 *
 * Expiry: rows are restored as they were, expired ones included (a binlog replay may touch them),
 * and reads never return a row whose expires_at has passed on the shard's clock; the first
 * gateway's expirer reaps them (its overdue sweep).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';
import { adminNode, redact, type AdminOptions } from './shard-set';
import { connOptions } from './backup';
import { binlogTool, clientArgs, readArchiveIndex } from './binlog-archive';
import { schemaStatements } from '../shard-actor/schema-migration';
import { shardNodes } from '../config/config';
import { ensureTool } from '../embedded/mysql-binary';
import {
  BackupFormatError,
  decodeCell,
  readManifest,
  readRows,
  resolveBackupDir,
  sha256File,
  type Manifest,
  type ShardManifest,
  type TableDump,
} from './backup-format';

export interface RestoreOptions extends AdminOptions {
  /** Point in time, unix ms: replay each shard's binlog up to (not including) this second. */
  at?: number;
  /** The binlog archive (kvsql binlog archive --to); required with `at`. */
  binlogs?: string;
  log?: (msg: string) => void;
  progress?: (rows: number, bytes: number) => void;
}

export interface RestoreResult {
  dir: string;
  manifest: Manifest;
  rows: number;
  bytes: number;
  ms: number;
}

/** Rows per INSERT, and bytes of values per INSERT (whichever is reached first). */
const INSERT_ROWS = 1000;
const INSERT_BYTES = 4 << 20;
/** The statement sizes a batch is cut into (largest first); INSERT_ROWS is the first. */
const INSERT_SIZES = [INSERT_ROWS, 100, 10, 1];
const insertSql = (n: number): string => `INSERT INTO kv (k, v, version, expires_at, slot) VALUES ${new Array(n).fill('(?,?,?,?,?)').join(',')}`;

/** Every file the manifest lists is there with its size and sha256; throws BackupFormatError otherwise. */
export async function verifyFiles(dir: string, m: Manifest): Promise<void> {
  for (const s of m.shards) {
    for (const f of s.files) {
      const file = path.join(dir, f.name);
      let size: number;
      try {
        size = fs.statSync(file).size;
      } catch {
        throw new BackupFormatError(`${f.name} (shard ${s.index}) is missing`);
      }
      if (size !== f.bytes) throw new BackupFormatError(`${f.name}: ${size} bytes, the manifest says ${f.bytes}`);
      if ((await sha256File(file)) !== f.sha256) throw new BackupFormatError(`${f.name}: sha256 differs from the manifest's`);
    }
  }
}

/**
 * `kvsql backup verify`: the manifest, every file's size and sha256, and every row file read to
 * its end record with the manifest's row count. Returns the manifest.
 */
export async function verifyBackup(from: string): Promise<{ dir: string; manifest: Manifest }> {
  const dir = resolveBackupDir(from);
  const manifest = readManifest(dir);
  await verifyFiles(dir, manifest);
  for (const s of manifest.shards) {
    let n = 0;
    for await (const _ of readRows(path.join(dir, rowsFile(s)))) n++;
    if (n !== s.rows) throw new BackupFormatError(`shard ${s.index}: ${n} rows in its file, the manifest says ${s.rows}`);
  }
  return { dir, manifest };
}

const rowsFile = (s: ShardManifest): string => s.files.find((f) => f.name.endsWith('.rows'))!.name;
const tablesFile = (s: ShardManifest): string => s.files.find((f) => f.name.endsWith('.tables.json'))!.name;

/** A refusal to restore (targets not empty, no binlog to replay...): the message says what to do. */
export class RestoreRefusedError extends Error {
  readonly code = 'KVSQL_RESTORE_REFUSED';
}

interface Target {
  shard: ShardManifest;
  entry: string;
  node: string;
  conn: mysql.Connection;
  database: string;
}

async function openTarget(shard: ShardManifest, entry: string, o: AdminOptions): Promise<Target> {
  const node = await adminNode(entry, o);
  const conn = await mysql.createConnection(connOptions(node, o));
  try {
    const [rows] = await conn.query<RowDataPacket[]>(
      "SELECT DATABASE() AS db, table_name AS t FROM (SELECT 1 AS one) d LEFT JOIN information_schema.tables ON table_schema = DATABASE() AND table_name IN ('kv', 'kv_shard')",
    );
    const database = String(rows[0].db);
    // Empty: neither table, or both without a row (a schema applied, no store created in it).
    let held = 0;
    for (const t of rows.map((r) => r.t ?? r.T).filter((t) => t !== null && t !== undefined)) {
      const [c] = await conn.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM (SELECT 1 FROM \`${String(t)}\` LIMIT 1) x`);
      held += Number(c[0].n);
    }
    if (held > 0) {
      throw new RestoreRefusedError(
        `${redact(entry)} is not empty (it holds a kvsql store); restore only into empty databases: stop the gateways, then drop and recreate the database, or restore elsewhere`,
      );
    }
    return { shard, entry, node, conn, database };
  } catch (err) {
    conn.destroy();
    throw err;
  }
}

async function loadShard(t: Target, dir: string, o: RestoreOptions, progress: (rows: number, bytes: number) => void): Promise<void> {
  // Two connections: one INSERT runs on the server while the next batch is read and sent.
  const lanes = [t.conn, await mysql.createConnection(connOptions(t.node, o))];
  try {
    for (const c of lanes) {
      // A single server's own binlog need not hold the restore (and it halves the load's write
      // cost); a Galera group's must: there the binlog setting also carries the replication.
      if (shardNodes(t.entry).length === 1) await c.query('SET SESSION sql_log_bin = 0').catch(() => undefined);
      await c.query("SET SESSION time_zone = '+00:00'");
    }
    const c = t.conn;
    for (const sql of schemaStatements()) await c.query(sql);
    const { tables } = JSON.parse(fs.readFileSync(path.join(dir, tablesFile(t.shard)), 'utf8')) as { tables: Record<string, TableDump> };
    for (const [name, dump] of Object.entries(tables)) {
      await c.query(`DELETE FROM \`${name}\``);
      const cols = dump.columns.map((x) => `\`${x}\``).join(', ');
      const one = `(${dump.columns.map(() => '?').join(', ')})`;
      for (let i = 0; i < dump.rows.length; i += INSERT_ROWS) {
        const chunk = dump.rows.slice(i, i + INSERT_ROWS);
        await c.query(
          `INSERT INTO \`${name}\` (${cols}) VALUES ${chunk.map(() => one).join(', ')}`,
          chunk.flatMap((r) => r.map(decodeCell)),
        );
      }
    }
    const busy: Array<Promise<void>> = [Promise.resolve(), Promise.resolve()];
    let batches = 0;
    let params: Array<Buffer | string | number | null> = [];
    let bytes = 0;
    let rows = 0;
    const flush = async () => {
      if (rows === 0) return;
      const lane = batches++ % lanes.length;
      await busy[lane]; // that connection's previous batch (and its error, if any)
      const [p, n, b] = [params, rows, bytes];
      busy[lane] = (async () => {
        // Prepared statements (the binary protocol sends values as bytes, not as hex text), in a
        // few fixed sizes, so that a handful of statements are prepared per connection.
        let i = 0;
        for (const size of INSERT_SIZES) {
          for (; n - i >= size; i += size) await lanes[lane].execute(insertSql(size), p.slice(i * 5, (i + size) * 5));
        }
        progress(n, b);
      })();
      busy[lane].catch(() => undefined); // awaited above or below; not unhandled meanwhile
      params = [];
      bytes = 0;
      rows = 0;
    };
    for await (const r of readRows(path.join(dir, rowsFile(t.shard)))) {
      params.push(r.k, r.v, r.version, r.expiresAt, r.slot);
      rows++;
      bytes += r.k.length + r.v.length;
      if (rows >= INSERT_ROWS || bytes >= INSERT_BYTES) await flush();
    }
    await flush();
    await Promise.all(busy);
  } finally {
    lanes[1].destroy();
  }
}

/** The archived binlog files of a shard from its backup position on, oldest first. */
function binlogFiles(s: ShardManifest, archive: string, at: number): string[] {
  const b = s.binlog!;
  const dir = path.join(archive, s.serverKey);
  const index = readArchiveIndex(dir);
  if (index === null) throw new RestoreRefusedError(`no archive for shard ${s.index}'s server in ${dir} (run kvsql binlog archive --to ${archive})`);
  if (index.coveredUntil < at) {
    throw new RestoreRefusedError(
      `the archive of ${s.serverKey} covers commits up to ${new Date(index.coveredUntil).toISOString()}, before --at ${new Date(at).toISOString()}: run kvsql binlog archive again (the server must still be up), or choose an earlier time`,
    );
  }
  const names = index.files
    .map((f) => f.name)
    .filter((n) => n >= b.file)
    .sort();
  if (names[0] !== b.file) throw new RestoreRefusedError(`${dir} lacks ${b.file}, where shard ${s.index}'s backup starts (purged before it was archived?)`);
  return names.map((n) => path.join(dir, n));
}

/** `YYYY-MM-DD HH:MM:SS` in UTC: mariadb-binlog reads --stop-datetime in its own time zone, set to UTC. */
function binlogTime(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
}

/**
 * Replays shard `t`'s binlog from the backup's position to `at`: mariadb-binlog's text piped into
 * the mariadb client, filtered to the backup's database and renamed to the target's. Only events
 * of whole seconds before `at` (the binlog's resolution); a transaction cut by the stop time has
 * no COMMIT and rolls back.
 */
async function replayShard(t: Target, files: string[], at: number): Promise<void> {
  const tool = await binlogTool();
  const client = await ensureTool(['mariadb', 'mysql'], 'mariadb-client', () => undefined);
  const src = t.shard.database;
  const args = [`--start-position=${t.shard.binlog!.position}`, `--stop-datetime=${binlogTime(at)}`, `--database=${src}`];
  if (src !== t.database) args.push(`--rewrite-db=${src}->${t.database}`);
  if (shardNodes(t.entry).length === 1) args.push('--disable-log-bin');
  const { args: conn, env } = clientArgs(t.node);
  await new Promise<void>((resolve, reject) => {
    const reader = spawn(tool, [...args, ...files], { env: { ...env, TZ: 'UTC' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const writer = spawn(client, [...conn, '--binary-mode', `--database=${t.database}`], { env, stdio: ['pipe', 'ignore', 'pipe'] });
    reader.stdout.pipe(writer.stdin);
    let errors = '';
    reader.stderr.on('data', (c: Buffer) => (errors += c.toString('utf8')));
    writer.stderr.on('data', (c: Buffer) => (errors += c.toString('utf8')));
    let pending = 2;
    let failed: string | null = null;
    const done = (who: string) => (code: number | null) => {
      if (code !== 0 && failed === null) failed = `${who} exited with ${code}`;
      if (--pending !== 0) return;
      if (failed === null) resolve();
      else reject(new Error(`binlog replay of shard ${t.shard.index}: ${failed}: ${errors.trim().slice(0, 2000)}`));
    };
    reader.once('error', reject);
    writer.once('error', reject);
    reader.once('close', done(path.basename(tool)));
    writer.once('close', done(path.basename(client)));
  });
}

/**
 * Restores the backup in `from` (a backup directory, or a directory of them: the newest complete
 * one) into `targets` (one shard entry per backed-up shard, in shard order), each an empty
 * database. With `at`, then replays each shard's archived binlog up to that time.
 */
export async function restoreBackup(from: string, targets: string[], o: RestoreOptions = {}): Promise<RestoreResult> {
  const log = o.log ?? (() => undefined);
  const started = Date.now();
  const dir = resolveBackupDir(from);
  const manifest = readManifest(dir);
  if (targets.length !== manifest.shards.length) {
    throw new RestoreRefusedError(
      `the backup has ${manifest.shards.length} shards and ${targets.length} targets were given; restore into exactly ${manifest.shards.length} empty databases`,
    );
  }
  let files: string[][] = [];
  if (o.at !== undefined) {
    if (o.binlogs === undefined) throw new RestoreRefusedError('--at needs --binlogs=DIR, the binlog archive (kvsql binlog archive --to DIR)');
    for (const s of manifest.shards) {
      if (s.binlog === null)
        throw new RestoreRefusedError(`shard ${s.index} kept no binlog when backed up: this backup cannot be rolled forward; restore it without --at`);
      if (s.snapshotAt >= o.at)
        throw new RestoreRefusedError(
          `--at ${new Date(o.at).toISOString()} is before shard ${s.index}'s snapshot (${new Date(s.snapshotAt).toISOString()}): use an older backup`,
        );
    }
    files = manifest.shards.map((s) => binlogFiles(s, o.binlogs!, o.at!));
  }
  log(`verifying ${dir}`);
  await verifyFiles(dir, manifest);
  const opened = await Promise.allSettled(manifest.shards.map((s, i) => openTarget(s, targets[i], o)));
  const open = opened.filter((r): r is PromiseFulfilledResult<Target> => r.status === 'fulfilled').map((r) => r.value);
  try {
    const failed = opened.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    let rows = 0;
    let bytes = 0;
    await Promise.all(
      open.map((t) =>
        loadShard(t, dir, o, (r, b) => {
          rows += r;
          bytes += b;
          o.progress?.(rows, bytes);
        }),
      ),
    );
    log(`restored ${rows} rows (${(bytes / 1e6).toFixed(1)} MB of keys and values) in ${Date.now() - started} ms`);
    if (o.at !== undefined) {
      const t0 = Date.now();
      await Promise.all(open.map((t, i) => replayShard(t, files[i], o.at!)));
      log(`replayed the binlogs up to ${binlogTime(o.at)} UTC in ${Date.now() - t0} ms`);
    }
    // Where the shards are now, for gateways that start with a partial list; a lease held by a
    // gateway of the old store is released.
    const peers = open.map((t) => [t.shard.index, t.entry]);
    for (const t of open) {
      await t.conn.query('DELETE FROM kv_peers');
      await t.conn.query(`INSERT INTO kv_peers (shard_index, url) VALUES ${peers.map(() => '(?, ?)').join(', ')}`, peers.flat());
      await t.conn.query("UPDATE kv_lease SET holder = '', expires_at = 0");
    }
    return { dir, manifest, rows, bytes, ms: Date.now() - started };
  } finally {
    for (const t of open) t.conn.destroy();
  }
}
