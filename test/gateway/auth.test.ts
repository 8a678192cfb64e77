/**
 * Tests auth on every door of a real store (real MySQL, gateway on port 0) with a real token file:
 * no key read or written without a valid token (HTTP and WebSocket), prefix rights on decoded key
 * bytes (percent-encoding tricks included), per-op rights on a WebSocket, admin routes, reload on
 * SIGHUP semantics (revoked tokens stop, open sockets of valid tokens stay), bad Authorization
 * input (4xx, never 5xx), the failure rate limit per source address, the loopback-only rule, and
 * `kvsql token create/revoke`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import WebSocket from 'ws';
import { createClient, KvClientError } from '../../src/index';
import { configFrom } from '../../src/config/config';
import { createLogger, startServer } from '../../src/gateway/server';
import { WS_BEARER_PROTOCOL } from '../../src/protocol/access';
import { tokenCommand } from '../../src/token-cli';
import { pickFreePort } from '../../src/embedded/local-mysqld';
import { startHttpTestStore, closeHttpTestStore, type TestStore } from '../helpers/store';
import { assertError, encodeKey, HttpClient, type HttpReply } from '../helpers/http-client';
import { bearer, makeToken, writeTokenFile, type TestToken } from '../helpers/tokens';
import { CLI, cliEnv } from '../helpers/cli';
import { waitFor } from '../helpers/wait';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-auth-'));
const file = path.join(dir, 'tokens.jsonl');
const T = {
  rwA: makeToken('rw-a', [{ rights: ['read', 'write'], prefixes: ['a/'] }]),
  rA: makeToken('r-a', [{ rights: ['read'], prefixes: ['a/'] }]),
  mixed: makeToken('mixed', [
    { rights: ['read'], prefixes: ['a/'] },
    { rights: ['read', 'write'], prefixes: ['b/'] },
  ]),
  admin: makeToken('ops', [{ rights: ['admin'], prefixes: [] }]),
  all: makeToken('all', [{ rights: ['read', 'write'], prefixes: [''] }]),
  bin: makeToken('bin', [{ rights: ['read', 'write'], prefixes: [{ hex: '00ff' }] }]),
};
const BASE = Object.values(T);

let store!: TestStore;
let http1!: HttpClient;
before(async () => {
  writeTokenFile(file, BASE);
  ({ store, http: http1 } = await startHttpTestStore({ config: { authFile: file, authFailuresPerMinute: 100_000 } }));
});
after(async () => {
  await closeHttpTestStore({ store, http: http1 });
  fs.rmSync(dir, { recursive: true, force: true });
});

const get = (key: string | Uint8Array, t?: TestToken | string): Promise<HttpReply> => http1.get(key, t === undefined ? undefined : bearer(t));
const put = (key: string | Uint8Array, v: string, t?: TestToken | string): Promise<HttpReply> => http1.put(key, v, '', t === undefined ? undefined : bearer(t));
/** The key's value as the all-keys token sees it (null: absent). */
const peek = async (key: string | Uint8Array): Promise<string | null> => {
  const r = await get(key, T.all);
  if (r.status === 404) return null;
  assert.equal(r.status, 200, r.text());
  return r.text();
};

function assert401(r: HttpReply): void {
  assertError(r, 401, 'KV_ERR_UNAUTHORIZED');
  assert.match(String(r.headers['www-authenticate']), /^Bearer realm="kvsql"/);
}

test('without a valid token no key is read or written on any HTTP route', async () => {
  assert.equal((await put('a/secret', 'v1', T.all)).status, 201);
  const unknownId = makeToken('nobody', [{ rights: ['read'], prefixes: [''] }]).token;
  const wrongSecret = T.all.token.slice(0, -4) + (T.all.token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  for (const headers of [undefined, bearer(unknownId), bearer(wrongSecret), bearer('x'), { Authorization: 'Basic YTpi' }]) {
    for (const [method, p] of [
      ['GET', '/v1/kv/a/secret'],
      ['PUT', '/v1/kv/a/secret'],
      ['DELETE', '/v1/kv/a/secret'],
      ['GET', '/v1/ttl/a/secret'],
      ['PUT', '/v1/ttl/a/secret?ttl=1'],
      ['DELETE', '/v1/ttl/a/secret'],
      ['PUT', '/v1/kv/a/new'],
    ]) {
      const r = await http1.request(method, p, { headers, body: method === 'PUT' ? 'evil' : undefined });
      assert401(r);
      assert.doesNotMatch(r.text(), /kvsql_/, 'a reply never echoes a token');
    }
  }
  assert.equal(await peek('a/secret'), 'v1');
  assert.equal(await peek('a/new'), null);
  assert.equal((await http1.request('GET', '/v1/ttl/a/secret', { headers: bearer(T.all) })).json().ttl, null, 'no TTL was set');
});

test('a token for a/ reads and writes a/ only: not b/x, not "a", not A/x', async () => {
  assert.equal((await put('a/x', 'mine', T.rwA)).status, 201);
  assert.equal((await get('a/x', T.rwA)).text(), 'mine');
  for (const key of ['b/x', 'a', 'A/x', '/a/x', 'ba/x', '']) {
    if (key === '') continue;
    assertError(await put(key, 'evil', T.rwA), 403, 'KV_ERR_FORBIDDEN');
    assertError(await get(key, T.rwA), 403, 'KV_ERR_FORBIDDEN');
    assertError(await http1.del(key, bearer(T.rwA)), 403, 'KV_ERR_FORBIDDEN');
    assert.equal(await peek(key), null, `${key} was not written`);
  }
  // read-only: GET and TTL yes, every write no
  assert.equal((await get('a/x', T.rA)).status, 200);
  assert.equal((await http1.request('GET', '/v1/ttl/a/x', { headers: bearer(T.rA) })).status, 200);
  assertError(await put('a/x', 'evil', T.rA), 403, 'KV_ERR_FORBIDDEN');
  assertError(await http1.del('a/x', bearer(T.rA)), 403, 'KV_ERR_FORBIDDEN');
  assertError(await http1.request('PUT', '/v1/ttl/a/x?ttl=5', { headers: bearer(T.rA) }), 403, 'KV_ERR_FORBIDDEN');
  assertError(await http1.request('DELETE', '/v1/ttl/a/x', { headers: bearer(T.rA) }), 403, 'KV_ERR_FORBIDDEN');
  assert.equal(await peek('a/x'), 'mine');
  // an admin token has no key rights
  assertError(await get('a/x', T.admin), 403, 'KV_ERR_FORBIDDEN');
});

test('percent-encoding and path tricks do not escape a prefix: the check runs on the decoded key bytes', async () => {
  // Each path below names a key outside a/ (checked on the decoded bytes) -> 403, nothing written.
  for (const p of ['/v1/kv/b%2Fx', '/v1/kv/%62/x', '/v1/kv/%2Fa/x', '/v1/kv/%41/x', '/v1/kv/a', '/v1/kv/a%2E/x', '/v1/kv/%00a/x', '/v1/kv/%C0%AF']) {
    const r = await http1.request('PUT', p, { headers: bearer(T.rwA), body: 'evil' });
    assertError(r, 403, 'KV_ERR_FORBIDDEN');
  }
  assert.equal(await peek('b/x'), null);
  // Encoded forms of keys inside a/ are the same key: allowed, and land on that key, not elsewhere.
  assert.equal((await http1.request('PUT', '/v1/kv/%61%2Fenc', { headers: bearer(T.rwA), body: 'e' })).status, 201);
  assert.equal(await peek('a/enc'), 'e');
  // Dot segments are key bytes, never path navigation: a/../b/x is a key under a/, not b/x.
  for (const p of ['/v1/kv/a/../b/x', '/v1/kv/a/%2E%2E/b/x', '/v1/kv/a%2F..%2Fb%2Fx']) {
    const r = await http1.request('PUT', p, { headers: bearer(T.rwA), body: 'dots' });
    assert.ok(r.status === 201 || r.status === 200, `${p}: ${r.text()}`);
  }
  assert.equal(await peek('a/../b/x'), 'dots');
  assert.equal(await peek('b/x'), null);
  // Bad percent-encoding is a 400 after the token check, not a way around it.
  assertError(await http1.request('GET', '/v1/kv/a/%zz', { headers: bearer(T.rwA) }), 400, 'KV_ERR_BAD_KEY');
  assert401(await http1.request('GET', '/v1/kv/a/%zz'));
});

test('binary prefixes compare bytes', async () => {
  const inside = Buffer.from([0x00, 0xff, 0x10]);
  const outside = Buffer.from([0x00, 0xfe, 0x10]);
  assert.equal((await put(inside, 'bin', T.bin)).status, 201);
  assertError(await put(outside, 'bin', T.bin), 403, 'KV_ERR_FORBIDDEN');
  assertError(await put(Buffer.from([0x00]), 'bin', T.bin), 403, 'KV_ERR_FORBIDDEN');
  assert.equal(await peek(inside), 'bin');
  assert.equal(await peek(outside), null);
});

test('operational routes need an admin token; /healthz and /readyz stay open', async () => {
  for (const p of ['/metrics', '/v1/slots']) {
    assert401(await http1.request('GET', p));
    assert401(await http1.request('GET', p, { headers: bearer('kvsql_nope') }));
    assertError(await http1.request('GET', p, { headers: bearer(T.all) }), 403, 'KV_ERR_FORBIDDEN');
    assert.equal((await http1.request('GET', p, { headers: bearer(T.admin) })).status, 200);
  }
  const metrics = (await http1.request('GET', '/metrics', { headers: bearer(T.admin) })).text();
  assert.match(metrics, /kvsql_auth_failures_total\{reason="missing"\} [1-9]/);
  assert.match(metrics, /kvsql_auth_forbidden_total\{door="http"\} [1-9]/);
  assert.match(metrics, /kvsql_auth_tokens 6/);
  for (const t of BASE) assert.ok(!metrics.includes(t.token.slice(15)), 'no token (or its secret) in the metrics');
  assert.equal((await http1.request('GET', '/healthz')).status, 200);
  const ready = await http1.request('GET', '/readyz');
  assert.equal(ready.status, 200);
  assert.equal(ready.json().status, 'ready');
  assert401(await http1.request('GET', '/v1/noop'));
  assert.equal((await http1.request('GET', '/v1/noop', { headers: bearer(T.rA) })).status, 200);
});

/** Opens a raw WebSocket; resolves with it open, or rejects with the upgrade's error. */
function openWs(headers?: Record<string, string>, protocols?: string[]): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${store.port}/v1/ws`, protocols, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

test('WebSocket: refused at the upgrade without a valid token; header or subprotocol token accepted', async () => {
  for (const headers of [undefined, bearer('kvsql_00000000_' + 'A'.repeat(43)), { Authorization: 'Bearer' }]) {
    await assert.rejects(openWs(headers), /Unexpected server response: 401/);
  }
  await assert.rejects(openWs(undefined, ['kvsql', `${WS_BEARER_PROTOCOL}nope`]), /Unexpected server response: 401/);
  const a = await openWs(bearer(T.rwA));
  a.close();
  // Browsers: the token as a subprotocol; the server echoes "kvsql", never the token.
  const b = await openWs(undefined, ['kvsql', `${WS_BEARER_PROTOCOL}${T.rwA.token}`]);
  assert.equal(b.protocol, 'kvsql');
  b.close();
});

test('WebSocket: rights are checked per op, with a per-op error; the connection stays usable', async () => {
  assert.equal((await put('a/ws', 'w', T.all)).status, 201);
  const c = createClient(`ws://127.0.0.1:${store.port}/v1/ws`, { token: T.mixed.token, timeoutMs: 5000 });
  try {
    assert.equal((await c.get('a/ws'))?.value.toString(), 'w');
    const denied = await Promise.allSettled([c.put('a/ws', 'evil'), c.del('a/ws'), c.pexpire('a/ws', 5000), c.get('c/1'), c.put('c/1', 'x')]);
    for (const d of denied) {
      assert.equal(d.status, 'rejected');
      assert.ok((d as PromiseRejectedResult).reason instanceof KvClientError);
      assert.equal((d as PromiseRejectedResult).reason.code, 'KV_ERR_FORBIDDEN');
    }
    const put1 = await c.put('b/ws', 'ok');
    assert.ok(put1.version > 0);
    assert.equal((await c.get('b/ws'))?.value.toString(), 'ok');
  } finally {
    await c.close();
  }
  assert.equal(await peek('a/ws'), 'w');
  assert.equal(await peek('c/1'), null);
});

test('client without a token: its ops fail KV_ERR_UNAUTHORIZED, not by timeout', async () => {
  const c = createClient(`ws://127.0.0.1:${store.port}/v1/ws`, { timeoutMs: 20_000 });
  try {
    const started = Date.now();
    await assert.rejects(c.get('a/x'), (e: KvClientError) => e.code === 'KV_ERR_UNAUTHORIZED');
    assert.ok(Date.now() - started < 10_000);
  } finally {
    await c.close();
  }
});

test('reload: a revoked token stops working on HTTP and its WebSockets close; others stay open', async () => {
  const temp = makeToken('temp', [{ rights: ['read', 'write'], prefixes: ['t/'] }]);
  writeTokenFile(file, [...BASE, temp]);
  assert.deepEqual(await store.server.reload(), []);
  assert.equal((await put('t/1', 'x', temp)).status, 201);
  const tempWs = await openWs(bearer(temp));
  const closed = new Promise<number>((r) => tempWs.once('close', (code) => r(code)));
  const keep = createClient(`ws://127.0.0.1:${store.port}/v1/ws`, { token: T.rwA.token });
  await keep.put('a/keep', '1');

  writeTokenFile(file, BASE);
  assert.deepEqual(await store.server.reload(), []);
  assert401(await put('t/2', 'x', temp));
  assert.equal(await closed, 1008);
  await assert.rejects(openWs(bearer(temp)), /401/);
  assert.equal((await keep.get('a/keep'))?.value.toString(), '1', 'a valid token keeps its connection through the reload');
  assert.ok(keep.connected);
  await keep.close();

  // A broken file is refused and the old tokens stay in force.
  fs.writeFileSync(file, '{"id": "nope"\n');
  const errors = await store.server.reload();
  assert.equal(errors.length, 1);
  assert.match(errors[0], /line 1/);
  assert.equal((await get('a/x', T.rwA)).status, 200);
  writeTokenFile(file, BASE);
  assert.deepEqual(await store.server.reload(), []);
});

test('rights changed by a reload apply to open WebSockets', async () => {
  const t = makeToken('shifty', [{ rights: ['read', 'write'], prefixes: ['s/'] }]);
  writeTokenFile(file, [...BASE, t]);
  await store.server.reload();
  const c = createClient(`ws://127.0.0.1:${store.port}/v1/ws`, { token: t.token });
  try {
    await c.put('s/1', 'x');
    writeTokenFile(file, [...BASE, { ...t, line: t.line.replace('["read","write"]', '["read"]') }]);
    await store.server.reload();
    await assert.rejects(c.put('s/1', 'y'), (e: KvClientError) => e.code === 'KV_ERR_FORBIDDEN');
    assert.equal((await c.get('s/1'))?.value.toString(), 'x');
  } finally {
    await c.close();
    writeTokenFile(file, BASE);
    await store.server.reload();
  }
});

/** What the server sends within `ms` (or until it closes) in reply to raw bytes; '' for nothing. */
function firstBytes(port: number, bytes: string, ms = 1500): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes, 'latin1'));
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const timer = setTimeout(done, ms);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', done);
    socket.on('close', done);
  });
}

test('bad Authorization input gets a 4xx, never a 5xx, and the server keeps serving', async () => {
  const cases = [
    'Bearer',
    'Bearer ',
    'bearer    ',
    'Bearer ' + 'A'.repeat(3000),
    'Bearer ' + T.all.token + 'x',
    'Bearer ' + T.all.token.slice(0, -1),
    'Bearer kvsql_' + T.all.id + '_' + '\u00e9'.repeat(43),
    'Token ' + T.all.token,
    T.all.token,
    'Bearer ' + T.all.token.toUpperCase(),
  ];
  for (const h of cases) {
    const r = await http1.request('GET', '/v1/kv/a/x', { headers: { Authorization: h } });
    assert.ok(r.status === 401, `${JSON.stringify(h.slice(0, 30))}: ${r.status} ${r.text()}`);
  }
  // Control bytes (node's http refuses to send them): raw requests.
  for (const h of [
    'Bearer kvsql_\u0001\u0002',
    `Bearer ${T.all.token.slice(0, 20)}\u0000${T.all.token.slice(21)}`,
    'Bearer \u007f\u00ff',
    `Bearer ${T.all.token}\u000b`,
  ]) {
    const reply = await firstBytes(store.port, `GET /v1/kv/a/x HTTP/1.1\r\nHost: t\r\nAuthorization: ${h}\r\nConnection: close\r\n\r\n`);
    const status = /^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1];
    // uWS answers nothing to a header with control bytes (its parser drops the request before any
    // handler runs; it closes the socket at its 10 s timeout). Never a 5xx or a 200.
    assert.ok(status === undefined || status.startsWith('4'), `${JSON.stringify(h)}: ${reply.slice(0, 80)}`);
  }
  // A huge header: refused by uWS (connection closed) or a 4xx; never a 5xx.
  const huge = await firstBytes(store.port, `GET /v1/kv/a/x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${'A'.repeat(100_000)}\r\nConnection: close\r\n\r\n`);
  assert.ok(!/^HTTP\/1\.1 5/.test(huge), huge.slice(0, 80));
  assert.equal((await get('a/x', T.rwA)).status, 200, 'still serving');
});

test('failed token checks are rate-limited per source address (429 with Retry-After); other addresses unaffected', async () => {
  const limited = await store.startAnotherGateway({ authFailuresPerMinute: 3 });
  const from = (localAddress: string, headers?: Record<string, string>): Promise<HttpReply> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: limited.port, path: `/v1/kv/${encodeKey('a/x')}`, localAddress, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: () => body.toString(), json: () => JSON.parse(body.toString()) });
        });
      });
      req.on('error', reject);
      req.end();
    });
  for (let i = 0; i < 3; i++) assert.equal((await from('127.0.0.2', bearer('kvsql_bad'))).status, 401);
  const blocked = await from('127.0.0.2', bearer('kvsql_bad'));
  assertError(blocked, 429, 'KV_ERR_TOO_MANY_AUTH_FAILURES');
  assert.match(String(blocked.headers['retry-after']), /^\d+$/);
  // While blocked, even a valid token from that address is refused (no guessing on).
  assertError(await from('127.0.0.2', bearer(T.rwA)), 429, 'KV_ERR_TOO_MANY_AUTH_FAILURES');
  // Another source address is not affected.
  assert.equal((await from('127.0.0.3', bearer(T.rwA))).status, 200);
  const m = await new HttpClient(limited.port).request('GET', '/metrics', { headers: bearer(T.admin) });
  assert.match(m.text(), /kvsql_auth_failures_total\{reason="rate_limited"\} [1-9]/);
});

test('secure by default: no auth means loopback only, unless KVSQL_ALLOW_INSECURE', async () => {
  const log = createLogger('silent');
  await assert.rejects(
    startServer(configFrom({ redisPort: 0, host: '0.0.0.0', port: 0 }), store.urls, log),
    /auth off.*read, overwrite and delete every key.*KVSQL_ALLOW_INSECURE/s,
  );
  await assert.rejects(startServer(configFrom({ redisPort: 0, host: '::', port: 0 }), store.urls, log), /KVSQL_ALLOW_INSECURE/);
  const insecure = await startServer(configFrom({ redisPort: 0, host: '0.0.0.0', port: 0, allowInsecure: true, logLevel: 'silent' }), store.urls, log);
  await insecure.close();
  const authed = await startServer(configFrom({ redisPort: 0, host: '0.0.0.0', port: 0, authFile: file, logLevel: 'silent' }), store.urls, log);
  await authed.close();
});

test('kvsql token create prints the token once, writes only its hash; revoke removes it', async () => {
  const f = path.join(dir, 'cli-tokens.jsonl');
  let out = '';
  let err = '';
  const run = (...args: string[]): number =>
    tokenCommand(
      args,
      {},
      (s) => (out += s),
      (s) => (err += s),
    );
  assert.equal(run('create', `--file=${f}`, '--name', 'svc-a', '--rights', 'read,write', '--prefix', 'a/', '--prefix-hex', '00ff'), 0, err);
  const token = out.trim();
  assert.match(token, /^kvsql_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$/);
  const text = fs.readFileSync(f, 'utf8');
  assert.ok(!text.includes(token.slice(15)), 'the file never holds the secret');
  assert.equal(fs.statSync(f).mode & 0o777, 0o600);
  assert.doesNotMatch(err, new RegExp(token.slice(15)));
  assert.equal(run('create', `--file=${f}`, '--name', 'svc-a', '--rights', 'read'), 2, 'names are unique');
  assert.equal(run('create', `--file=${f}`, '--name', 'x', '--rights', 'fly', '--prefix', ''), 2, 'a mistake in the arguments is a usage error');
  assert.match(err, /--rights: unknown right "fly"/);

  // The created token works once a gateway loads the file.
  const g = await store.startAnotherGateway({ authFile: f });
  const c = new HttpClient(g.port);
  try {
    assert.equal((await c.put('a/cli', 'v', '', bearer(token))).status, 201);
    assert.equal((await c.put('b/cli', 'v', '', bearer(token))).status, 403);
    assert.equal(run('revoke', `--file=${f}`, '--name', 'svc-a'), 0, err);
    assert.deepEqual(await g.reload(), []);
    assert.equal((await c.get('a/cli', bearer(token))).status, 401);
  } finally {
    c.close();
  }
});

test('the CLI: SIGHUP reloads the token file and the process keeps serving; 0.0.0.0 without auth exits 2', async (t) => {
  const refused = spawn(process.execPath, [CLI], {
    env: cliEnv({ KVSQL_SHARDS: store.urls.join(','), KVSQL_HOST: '0.0.0.0', KVSQL_PORT: '0', KVSQL_REDIS_PORT: 'off' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let refusedOut = '';
  refused.stderr!.on('data', (c: Buffer) => (refusedOut += c.toString()));
  const [code] = (await once(refused, 'exit')) as [number | null];
  assert.equal(code, 2);
  assert.match(refusedOut, /refusing to listen on 0\.0\.0\.0.*KVSQL_ALLOW_INSECURE/s);

  const f = path.join(dir, 'cli-hup.jsonl');
  const t1 = makeToken('one', [{ rights: ['read', 'write'], prefixes: ['h/'] }]);
  const t2 = makeToken('two', [{ rights: ['read', 'write'], prefixes: ['h/'] }]);
  writeTokenFile(f, [t1]);
  const port = await pickFreePort();
  const cli = spawn(process.execPath, [CLI], {
    env: cliEnv({ KVSQL_SHARDS: store.urls.join(','), KVSQL_PORT: String(port), KVSQL_REDIS_PORT: 'off', KVSQL_AUTH_FILE: f, KVSQL_LOG_LEVEL: 'warn' }),
    stdio: 'ignore',
  });
  t.after(() => {
    if (cli.exitCode === null && cli.signalCode === null) cli.kill('SIGKILL');
  });
  const c = new HttpClient(port, 1);
  t.after(() => c.close());
  const up = async (): Promise<boolean> => (await c.request('GET', '/healthz').catch(() => null))?.status === 200;
  await waitFor(up, { timeoutMs: 30_000, intervalMs: 100, message: 'the CLI answers /healthz' });
  assert.equal((await c.put('h/1', 'v', '', bearer(t1))).status, 201);
  writeTokenFile(f, [t2]);
  cli.kill('SIGHUP');
  await waitFor(async () => (await c.get('h/1', bearer(t2))).status === 200, {
    timeoutMs: 10_000,
    intervalMs: 50,
    message: 'the new token works after SIGHUP',
  });
  assert401(await c.get('h/1', bearer(t1)));
  assert.equal(cli.exitCode, null, 'SIGHUP does not stop the process');
  cli.kill('SIGTERM');
  assert.deepEqual(await once(cli, 'exit'), [0, null]);
});
