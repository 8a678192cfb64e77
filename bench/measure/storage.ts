/**
 * Owns the storage measurements DESIGN.md cites as M5-M9: bytes per key on disk (InnoDB, MyRocks),
 * binlog bytes per operation, expiry-wheel memory per entry, and Redis memory per key. Relies on
 * the store's own schema and statements (schemaStatements, STATEMENTS) and the embedded server
 * launcher, so the figures are about our SQL, not a lookalike. Must not touch ./data: every server
 * is a throwaway under the OS temp dir.
 *
 * Usage: npm run build && node dist/bench/measure/storage.js m5|m6|m7|m8|m9|all [--rows=N]
 * Each prints a table and writes a compact summary to bench/evidence/<ID>.json (committed), so a
 * reader can compare a rerun with what DESIGN.md quotes.
 *
 * M8 needs Debian's mariadb-plugin-rocksdb and M9 redis-server: the script installs them with apt
 * when run as root, and otherwise says what to install.
 */
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';
import { pickFreePort, startLocalMysqld, type LocalMysqld } from '../../src/embedded/local-mysqld';
import { aptInstall, aptUnavailable } from '../../src/embedded/mysql-binary';
import { MysqlShardStore } from '../../src/shard-actor/mysql-store/mysql-shard-store';
import { STATEMENTS } from '../../src/shard-actor/mysql-store/statements';
import { schemaStatements } from '../../src/shard-actor/schema-migration';
import { TimerWheel } from '../../src/shard-actor/timer-wheel';
import { numberFlag as arg, runScript } from '../options';

const EVIDENCE_DIR = path.join(__dirname, '..', '..', '..', 'bench', 'evidence');
const PAGE = 16 * 1024;
const KEY_BYTES = 32;
const STATEMENT_ROWS = 500;

type Row = [Buffer, Buffer, number, number | null];

function writeEvidence(id: string, what: string, rows: unknown[]): void {
  fs.mkdirSync(EVIDENCE_DIR, { recursive: true });
  const server = process.env.KVSQL_MEASURE_SERVER ?? 'local mariadbd (Debian MariaDB 10.11)';
  const summary = { id, what, measuredAt: new Date().toISOString(), node: process.version, server, host: `${os.cpus().length} cores`, rows };
  fs.writeFileSync(path.join(EVIDENCE_DIR, `${id}.json`), JSON.stringify(summary, null, 1) + '\n');
  console.table(rows);
}

/** Random 32-byte hex keys and random values: hashed keys arrive in random order and do not compress. */
function makeRows(n: number, valueBytes: number, ttl: boolean, sorted: boolean): Row[] {
  const rows: Row[] = [];
  const due = Date.now() + 86_400_000;
  for (let i = 0; i < n; i++) {
    rows.push([
      Buffer.from(crypto.randomBytes(KEY_BYTES / 2).toString('hex')),
      crypto.randomBytes(valueBytes),
      i + 1,
      ttl ? due + crypto.randomInt(86_400_000) : null,
    ]);
  }
  if (sorted) rows.sort((a, b) => Buffer.compare(a[0], b[0]));
  return rows;
}

async function freshServer(extraArgs: string[] = []): Promise<{ server: LocalMysqld; dir: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-measure-'));
  const server = await startLocalMysqld({ dataDir: dir, port: 0, database: 'kvsql', bufferPoolMb: 256, extraArgs });
  return { server, dir };
}

async function disposeServer(s: { server: LocalMysqld; dir: string }): Promise<void> {
  await s.server.stop();
  fs.rmSync(s.dir, { recursive: true, force: true });
}

async function createSchema(conn: mysql.Connection, db: string, engine = 'InnoDB'): Promise<void> {
  await conn.query(`CREATE DATABASE ${db}`);
  await conn.query(`USE ${db}`);
  for (const sql of schemaStatements()) await conn.query(engine === 'InnoDB' ? sql : sql.replace(/ENGINE=InnoDB/g, `ENGINE=${engine}`));
}

async function upsertAll(conn: mysql.Connection, rows: Row[]): Promise<void> {
  for (let i = 0; i < rows.length; i += STATEMENT_ROWS) {
    const part = rows.slice(i, i + STATEMENT_ROWS);
    await conn.query(STATEMENTS.upsertBatch.sql(part.length), part.flat());
  }
}

/** M5: InnoDB pages per index and .ibd bytes per key, for our schema loaded by our upsertBatch. */
async function m5(): Promise<void> {
  const n = arg('rows', 100_000);
  const cases = [
    { value: 100, ttl: true, sorted: false, rows: n },
    { value: 100, ttl: true, sorted: true, rows: n },
    { value: 100, ttl: false, sorted: false, rows: n },
    { value: 1000, ttl: true, sorted: false, rows: n },
    { value: 4000, ttl: true, sorted: false, rows: Math.round(n / 5) },
    { value: 9000, ttl: true, sorted: false, rows: Math.round(n / 5) },
  ];
  const s = await freshServer();
  const out = [];
  try {
    const conn = await mysql.createConnection({ uri: s.server.url, multipleStatements: true });
    const [[{ datadir }]] = await conn.query<RowDataPacket[]>('SELECT @@datadir AS datadir');
    for (const [i, c] of cases.entries()) {
      const db = `m5_${i}`;
      await createSchema(conn, db);
      await upsertAll(conn, makeRows(c.rows, c.value, c.ttl, c.sorted));
      await conn.query('ANALYZE TABLE kv');
      const [stats] = await conn.query<RowDataPacket[]>(
        "SELECT index_name, stat_value FROM mysql.innodb_index_stats WHERE database_name = ? AND table_name = 'kv' AND stat_name = 'size'",
        [db],
      );
      const pages = new Map(stats.map((r) => [r.index_name as string, Number(r.stat_value)]));
      const ibd = fs.statSync(path.join(datadir, db, 'kv.ibd')).size;
      out.push({
        value: c.value,
        ttl: c.ttl,
        order: c.sorted ? 'key order' : 'random',
        rows: c.rows,
        pkBytesPerKey: Math.round(((pages.get('PRIMARY') ?? 0) * PAGE) / c.rows),
        expiresIndexBytesPerKey: Math.round(((pages.get('kv_expires_at') ?? 0) * PAGE) / c.rows),
        ibdBytesPerKey: Math.round(ibd / c.rows),
        logicalBytesPerKey: KEY_BYTES + c.value,
      });
    }
    await conn.end();
  } finally {
    await disposeServer(s);
  }
  writeEvidence('M5', 'InnoDB bytes per key: our schema, rows written by STATEMENTS.upsertBatch in statements of 500', out);
}

/** M6: binlog bytes per op (ROW format) for insert, replace, TTL change and delete, per row image. */
async function m6(): Promise<void> {
  const n = arg('rows', 10_000);
  const s = await freshServer(['--log-bin=binlog', '--binlog-format=ROW', '--server-id=1']);
  const out = [];
  try {
    const conn = await mysql.createConnection({ uri: s.server.url, multipleStatements: true });
    const position = async (): Promise<[string, number]> => {
      const [r] = await conn.query<RowDataPacket[]>('SHOW MASTER STATUS');
      return [r[0].File as string, Number(r[0].Position)];
    };
    const perOp = async (run: () => Promise<void>): Promise<number> => {
      const [f0, p0] = await position();
      await run();
      const [f1, p1] = await position();
      if (f0 !== f1) throw new Error('the binlog rotated during a measurement; use fewer --rows');
      return Math.round((p1 - p0) / n);
    };
    const inBatches = async (rows: Row[], sql: (part: Row[]) => [string, unknown[]]): Promise<void> => {
      for (let i = 0; i < rows.length; i += STATEMENT_ROWS) {
        const [text, params] = sql(rows.slice(i, i + STATEMENT_ROWS));
        await conn.query(`START TRANSACTION; ${text}; COMMIT`, params);
      }
    };
    let i = 0;
    for (const value of [100, 1000]) {
      for (const image of ['FULL', 'NOBLOB', 'MINIMAL']) {
        await createSchema(conn, `m6_${i++}`);
        await conn.query(`SET SESSION binlog_row_image = ${image}; SET SESSION binlog_annotate_row_events = OFF`);
        const rows = makeRows(n, value, true, false);
        const upsert = (part: Row[]): [string, unknown[]] => [STATEMENTS.upsertBatch.sql(part.length), part.flat()];
        const insert = await perOp(() => inBatches(rows, upsert));
        for (const r of rows) r[1] = crypto.randomBytes(value);
        const replace = await perOp(() => inBatches(rows, upsert));
        const ttl = await perOp(() =>
          inBatches(rows, (part) => [STATEMENTS.ttlBatch.sql(part.length), [...part.flatMap((r) => [r[0], (r[3] ?? 0) + 1]), ...part.map((r) => r[0])]]),
        );
        const del = await perOp(() => inBatches(rows, (part) => [STATEMENTS.deleteBatch.sql(part.length), part.map((r) => r[0])]));
        out.push({ value, image, insert, replace, ttlChange: ttl, delete: del });
      }
    }
    await conn.end();
  } finally {
    await disposeServer(s);
  }
  writeEvidence('M6', 'binlog bytes per op, binlog_format=ROW, annotate_row_events=OFF, transactions of 500 through our statements', out);
}

/** M7: heap + buffer bytes per expiry-wheel entry, loaded the way the expirer loads it. */
async function m7(): Promise<void> {
  const n = arg('rows', 200_000);
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const s = await freshServer();
  let out;
  try {
    const conn = await mysql.createConnection({ uri: s.server.url, multipleStatements: true });
    await createSchema(conn, 'm7');
    const start = Date.now() + 5_000;
    const rows = makeRows(n, 10, false, false).map((r, i): Row => [r[0], r[1], r[2], start + (i % 50_000)]);
    await upsertAll(conn, rows);
    await conn.end();
    const store = new MysqlShardStore({ url: s.server.url.replace(/\/kvsql$/, '/m7'), poolSize: 2, queryTimeoutMs: 60_000 });
    const wheel = new TimerWheel(100, 600, start - 1000);
    const page = 2000;
    gc();
    const before = process.memoryUsage();
    let after = start - 1;
    for (;;) {
      const got = await store.scanDueWindow(after, start + 60_000, page);
      for (const r of got) wheel.add(r.k, r.expires_at);
      if (got.length < page) break;
      const last = got[got.length - 1];
      // Rows sharing the page's last expires_at: page through them by key, as the expirer does.
      for (let tail = last.k; ;) {
        const ties = await store.scanDueTies(last.expires_at, tail, page);
        for (const r of ties) wheel.add(r.k, r.expires_at);
        if (ties.length < page) break;
        tail = ties[ties.length - 1].k;
      }
      after = last.expires_at;
    }
    gc();
    const mem = process.memoryUsage();
    await store.close();
    out = [
      {
        entries: wheel.size,
        heapBytesPerEntry: Math.round((mem.heapUsed - before.heapUsed) / wheel.size),
        bufferBytesPerEntry: Math.round((mem.arrayBuffers - before.arrayBuffers) / wheel.size),
      },
    ];
  } finally {
    await disposeServer(s);
  }
  writeEvidence('M7', 'memory per TimerWheel entry (32 B keys), loaded through scanDueWindow/scanDueTies; process.memoryUsage deltas after gc()', out);
}

/** True when `pkg` is there or was just installed; false, saying what to install, when it cannot be. */
async function ensurePackage(pkg: string, probe: () => boolean): Promise<boolean> {
  if (probe()) return true;
  const unavailable = aptUnavailable();
  if (unavailable !== null) {
    console.error(`${pkg} is not installed; run: apt-get install ${pkg} (${unavailable})`);
    return false;
  }
  console.error(`installing ${pkg} with apt-get (needed for this measurement only)`);
  return aptInstall([pkg], probe, console.error);
}

function duBytes(dir: string): number {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? duBytes(p) : fs.statSync(p).size;
  }
  return total;
}

/** M8: the same schema on MyRocks, bytes per key after a flush and a full compaction. */
async function m8(): Promise<void> {
  const plugin = '/usr/lib/mysql/plugin/ha_rocksdb.so';
  if (!(await ensurePackage('mariadb-plugin-rocksdb', () => fs.existsSync(plugin)))) return;
  const n = arg('rows', 100_000);
  // Loaded at start: INSTALL SONAME at run time crashed MariaDB 10.11.19 here.
  const s = await freshServer(['--plugin-load-add=ha_rocksdb', '--rocksdb-large-prefix=1']);
  const out = [];
  try {
    const conn = await mysql.createConnection({ uri: s.server.url, multipleStatements: true });
    for (const [i, value] of [100, 1000].entries()) {
      const db = `m8_${i}`;
      await createSchema(conn, db, 'ROCKSDB');
      const rocks = path.join(s.dir, '#rocksdb');
      const base = duBytes(rocks);
      await upsertAll(conn, makeRows(n, value, true, false));
      await conn.query('SET GLOBAL rocksdb_force_flush_memtable_now = 1');
      await conn.query("SET GLOBAL rocksdb_compact_cf = 'default'");
      out.push({ value, rows: n, bytesPerKey: Math.round((duBytes(rocks) - base) / n), logicalBytesPerKey: KEY_BYTES + value });
    }
    await conn.end();
  } finally {
    await disposeServer(s);
  }
  writeEvidence('M8', 'MyRocks bytes per key (#rocksdb growth), our schema with ENGINE=ROCKSDB, after flush + full compaction', out);
}

/** Sends RESP commands over one socket and resolves with the last reply's text. */
function redisPipe(port: number, commands: Buffer[][]): Promise<string> {
  const enc = (args: Buffer[]): Buffer =>
    Buffer.concat([Buffer.from(`*${args.length}\r\n`), ...args.flatMap((a) => [Buffer.from(`$${a.length}\r\n`), a, Buffer.from('\r\n')])]);
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let replies = 0;
    sock.on('data', (d) => {
      chunks.push(d);
      // Count top-level replies roughly: every reply here is one line, except the final INFO bulk.
      replies += d.toString('latin1').split('\r\n').length - 1;
      if (replies >= commands.length) {
        sock.end();
        resolve(Buffer.concat(chunks).toString('latin1'));
      }
    });
    sock.on('error', reject);
    sock.write(Buffer.concat(commands.map(enc)));
  });
}

/** M9: Redis used_memory per key, SET with PX (a TTL), no persistence. */
async function m9(): Promise<void> {
  if (!(await ensurePackage('redis-server', () => fs.existsSync('/usr/bin/redis-server')))) return;
  const n = arg('rows', 100_000);
  const port = await pickFreePort();
  const child = spawn('/usr/bin/redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const out = [];
  try {
    await new Promise((r) => setTimeout(r, 500));
    const used = async (): Promise<number> => Number(/used_memory:(\d+)/.exec(await redisPipe(port, [[Buffer.from('INFO'), Buffer.from('memory')]]))![1]);
    for (const value of [100, 1000]) {
      await redisPipe(port, [[Buffer.from('FLUSHALL')]]);
      const before = await used();
      const sets = makeRows(n, value, true, false).map((r) => [Buffer.from('SET'), r[0], r[1], Buffer.from('PX'), Buffer.from('3600000')]);
      for (let i = 0; i < sets.length; i += 10_000) await redisPipe(port, sets.slice(i, i + 10_000));
      out.push({ value, keys: n, usedMemoryBytesPerKey: Math.round(((await used()) - before) / n), logicalBytesPerKey: KEY_BYTES + value });
    }
  } finally {
    child.kill('SIGTERM');
  }
  const version = execFileSync('/usr/bin/redis-server', ['--version']).toString().trim();
  writeEvidence('M9', `Redis used_memory per key (32 B keys, SET ... PX), no persistence; ${version}`, out);
}

const RUNS: Record<string, () => Promise<void>> = { m5, m6, m7, m8, m9 };

async function main(): Promise<void> {
  const which = process.argv[2] ?? '';
  const ids = which === 'all' ? Object.keys(RUNS) : [which];
  if (!ids.every((id) => id in RUNS)) {
    console.error('usage: node dist/bench/measure/storage.js m5|m6|m7|m8|m9|all [--rows=N]');
    process.exit(2);
  }
  for (const id of ids) await RUNS[id]();
}

runScript(main);
