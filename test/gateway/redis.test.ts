/**
 * Tests the Redis-protocol door (src/gateway/resp/) against a real store: ioredis for
 * every command, a pipeline of 10,000 commands, TTL behaviour, bad input; raw sockets for RESP3,
 * inline commands, malformed RESP, half-close and flow control; 503s as -TRYAGAIN; redis-cli as a
 * person would type it, when installed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync } from 'node:fs';
import Redis from 'ioredis';
import { startTestStore, type TestStore } from '../helpers/store';
import { sleep, waitFor } from '../helpers/wait';

let store: TestStore;
let port: number;
let redis: Redis;
before(async () => {
  // queueWaitMs 0: the 10,000-command pipeline checks ordering, not admission (the time bound
  // has its own tests in mysql-faults), and a loaded machine would refuse part of it.
  store = await startTestStore({ shards: 2, config: { maxValueBytes: 64 * 1024, queueWaitMs: 0 } });
  port = store.server.redisPort!;
  redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
  await redis.connect();
});
after(async () => {
  redis?.disconnect();
  await store?.close();
});

/** A raw connection: send bytes, read until `until` says the reply text is complete. */
class Raw {
  readonly sock: Socket;
  buf = Buffer.alloc(0);
  closed = false;
  private waiter: (() => void) | null = null;
  constructor() {
    this.sock = connect(port, '127.0.0.1');
    this.sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiter?.();
    });
    this.sock.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    this.sock.on('error', () => undefined);
  }
  send(text: string | Buffer): void {
    this.sock.write(text);
  }
  async read(until: (s: string) => boolean, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!until(this.buf.toString('latin1'))) {
      if (this.closed) break;
      if (Date.now() > deadline) throw new Error(`timeout; got ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`);
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 50);
      });
    }
    const s = this.buf.toString('latin1');
    this.buf = Buffer.alloc(0);
    return s;
  }
  /** Read exactly n CRLF-terminated lines' worth (for simple replies). */
  lines(n: number): Promise<string> {
    return this.read((s) => s.split('\r\n').length - 1 >= n);
  }
  close(): void {
    this.sock.destroy();
  }
}

test('GET and SET: binary-safe values, missing keys are nil, SET answers OK', async () => {
  assert.equal(await redis.set('r:a', 'hello'), 'OK');
  assert.equal(await redis.get('r:a'), 'hello');
  assert.equal(await redis.get('r:missing'), null);
  const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  await redis.set(Buffer.from([0, 1, 255, 13, 10]), bytes);
  assert.deepEqual(await redis.getBuffer(Buffer.from([0, 1, 255, 13, 10])), bytes);
  await redis.set('r:empty', '');
  assert.equal(await redis.get('r:empty'), '');
  // The same key through HTTP: one store.
  const res = await fetch(`${store.base}/v1/kv/r:a`);
  assert.equal(await res.text(), 'hello');
});

test('SET NX / XX / GET / KEEPTTL / EX / PX', async () => {
  assert.equal(await redis.set('r:nx', '1', 'NX'), 'OK');
  assert.equal(await redis.set('r:nx', '2', 'NX'), null, 'NX on an existing key: nil, not written');
  assert.equal(await redis.get('r:nx'), '1');
  assert.equal(await redis.set('r:xx', '1', 'XX'), null, 'XX on an absent key: nil, not written');
  assert.equal(await redis.exists('r:xx'), 0);
  assert.equal(await redis.set('r:nx', '3', 'XX'), 'OK');
  assert.equal(await redis.get('r:nx'), '3');

  assert.equal(await redis.set('r:get', 'first', 'GET'), null, 'GET on an absent key returns nil and writes');
  assert.equal(await redis.set('r:get', 'second', 'GET'), 'first');
  assert.equal(await redis.get('r:get'), 'second');
  assert.equal(await redis.call('SET', 'r:get', 'third', 'NX', 'GET'), 'second', 'NX GET on an existing key: old value, not written');
  assert.equal(await redis.get('r:get'), 'second');
  assert.equal(await redis.call('SET', 'r:get-xx', 'v', 'XX', 'GET'), null);
  assert.equal(await redis.exists('r:get-xx'), 0);

  await redis.set('r:ttl', 'v', 'EX', 100);
  const ttl = await redis.ttl('r:ttl');
  assert.ok(ttl >= 99 && ttl <= 100, `ttl ${ttl}`);
  await redis.set('r:ttl', 'v2', 'KEEPTTL');
  assert.ok((await redis.ttl('r:ttl')) >= 99, 'KEEPTTL keeps the TTL');
  await redis.set('r:ttl', 'v3');
  assert.equal(await redis.ttl('r:ttl'), -1, 'a plain SET clears the TTL');
  await redis.set('r:ttl', 'v4', 'PX', 5000);
  const pttl = await redis.pttl('r:ttl');
  assert.ok(pttl > 4000 && pttl <= 5000, `pttl ${pttl}`);
  assert.equal(await redis.call('SET', 'r:ttl', 'v5', 'GET', 'EX', '50'), 'v4');
  // SET ... GET is a barrier: pipelined commands after it see its write.
  const p = redis.pipeline();
  for (let i = 0; i < 20; i++) p.set('r:setget', String(i), 'GET').get('r:setget');
  const res = await p.exec();
  for (let i = 0; i < 20; i++) {
    assert.deepEqual(res![i * 2], [null, i === 0 ? null : String(i - 1)]);
    assert.deepEqual(res![i * 2 + 1], [null, String(i)]);
  }
  assert.ok((await redis.ttl('r:ttl')) >= 40); // 50 s set above; a loaded machine may take seconds
});

test('DEL, UNLINK and EXISTS take several keys, each on its own; MGET returns nil for missing keys', async () => {
  await redis.set('r:d1', '1');
  await redis.set('r:d2', '2');
  await redis.set('r:d3', '3');
  assert.equal(await redis.exists('r:d1', 'r:d2', 'r:nope', 'r:d1'), 3, 'EXISTS counts a repeated key twice, as Redis');
  assert.deepEqual(await redis.mget('r:d1', 'r:nope', 'r:d2', 'r:d3'), ['1', null, '2', '3']);
  assert.equal(await redis.del('r:d1', 'r:d2', 'r:nope'), 2);
  assert.equal(await redis.unlink('r:d3'), 1);
  assert.equal(await redis.exists('r:d1', 'r:d2', 'r:d3'), 0);
  assert.equal(await redis.del('r:d1'), 0);
});

test('EXPIRE / PEXPIRE / TTL / PTTL / PERSIST follow Redis replies', async () => {
  await redis.set('r:e', 'v');
  assert.equal(await redis.ttl('r:e'), -1, 'no TTL');
  assert.equal(await redis.ttl('r:e-missing'), -2, 'missing');
  assert.equal(await redis.pttl('r:e-missing'), -2);
  assert.equal(await redis.expire('r:e', 100), 1);
  assert.equal(await redis.ttl('r:e'), 100, 'rounded to the nearest second, as Redis');
  assert.equal(await redis.pexpire('r:e', 2500), 1);
  const pttl = await redis.pttl('r:e');
  assert.ok(pttl > 2000 && pttl <= 2500, `pttl ${pttl}`);
  assert.equal(await redis.ttl('r:e'), Math.floor((pttl + 500) / 1000) === 3 ? 3 : await redis.ttl('r:e'));
  assert.equal(await redis.expire('r:e-missing', 10), 0);
  assert.equal(await redis.persist('r:e'), 1, 'a TTL was removed');
  assert.equal(await redis.persist('r:e'), 0, 'no TTL to remove');
  assert.equal(await redis.persist('r:e-missing'), 0);
  assert.equal(await redis.ttl('r:e'), -1);
  // A TTL of zero or less deletes the key, as in Redis.
  assert.equal(await redis.expire('r:e', 0), 1);
  assert.equal(await redis.exists('r:e'), 0);
  assert.equal(await redis.expire('r:e', -5), 0);
});

test('expired keys are never returned, on any command', async () => {
  await redis.set('r:short', 'v', 'PX', 150);
  await redis.set('r:short2', 'v');
  await redis.pexpire('r:short2', 150);
  assert.equal(await redis.get('r:short'), 'v');
  await sleep(300);
  assert.equal(await redis.get('r:short'), null);
  assert.deepEqual(await redis.mget('r:short', 'r:short2'), [null, null]);
  assert.equal(await redis.exists('r:short', 'r:short2'), 0);
  assert.equal(await redis.ttl('r:short'), -2);
  assert.equal(await redis.persist('r:short2'), 0);
  assert.equal(await redis.expire('r:short2', 10), 0);
  assert.equal(await redis.set('r:short', 'again', 'XX'), null, 'XX treats an expired key as absent');
  assert.equal(await redis.set('r:short', 'new', 'NX'), 'OK', 'NX treats an expired key as absent');
  assert.equal(await redis.call('SET', 'r:short2', 'x', 'GET'), null, 'GET returns nil for an expired key');
});

test('PING, ECHO, SELECT 0, CLIENT, COMMAND, INFO and CONFIG GET answer what clients ask on connect', async () => {
  assert.equal(await redis.ping(), 'PONG');
  assert.equal(await redis.ping('hi'), 'hi');
  assert.equal(await redis.echo('echo me'), 'echo me');
  assert.equal(await redis.select(0), 'OK');
  await assert.rejects(redis.select(1), /DB index is out of range/);
  assert.equal(await redis.client('SETNAME', 'tester'), 'OK');
  assert.equal(await redis.client('GETNAME'), 'tester');
  assert.equal(await redis.call('CLIENT', 'SETINFO', 'LIB-NAME', 'ioredis'), 'OK');
  assert.equal(typeof (await redis.client('ID')), 'number');
  const info = (await redis.info()) as string;
  assert.match(info, /redis_version:7\.\d+\.\d+/);
  assert.match(info, /loading:0/);
  assert.match((await redis.info('server')) as string, /kvsql_version:/);
  assert.deepEqual(await redis.config('GET', 'appendonly'), ['appendonly', 'yes']);
  assert.deepEqual(await redis.config('GET', 'save'), ['save', '']);
  assert.deepEqual(await redis.config('GET', 'nosuchthing'), []);
  const commands = (await redis.call('COMMAND')) as unknown[][];
  assert.ok(commands.some((c) => c[0] === 'get' && c[1] === 2));
  assert.equal(await redis.call('COMMAND', 'COUNT'), commands.length);
  assert.deepEqual(await redis.call('COMMAND', 'DOCS'), []);
});

test('unknown commands and bad arguments are errors; the connection keeps serving', async () => {
  await assert.rejects(redis.call('HSET', 'h', 'f', 'v'), /^ReplyError: ERR unknown command 'HSET', with args beginning with: 'h' 'f' 'v'/);
  await assert.rejects(redis.call('LPUSH', 'l', 'x'), /unknown command 'LPUSH'/);
  await assert.rejects(redis.call('GET'), /ERR wrong number of arguments for 'get' command/);
  await assert.rejects(redis.call('SET', 'k', 'v', 'EX'), /ERR syntax error/);
  await assert.rejects(redis.call('SET', 'k', 'v', 'NX', 'XX'), /ERR syntax error/);
  await assert.rejects(redis.call('SET', 'k', 'v', 'EX', '1', 'PX', '5'), /ERR syntax error/);
  await assert.rejects(redis.call('SET', 'k', 'v', 'EX', 'ten'), /ERR value is not an integer or out of range/);
  await assert.rejects(redis.call('SET', 'k', 'v', 'EX', '0'), /ERR invalid expire time in 'set' command/);
  await assert.rejects(redis.call('SET', 'k', 'v', 'EX', '999999999999'), /ERR KV_ERR_BAD_TTL/);
  await assert.rejects(redis.call('EXPIRE', 'k', '10', 'NX', 'XX'), /ERR NX and XX, GT or LT options at the same time are not compatible/);
  await assert.rejects(redis.call('EXPIRE', 'k', '10', 'SOON'), /ERR Unsupported option SOON/);
  await assert.rejects(redis.call('EXPIRE', 'k', '1.5'), /not an integer/);
  await assert.rejects(redis.call('SET', '', 'v'), /ERR KV_ERR_BAD_KEY key must not be empty/);
  await assert.rejects(redis.call('GET', 'x'.repeat(1025)), /ERR KV_ERR_KEY_TOO_LONG/);
  // Over KVSQL_MAX_VALUE_BYTES (64 KiB here): skipped, refused, and the connection goes on.
  await assert.rejects(redis.set('r:big', Buffer.alloc(100 * 1024, 1)), /ERR KV_ERR_VALUE_TOO_LARGE/);
  assert.equal(await redis.exists('r:big'), 0);
  assert.equal(await redis.set('r:after-errors', 'ok'), 'OK');
  assert.equal(await redis.get('r:after-errors'), 'ok');
});

test('a pipeline of 10,000 commands is answered in order; per-key order holds', async () => {
  // Each key's four commands run in order (write, read, write, read); different keys in parallel.
  const p = redis.pipeline();
  for (let i = 0; i < 2500; i++) {
    p.set(`r:pipe:${i}`, String(i));
    p.get(`r:pipe:${i}`);
    p.set(`r:pipe:${i}`, `${i}b`, 'EX', 100);
    p.mget(`r:pipe:${i}`, `r:pipe:${(i + 1) % 2500}`);
  }
  const results = await p.exec();
  assert.equal(results!.length, 10_000);
  for (let i = 0; i < 2500; i++) {
    const [set, get, set2] = results!.slice(i * 4, i * 4 + 3);
    assert.deepEqual(set, [null, 'OK']);
    assert.deepEqual(get, [null, String(i)], `the GET after SET ${i} sees it`);
    assert.deepEqual(set2, [null, 'OK']);
    assert.equal((results![i * 4 + 3][1] as string[])[0], `${i}b`);
  }
});

test('RESP3 after HELLO 3: maps and _ nulls; HELLO 2 goes back; HELLO 4 is NOPROTO', async (t) => {
  const c = new Raw();
  t.after(() => c.close());
  c.send('*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n');
  const hello = await c.read((s) => s.includes('modules'));
  assert.match(hello, /^%7\r\n\$6\r\nserver\r\n\$5\r\nkvsql\r\n\$7\r\nversion\r\n/);
  assert.match(hello, /\$5\r\nproto\r\n:3\r\n/);
  c.send('GET r:resp3-missing\r\nCONFIG GET appendonly\r\nSET r:resp3 v\r\nMGET r:resp3 r:resp3-missing\r\n');
  assert.equal(await c.read((s) => s.endsWith('_\r\n') && s.includes('*2')), '_\r\n%1\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n+OK\r\n*2\r\n$1\r\nv\r\n_\r\n');
  c.send('HELLO 4\r\nHELLO 2\r\nGET r:resp3-missing\r\n');
  const back = await c.read((s) => s.endsWith('$-1\r\n'));
  assert.match(back, /^-NOPROTO unsupported protocol version\r\n\*14\r\n/);
  assert.ok(back.endsWith('$-1\r\n'));
});

test('inline commands (telnet style) work, quoted words included', async (t) => {
  const c = new Raw();
  t.after(() => c.close());
  c.send('set "r:inline key" "a b"\r\nget "r:inline key"\nPING\r\n');
  assert.equal(await c.lines(4), '+OK\r\n$3\r\na b\r\n+PONG\r\n');
});

test('malformed RESP: an error after the replies owed, then close; the server keeps serving others', async (t) => {
  const c = new Raw();
  t.after(() => c.close());
  c.send('*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n:1\r\n*1\r\n$4\r\nPING\r\n');
  const out = await c.read(() => false, 5000).catch(() => '');
  assert.equal(c.closed, true, 'the connection is closed');
  assert.equal(out, "+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n");
  const bad = new Raw();
  t.after(() => bad.close());
  bad.send('*1\r\n$99999999999\r\n');
  await bad.read(() => false, 5000).catch(() => '');
  assert.equal(bad.closed, true);
  assert.equal(await redis.ping(), 'PONG');
});

test('QUIT answers OK after the replies before it and closes; half-close still gets every reply', async (t) => {
  const c = new Raw();
  t.after(() => c.close());
  c.send('SET r:quit 1\r\nGET r:quit\r\nQUIT\r\nGET r:quit\r\n');
  const out = await c.read(() => false, 5000).catch(() => '');
  assert.equal(c.closed, true);
  assert.equal(out, '+OK\r\n$1\r\n1\r\n+OK\r\n');
  const h = new Raw();
  t.after(() => h.close());
  h.sock.end('SET r:half 2\r\nGET r:half\r\n');
  const got = await h.read(() => false, 5000).catch(() => '');
  assert.equal(got, '+OK\r\n$1\r\n2\r\n');
  assert.equal(h.closed, true, 'the server ends its side once everything is written');
});

test('flow control: with 4 ops in flight per connection, a 400-command burst is answered in order', async (t) => {
  const gw = await store.startAnotherGateway({ redisPort: 0, port: 0, redisMaxInflight: 4 });
  const r = new Redis({ port: gw.redisPort!, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
  t.after(() => r.disconnect());
  await r.connect();
  const p = r.pipeline();
  for (let i = 0; i < 200; i++) {
    p.set(`r:flow:${i}`, String(i));
    p.get(`r:flow:${i}`);
  }
  const res = await p.exec();
  for (let i = 0; i < 200; i++) assert.deepEqual(res![i * 2 + 1], [null, String(i)]);
  // A reply without shard work, parsed only once the op before it finished, is still sent.
  const one = await store.startAnotherGateway({ redisPort: 0, port: 0, redisMaxInflight: 1 });
  const sock = connect(one.redisPort!, '127.0.0.1');
  t.after(() => sock.destroy());
  let got = '';
  sock.on('data', (d) => (got += d));
  sock.write('SET r:flow:one 1\r\nPING\r\n');
  await waitFor(() => got.length >= 12, { timeoutMs: 5000, intervalMs: 50, message: () => `both replies, got ${JSON.stringify(got)}` });
  assert.equal(got, '+OK\r\n+PONG\r\n');
});

test('503s become -TRYAGAIN with the kvsql code; the connection keeps serving', async (t) => {
  const gw = await store.startAnotherGateway({ redisPort: 0, port: 0, queueLimit: 1 });
  const r = new Redis({ port: gw.redisPort!, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 });
  t.after(() => r.disconnect());
  await r.connect();
  const p = r.pipeline();
  for (let i = 0; i < 200; i++) p.set(`r:over:${i}`, 'v');
  const res = await p.exec();
  const errors = res!.filter(([e]) => e !== null).map(([e]) => (e as Error).message);
  assert.ok(errors.length > 0, 'some SETs were refused');
  for (const m of errors) assert.match(m, /^TRYAGAIN KV_ERR_OVERLOADED shard \d/);
  assert.ok(
    res!.some(([e, v]) => e === null && v === 'OK'),
    'some SETs were applied',
  );
  assert.equal(await r.ping(), 'PONG');
});

const REDIS_CLI = '/usr/bin/redis-cli';
test('redis-cli as a person uses it: set a b ex 10, get a, ttl a', { skip: existsSync(REDIS_CLI) ? false : 'redis-cli is not installed' }, async () => {
  const cli = async (...args: string[]) => (await promisify(execFile)(REDIS_CLI, ['-p', String(port), ...args])).stdout.trim();
  assert.equal(await cli('set', 'a', 'b', 'ex', '10'), 'OK');
  assert.equal(await cli('get', 'a'), 'b');
  assert.match(await cli('ttl', 'a'), /^(9|10)$/, 'rounded to the nearest second; the 10 s started when set answered');
  assert.equal(await cli('get', 'nope'), '');
  assert.match(await cli('-3', 'get', 'nope'), /nil|^$/);
  assert.match(await cli('hset', 'h', 'f', 'v'), /ERR unknown command/);
  assert.equal(await cli('--no-raw', 'get', 'nope'), '(nil)');
});
