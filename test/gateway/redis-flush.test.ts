/**
 * Tests FLUSHDB and FLUSHALL on the Redis door (src/gateway/resp/flush-commands.ts,
 * src/gateway/key-flusher.ts) against two real shards, with ioredis: refused while
 * KVSQL_REDIS_FLUSH is off and for a token without the admin right; with both, every key of every
 * shard deleted over several pages, each deletion in the change feed (kv_feed rows), versions of
 * re-created keys above the deleted ones, other keys served meanwhile; a shard that is down named
 * in the error, and the flush finished once it is back.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import mysql2 from 'mysql2/promise';
import { configFrom } from '../../src/config/config';
import { FEED_DEL, FEED_KIND } from '../../src/protocol/feed';
import { createLogger, startServer, type Server } from '../../src/gateway/server';
import { FLUSH_PAGE } from '../../src/gateway/key-flusher';
import { HttpClient, etagVersion } from '../helpers/http-client';
import { startTestServer, type TestServer } from '../helpers/mysql';
import { keyOnShard } from '../helpers/store';
import { startTcpProxyFor, type TcpProxy } from '../helpers/tcp-proxy';
import { bearer, makeToken, writeTokenFile } from '../helpers/tokens';
import { waitFor } from '../helpers/wait';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-redis-flush-'));
const file = path.join(dir, 'tokens.jsonl');
const admin = makeToken('ops', [{ rights: ['admin'], prefixes: [] }]);
const all = makeToken('all', [{ rights: ['read', 'write'], prefixes: [''] }]);

let mysql: TestServer;
let proxy: TcpProxy;
let urls: string[];
/** Auth on, flush on; shard 0 through the proxy. */
let gw: Server;
/** Auth off, flush off (the default), on the same shards. */
let plain: Server;
let http: HttpClient;
const clients: Redis[] = [];
let conns: mysql2.Connection[] = [];

before(async () => {
  writeTokenFile(file, [admin, all]);
  mysql = await startTestServer();
  urls = [await mysql.createDatabase(), await mysql.createDatabase()];
  proxy = await startTcpProxyFor(urls[0]);
  const base = { port: 0, redisPort: 0, logLevel: process.env.KVSQL_TEST_LOG_LEVEL ?? 'silent' };
  gw = await startServer(configFrom({ ...base, authFile: file, redisFlush: true }), [proxy.via(urls[0]), urls[1]], createLogger('silent'));
  plain = await startServer(configFrom(base), urls, createLogger('silent'));
  http = new HttpClient(gw.port);
  conns = await Promise.all(urls.map((uri) => mysql2.createConnection({ uri })));
});
after(async () => {
  for (const c of clients) c.disconnect();
  for (const c of conns) await c.end();
  http?.close();
  await gw?.close();
  await plain?.close();
  await proxy?.close();
  await mysql?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function client(server: Server, token?: string): Redis {
  const c = new Redis({
    port: server.redisPort!,
    host: '127.0.0.1',
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    password: token,
    enableReadyCheck: false,
  });
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

const readiness = async (): Promise<string> => (await http.request('GET', '/readyz', { headers: bearer(admin) })).json().status;

/** kv rows on both shards, and kv_feed `del` rows. */
async function rows(): Promise<{ kv: number; feedDels: number }> {
  let kv = 0;
  let feedDels = 0;
  for (const c of conns) {
    const [a] = await c.query('SELECT COUNT(*) AS n FROM kv');
    kv += Number((a as Array<{ n: number }>)[0].n);
    const [b] = await c.query('SELECT COUNT(*) AS n FROM kv_feed WHERE (type & ?) = ?', [FEED_KIND, FEED_DEL]);
    feedDels += Number((b as Array<{ n: number }>)[0].n);
  }
  return { kv, feedDels };
}

test('FLUSHDB and FLUSHALL: refused while KVSQL_REDIS_FLUSH is off, and without the admin right; nothing deleted', async () => {
  const off = client(plain);
  await off.set('f:keep', 'v');
  await assert.rejects(off.flushdb(), /^ReplyError: ERR FLUSHDB is turned off on this store \(KVSQL_REDIS_FLUSH=true turns it on/);
  await assert.rejects(off.flushall(), /^ReplyError: ERR FLUSHALL is turned off/);
  const rw = client(gw, all.token);
  await assert.rejects(rw.flushdb(), /KV_ERR_FORBIDDEN FLUSHDB needs a token with the admin right/);
  await assert.rejects(rw.call('FLUSHALL', 'ASYNC'), /KV_ERR_FORBIDDEN/);
  const ops = client(gw, admin.token);
  await assert.rejects(ops.call('FLUSHDB', 'NOW'), /^ReplyError: ERR syntax error$/);
  await assert.rejects(ops.call('FLUSHDB', 'SYNC', 'ASYNC'), /ERR syntax error/);
  await assert.rejects(ops.multi().flushdb().exec(), /EXECABORT/);
  assert.equal(await off.get('f:keep'), 'v');
});

test('FLUSHDB deletes every key of every shard over several pages, records each deletion in the feed, and versions keep growing', async () => {
  const rw = client(gw, all.token);
  const ops = client(gw, admin.token);
  const n = FLUSH_PAGE * 2 + 17;
  const pipe = rw.pipeline();
  for (let i = 0; i < n; i++) pipe.set(`f:k${i}`, 'v', ...((i % 3 === 0 ? ['EX', 100] : []) as []));
  await pipe.exec();
  const k0 = keyOnShard(0, 'f:ver-');
  const k1 = keyOnShard(1, 'f:ver-');
  const before = [etagVersion(await http.put(k0, 'a', '', bearer(all))), etagVersion(await http.put(k1, 'a', '', bearer(all)))];
  const total = (await rw.dbsize()) as number;
  assert.ok(total >= n + 2, `${total} keys before`);
  const feedBefore = (await rows()).feedDels;

  // Other keys are served while it runs: each of these is answered.
  let flushed = false;
  const flush = ops.flushdb().then((r) => {
    flushed = true;
    return r;
  });
  const during = await Promise.all([rw.set('g:during', 'x'), rw.get(`f:k${n - 1}`), rw.incr('g:counter')]);
  assert.equal(during[0], 'OK');
  assert.equal(await flush, 'OK');
  assert.ok(flushed);

  assert.equal(await rw.dbsize(), 0, 'nothing left (a key written during the flush is deleted too when the flush had not passed it)');
  assert.equal((await rows()).kv, 0, 'no row left on either shard');
  assert.ok((await rows()).feedDels - feedBefore >= total - 3, 'a del in the feed per deleted key');
  const after = [etagVersion(await http.put(k0, 'b', '', bearer(all))), etagVersion(await http.put(k1, 'b', '', bearer(all)))];
  assert.ok(after[0] > before[0] && after[1] > before[1], `re-created keys get higher versions: ${before} -> ${after}`);
  assert.equal(await ops.call('FLUSHALL', 'ASYNC'), 'OK');
  assert.equal(await rw.dbsize(), 0);
});

test('FLUSHDB with a shard down: an error naming the shard, the keys still there; after it is back, the flush finishes', async () => {
  const rw = client(gw, all.token);
  const ops = client(gw, admin.token);
  const k0 = keyOnShard(0, 'f:down-');
  const k1 = keyOnShard(1, 'f:down-');
  await rw.set(k0, 'a');
  await rw.set(k1, 'b');
  proxy.setMode({ kind: 'reset' });
  try {
    await waitFor(async () => (await rw.get(k0).catch(() => null)) === null && (await readiness()) === 'degraded', {
      timeoutMs: 15_000,
      message: 'shard 0 seen down',
    });
    await assert.rejects(ops.flushdb(), (err: Error) => {
      assert.match(err.message, /^TRYAGAIN KV_ERR_SHARD_UNAVAILABLE stopped after deleting 0 keys \(the others are still there; run it again\): .*shard 0/);
      return true;
    });
  } finally {
    proxy.setMode({ kind: 'pass' });
  }
  await waitFor(async () => (await readiness()) === 'ready', { timeoutMs: 15_000, message: 'shard 0 back' });
  assert.equal(await rw.get(k1), 'b', 'nothing was deleted: the listing failed before any delete');
  assert.equal(await ops.flushdb(), 'OK');
  assert.equal(await rw.exists(k0, k1), 0);
});
