/**
 * Tests auth and TLS on the Redis-protocol door (src/gateway/resp/auth-guard.ts)
 * against a real store, with ioredis: NOAUTH before AUTH, WRONGPASS for a bad token, AUTH and
 * HELLO ... AUTH with a token as the password, NOPERM for a key outside the token's prefixes (a
 * multi-key command refused whole), revocation on reload, and the door over TLS with a test CA.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from 'node:net';
import Redis, { type RedisOptions } from 'ioredis';
import { startTestStore, type TestStore } from '../helpers/store';
import { makeCa, makeCert, type TestCa } from '../helpers/certs';
import { makeToken, writeTokenFile } from '../helpers/tokens';
import { HttpClient } from '../helpers/http-client';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-redis-auth-'));
const file = path.join(dir, 'tokens.jsonl');
const rwA = makeToken('rw-a', [{ rights: ['read', 'write'], prefixes: ['a/'] }]);
const rA = makeToken('r-a', [{ rights: ['read'], prefixes: ['a/'] }]);
const all = makeToken('all', [{ rights: ['read', 'write'], prefixes: [''] }]);
let store!: TestStore;
let tlsStore!: TestStore;
let ca!: TestCa;
const clients: Redis[] = [];

before(async () => {
  writeTokenFile(file, [rwA, rA, all]);
  ca = await makeCa(dir);
  const cert = await makeCert(dir, ca, 'gw', ['127.0.0.1']);
  store = await startTestStore({ config: { authFile: file, authFailuresPerMinute: 100_000 } });
  tlsStore = await startTestStore({ mysql: store.mysql, config: { authFile: file, tlsCertFile: cert.certFile, tlsKeyFile: cert.keyFile } });
});
after(async () => {
  for (const c of clients) c.disconnect();
  await tlsStore?.close();
  await store?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function client(opts: RedisOptions = {}, s: TestStore = store): Redis {
  // No ready check: it sends INFO, which gets NOAUTH before AUTH.
  const c = new Redis({
    port: s.server.redisPort!,
    host: '127.0.0.1',
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    lazyConnect: true,
    enableReadyCheck: false,
    ...opts,
  });
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

test('Redis door: NOAUTH before AUTH, WRONGPASS for a bad token; nothing read or written', async () => {
  await new HttpClient(store.port).put('a/r', 'secret', '', { Authorization: `Bearer ${all.token}` });
  const c = client();
  await c.connect();
  await assert.rejects(c.get('a/r'), /NOAUTH/);
  await assert.rejects(c.set('a/new', 'x'), /NOAUTH/);
  await assert.rejects(c.call('AUTH', 'kvsql_nope'), /WRONGPASS/);
  // The real token with its last character changed (to 'A', or 'B' if it already ends in 'A').
  await assert.rejects(c.call('AUTH', `${all.token.slice(0, -1)}${all.token.endsWith('A') ? 'B' : 'A'}`), /WRONGPASS/);
  await assert.rejects(c.get('a/r'), /NOAUTH/);
  assert.equal(await c.call('AUTH', rwA.token), 'OK');
  assert.equal(await c.get('a/r'), 'secret');
  const admin = client({ password: all.token });
  await admin.connect();
  assert.equal(await admin.get('a/new'), null, 'the refused SET wrote nothing');
});

test('Redis door: per-prefix rights, NOPERM per command; MGET/DEL with one forbidden key refused whole', async () => {
  const c = client({ password: rwA.token });
  await c.connect();
  assert.equal(await c.set('a/1', 'one'), 'OK');
  assert.equal(await c.get('a/1'), 'one');
  await assert.rejects(c.set('b/1', 'x'), /NOPERM KV_ERR_FORBIDDEN/);
  await assert.rejects(c.get('a'), /NOPERM/);
  await assert.rejects(c.mget('a/1', 'b/1'), /NOPERM/);
  await assert.rejects(c.del('a/1', 'b/1'), /NOPERM/);
  assert.equal(await c.get('a/1'), 'one', 'the refused DEL deleted nothing');
  const r = client({ username: 'anyone', password: rA.token });
  await r.connect();
  assert.equal(await r.get('a/1'), 'one');
  assert.equal(await r.exists('a/1'), 1);
  await assert.rejects(r.set('a/1', 'no'), /NOPERM/);
  await assert.rejects(r.del('a/1'), /NOPERM/);
  await assert.rejects(r.expire('a/1', 10), /NOPERM/);
  await assert.rejects(r.call('SET', 'a/1', 'no', 'GET'), /NOPERM/);
  assert.equal(await r.get('a/1'), 'one');
});

test('Redis door: HELLO 3 AUTH with a token', async () => {
  const c = client();
  await c.connect();
  const hello = (await c.call('HELLO', '3', 'AUTH', 'default', rwA.token)) as unknown[];
  assert.ok(Array.isArray(hello) || typeof hello === 'object');
  assert.equal(await c.call('GET', 'a/1'), 'one');
});

test('Redis door: a revoked token gets NOAUTH after the reload; others go on', async () => {
  const temp = makeToken('temp', [{ rights: ['read', 'write'], prefixes: ['a/'] }]);
  writeTokenFile(file, [rwA, rA, all, temp]);
  assert.deepEqual(await store.server.reload(), []);
  const t = client({ password: temp.token });
  await t.connect();
  const keep = client({ password: rwA.token });
  await keep.connect();
  assert.equal(await t.set('a/t', '1'), 'OK');
  writeTokenFile(file, [rwA, rA, all]);
  assert.deepEqual(await store.server.reload(), []);
  await assert.rejects(t.get('a/t'), /NOAUTH/);
  assert.equal(await keep.get('a/t'), '1');
});

test('Redis door over TLS: a client with the test CA works; a clear-text client fails cleanly', async () => {
  const c = client({ password: rwA.token, tls: { ca: ca.pem } }, tlsStore);
  await c.connect();
  assert.equal(await c.set('a/tls', 'v'), 'OK');
  assert.equal(await c.get('a/tls'), 'v');
  // Clear text to the TLS port: the handshake fails and the socket closes; no reply in clear.
  const got = await new Promise<string>((resolve) => {
    const s = connect(tlsStore.server.redisPort!, '127.0.0.1', () => s.write('*1\r\n$4\r\nPING\r\n'));
    let data = '';
    s.on('data', (d) => (data += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => resolve(data));
    setTimeout(() => s.destroy(), 5000);
  });
  assert.doesNotMatch(got, /PONG/);
  assert.equal(await c.get('a/tls'), 'v', 'still serving');
});
