/**
 * Owns the backup commands of the `kvsql` CLI. Relies on backup, restore, binlog-archive and the
 * gateway's config (the same KVSQL_SHARDS / embedded settings as the server and the admin
 * commands). Talks to MySQL directly; never to a gateway.
 *
 *   kvsql backup --to DIR                     a consistent backup of every shard, into DIR/<id>/
 *   kvsql backup verify DIR [--scratch]       manifest + checksums + rows; --scratch also restores it
 *   kvsql backup list DIR                     the backups in DIR, complete or not
 *   kvsql restore --from DIR [--at T --binlogs ARCHIVE]   into empty shards (embedded: started here)
 *   kvsql binlog archive --to ARCHIVE [--every=S]          copy closed binlog files, once or every S s
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveConfig } from '../config/config';
import { mysqlTls } from '../gateway/tls';
import { startEmbeddedCluster } from '../embedded/embedded-cluster';
import { startLocalMysqld } from '../embedded/local-mysqld';
import { adminUrls, UsageError } from './commands';
import { takeBackup, type BackupProgress } from './backup';
import { restoreBackup, verifyBackup } from './restore';
import { archiveBinlogs } from './binlog-archive';
import { listBackups, readManifest, resolveBackupDir } from './backup-format';
import { groupUsage } from '../cli-help';
import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';

export const BACKUP_COMMANDS = new Set(['backup', 'restore', 'binlog']);

const USAGE = [...BACKUP_COMMANDS].map((g) => groupUsage(g).replace(/^usage:\n/, '')).join('\n');

/** Splits `--name=value` / `--name value` options this module knows from the server's settings. */
function parse(argv: string[], known: readonly string[], flags: readonly string[]): { positional: string[]; opts: Map<string, string>; config: string[] } {
  const positional: string[] = [];
  const opts = new Map<string, string>();
  const config: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (m === null) positional.push(a);
    else if (flags.includes(m[1])) opts.set(m[1], 'true');
    else if (known.includes(m[1])) {
      const value = m[2] ?? argv[++i];
      if (value === undefined || value === '') throw new UsageError(`--${m[1]} needs a value\nusage:\n${USAGE}`);
      opts.set(m[1], value);
    } else config.push(a);
  }
  return { positional, opts, config };
}

/** `--at`: an ISO 8601 time (2026-12-07T18:00:05Z) or unix milliseconds. */
function parseTime(raw: string): number {
  const ms = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (!Number.isFinite(ms)) throw new UsageError(`--at: "${raw}" is not a time; give ISO 8601 with a zone (2026-12-07T18:00:05Z) or unix milliseconds`);
  return ms;
}

const mb = (bytes: number): string => (bytes / 1e6).toFixed(1);

function backupReporter(out: NodeJS.WriteStream): (p: BackupProgress) => void {
  let last = 0;
  return (p) => {
    if (!p.done && Date.now() - last < (out.isTTY ? 200 : 2000)) return;
    last = Date.now();
    const secs = Math.max(0.001, (Date.now() - p.startedAt) / 1000);
    const frac = p.estimatedBytes > 0 ? Math.min(1, p.bytes / p.estimatedBytes) : 0;
    const text = `${mb(p.bytes)} MB${p.estimatedBytes > 0 ? ` of ~${mb(p.estimatedBytes)}` : ''}, ${p.rows} rows, ${(p.bytes / 1e6 / secs).toFixed(1)} MB/s${p.done ? ', done' : ''}`;
    if (out.isTTY) out.write(`\r[${'#'.repeat(Math.round((p.done ? 1 : frac) * 30)).padEnd(30, '.')}] ${text}   ${p.done ? '\n' : ''}`);
    else out.write(`${text}\n`);
  };
}

/** `kvsql backup|restore|binlog ...`; returns the exit code. */
export async function runBackupCommand(argv: string[], env: NodeJS.ProcessEnv = process.env, out: NodeJS.WriteStream = process.stderr): Promise<number> {
  const { positional, opts, config: configArgs } = parse(argv, ['to', 'from', 'at', 'binlogs', 'every'], ['scratch']);
  const config = resolveConfig(configArgs, env);
  const tls = mysqlTls(config);
  const log = (msg: string) => out.write(`${msg}\n`);
  const [cmd, sub, arg] = positional;
  if (cmd === 'backup' && sub === undefined) {
    const to = opts.get('to');
    if (to === undefined) throw new UsageError(`backup needs --to DIR\nusage:\n${USAGE}`);
    const { dir, manifest } = await takeBackup(adminUrls(config), path.resolve(to), { tls, log, progress: backupReporter(out) });
    const bytes = manifest.shards.reduce((n, s) => n + s.files.reduce((m, f) => m + f.bytes, 0), 0);
    const secs = (manifest.endedAt - manifest.startedAt) / 1000;
    log(
      `backup ${manifest.id}: ${manifest.shards.length} shards, ${manifest.shards.reduce((n, s) => n + s.rows, 0)} rows, ${mb(bytes)} MB in ${secs.toFixed(1)} s (${(bytes / 1e6 / Math.max(secs, 0.001)).toFixed(1)} MB/s)`,
    );
    process.stdout.write(`${dir}\n`);
  } else if (cmd === 'backup' && sub === 'list') {
    if (arg === undefined) throw new UsageError(`backup list needs DIR\nusage:\n${USAGE}`);
    for (const b of listBackups(path.resolve(arg))) {
      const m = b.manifest;
      if (m === null) {
        process.stdout.write(`${path.basename(b.dir)}  INCOMPLETE (${b.error})\n`);
        continue;
      }
      const bytes = m.shards.reduce((n, s) => n + s.files.reduce((x, f) => x + f.bytes, 0), 0);
      const pitr = m.shards.every((s) => s.binlog !== null) ? 'binlog positions: yes' : 'binlog positions: no';
      process.stdout.write(
        `${m.id}  ${new Date(m.startedAt).toISOString()}  ${m.shards.length} shards  ${m.shards.reduce((n, s) => n + s.rows, 0)} rows  ${mb(bytes)} MB  epoch ${m.slotMap.epoch}  ${pitr}\n`,
      );
    }
  } else if (cmd === 'backup' && sub === 'verify') {
    if (arg === undefined) throw new UsageError(`backup verify needs DIR\nusage:\n${USAGE}`);
    const { dir, manifest } = await verifyBackup(path.resolve(arg));
    log(
      `${dir}: manifest, ${manifest.shards.reduce((n, s) => n + s.files.length, 0)} files (sizes, sha256) and ${manifest.shards.reduce((n, s) => n + s.rows, 0)} rows OK`,
    );
    if (opts.has('scratch')) await scratchRestore(dir, log);
    process.stdout.write('ok\n');
  } else if (cmd === 'restore' && sub === undefined) {
    const from = opts.get('from');
    if (from === undefined) throw new UsageError(`restore needs --from DIR\nusage:\n${USAGE}`);
    const at = opts.has('at') ? parseTime(opts.get('at')!) : undefined;
    const dir = resolveBackupDir(path.resolve(from));
    const shards = readManifest(dir).shards.length;
    const started = Date.now();
    let last = 0;
    const progress = (rows: number, bytes: number): void => {
      if (Date.now() - last < (out.isTTY ? 200 : 2000)) return;
      last = Date.now();
      const text = `${rows} rows, ${mb(bytes)} MB, ${(bytes / 1e6 / Math.max(0.001, (Date.now() - started) / 1000)).toFixed(1)} MB/s`;
      out.write(out.isTTY ? `\r${text}   ` : `${text}\n`);
    };
    const restoreOpts = { tls, log, at, progress, binlogs: opts.has('binlogs') ? path.resolve(opts.get('binlogs')!) : undefined };
    if (config.shards.length > 0) {
      await restoreBackup(dir, config.shards, restoreOpts);
    } else {
      // Embedded: start the shards here (the data dir's lock refuses a running store), restore, stop.
      log(`starting ${shards} embedded shards under ${config.dataDir} to restore into`);
      const cluster = await startEmbeddedCluster({
        shards,
        dataDir: config.dataDir,
        basePort: config.embeddedBasePort,
        replicas: config.replicas,
        binlog: config.embeddedBinlog,
        log: () => undefined,
      });
      try {
        await restoreBackup(dir, cluster.urls, restoreOpts);
      } finally {
        await cluster.stop();
      }
      log(`done: start the store with --data-dir=${config.dataDir} --embedded-shards=${shards}`);
    }
  } else if (cmd === 'binlog' && sub === 'archive') {
    const to = opts.get('to');
    if (to === undefined) throw new UsageError(`binlog archive needs --to DIR\nusage:\n${USAGE}`);
    const every = opts.has('every') ? Number(opts.get('every')) : 0;
    if (!Number.isFinite(every) || every < 0) throw new UsageError(`--every: seconds, got ${opts.get('every')}`);
    for (;;) {
      await archiveBinlogs(adminUrls(config), path.resolve(to), { tls, log });
      if (every === 0) break;
      await new Promise((r) => setTimeout(r, every * 1000));
    }
  } else {
    throw new UsageError(`usage:\n${USAGE}`);
  }
  return 0;
}

/** Restores `dir` into a throwaway local server and checks every shard's row count there. */
async function scratchRestore(dir: string, log: (msg: string) => void): Promise<void> {
  const manifest = readManifest(dir);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-verify-'));
  try {
    const server = await startLocalMysqld({ dataDir, port: 0, database: 'kvsql', bufferPoolMb: 64 });
    try {
      const urls: string[] = [];
      const admin = await mysql.createConnection(server.url);
      try {
        for (const s of manifest.shards) {
          await admin.query(`CREATE DATABASE scratch_${s.index}`);
          urls.push(server.url.replace(/\/kvsql$/, `/scratch_${s.index}`));
        }
        const r = await restoreBackup(dir, urls, {});
        for (const s of manifest.shards) {
          const [rows] = await admin.query<RowDataPacket[]>(`SELECT COUNT(*) AS n FROM scratch_${s.index}.kv`);
          if (Number(rows[0].n) !== s.rows) throw new Error(`scratch restore: shard ${s.index} has ${rows[0].n} rows, the backup ${s.rows}`);
        }
        log(`restored into a scratch server: ${r.rows} rows in ${(r.ms / 1000).toFixed(1)} s, row counts match`);
      } finally {
        await admin.end();
      }
    } finally {
      await server.stop();
    }
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}
