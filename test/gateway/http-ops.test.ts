/**
 * Tests the operational routes of src/gateway/server.ts on a real store: /healthz, /readyz,
 * /metrics (valid Prometheus text; requests by op and status, latency histograms, queue depth and
 * batch sizes per shard), /v1/slots, and graceful close(): in-flight requests are answered, new
 * ones get 503 with Retry-After.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { startHttpTestStore, closeHttpTestStore, type TestStore } from '../helpers/store';
import { HttpClient, assertError, kvPath } from '../helpers/http-client';
import { SLOT_COUNT } from '../../src/protocol/slot-map';
import { sleep } from '../helpers/wait';

let store: TestStore;
let client: HttpClient;
before(async () => ({ store, http: client } = await startHttpTestStore({ shards: 2 })));
after(() => closeHttpTestStore({ store, http: client }));

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text format strictly enough to catch malformed lines. */
function parseMetrics(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const helps = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (m) {
      if (m[1] === 'TYPE') types.set(m[2], m[3]);
      else helps.add(m[2]);
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|NaN|\+Inf)$/.exec(line);
    assert.ok(m, `malformed metrics line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const pair of (m[2] ?? '').split(',').filter(Boolean)) {
      const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"$/.exec(pair);
      assert.ok(lm, `malformed label ${pair} in ${line}`);
      labels[lm[1]] = lm[2];
    }
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  for (const s of samples) {
    const family = s.name.replace(/_(bucket|sum|count)$/, '');
    assert.ok(types.has(s.name) || types.has(family), `no # TYPE for ${s.name}`);
    assert.ok(helps.has(s.name) || helps.has(family), `no # HELP for ${s.name}`);
  }
  return { samples, types };
}

const pick = (samples: Sample[], name: string, labels: Record<string, string>): Sample[] =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

function one(samples: Sample[], name: string, labels: Record<string, string>): number {
  const found = pick(samples, name, labels);
  assert.equal(found.length, 1, `${name}${JSON.stringify(labels)}: ${found.length} samples`);
  return found[0].value;
}

async function scrape(): Promise<Sample[]> {
  const r = await client.request('GET', '/metrics');
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  const { samples, types } = parseMetrics(r.text());
  // Every histogram has _sum and _count next to its buckets, for every label set.
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const buckets = samples.filter((x) => x.name === `${family}_bucket` && x.labels.le === '+Inf');
    for (const b of buckets) {
      const { le: _le, ...labels } = b.labels;
      assert.equal(pick(samples, `${family}_sum`, labels).length, 1, `${family}_sum${JSON.stringify(labels)}`);
      assert.equal(pick(samples, `${family}_count`, labels).length, 1, `${family}_count${JSON.stringify(labels)}`);
    }
  }
  return samples;
}

test('/healthz is 200 {"status":"ok"}', async () => {
  const r = await client.request('GET', '/healthz');
  assert.equal(r.status, 200);
  assert.deepEqual(r.json(), { status: 'ok' });
});

test('/readyz is 200 with every shard up', async () => {
  const r = await client.request('GET', '/readyz');
  assert.equal(r.status, 200);
  assert.deepEqual(r.json(), { status: 'ready', shards: 2, up: 2, down: [] });
});

test('/v1/slots describes the slot map: 16384 CRC16 slots over the 2 shards', async () => {
  const body = (await client.request('GET', '/v1/slots')).json();
  assert.equal(body.slots, SLOT_COUNT);
  assert.equal(body.shards, 2);
  assert.deepEqual(body.ranges, [
    [0, 8191, 0],
    [8192, 16383, 1],
  ]);
});

test('/metrics counts requests by op and status, with a latency histogram per op', async () => {
  const before = await scrape();
  const count = (s: Sample[], op: string, status: string) => pick(s, 'kvsql_requests_total', { api: 'http', op, status })[0]?.value ?? 0;
  for (let i = 0; i < 3; i++) await client.put(`m/${i}`, 'x');
  for (let i = 0; i < 3; i++) await client.put(`m/${i}`, 'y');
  for (let i = 0; i < 5; i++) await client.get(`m/${i % 3}`);
  await client.get('m/absent');
  await client.del('m/0');
  await client.put('m/bad', 'x', 'ttl=-1');
  const after = await scrape();
  assert.equal(count(after, 'put', '201') - count(before, 'put', '201'), 3);
  assert.equal(count(after, 'put', '200') - count(before, 'put', '200'), 3);
  assert.equal(count(after, 'get', '200') - count(before, 'get', '200'), 5);
  assert.equal(count(after, 'get', '404') - count(before, 'get', '404'), 1);
  assert.equal(count(after, 'del', '204') - count(before, 'del', '204'), 1);
  assert.equal(count(after, 'put', '400') - count(before, 'put', '400'), 1);

  for (const op of ['get', 'put', 'del']) {
    const buckets = pick(after, 'kvsql_request_duration_seconds_bucket', { api: 'http', op });
    assert.ok(buckets.length > 2, `no latency buckets for ${op}`);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'buckets must be cumulative');
    const inf = one(after, 'kvsql_request_duration_seconds_bucket', { api: 'http', op, le: '+Inf' });
    assert.equal(one(after, 'kvsql_request_duration_seconds_count', { api: 'http', op }), inf);
    assert.ok(one(after, 'kvsql_request_duration_seconds_sum', { api: 'http', op }) > 0);
  }
});

test('/metrics has queue depth, shard state and read/write batch sizes for each shard', async () => {
  await Promise.all(Array.from({ length: 40 }, (_, i) => client.put(`batch/${i}`, 'x')));
  await Promise.all(Array.from({ length: 40 }, (_, i) => client.get(`batch/${i}`)));
  const s = await scrape();
  for (const shard of ['0', '1']) {
    assert.equal(one(s, 'kvsql_shard_queue_depth', { shard }), 0, 'nothing is outstanding now');
    assert.equal(one(s, 'kvsql_shard_up', { shard }), 1);
    for (const kind of ['read', 'write']) {
      const name = `kvsql_${kind}_batch_size`;
      const buckets = pick(s, `${name}_bucket`, { shard });
      assert.ok(buckets.length > 2, `${name} buckets for shard ${shard}`);
      for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value);
      const total = one(s, `${name}_count`, { shard });
      assert.ok(total > 0, `${name}_count for shard ${shard}`);
      assert.equal(one(s, `${name}_bucket`, { shard, le: '+Inf' }), total);
      assert.ok(one(s, `${name}_sum`, { shard }) >= total, `${name}_sum counts ops: at least one per batch`);
    }
  }
});

test('/metrics has process and event-loop metrics; README lists every metric family', async () => {
  const s = await scrape();
  assert.ok(one(s, 'process_resident_memory_bytes', {}) > 1e6);
  assert.ok(one(s, 'process_cpu_seconds_total', {}) > 0);
  assert.ok(one(s, 'process_start_time_seconds', {}) > 1.6e9);
  for (const q of ['mean', 'p50', 'p99', 'max']) assert.ok(one(s, `nodejs_eventloop_lag_${q}_seconds`, {}) >= 0);
  assert.equal(one(s, 'kvsql_redis_connections', {}), 0);
  const readme = fs.readFileSync(path.join(__dirname, '..', '..', '..', 'README.md'), 'utf8');
  const families = new Set(s.map((x) => x.name.replace(/_(bucket|sum|count)$/, '')));
  for (const f of families) assert.ok(readme.includes(`\`${f}\``), `README lists ${f}`);
});

test('close(): a request in flight is answered, a new one on an open connection gets 503 with Retry-After', async () => {
  const gateway = await store.startAnotherGateway();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    // Open a keep-alive connection first, so a request can still reach the closing server.
    const idle = new HttpClient(gateway.port, 1);
    assert.equal((await idle.request('GET', '/healthz')).status, 200);
    // A second one for /readyz: the refusal below closes `idle` (its reply says Connection: close).
    const probe = new HttpClient(gateway.port, 1);
    assert.equal((await probe.request('GET', '/healthz')).status, 200);

    // In flight: headers and half the body sent; the handler has run, the body is not complete.
    const inflight = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: gateway.port, method: 'PUT', path: kvPath('close/inflight'), agent, headers: { 'content-length': '10' } },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.write('01234');
      setTimeout(() => req.end('56789'), 400);
    });
    await sleep(100);
    const closed = gateway.close();
    await sleep(50);

    const refused = await idle.request('GET', kvPath('close/new'));
    assertError(refused, 503, 'KV_ERR_SHUTTING_DOWN');
    assert.equal(refused.headers['retry-after'], '1');
    const readyz = await probe.request('GET', '/readyz');
    assertError(readyz, 503, 'KV_ERR_SHUTTING_DOWN');
    assert.equal(readyz.headers['retry-after'], '1');
    idle.close();
    probe.close();

    const done = await inflight;
    assert.equal(done.status, 201, done.body);
    await closed;
    assert.equal((await client.get('close/inflight')).text(), '0123456789', 'the in-flight write was committed');
  } finally {
    agent.destroy();
  }
});
