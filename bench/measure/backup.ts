/**
 * Owns measurement D1 (DESIGN.md §8): how fast this machine backs up and restores a shard, the
 * logical way kvsql does it (admin/backup.ts, admin/restore.ts) against a physical copy with
 * mariadb-backup, on the same data. Relies on the embedded server launcher (binlog on, as the
 * embedded shards run), a gateway to create the store, and Debian's mariadb-backup (installed
 * with apt when run as root). Must not touch ./data: every server is a throwaway under the OS
 * temp dir.
 *
 * Usage: npm run build && flock /tmp/kvsql-bench.lock node dist/bench/measure/backup.js [--rows=N] [--value=B]
 *   N rows per shard (default 100,000) of B-byte random values (default 1,000) on each of 2
 *   servers, one shard each, loaded with multi-row INSERTs. Then, timed: kvsql's backup of both
 *   shards (in parallel, as the command does), mariadb-backup --backup and --prepare of server 0,
 *   --copy-back into an empty dir and the server's start on it, kvsql's restore of both shards
 *   into empty databases, and a PITR restore that replays N/2 more rows per shard from the
 *   archived binlog ('MB written' of that row: binlog bytes replayed). Writes bench/evidence/D1.json.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';
import { binlogArgs, socketPathFor, startLocalMysqld, type LocalMysqld } from '../../src/embedded/local-mysqld';
import { ensureMysqlBinary, ensureTool } from '../../src/embedded/mysql-binary';
import { configFrom } from '../../src/config/config';
import { createLogger, startServer } from '../../src/gateway/server';
import { slotOf } from '../../src/protocol/slot-map';
import { takeBackup } from '../../src/admin/backup';
import { restoreBackup } from '../../src/admin/restore';
import { archiveBinlogs } from '../../src/admin/binlog-archive';
import { numberFlag as arg, runScript } from '../options';

const EVIDENCE_DIR = path.join(__dirname, '..', '..', '..', 'bench', 'evidence');

function duBytes(dir: string): number {
  return Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0]);
}

async function main(): Promise<void> {
  const rowsPerShard = arg('rows', 100_000);
  const valueBytes = arg('value', 1000);
  const log = (msg: string) => console.error(`[D1] ${msg}`);
  const binary = await ensureMysqlBinary(log);
  const mb = await ensureTool(['mariadb-backup', 'mariabackup'], 'mariadb-backup', log).catch((err: Error) => {
    log(`the physical rows are skipped: ${err.message}`);
    return undefined;
  });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-measure-backup-'));
  const servers: LocalMysqld[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const dataDir = path.join(work, `shard-${i}`);
      servers.push(await startLocalMysqld({ dataDir, port: 0, database: 'kvsql', bufferPoolMb: 256, binary, extraArgs: binlogArgs(binary) }));
    }
    const urls = servers.map((s) => s.url);
    // A gateway creates the store (schema, identities, slot map), then the rows go in directly.
    const gw = await startServer(configFrom({ port: 0, redisPort: null, logLevel: 'silent' }), urls, createLogger('silent'));
    await gw.close();
    const t0 = Date.now();
    let version = 1;
    /** `n` random rows into each shard, 500 per INSERT; a quarter with a TTL. */
    const load = async (n: number): Promise<void> => {
      for (const url of urls) {
        const conn = await mysql.createConnection(url);
        for (let done = 0; done < n; done += 500) {
          const params: unknown[] = [];
          const m = Math.min(500, n - done);
          for (let j = 0; j < m; j++) {
            const k = Buffer.from(crypto.randomBytes(16).toString('hex'));
            params.push(k, crypto.randomBytes(valueBytes), version++, j % 4 === 0 ? Date.now() + 86_400_000 : null, slotOf(k));
          }
          await conn.query(`INSERT IGNORE INTO kv (k, v, version, expires_at, slot) VALUES ${new Array(m).fill('(?,?,?,?,?)').join(',')}`, params);
        }
        await conn.query('UPDATE kv_seq SET next_version = ? WHERE id = 1', [version + 1]);
        await conn.end();
      }
    };
    await load(rowsPerShard);
    log(`loaded ${2 * rowsPerShard} rows of ${valueBytes} B in ${Date.now() - t0} ms`);
    const kvFile = duBytes(path.join(work, 'shard-0', 'kvsql', 'kv.ibd'));
    const datadir0 = duBytes(path.join(work, 'shard-0'));
    const logical = (2 * rowsPerShard * (32 + valueBytes)) / 1e6;

    // kvsql backup (both shards in parallel, as `kvsql backup` does).
    let t = Date.now();
    const { dir, manifest } = await takeBackup(urls, path.join(work, 'backups'));
    const backupMs = Date.now() - t;
    const backupBytes = manifest.shards.reduce((n, s) => n + s.files.reduce((m, f) => m + f.bytes, 0), 0);

    // mariadb-backup of server 0: --backup, --prepare, --copy-back, then the server's start.
    let physical: Record<string, number> | null = null;
    if (mb !== undefined) {
      const target = path.join(work, 'physical');
      t = Date.now();
      execFileSync(mb, ['--backup', `--target-dir=${target}`, '--user=root', `--socket=${socketPathFor(servers[0].dataDir)}`], { stdio: 'ignore' });
      const backup = Date.now() - t;
      t = Date.now();
      execFileSync(mb, ['--prepare', `--target-dir=${target}`], { stdio: 'ignore' });
      const prepare = Date.now() - t;
      const copied = duBytes(target);
      const restored = path.join(work, 'physical-restored');
      t = Date.now();
      execFileSync(mb, ['--copy-back', `--target-dir=${target}`, `--datadir=${restored}`], { stdio: 'ignore' });
      const copyBack = Date.now() - t;
      t = Date.now();
      const s = await startLocalMysqld({ dataDir: restored, port: 0, database: 'kvsql', bufferPoolMb: 256, binary });
      const start = Date.now() - t;
      const c = await mysql.createConnection(s.url);
      const [rows] = await c.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM kv');
      await c.end();
      await s.stop();
      if (Number(rows[0].n) !== rowsPerShard) throw new Error(`physical restore has ${rows[0].n} rows, expected ${rowsPerShard}`);
      physical = { backupMs: backup, prepareMs: prepare, copyBackMs: copyBack, startMs: start, bytesCopied: copied };
    }

    // kvsql restore of both shards into empty databases on the same servers.
    /** An empty database `name` on every server; their URLs. */
    const emptyDatabases = async (name: string): Promise<string[]> => {
      const made: string[] = [];
      for (const sv of servers) {
        const c = await mysql.createConnection(sv.url);
        await c.query(`CREATE DATABASE ${name}`);
        await c.end();
        made.push(sv.url.replace(/\/kvsql$/, `/${name}`));
      }
      return made;
    };
    const targets = await emptyDatabases('restored');
    t = Date.now();
    await restoreBackup(dir, targets);
    const restoreMs = Date.now() - t;

    // PITR: half as many rows again after the backup (in the binlog only), archived, then the
    // backup restored once more and the binlog replayed up to a time after them.
    await load(rowsPerShard / 2);
    const T = Math.ceil((Date.now() + 1) / 1000) * 1000;
    while (Date.now() < T + 50) await new Promise((r) => setTimeout(r, 20));
    const archive = path.join(work, 'archive');
    const archived = await archiveBinlogs(urls, archive);
    let binlogBytes = 0;
    for (const sh of manifest.shards) {
      for (const f of archived.get(sh.serverKey)!.files)
        if (f.name >= sh.binlog!.file) binlogBytes += f.bytes - (f.name === sh.binlog!.file ? sh.binlog!.position : 0);
    }
    const pitrTargets = await emptyDatabases('pitr');
    let replayMs = 0;
    await restoreBackup(dir, pitrTargets, {
      at: T,
      binlogs: archive,
      log: (msg) => (/replayed the binlogs .* in (\d+) ms/.exec(msg) ? (replayMs = Number(/in (\d+) ms/.exec(msg)![1])) : undefined),
    });
    const c0 = await mysql.createConnection(pitrTargets[0]);
    const [pitrRows] = await c0.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM kv');
    await c0.end();
    if (Number(pitrRows[0].n) !== rowsPerShard * 1.5) throw new Error(`PITR restore has ${pitrRows[0].n} rows on shard 0, expected ${rowsPerShard * 1.5}`);

    const perSec = (bytes: number, ms: number) => Number((bytes / 1e6 / (ms / 1000)).toFixed(1));
    interface Row {
      what: string;
      ms: number;
      'MB of k+v': number;
      'k+v MB/s': number;
      'MB written': number | null;
      'kv.ibd MB/s (both)': number | null;
    }
    const rows: Row[] = [
      {
        what: 'kvsql backup, 2 shards in parallel',
        ms: backupMs,
        'MB of k+v': Number(logical.toFixed(1)),
        'k+v MB/s': perSec(logical * 1e6, backupMs),
        'MB written': Number((backupBytes / 1e6).toFixed(1)),
        'kv.ibd MB/s (both)': perSec(2 * kvFile, backupMs),
      },
      {
        what: 'kvsql restore, 2 shards in parallel',
        ms: restoreMs,
        'MB of k+v': Number(logical.toFixed(1)),
        'k+v MB/s': perSec(logical * 1e6, restoreMs),
        'MB written': null,
        'kv.ibd MB/s (both)': perSec(2 * kvFile, restoreMs),
      },
    ];
    rows.push({
      what: `binlog replay (PITR) of ${rowsPerShard / 2} rows per shard, 2 shards in parallel`,
      ms: replayMs,
      'MB of k+v': Number((logical / 2).toFixed(1)),
      'k+v MB/s': perSec((logical / 2) * 1e6, replayMs),
      'MB written': Number((binlogBytes / 1e6).toFixed(1)),
      'kv.ibd MB/s (both)': null,
    });
    if (physical !== null) {
      const half = logical / 2;
      const restore = physical.copyBackMs + physical.startMs;
      rows.push(
        {
          what: 'mariadb-backup --backup, 1 server',
          ms: physical.backupMs,
          'MB of k+v': Number(half.toFixed(1)),
          'k+v MB/s': perSec(half * 1e6, physical.backupMs),
          'MB written': Number((physical.bytesCopied / 1e6).toFixed(1)),
          'kv.ibd MB/s (both)': perSec(kvFile, physical.backupMs),
        },
        {
          what: 'mariadb-backup --prepare',
          ms: physical.prepareMs,
          'MB of k+v': Number(half.toFixed(1)),
          'k+v MB/s': perSec(half * 1e6, physical.prepareMs),
          'MB written': null,
          'kv.ibd MB/s (both)': perSec(kvFile, physical.prepareMs),
        },
        {
          what: 'mariadb-backup --copy-back + server start',
          ms: restore,
          'MB of k+v': Number(half.toFixed(1)),
          'k+v MB/s': perSec(half * 1e6, restore),
          'MB written': null,
          'kv.ibd MB/s (both)': perSec(kvFile, restore),
        },
      );
    }
    fs.mkdirSync(EVIDENCE_DIR, { recursive: true });
    const summary = {
      id: 'D1',
      what: 'backup and restore throughput: kvsql logical backup/restore (2 shards, 2 servers, in parallel) and mariadb-backup (1 server)',
      measuredAt: new Date().toISOString(),
      node: process.version,
      host: `${os.cpus().length} cores`,
      rowsPerShard,
      valueBytes,
      kvIbdBytesPerShard: kvFile,
      datadirBytesShard0: datadir0,
      physical,
      rows,
    };
    fs.writeFileSync(path.join(EVIDENCE_DIR, 'D1.json'), JSON.stringify(summary, null, 1) + '\n');
    console.table(rows);
  } finally {
    for (const s of servers) await s.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

runScript(main);
