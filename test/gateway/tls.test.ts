/**
 * Tests TLS on the gateway (HTTPS and WSS through uWS SSLApp, certificate reload) and from the
 * shard actors to MySQL, with a CA and certificates made at test time (openssl) and a real
 * mariadbd serving TLS. The MySQL user the actors log in as is created `REQUIRE SSL`, so the
 * server itself refuses any of their connections that is not TLS.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import mysql from 'mysql2/promise';
import { createClient, KvClientError } from '../../src/index';
import { configFrom } from '../../src/config/config';
import { createLogger, startServer, type Server } from '../../src/gateway/server';
import { startTestServer, type TestServer } from '../helpers/mysql';
import { startTestStore, type TestStore } from '../helpers/store';
import { makeCa, makeCert, type CertFiles, type TestCa } from '../helpers/certs';
import { bearer, makeToken, writeTokenFile } from '../helpers/tokens';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-tls-'));
const tokenFile = path.join(dir, 'tokens.jsonl');
const tok = makeToken('svc', [{ rights: ['read', 'write'], prefixes: [''] }]);
let ca!: TestCa;
let otherCa!: TestCa;
let gwCert!: CertFiles;
let store!: TestStore;
let tlsMysql!: TestServer;
let dbCert!: CertFiles;

before(async () => {
  ca = await makeCa(dir, 'test CA');
  otherCa = await makeCa(dir, 'other CA');
  gwCert = await makeCert(dir, ca, 'gateway', ['127.0.0.1', 'localhost']);
  dbCert = await makeCert(dir, ca, 'mysql', ['127.0.0.1']);
  writeTokenFile(tokenFile, [tok]);
  tlsMysql = await startTestServer({ tls: { certFile: dbCert.certFile, keyFile: dbCert.keyFile, caFile: ca.certFile } });
  store = await startTestStore({ mysql: tlsMysql, config: { authFile: tokenFile, tlsCertFile: gwCert.certFile, tlsKeyFile: gwCert.keyFile } });
});
after(async () => {
  await store?.close();
  await tlsMysql?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Reply {
  status: number;
  body: string;
  serial: string;
  socket: TLSSocket;
}

function httpsRequest(
  method: string,
  p: string,
  opts: { agent?: https.Agent | false; ca?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port: store.port, method, path: p, ca: opts.ca ?? ca.pem, agent: opts.agent, headers: opts.headers ?? bearer(tok) },
      (res) => {
        let body = '';
        const socket = res.socket as TLSSocket;
        const serial = socket.getPeerCertificate().serialNumber;
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, serial, socket }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

test('HTTPS with the test CA: PUT and GET work; the certificate is checked', async () => {
  assert.equal((await httpsRequest('PUT', '/v1/kv/tls1', { body: 'secret' })).status, 201);
  const r = await httpsRequest('GET', '/v1/kv/tls1');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'secret');
  assert.equal(r.socket.authorized, true);
  assert.equal((await httpsRequest('GET', '/v1/kv/tls1', { headers: {} })).status, 401, 'auth still applies over TLS');
  await assert.rejects(httpsRequest('GET', '/v1/kv/tls1', { ca: otherCa.pem }), /self.signed|unable to verify|certificate/i);
});

test('WSS with the test CA and a token: the client works', async () => {
  const c = createClient(`wss://127.0.0.1:${store.port}/v1/ws`, { token: tok.token, ca: ca.pem, timeoutMs: 5000 });
  try {
    await c.put('wss1', 'over tls');
    assert.equal((await c.get('wss1'))?.value.toString(), 'over tls');
  } finally {
    await c.close();
  }
  // A client that does not trust the CA never connects; its op times out, nothing is sent.
  const untrusting = createClient(`wss://127.0.0.1:${store.port}/v1/ws`, { token: tok.token, timeoutMs: 800 });
  try {
    await assert.rejects(untrusting.get('wss1'), (e: KvClientError) => e.code === 'KV_ERR_TIMEOUT' && /certificate|self.signed/i.test(e.message));
  } finally {
    await untrusting.close();
  }
});

test('plain HTTP to the TLS port fails cleanly, and the server keeps serving', async () => {
  const started = Date.now();
  const outcome = await new Promise<string>((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: store.port, path: '/healthz', timeout: 5000 }, (res) => resolve(`status ${res.statusCode}`));
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve(`error ${(e as Error).message}`));
  });
  assert.match(outcome, /^error /, 'no HTTP reply comes back in clear text');
  assert.doesNotMatch(outcome, /timeout/, 'the connection is closed, not left hanging');
  assert.ok(Date.now() - started < 5000);
  assert.equal((await httpsRequest('GET', '/healthz')).status, 200);
});

test('SIGHUP reload swaps the certificate for new connections; open connections stay', async () => {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const c = createClient(`wss://127.0.0.1:${store.port}/v1/ws`, { token: tok.token, ca: ca.pem });
  try {
    const before1 = await httpsRequest('GET', '/healthz', { agent });
    await c.put('reload', 'a');
    await makeCert(dir, ca, 'gateway', ['127.0.0.1', 'localhost'], 'renewed'); // same files, new certificate
    assert.deepEqual(await store.server.reload(), []);
    const fresh = await httpsRequest('GET', '/healthz', { agent: false });
    assert.notEqual(fresh.serial, before1.serial, 'a new connection sees the new certificate');
    const old = await httpsRequest('GET', '/healthz', { agent });
    assert.equal(old.socket, before1.socket, 'the keep-alive connection was not dropped');
    assert.equal(old.status, 200);
    assert.equal((await c.get('reload'))?.value.toString(), 'a', 'the WebSocket was not dropped');
    assert.ok(c.connected);

    // A broken certificate file is refused; the previous certificate stays in use.
    fs.writeFileSync(gwCert.certFile, 'not a certificate');
    const errors = await store.server.reload();
    assert.equal(errors.length, 1);
    assert.match(errors[0], /no PEM certificate.*previous certificate stays/);
    assert.equal((await httpsRequest('GET', '/healthz', { agent: false })).serial, fresh.serial);
  } finally {
    agent.destroy();
    await c.close();
    await makeCert(dir, ca, 'gateway', ['127.0.0.1', 'localhost']);
  }
});

/** The TLS server's URLs for `database`, as a user that the server admits over TLS only. */
async function tlsOnlyUser(): Promise<(db: string) => string> {
  const admin = await mysql.createConnection({ uri: tlsMysql.url('') });
  try {
    await admin.query("CREATE USER IF NOT EXISTS 'kvtls'@'%' IDENTIFIED BY 'pw' REQUIRE SSL");
    await admin.query("GRANT ALL ON *.* TO 'kvtls'@'%'");
  } finally {
    await admin.end();
  }
  return (db) => {
    const u = new URL(tlsMysql.url(db));
    u.username = 'kvtls';
    u.password = 'pw';
    return u.toString();
  };
}

test('actors connect to MySQL over TLS, verifying the server certificate by default', async () => {
  const urlFor = await tlsOnlyUser();
  const dbs = [await tlsMysql.createDatabase(), await tlsMysql.createDatabase()].map((u) => urlFor(new URL(u).pathname.slice(1)));
  // The server enforces it: this user cannot log in without TLS.
  await assert.rejects(
    mysql.createConnection({ uri: dbs[0] }).then((c) => c.end()),
    /Access denied|SSL|secure/i,
  );
  const log = createLogger('silent');
  const base = { port: 0, redisPort: 0, logLevel: 'silent' };

  // Clear text (KVSQL_MYSQL_TLS off): the actors cannot start.
  await assert.rejects(startServer(configFrom(base), dbs, log), /Access denied/i);
  // TLS against a CA that did not sign the server's certificate: refused (verification is on);
  // the gateway starts with its shards down (they heal when the certificates are fixed).
  const wrongCa = await startServer(configFrom({ ...base, mysqlTls: true, mysqlTlsCaFile: otherCa.certFile }), dbs, log);
  try {
    for (const h of wrongCa.pool.health()) {
      assert.equal(h.up, false);
      assert.match(String(h.error?.message), /certificate|self.signed|verify/i);
    }
  } finally {
    await wrongCa.close();
  }

  let gw: Server | null = null;
  try {
    gw = await startServer(configFrom({ ...base, mysqlTls: true, mysqlTlsCaFile: ca.certFile }), dbs, log);
    assert.deepEqual(
      gw.pool.health().filter((h) => !h.up),
      [],
      'every shard up over TLS',
    );
    const c = createClient(`ws://127.0.0.1:${gw.port}/v1/ws`);
    try {
      for (let i = 0; i < 20; i++) await c.put(`m${i}`, `v${i}`);
      assert.equal((await c.get('m7'))?.value.toString(), 'v7');
    } finally {
      await c.close();
    }
    // The actors' sessions belong to the REQUIRE SSL user; a session of ours with the same
    // options shows the cipher the server negotiated.
    const probe = await mysql.createConnection({ uri: dbs[0], ssl: { ca: ca.pem, rejectUnauthorized: true } });
    try {
      const [rows] = await probe.query<mysql.RowDataPacket[]>("SHOW SESSION STATUS LIKE 'Ssl_cipher'");
      assert.ok(String(rows[0].Value).length > 0, 'TLS cipher negotiated');
      const [procs] = await probe.query<mysql.RowDataPacket[]>("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE USER = 'kvtls'");
      assert.ok(Number(procs[0].n) > 2, 'the actors are connected as the TLS-only user');
    } finally {
      await probe.end();
    }
  } finally {
    await gw?.close();
  }
  // Verification off (encrypted, not authenticated): the wrong CA is accepted.
  const loose = await startServer(configFrom({ ...base, mysqlTls: true, mysqlTlsCaFile: otherCa.certFile, mysqlTlsVerify: false }), dbs, log);
  await loose.close();
});

test('a shard certificate that does not name the IP in the shard URL is refused (checked against that IP; mysql2 alone checks "localhost")', async () => {
  const urlFor = await tlsOnlyUser();
  const dbs = [urlFor(new URL(await tlsMysql.createDatabase()).pathname.slice(1))];
  const log = createLogger('silent');
  await makeCert(dir, ca, 'mysql', ['db.example']); // same CA, same files, another name
  await tlsMysql.restart();
  try {
    const gw = await startServer(configFrom({ port: 0, redisPort: 0, logLevel: 'silent', mysqlTls: true, mysqlTlsCaFile: ca.certFile }), dbs, log);
    try {
      const [h] = gw.pool.health();
      assert.equal(h.up, false);
      assert.match(String(h.error?.message), /IP: 127\.0\.0\.1 is not in the cert's list/);
    } finally {
      await gw.close();
    }
  } finally {
    await makeCert(dir, ca, 'mysql', ['127.0.0.1']);
    await tlsMysql.restart();
  }
});
