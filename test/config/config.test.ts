/**
 * Tests src/config/config.ts (resolution order flag > env > KVSQL_CONFIG file > default, unknown
 * settings and bad values rejected with ConfigError, the result frozen; configFrom applies the same
 * rules) and the real CLI process (src/cli.ts): bad config exits 2, SIGTERM exits 0 only after the
 * request in flight is answered and committed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { ConfigError, configFrom, parseArgv, resolveConfig, shardNodes, MAX_SUPPORTED_VALUE_BYTES, SETTINGS } from '../../src/config/config';
import { pickFreePort } from '../../src/embedded/local-mysqld';
import { startTestServer, type TestServer } from '../helpers/mysql';
import { HttpClient, kvPath } from '../helpers/http-client';
import { CLI, cliEnv } from '../helpers/cli';
import { checkExposure } from '../../src/gateway/auth';
import { sleep, waitFor } from '../helpers/wait';

function rejects(fn: () => unknown, mentions: string | RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.name, 'ConfigError');
    if (typeof mentions === 'string') assert.ok(err.message.includes(mentions), `"${err.message}" does not mention ${mentions}`);
    else assert.match(err.message, mentions);
    return true;
  });
}

function tempFile(content: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-config-'));
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, content);
  return file;
}

test('defaults: the documented values, resolved once and frozen', () => {
  const cfg = resolveConfig([], {});
  assert.ok(Object.isFrozen(cfg));
  assert.equal(cfg.host, '127.0.0.1');
  assert.equal(cfg.port, 8080);
  assert.equal(cfg.maxValueBytes, 1024 * 1024);
  assert.deepEqual(cfg.shards, []);
  assert.equal(cfg.batching, true);
  assert.ok(path.isAbsolute(cfg.dataDir));
  assert.throws(() => {
    (cfg as { port: number }).port = 1;
  }, TypeError);
});

test('a flag beats the environment, which beats the KVSQL_CONFIG file, which beats the default', (t) => {
  const file = tempFile(JSON.stringify({ KVSQL_PORT: 1001, KVSQL_LOG_LEVEL: 'warn', KVSQL_SHARDS: ['mysql://h/a', 'mysql://h/b'] }));
  t.after(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));
  assert.equal(resolveConfig([], { KVSQL_CONFIG: file }).port, 1001);
  assert.equal(resolveConfig([], { KVSQL_CONFIG: file, KVSQL_PORT: '1002' }).port, 1002);
  assert.equal(resolveConfig(['--port=1003'], { KVSQL_CONFIG: file, KVSQL_PORT: '1002' }).port, 1003);
  const cfg = resolveConfig(['--max-value-bytes=2048'], { KVSQL_CONFIG: file });
  assert.equal(cfg.logLevel, 'warn');
  assert.equal(cfg.maxValueBytes, 2048);
  assert.deepEqual(cfg.shards, ['mysql://h/a', 'mysql://h/b']);
});

test('values are parsed: booleans, URL lists, integers at their bounds', () => {
  assert.equal(resolveConfig([], { KVSQL_BATCHING: 'off' }).batching, false);
  assert.equal(resolveConfig([], { KVSQL_BATCHING: 'YES' }).batching, true);
  assert.deepEqual(resolveConfig([], { KVSQL_SHARDS: ' mysql://u:p@h:3306/a , mysql://h/b,' }).shards, ['mysql://u:p@h:3306/a', 'mysql://h/b']);
  assert.equal(resolveConfig([], { KVSQL_PORT: '0' }).port, 0);
  assert.equal(resolveConfig([], { KVSQL_PORT: '65535' }).port, 65535);
  assert.equal(resolveConfig([], { KVSQL_MAX_VALUE_BYTES: String(MAX_SUPPORTED_VALUE_BYTES) }).maxValueBytes, 16 * 1024 * 1024);
  assert.equal(resolveConfig([], { KVSQL_MAX_VALUE_BYTES: '1' }).maxValueBytes, 1);
});

test('environment variables that are not KVSQL_* are ignored; KVSQL_CONFIG and KVSQL_TEST_MYSQL_URL are not settings but allowed', () => {
  const cfg = resolveConfig([], { PATH: '/bin', HOME: '/root', KVX: '1', kv_port: '1', KVSQL_TEST_MYSQL_URL: 'mysql://h/t' });
  assert.equal(cfg.port, 8080);
});

test('KV_* variables (the old prefix, and what Kubernetes injects for a Service named kv) are ignored', () => {
  const cfg = resolveConfig([], { KV_PORT: 'tcp://10.0.0.1:8080', KV_SERVICE_HOST: '10.0.0.1', KV_SHARDS: 'not a url' });
  assert.equal(cfg.port, 8080);
  assert.deepEqual(cfg.shards, []);
});

test('an unknown KVSQL_* variable, flag or file key is a ConfigError naming it', (t) => {
  rejects(() => resolveConfig([], { KVSQL_PROT: '8080' }), 'KVSQL_PROT');
  rejects(() => resolveConfig([], { KVSQL_: '1' }), 'KVSQL_');
  rejects(() => resolveConfig(['--prot=8080']), '--prot=8080');
  rejects(() => resolveConfig(['--port']), '--port');
  rejects(() => resolveConfig(['port=8080']), 'port=8080');
  rejects(() => resolveConfig(['--PORT=1']), '--PORT=1');
  const file = tempFile(JSON.stringify({ KVSQL_PROT: 1 }));
  t.after(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));
  rejects(() => resolveConfig([], { KVSQL_CONFIG: file }), 'KVSQL_PROT');
});

test('an unreadable or invalid KVSQL_CONFIG file is a ConfigError', (t) => {
  rejects(() => resolveConfig([], { KVSQL_CONFIG: '/nonexistent/kvsql.json' }), 'KVSQL_CONFIG');
  const file = tempFile('{not json');
  t.after(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));
  rejects(() => resolveConfig([], { KVSQL_CONFIG: file }), 'KVSQL_CONFIG');
});

test('a shard may be a Galera cluster: node URLs joined by |, or a list in the KVSQL_CONFIG file', (t) => {
  const env = { KVSQL_SHARDS: 'mysql://h1:3306/kv | mysql://h2:3306/kv|mysql://h3:3306/kv, mysql://h4/kv' };
  assert.deepEqual(resolveConfig([], env).shards, ['mysql://h1:3306/kv|mysql://h2:3306/kv|mysql://h3:3306/kv', 'mysql://h4/kv']);
  assert.deepEqual(shardNodes(resolveConfig([], env).shards[0]), ['mysql://h1:3306/kv', 'mysql://h2:3306/kv', 'mysql://h3:3306/kv']);
  const file = tempFile(JSON.stringify({ KVSQL_SHARDS: [['mysql://a/kv', 'mysql://b/kv', 'mysql://c/kv'], 'mysql://d/kv'] }));
  t.after(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));
  assert.deepEqual(resolveConfig([], { KVSQL_CONFIG: file }).shards, ['mysql://a/kv|mysql://b/kv|mysql://c/kv', 'mysql://d/kv']);
  rejects(() => resolveConfig([], { KVSQL_SHARDS: 'mysql://h1/kv|http://h2/kv' }), 'KVSQL_SHARDS');
  assert.equal(resolveConfig(['--replicas=3'], {}).replicas, 3);
  assert.equal(resolveConfig([], {}).replicas, 1);
  rejects(() => resolveConfig([], { KVSQL_REPLICAS: '2' }), 'KVSQL_REPLICAS');
  rejects(() => resolveConfig([], { KVSQL_REPLICAS: '9' }), 'KVSQL_REPLICAS');
});

test('every bad value is a ConfigError naming the setting', () => {
  const bad: Array<[string, string]> = [
    ['KVSQL_PORT', 'abc'],
    ['KVSQL_PORT', '-1'],
    ['KVSQL_PORT', '65536'],
    ['KVSQL_PORT', '1.5'],
    ['KVSQL_PORT', '1e3'],
    ['KVSQL_PORT', '0x10'],
    ['KVSQL_PORT', ''],
    ['KVSQL_MAX_VALUE_BYTES', '0'],
    ['KVSQL_MAX_VALUE_BYTES', String(MAX_SUPPORTED_VALUE_BYTES + 1)],
    ['KVSQL_MAX_VALUE_BYTES', '99999999999999999999'],
    ['KVSQL_BATCHING', 'maybe'],
    ['KVSQL_BATCHING', '2'],
    ['KVSQL_SHARDS', 'not a url'],
    ['KVSQL_SHARDS', 'http://h/db'],
    ['KVSQL_SHARDS', 'mysql://h'],
    ['KVSQL_SHARDS', 'mysql://h/a,mysql://h'],
    ['KVSQL_LOG_LEVEL', 'loud'],
    ['KVSQL_LOG_LEVEL', 'INFO'],
    ['KVSQL_HOST', 'bad host'],
    ['KVSQL_HOST', 'a/b'],
    ['KVSQL_EMBEDDED_SHARDS', '0'],
    ['KVSQL_EMBEDDED_SHARDS', '65'],
    ['KVSQL_EXPIRY_TICK_MS', '5'],
    ['KVSQL_SHUTDOWN_TIMEOUT_MS', '-1'],
    ['KVSQL_QUEUE_LIMIT', '0'],
  ];
  for (const [name, value] of bad) rejects(() => resolveConfig([], { [name]: value }), name);
  rejects(() => resolveConfig(['--max-value-bytes=16777217']), 'KVSQL_MAX_VALUE_BYTES');
});

test('configFrom applies the same rules to overrides', () => {
  const cfg = configFrom({ port: 0, maxValueBytes: MAX_SUPPORTED_VALUE_BYTES, logLevel: 'silent', shards: ['mysql://h/a'] });
  assert.ok(Object.isFrozen(cfg));
  assert.equal(cfg.port, 0);
  assert.equal(cfg.maxValueBytes, MAX_SUPPORTED_VALUE_BYTES);
  assert.deepEqual(cfg.shards, ['mysql://h/a']);
  assert.equal(cfg.batching, true, 'the rest are defaults');
  rejects(() => configFrom({ bogus: 1 } as never), 'bogus');
  rejects(() => configFrom({ maxValueBytes: MAX_SUPPORTED_VALUE_BYTES + 1 }), 'maxValueBytes');
  rejects(() => configFrom({ maxValueBytes: 0 }), 'maxValueBytes');
  rejects(() => configFrom({ port: 70000 }), 'port');
  rejects(() => configFrom({ port: 1.5 }), 'port');
  rejects(() => configFrom({ logLevel: 'loud' }), 'logLevel');
  rejects(() => configFrom({ shards: ['http://h/a'] }), 'shards');
});

// ---- The real CLI process ----

let mysqlServer: TestServer;
let urls: string[] = [];
before(async () => {
  mysqlServer = await startTestServer();
  urls = [await mysqlServer.createDatabase(), await mysqlServer.createDatabase()];
});
after(() => mysqlServer?.stop());

interface Cli {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startCli(settings: Record<string, string>): Cli {
  const child = spawn(process.execPath, [CLI], { env: cliEnv(settings), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => out, exited };
}

test('the CLI exits 2 with a message on an unknown setting or a bad value', async () => {
  for (const [settings, mention] of [
    [{ KVSQL_BOGUS: '1' }, 'KVSQL_BOGUS'],
    [{ KVSQL_PORT: 'eighty' }, 'KVSQL_PORT'],
    [{ KVSQL_MAX_VALUE_BYTES: String(MAX_SUPPORTED_VALUE_BYTES + 1) }, 'KVSQL_MAX_VALUE_BYTES'],
  ] as const) {
    const cli = startCli(settings);
    const { code } = await cli.exited;
    assert.equal(code, 2, cli.output());
    assert.match(cli.output(), new RegExp(`kvsql: .*${mention}`));
  }
});

test('SIGTERM: the CLI stops listening, answers the request in flight, commits it, and exits 0', async (t) => {
  const port = await pickFreePort();
  const cli = startCli({ KVSQL_SHARDS: urls.join(','), KVSQL_PORT: String(port), KVSQL_REDIS_PORT: '0', KVSQL_LOG_LEVEL: 'warn' });
  t.after(() => {
    if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL');
  });
  const client = new HttpClient(port);
  t.after(() => client.close());
  await waitFor(async () => (await client.request('GET', '/readyz').catch(() => null))?.status === 200, {
    timeoutMs: 30_000,
    intervalMs: 100,
    message: () => `CLI did not become ready: ${cli.output()}`,
  });
  assert.equal((await client.put('cli/before', 'b')).status, 201);

  // A PUT whose headers arrived (the call is accepted) and whose body is half sent.
  const agent = new http.Agent({ keepAlive: false });
  t.after(() => agent.destroy());
  let finish!: () => void;
  const inflight = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'PUT', path: kvPath('cli/inflight'), agent, headers: { 'content-length': '10' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.write('01234');
    finish = () => req.end('56789');
  });
  await sleep(200);
  cli.child.kill('SIGTERM');
  await sleep(300);
  assert.equal(cli.child.exitCode, null, `the CLI exited with a request in flight: ${cli.output()}`);
  // No longer listening: a new connection is refused.
  const fresh = new HttpClient(port);
  await assert.rejects(fresh.request('GET', '/healthz'), /ECONNREFUSED|ECONNRESET|socket hang up/);
  fresh.close();

  finish();
  const done = await inflight;
  assert.equal(done.status, 201, done.body);
  const { code, signal } = await cli.exited;
  assert.equal(signal, null);
  assert.equal(code, 0, cli.output());

  // The in-flight write was committed before exit: read it from the shards directly.
  let found: Buffer | null = null;
  for (const uri of urls) {
    const conn = await mysql.createConnection({ uri });
    try {
      const [rows] = await conn.query('SELECT v FROM kv WHERE k = ?', [Buffer.from('cli/inflight')]);
      const r = rows as Array<{ v: Buffer }>;
      if (r.length > 0) found = r[0].v;
    } finally {
      await conn.end();
    }
  }
  assert.equal(found?.toString(), '0123456789');
});

test('flags: --name=value and --name value (node:util parseArgs); -h/--help and -v/--version are recognised', () => {
  assert.equal(resolveConfig(['--port', '1004']).port, 1004);
  assert.equal(resolveConfig(['--redis-port=off']).redisPort, null);
  assert.equal(resolveConfig(['--redis-port', '0']).redisPort, 0);
  assert.deepEqual(parseArgv(['-h']), { help: true, version: false, values: [] });
  assert.deepEqual(parseArgv(['--version', '--port=1']), { help: false, version: true, values: [['KVSQL_PORT', '1']] });
  rejects(() => resolveConfig(['--port', '1', 'extra']), 'extra');
  rejects(() => resolveConfig(['--help']), '--help');
});

test('kvsql --help lists every setting; kvsql --version prints the package version', async () => {
  const cli = path.join(__dirname, '..', '..', 'src', 'cli.js');
  const run = (arg: string) => promisify(execFile)(process.execPath, [cli, arg], { env: { PATH: process.env.PATH } });
  const help = (await run('--help')).stdout;
  for (const x of SETTINGS) assert.ok(help.includes(x.env), `--help names ${x.env}`);
  assert.match(help, /--redis-port=<value>/);
  const version = (await run('--version')).stdout;
  assert.equal(version, `kvsql ${JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')).version}\n`);
  assert.equal((await run('-v')).stdout, version);
});

test('docs/kvsql.env is a configuration the gateway accepts, and docs/kvsql.service fits it', async () => {
  const docs = path.join(__dirname, '..', '..', '..', 'docs');
  const env: NodeJS.ProcessEnv = {};
  for (const line of fs.readFileSync(path.join(docs, 'kvsql.env'), 'utf8').split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const m = /^(KVSQL_[A-Z_]+)=(.*)$/.exec(line);
    assert.ok(m, `an env line: ${line}`);
    env[m[1]] = m[2];
  }
  const config = resolveConfig([], env);
  assert.equal(config.host, '0.0.0.0');
  assert.deepEqual(
    config.shards.map((s) => shardNodes(s).length),
    [3, 3],
    'two Galera shards of 3 nodes',
  );
  assert.ok(config.authFile !== '' && config.mysqlTls && config.tlsCertFile !== '', 'auth, TLS and MySQL TLS on');
  checkExposure(config, config.host, 'HTTP/WebSocket and Redis'); // a public address with auth on is allowed

  const unit = new Map<string, string>();
  for (const line of fs.readFileSync(path.join(docs, 'kvsql.service'), 'utf8').split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) unit.set(m[1], m[2]);
  }
  assert.match(unit.get('ExecStart')!, / \/opt\/kvsql\/dist\/src\/cli\.js$/);
  assert.equal(unit.get('ExecReload'), '/bin/kill -HUP $MAINPID');
  assert.equal(unit.get('KillSignal'), 'SIGTERM');
  assert.ok(Number(unit.get('TimeoutStopSec')) * 1000 > config.shutdownTimeoutMs, 'systemd waits longer than the shutdown timeout');
  assert.equal(unit.get('EnvironmentFile'), '/etc/kvsql/kvsql.env');
  // Exit 2 is what a refused configuration exits with: not worth restarting.
  assert.equal(unit.get('RestartPreventExitStatus'), '2');
  const refused = await promisify(execFile)(process.execPath, [CLI, '--no-such-setting=1'], { env: cliEnv() }).catch((e: { code: number }) => e);
  assert.equal((refused as { code: number }).code, 2);
});
