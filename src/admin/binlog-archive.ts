/**
 * Owns the binlog archive: copies of each shard server's closed binary log files, the input of
 * point-in-time recovery (restore.ts). Relies on ShardSet (which servers), mysql2 and the
 * `mariadb-binlog`/`mysqlbinlog` client, which fetches files over the replication protocol
 * (`--read-from-remote-server --raw`), so it needs no file access to the server, only the
 * REPLICATION SLAVE privilege. Never deletes anything, on the server or in the archive.
 *
 *   <archive>/<host>-<port>/        one directory per server (several shards may share one)
 *     binlog.000001 ...              closed files, byte for byte (written as .part, then renamed)
 *     archive.json                   {coveredUntil}: every commit before this time (the server's
 *                                    clock, unix ms) is in the files above
 *
 * One pass: note the server's time, FLUSH BINARY LOGS (closes the current file, so everything
 * committed before that time is in a closed file), copy every closed file not yet archived.
 * Run every N seconds (`--every=N`) and the recovery point is at most N seconds (plus one pass)
 * behind.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';
import { ShardSet, type AdminOptions } from './shard-set';
import { connOptions, serverKey } from './backup';
import { ensureTool } from '../embedded/mysql-binary';

export const ARCHIVE_INDEX = 'archive.json';

export interface ArchiveIndex {
  server: string;
  /** Unix ms on the server's clock: every commit before it is in an archived file. */
  coveredUntil: number;
  files: Array<{ name: string; bytes: number }>;
}

/** mariadb-binlog (or MySQL's mysqlbinlog), installed with apt when missing and root. */
export function binlogTool(log: (msg: string) => void = () => undefined): Promise<string> {
  return ensureTool(['mariadb-binlog', 'mysqlbinlog'], 'mariadb-client', log);
}

/** Connection arguments for the client tools; the password goes in MYSQL_PWD, not on the command line. */
export function clientArgs(node: string): { args: string[]; env: NodeJS.ProcessEnv } {
  const u = new URL(node);
  const args = [`--host=${u.hostname}`, `--port=${u.port || '3306'}`, `--user=${decodeURIComponent(u.username || 'root')}`];
  return { args, env: { ...process.env, MYSQL_PWD: decodeURIComponent(u.password) } };
}

/** Runs a tool to completion; rejects with its stderr on a non-zero exit. */
export function runTool(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${path.basename(cmd)} exited with ${code}: ${err.trim().slice(0, 2000)}`))));
  });
}

export function readArchiveIndex(dir: string): ArchiveIndex | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, ARCHIVE_INDEX), 'utf8')) as ArchiveIndex;
  } catch {
    return null;
  }
}

/** One archiving pass over every server of the store; what it copied, per server. */
export async function archiveBinlogs(
  urls: string[],
  archive: string,
  o: AdminOptions & { log?: (msg: string) => void } = {},
): Promise<Map<string, ArchiveIndex>> {
  const log = o.log ?? (() => undefined);
  const set = await ShardSet.open(urls, o);
  const nodes = new Map<string, string>();
  try {
    for (const m of set.members.values()) if (!nodes.has(serverKey(m.node))) nodes.set(serverKey(m.node), m.node);
  } finally {
    await set.close();
  }
  const tool = await binlogTool(log);
  const result = new Map<string, ArchiveIndex>();
  for (const [key, node] of nodes) {
    const dir = path.join(archive, key);
    const conn = await mysql.createConnection(connOptions(node, o));
    let closed: Array<{ name: string; bytes: number }>;
    let coveredUntil: number;
    try {
      const [v] = await conn.query<RowDataPacket[]>('SELECT @@log_bin AS on_, CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) AS now_ms');
      if (Number(v[0].on_) !== 1) {
        log(`${key}: the server keeps no binary log (log_bin is off); nothing to archive`);
        continue;
      }
      coveredUntil = Number(v[0].now_ms);
      await conn.query('FLUSH BINARY LOGS');
      const [logs] = await conn.query<RowDataPacket[]>('SHOW BINARY LOGS');
      // The last file is the one being written; every other one is closed for good.
      closed = logs.slice(0, -1).map((r) => ({ name: String(r.Log_name), bytes: Number(r.File_size) }));
    } finally {
      await conn.end();
    }
    fs.mkdirSync(dir, { recursive: true });
    const { args, env } = clientArgs(node);
    let copied = 0;
    for (const f of closed) {
      const target = path.join(dir, f.name);
      if (fs.existsSync(target) && fs.statSync(target).size === f.bytes) continue;
      // --raw writes <result-file prefix><name>: a .part name, renamed once whole.
      const prefix = path.join(dir, '.part-');
      await runTool(tool, ['--read-from-remote-server', '--raw', ...args, `--result-file=${prefix}`, f.name], env);
      const got = fs.statSync(`${prefix}${f.name}`).size;
      if (got !== f.bytes) throw new Error(`${key}/${f.name}: fetched ${got} bytes, the server lists ${f.bytes}`);
      fs.renameSync(`${prefix}${f.name}`, target);
      copied++;
    }
    const index: ArchiveIndex = { server: key, coveredUntil, files: closed.filter((f) => fs.existsSync(path.join(dir, f.name))) };
    const tmp = path.join(dir, `.${ARCHIVE_INDEX}.tmp`);
    fs.writeFileSync(tmp, JSON.stringify(index, null, 2) + '\n');
    fs.renameSync(tmp, path.join(dir, ARCHIVE_INDEX));
    log(`${key}: ${copied} new file(s), ${index.files.length} archived; covered until ${new Date(coveredUntil).toISOString()}`);
    result.set(key, index);
  }
  return result;
}
