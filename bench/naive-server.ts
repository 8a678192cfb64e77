#!/usr/bin/env node
/**
 * Owns the naive baseline: the server a team would write in an afternoon, to measure kvsql
 * against in one run (scenarios naive-get, naive-put). node:http, one mysql2 pool per shard
 * (NAIVE_POOL connections in all, default 32), one autocommit statement per request, no batching,
 * no actor, no expiry, no deadlines. Same URLs as kvsql (`GET|PUT /v1/kv/<key>`), same MariaDB
 * shards and settings (its own table, `naive_kv`, beside `kv`), so the same load generator and
 * connections drive both. Relies on mysql2 only; started by bench/naive.ts, never by the store.
 *
 * Env: NAIVE_PORT, NAIVE_SHARDS (comma-separated mysql:// URLs), NAIVE_POOL, NAIVE_KEYS and
 * NAIVE_VALUE_SIZE (rows `<NAIVE_PREFIX><i>` preloaded before /readyz answers 200).
 */
import http from 'node:http';
import mysql from 'mysql2/promise';

const port = Number(process.env.NAIVE_PORT);
const urls = (process.env.NAIVE_SHARDS ?? '').split(',').filter(Boolean);
const poolSize = Number(process.env.NAIVE_POOL ?? 32);
const keys = Number(process.env.NAIVE_KEYS ?? 0);
const valueSize = Number(process.env.NAIVE_VALUE_SIZE ?? 100);
const prefix = process.env.NAIVE_PREFIX ?? 'k:';

const pools = urls.map((u) => mysql.createPool({ uri: u, connectionLimit: Math.max(1, Math.round(poolSize / urls.length)), supportBigNumbers: true }));

/** FNV-1a of the key's bytes, mod the shard count: any stable spread will do for a baseline. */
function shardOf(key: string): mysql.Pool {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return pools[(h >>> 0) % pools.length];
}

let ready = false;

async function setup(): Promise<void> {
  const value = Buffer.alloc(valueSize, 0x61);
  for (const p of pools) {
    await p.query('CREATE TABLE IF NOT EXISTS naive_kv (k VARBINARY(255) NOT NULL PRIMARY KEY, v LONGBLOB NOT NULL) ENGINE=InnoDB');
  }
  const byShard = new Map<mysql.Pool, string[]>();
  const flush = async (p: mysql.Pool, list: string[]) => {
    if (list.length === 0) return;
    await p.query('INSERT IGNORE INTO naive_kv (k, v) VALUES ?', [list.map((k) => [k, value])]);
    list.length = 0;
  };
  for (let i = 0; i < keys; i++) {
    const k = prefix + i;
    const p = shardOf(k);
    const list = byShard.get(p) ?? [];
    byShard.set(p, list);
    list.push(k);
    if (list.length >= 1000) await flush(p, list);
  }
  for (const [p, list] of byShard) await flush(p, list);
  ready = true;
}

const KV = '/v1/kv/';

const server = http.createServer((req, res) => {
  const url = req.url ?? '';
  if (url === '/readyz') {
    res.writeHead(ready ? 200 : 503).end();
    return;
  }
  if (!url.startsWith(KV)) {
    res.writeHead(404).end();
    return;
  }
  const key = decodeURIComponent(url.slice(KV.length));
  const pool = shardOf(key);
  if (req.method === 'GET') {
    pool.query<mysql.RowDataPacket[]>('SELECT v FROM naive_kv WHERE k = ?', [key]).then(
      ([rows]) => {
        if (rows.length === 0) res.writeHead(404).end();
        else res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(rows[0].v as Buffer);
      },
      (err: Error) => res.writeHead(500).end(err.message),
    );
    return;
  }
  if (req.method === 'PUT') {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      pool.query('INSERT INTO naive_kv (k, v) VALUES (?, ?) ON DUPLICATE KEY UPDATE v = VALUES(v)', [key, Buffer.concat(chunks)]).then(
        () => res.writeHead(204).end(),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    });
    return;
  }
  res.writeHead(405).end();
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1');
setup().catch((err) => {
  process.stderr.write(`naive-server: setup failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
const stop = () => {
  server.close();
  void Promise.all(pools.map((p) => p.end())).finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
