/**
 * Expiry against a real MySQL: invisibility at the deadline, physical deletion within a bound,
 * survival of keys whose TTL changed just before the deadline, catch-up after a restart, and the
 * expirer role moving between gateways through the kv_lease row.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { SlotMap } from '../../src/protocol/slot-map';
import { startTestStore, type TestStore } from '../helpers/store';
import { startTestServer, type TestServer } from '../helpers/mysql';
import { startServer } from '../../src/gateway/server';
import { configFrom } from '../../src/config/config';
import { createLogger } from '../../src/gateway/server';
import { sleep, waitFor } from '../helpers/wait';

const FAST_EXPIRY = { expiryTickMs: 20, expiryHorizonMs: 3000, expiryLockRetryMs: 200 };

let mysqlServer: TestServer;
before(async () => {
  mysqlServer = await startTestServer();
});
after(() => mysqlServer.stop());

async function rowExists(store: { urls: string[] }, key: string): Promise<boolean> {
  const shard = SlotMap.even(store.urls.length).shardOf(Buffer.from(key));
  const conn = await mysql.createConnection({ uri: store.urls[shard] });
  try {
    const [rows] = await conn.query('SELECT 1 FROM kv WHERE k = ?', [Buffer.from(key)]);
    return (rows as unknown[]).length > 0;
  } finally {
    await conn.end();
  }
}

async function sql(url: string, text: string, params: unknown[] = []): Promise<unknown> {
  const conn = await mysql.createConnection({ uri: url });
  try {
    const [rows] = await conn.query(text, params);
    return rows;
  } finally {
    await conn.end();
  }
}

const put = (s: TestStore, key: string, value: string, query = '') =>
  fetch(`${s.base}/v1/kv/${encodeURIComponent(key)}${query}`, { method: 'PUT', body: value });
const get = (s: TestStore, key: string) => fetch(`${s.base}/v1/kv/${encodeURIComponent(key)}`);

test('a key is 404 right after its expiry and its row is gone within the bound', async (t) => {
  const store = await startTestStore({ mysql: mysqlServer, config: FAST_EXPIRY });
  t.after(() => store.close());
  const res = await put(store, 'short', 'v', '?ttl=0.4');
  assert.equal(res.status, 201);
  const expiresAt = Number(res.headers.get('x-expires-at'));
  assert.equal((await get(store, 'short')).status, 200);
  await sleep(Math.max(0, expiresAt - Date.now()) + 5);
  assert.equal((await get(store, 'short')).status, 404, 'visible after its expiry');
  assert.equal((await fetch(`${store.base}/v1/ttl/short`)).status, 404);
  // Physically deleted by the expirer (bound here: 2 s; the benchmark measures the real lag).
  await waitFor(async () => !(await rowExists(store, 'short')), { timeoutMs: 2000, message: 'row deletion' });
});

test('If-None-Match: * succeeds on an expired key that is not yet reaped', async (t) => {
  const store = await startTestStore({ mysql: mysqlServer, config: { expiry: false } });
  t.after(() => store.close());
  await put(store, 'exp-create', 'old', '?ttl=0.05');
  await sleep(80);
  assert.ok(await rowExists(store, 'exp-create'), 'row still there: no expirer runs');
  const res = await fetch(`${store.base}/v1/kv/exp-create`, { method: 'PUT', body: 'new', headers: { 'if-none-match': '*' } });
  assert.equal(res.status, 201);
  assert.equal(await (await get(store, 'exp-create')).text(), 'new');
});

test('TTL extended, removed, or key rewritten just before expiry: the key survives', async (t) => {
  const store = await startTestStore({ mysql: mysqlServer, config: FAST_EXPIRY });
  t.after(() => store.close());
  // A TTL long enough that the three changes below land before it even on a loaded machine;
  // the test then waits past the original deadline (the shard's clock is this machine's).
  let deadline = 0;
  for (const k of ['extend', 'persist', 'rewrite', 'control']) {
    const r = await put(store, k, 'v', '?ttl=1.5');
    assert.equal(r.status, 201);
    deadline = Math.max(deadline, Number(r.headers.get('x-expires-at')));
  }
  assert.equal((await fetch(`${store.base}/v1/ttl/extend?ttl=30`, { method: 'PUT' })).status, 200);
  assert.equal((await fetch(`${store.base}/v1/ttl/persist`, { method: 'DELETE' })).status, 200);
  assert.equal((await put(store, 'rewrite', 'v2')).status, 200);
  assert.ok(Date.now() < deadline, 'the changes landed after the deadline: the machine is too slow for this test');
  await waitFor(async () => !(await rowExists(store, 'control')), { timeoutMs: 5000, message: 'control key deletion' });
  await sleep(Math.max(0, deadline - Date.now()) + 300); // well past the original deadline of the three survivors, and a few ticks
  for (const k of ['extend', 'persist', 'rewrite']) {
    assert.equal((await get(store, k)).status, 200, `${k} must survive`);
    assert.ok(await rowExists(store, k), `${k} row must survive`);
  }
});

test('after a restart, overdue keys are deleted and keys not yet due are kept', async (t) => {
  const urls = [await mysqlServer.createDatabase(), await mysqlServer.createDatabase()];
  // First boot creates the schema; then rows are planted directly, as if written before a crash.
  const cfg = configFrom({ port: 0, redisPort: 0, logLevel: 'silent', ...FAST_EXPIRY });
  const first = await startServer(cfg, urls, createLogger('silent'));
  await first.close();
  const now = Date.now();
  for (const url of urls) {
    const values: unknown[] = [];
    for (let i = 0; i < 3000; i++) values.push([Buffer.from(`overdue-${url.slice(-6)}-${i}`), Buffer.from('x'), i + 1, now - 60_000 + i]);
    for (let i = 0; i < 50; i++) values.push([Buffer.from(`later-${url.slice(-6)}-${i}`), Buffer.from('x'), 10_000 + i, now + 3_600_000]);
    await sql(url, 'INSERT INTO kv (k, v, version, expires_at) VALUES ?', [values]);
  }
  const server = await startServer(cfg, urls, createLogger('silent'));
  t.after(() => server.close());
  for (const url of urls) {
    await waitFor(
      async () => {
        const rows = (await sql(url, "SELECT COUNT(*) AS n FROM kv WHERE k LIKE 'overdue-%'")) as Array<{ n: number }>;
        return Number(rows[0].n) === 0;
      },
      { timeoutMs: 15_000, message: 'overdue rows deleted' },
    );
    const later = (await sql(url, "SELECT COUNT(*) AS n FROM kv WHERE k LIKE 'later-%'")) as Array<{ n: number }>;
    assert.equal(Number(later[0].n), 50, 'keys not yet due are kept');
  }
});

test('two gateways: one expirer per shard; kill it and the other takes over', async (t) => {
  const store = await startTestStore({ mysql: mysqlServer, shards: 1, config: FAST_EXPIRY });
  t.after(() => store.close());
  const second = await store.startAnotherGateway();
  const isExpirer = async (port: number) => /kvsql_expiry_is_expirer\{shard="0"\} 1/.test(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
  await waitFor(async () => (await isExpirer(store.port)) || (await isExpirer(second.port)), { timeoutMs: 3000, message: 'an expirer' });
  await sleep(500); // several lock checks: still exactly one holder
  const a = await isExpirer(store.port);
  const b = await isExpirer(second.port);
  assert.equal(Number(a) + Number(b), 1, 'exactly one expirer');
  const [holder, other] = a ? [store.server, second] : [second, store.server];
  const otherBase = `http://127.0.0.1:${other.port}`;
  await holder.close();
  await waitFor(() => isExpirer(other.port), { timeoutMs: 3000, message: 'takeover' });
  const res = await fetch(`${otherBase}/v1/kv/after-takeover?ttl=0.2`, { method: 'PUT', body: 'v' });
  assert.equal(res.status, 201);
  await waitFor(async () => !(await rowExists(store, 'after-takeover')), { timeoutMs: 3000, message: 'deletion by the new expirer' });
});
