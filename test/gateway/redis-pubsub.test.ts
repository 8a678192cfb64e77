/**
 * Tests pub/sub on the Redis door (src/gateway/resp/pubsub-*.ts) as Redis users write it, with
 * ioredis and node-redis subscribers, and raw sockets for the exact RESP2/RESP3 bytes: SUBSCRIBE,
 * PSUBSCRIBE, PUBLISH counts, UNSUBSCRIBE with and without arguments, subscribed-mode errors and
 * PING, RESET, PUBSUB introspection, keyspace notifications with Redis's flags and event names,
 * auth on channels, the pubsub output-buffer limit, and the two seams the change feed will use
 * (a KeyspaceSource that reports `expired`, a PublishBus between two gateways). Cases follow
 * redis/redis tests/unit/pubsub.tcl where they exist.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type Socket } from 'node:net';
import Redis from 'ioredis';
import { createClient } from 'redis';
import { startTestStore, type TestStore } from '../helpers/store';
import { makeToken, writeTokenFile } from '../helpers/tokens';
import type { KeyspaceEvent, KeyspaceSource, PublishBus } from '../../src/gateway/resp';
import { sleep, waitFor } from '../helpers/wait';

let store!: TestStore;
let port = 0;
const clients: Redis[] = [];

before(async () => {
  store = await startTestStore({ shards: 2 });
  port = store.server.redisPort!;
});
after(async () => {
  for (const c of clients) c.disconnect();
  await store?.close();
});

function client(p = port): Redis {
  const c = new Redis({ port: p, host: '127.0.0.1', maxRetriesPerRequest: 0, retryStrategy: () => null });
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

/** Collects a subscriber's events in arrival order. */
function record(sub: Redis): string[][] {
  const got: string[][] = [];
  sub.on('message', (ch: string, msg: string) => got.push(['message', ch, msg]));
  sub.on('pmessage', (pat: string, ch: string, msg: string) => got.push(['pmessage', pat, ch, msg]));
  return got;
}

/** A raw connection: send text, read exactly the bytes expected. */
class Raw {
  readonly sock: Socket;
  buf = Buffer.alloc(0);
  closed = false;
  constructor(p = port) {
    this.sock = connect(p, '127.0.0.1');
    this.sock.on('data', (d) => (this.buf = Buffer.concat([this.buf, d])));
    this.sock.on('close', () => (this.closed = true));
    this.sock.on('error', () => undefined);
  }
  /** Sends a command as a RESP array. */
  cmd(...args: string[]): void {
    this.sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
  }
  /** Waits for `text.length` bytes and checks them. */
  async expect(text: string, what = text): Promise<void> {
    await waitFor(() => this.buf.length >= text.length || this.closed, {
      timeoutMs: 5000,
      intervalMs: 10,
      message: () => `${JSON.stringify(what)}; got ${JSON.stringify(this.buf.toString('latin1'))}`,
    });
    const got = this.buf.subarray(0, text.length).toString('latin1');
    this.buf = this.buf.subarray(text.length);
    assert.equal(got, text);
  }
  close(): void {
    this.sock.destroy();
  }
}

const push3 = (proto: 2 | 3, ...parts: Array<string | number | null>): string =>
  `${proto === 2 ? '*' : '>'}${parts.length}\r\n` +
  parts.map((p) => (p === null ? (proto === 2 ? '$-1\r\n' : '_\r\n') : typeof p === 'number' ? `:${p}\r\n` : `$${Buffer.byteLength(p)}\r\n${p}\r\n`)).join('');

test('PUBLISH/SUBSCRIBE basics with ioredis: counts, messages, UNSUBSCRIBE one then all', async () => {
  const sub = client();
  const pub = client();
  const got = record(sub);
  assert.equal(await sub.subscribe('chan1', 'chan2'), 2);
  assert.equal(await pub.publish('chan1', 'hello'), 1);
  assert.equal(await pub.publish('chan2', 'world'), 1);
  await waitFor(() => got.length === 2, { timeoutMs: 5000, intervalMs: 10, message: 'two messages' });
  assert.deepEqual(got, [
    ['message', 'chan1', 'hello'],
    ['message', 'chan2', 'world'],
  ]);
  assert.equal(await sub.unsubscribe('chan1'), 1);
  assert.equal(await pub.publish('chan1', 'hello'), 0);
  assert.equal(await pub.publish('chan2', 'world'), 1);
  await waitFor(() => got.length === 3, { timeoutMs: 5000, intervalMs: 10, message: 'third message' });
  assert.deepEqual(got[2], ['message', 'chan2', 'world']);
  assert.equal(await sub.unsubscribe(), 0);
  assert.equal(await pub.publish('chan2', 'world'), 0);
  // Out of subscribed mode, the connection runs commands again.
  assert.equal(await sub.set('ps:after', 'x'), 'OK');
});

test('PUBLISH reaches every subscriber once; SUBSCRIBE to one channel more than once counts it once', async () => {
  const a = client();
  const b = client();
  const pub = client();
  const ga = record(a);
  const gb = record(b);
  await a.subscribe('twice');
  await a.subscribe('twice');
  await b.subscribe('twice');
  assert.equal(await pub.publish('twice', 'hi'), 2);
  await waitFor(() => ga.length === 1 && gb.length === 1, { timeoutMs: 5000, intervalMs: 10, message: 'one message each' });
  await sleep(50);
  assert.equal(ga.length, 1);
});

test('PSUBSCRIBE with glob patterns: pmessage shape, publish counts, PUNSUBSCRIBE, mixed with SUBSCRIBE', async () => {
  const sub = client();
  const pub = client();
  const got = record(sub);
  assert.equal(await sub.psubscribe('foo.*', 'bar.*'), 2);
  assert.equal(await pub.publish('foo.1', 'hello'), 1);
  assert.equal(await pub.publish('bar.1', 'hello'), 1);
  assert.equal(await pub.publish('foo1', 'hello'), 0);
  assert.equal(await pub.publish('barfoo.1', 'hello'), 0);
  assert.equal(await pub.publish('qux.1', 'hello'), 0);
  await waitFor(() => got.length === 2, { timeoutMs: 5000, intervalMs: 10, message: 'two pmessages' });
  assert.deepEqual(got, [
    ['pmessage', 'foo.*', 'foo.1', 'hello'],
    ['pmessage', 'bar.*', 'bar.1', 'hello'],
  ]);
  assert.equal(await sub.punsubscribe('foo.*'), 1);
  assert.equal(await pub.publish('foo.1', 'hello'), 0);
  // Patterns as Redis's stringmatchlen: ?, [classes], [^negation], escapes.
  assert.equal(await sub.psubscribe('h?llo', 'h[ae]x', 'n[^0-9]', 'lit\\*'), 5);
  assert.equal(await pub.publish('hello', 'm'), 1);
  assert.equal(await pub.publish('hax', 'm'), 1);
  assert.equal(await pub.publish('hix', 'm'), 0);
  assert.equal(await pub.publish('nx', 'm'), 1);
  assert.equal(await pub.publish('n5', 'm'), 0);
  assert.equal(await pub.publish('lit*', 'm'), 1);
  assert.equal(await pub.publish('litx', 'm'), 0);
  assert.equal(await sub.punsubscribe(), 0);
  // Mix: one channel, one pattern matching it: two deliveries.
  const mix = client();
  const gm = record(mix);
  assert.equal(await mix.subscribe('foo.bar'), 1);
  assert.equal(await mix.psubscribe('foo.*'), 2);
  assert.equal(await pub.publish('foo.bar', 'hello'), 2);
  await waitFor(() => gm.length === 2, { timeoutMs: 5000, intervalMs: 10, message: 'message and pmessage' });
  assert.deepEqual(gm, [
    ['message', 'foo.bar', 'hello'],
    ['pmessage', 'foo.*', 'foo.bar', 'hello'],
  ]);
});

test('PUBSUB CHANNELS, NUMSUB (integers), NUMPAT (unique patterns), HELP, unknown subcommand', async () => {
  const r = client();
  const a = client();
  const b = client();
  const before = (await r.pubsub('NUMPAT')) as unknown as number; // earlier tests' clients may hold some
  await a.subscribe('intro:1', 'intro:2', 'other');
  await b.subscribe('intro:1');
  await a.psubscribe('np:foo*', 'np:bar*');
  await b.psubscribe('np:foo*', 'np:baz*');
  assert.deepEqual(((await r.pubsub('CHANNELS', 'intro:*')) as string[]).sort(), ['intro:1', 'intro:2']);
  assert.ok(((await r.pubsub('CHANNELS')) as string[]).includes('other'));
  assert.deepEqual(await r.pubsub('NUMSUB', 'intro:1', 'intro:2', 'abc'), ['intro:1', 2, 'intro:2', 1, 'abc', 0]);
  assert.deepEqual(await r.pubsub('NUMSUB'), []);
  assert.equal(await r.pubsub('NUMPAT'), before + 3);
  assert.match((await r.client('LIST')) as string, / sub=3 psub=2 ssub=0 /, 'CLIENT LIST shows subscriptions as Redis');
  assert.ok(((await r.call('PUBSUB', 'HELP')) as string[])[0].startsWith('PUBSUB <subcommand>'));
  await assert.rejects(r.call('PUBSUB', 'NOPE'), /ERR unknown subcommand 'NOPE'. Try PUBSUB HELP./);
  a.disconnect();
  b.disconnect();
  // A closed connection's subscriptions go with it.
  await waitFor(async () => ((await r.pubsub('NUMPAT')) as unknown as number) === before, {
    timeoutMs: 5000,
    intervalMs: 20,
    message: 'NUMPAT back to its count before',
  });
  assert.equal(await r.pubsub('NUMPAT'), before);
  assert.deepEqual(await r.pubsub('NUMSUB', 'intro:1'), ['intro:1', 0]);
});

test('RESP2 on the wire: confirmations, UNSUBSCRIBE/PUNSUBSCRIBE with nothing subscribed, subscribed-mode rules, PING, RESET', async () => {
  const c = new Raw();
  const pub = client();
  try {
    // Always a reply, even subscribed to nothing (pubsub.tcl "should always reply").
    c.cmd('PUNSUBSCRIBE');
    await c.expect(push3(2, 'punsubscribe', null, 0));
    c.cmd('UNSUBSCRIBE');
    await c.expect(push3(2, 'unsubscribe', null, 0));
    c.cmd('UNSUBSCRIBE', 'foo', 'bar');
    await c.expect(push3(2, 'unsubscribe', 'foo', 0) + push3(2, 'unsubscribe', 'bar', 0));
    c.cmd('SUBSCRIBE', 'c1', 'c1', 'c2');
    await c.expect(push3(2, 'subscribe', 'c1', 1) + push3(2, 'subscribe', 'c1', 1) + push3(2, 'subscribe', 'c2', 2));
    c.cmd('PSUBSCRIBE', 'c*');
    await c.expect(push3(2, 'psubscribe', 'c*', 3));
    assert.equal(await pub.publish('c1', 'hi'), 2);
    await c.expect(push3(2, 'message', 'c1', 'hi') + `*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nc1\r\n$2\r\nhi\r\n`);
    // Subscribed mode (RESP2): other commands refused with Redis's words; the connection lives.
    c.cmd('GET', 'x');
    await c.expect("-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n");
    c.cmd('CONFIG', 'GET', 'maxmemory');
    await c.expect("-ERR Can't execute 'config|get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n");
    c.cmd('PING');
    await c.expect('*2\r\n$4\r\npong\r\n$0\r\n\r\n');
    c.cmd('PING', 'foo');
    await c.expect('*2\r\n$4\r\npong\r\n$3\r\nfoo\r\n');
    // UNSUBSCRIBE with no arguments: one confirmation per channel; the pattern keeps the count.
    c.cmd('UNSUBSCRIBE');
    await c.expect(push3(2, 'unsubscribe', 'c1', 2) + push3(2, 'unsubscribe', 'c2', 1));
    c.cmd('PUNSUBSCRIBE', 'c*', 'zz*');
    await c.expect(push3(2, 'punsubscribe', 'c*', 0) + push3(2, 'punsubscribe', 'zz*', 0));
    c.cmd('PING');
    await c.expect('+PONG\r\n');
    // RESET leaves subscribed mode silently.
    c.cmd('SUBSCRIBE', 'r1');
    await c.expect(push3(2, 'subscribe', 'r1', 1));
    c.cmd('RESET');
    await c.expect('+RESET\r\n');
    assert.equal(await pub.publish('r1', 'x'), 0);
    c.cmd('PING');
    await c.expect('+PONG\r\n');
    // Arity errors as Redis.
    c.cmd('SUBSCRIBE');
    await c.expect("-ERR wrong number of arguments for 'subscribe' command\r\n");
    c.cmd('PUBLISH', 'x');
    await c.expect("-ERR wrong number of arguments for 'publish' command\r\n");
  } finally {
    c.close();
  }
});

test('RESP3: push frames, any command while subscribed, PING as usual, nulls as _', async () => {
  const c = new Raw();
  const pub = client();
  try {
    c.cmd('HELLO', '3');
    await waitFor(() => c.buf.includes('modules'), { timeoutMs: 5000, intervalMs: 10, message: 'HELLO 3 reply' });
    await sleep(20);
    c.buf = Buffer.alloc(0);
    c.cmd('UNSUBSCRIBE');
    await c.expect(push3(3, 'unsubscribe', null, 0));
    c.cmd('SUBSCRIBE', 'r3');
    await c.expect(push3(3, 'subscribe', 'r3', 1));
    c.cmd('SET', 'ps:r3', 'v');
    await c.expect('+OK\r\n');
    c.cmd('GET', 'ps:r3');
    await c.expect('$1\r\nv\r\n');
    c.cmd('PING');
    await c.expect('+PONG\r\n');
    assert.equal(await pub.publish('r3', 'hi'), 1);
    await c.expect(push3(3, 'message', 'r3', 'hi'));
    c.cmd('PSUBSCRIBE', 'r*');
    await c.expect(push3(3, 'psubscribe', 'r*', 2));
    assert.equal(await pub.publish('r3', 'yo'), 2);
    await c.expect(push3(3, 'message', 'r3', 'yo') + '>4\r\n$8\r\npmessage\r\n$2\r\nr*\r\n$2\r\nr3\r\n$2\r\nyo\r\n');
    // Publishing to itself: the reply first, then its own messages (Redis 7.2's order).
    c.cmd('PUBLISH', 'r3', 'me');
    await c.expect(':2\r\n' + push3(3, 'message', 'r3', 'me') + '>4\r\n$8\r\npmessage\r\n$2\r\nr*\r\n$2\r\nr3\r\n$2\r\nme\r\n');
  } finally {
    c.close();
  }
});

test('node-redis: subscribe and pSubscribe with listeners, publish counts, unsubscribe', async () => {
  const pub = createClient({ url: `redis://127.0.0.1:${port}` });
  pub.on('error', () => undefined);
  await pub.connect();
  const sub = pub.duplicate();
  sub.on('error', () => undefined);
  await sub.connect();
  try {
    const got: string[] = [];
    await sub.subscribe('nr:news', (message, channel) => got.push(`${channel}=${message}`));
    await sub.pSubscribe('nr:p.*', (message, channel) => got.push(`p:${channel}=${message}`));
    assert.equal(await pub.publish('nr:news', 'one'), 1);
    assert.equal(await pub.publish('nr:p.x', 'two'), 1);
    assert.equal(await pub.publish('nr:none', 'three'), 0);
    await waitFor(() => got.length === 2, { timeoutMs: 5000, intervalMs: 10, message: 'two messages' });
    assert.deepEqual(got, ['nr:news=one', 'p:nr:p.x=two']);
    assert.deepEqual(await pub.pubSubNumSub('nr:news'), { 'nr:news': 1 });
    await sub.unsubscribe('nr:news');
    await sub.pUnsubscribe('nr:p.*');
    assert.equal(await pub.publish('nr:news', 'four'), 0);
  } finally {
    await sub.quit();
    await pub.quit();
  }
});

test('CONFIG SET/GET notify-keyspace-events: Redis flag letters, canonical text, bad letters refused', async () => {
  const r = client();
  const get = async (): Promise<string> => ((await r.config('GET', 'notify-keyspace-events')) as string[])[1];
  assert.equal(await get(), '', 'off by default');
  for (const [set, want] of [
    ['gKE', 'gKE'],
    ['$lshzxeKE', '$lshzxeKE'],
    ['KA', 'AK'],
    ['EA', 'AE'],
    ['KEA', 'AKE'],
    ['Exn', 'xnE'],
    ['Km', 'Km'],
    ['', ''],
  ]) {
    assert.equal(await r.config('SET', 'notify-keyspace-events', set), 'OK');
    assert.equal(await get(), want, `${set} reads back as ${want}`);
  }
  await assert.rejects(
    r.config('SET', 'notify-keyspace-events', 'KQ'),
    /ERR CONFIG SET failed \(possibly related to argument 'notify-keyspace-events'\) - Invalid event class character. Use 'Ag\$lshzxeKEtmdn'./,
  );
  await assert.rejects(r.config('SET', 'maxmemory', '1'), /not supported by kvsql/);
  const limit = ((await r.config('GET', 'client-output-buffer-limit')) as string[])[1];
  assert.equal(limit, 'normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60');
});

test('keyspace notifications: KEA gives __keyspace@0__ and __keyevent@0__ with Redis event names, in order', async () => {
  const r = client();
  const sub = client();
  const got = record(sub);
  await r.config('SET', 'notify-keyspace-events', 'KEA');
  try {
    assert.equal(await sub.psubscribe('*'), 1);
    await r.set('kn:foo', 'bar');
    await r.set('kn:foo', 'baz', 'EX', 100); // set then expire, as SET ... EX in Redis
    await r.expire('kn:foo', 200);
    await r.persist('kn:foo');
    await r.persist('kn:foo'); // nothing: no TTL left to remove
    await r.incr('kn:n');
    await r.incrbyfloat('kn:n', '1.5');
    await r.append('kn:n', '0');
    await r.setrange('kn:n', 0, '9');
    await r.setrange('kn:n', 0, ''); // writes nothing: no event
    await r.del('kn:foo', 'kn:absent'); // one del: only the key that existed
    await r.getdel('kn:n');
    await r.set('kn:nx', '1', 'NX');
    await r.set('kn:nx', '2', 'NX'); // not set: no event
    await r.expire('kn:nx', 0); // a time in the past deletes: del
    await r.get('kn:foo'); // reads notify nothing (m is not in A)
    const want: Array<[string, string]> = [
      ['kn:foo', 'set'],
      ['kn:foo', 'set'],
      ['kn:foo', 'expire'],
      ['kn:foo', 'expire'],
      ['kn:foo', 'persist'],
      ['kn:n', 'incrby'],
      ['kn:n', 'incrbyfloat'],
      ['kn:n', 'append'],
      ['kn:n', 'setrange'],
      ['kn:foo', 'del'],
      ['kn:n', 'del'],
      ['kn:nx', 'set'],
      ['kn:nx', 'del'],
    ];
    await waitFor(() => got.length >= want.length * 2, { timeoutMs: 5000, intervalMs: 10, message: () => `${want.length * 2} pmessages` });
    await sleep(50);
    assert.deepEqual(
      got,
      want.flatMap(([key, ev]) => [
        ['pmessage', '*', `__keyspace@0__:${key}`, ev],
        ['pmessage', '*', `__keyevent@0__:${ev}`, key],
      ]),
    );
  } finally {
    await r.config('SET', 'notify-keyspace-events', '');
  }
});

test('keyspace notifications: classes mask events (KEg, E$, En), exact channels with SUBSCRIBE', async () => {
  const r = client();
  const sub = client();
  const got = record(sub);
  try {
    await r.config('SET', 'notify-keyspace-events', 'KEg');
    await sub.psubscribe('__key*__:*');
    await r.set('km:foo', 'bar'); // $: masked
    await r.expire('km:foo', 1000);
    await r.del('km:foo');
    await waitFor(() => got.length === 4, { timeoutMs: 5000, intervalMs: 10, message: 'expire and del' });
    assert.deepEqual(got, [
      ['pmessage', '__key*__:*', '__keyspace@0__:km:foo', 'expire'],
      ['pmessage', '__key*__:*', '__keyevent@0__:expire', 'km:foo'],
      ['pmessage', '__key*__:*', '__keyspace@0__:km:foo', 'del'],
      ['pmessage', '__key*__:*', '__keyevent@0__:del', 'km:foo'],
    ]);
    await sub.punsubscribe();
    got.length = 0;
    // E$ on exact channels: only key events of the string class.
    await r.config('SET', 'notify-keyspace-events', 'E$');
    await sub.subscribe('__keyevent@0__:set', '__keyevent@0__:del', '__keyspace@0__:km:a');
    await r.set('km:a', '1');
    await r.del('km:a');
    await r.incrby('km:a', 5);
    await r.set('km:b', '1');
    await waitFor(() => got.length === 2, { timeoutMs: 5000, intervalMs: 10, message: 'two set events' });
    await sleep(50);
    assert.deepEqual(got, [
      ['message', '__keyevent@0__:set', 'km:a'],
      ['message', '__keyevent@0__:set', 'km:b'],
    ]);
    got.length = 0;
    // En: new keys only.
    await r.config('SET', 'notify-keyspace-events', 'En');
    await sub.subscribe('__keyevent@0__:new');
    await r.set('km:new1', 'a');
    await r.set('km:new1', 'b');
    await r.incr('km:new2');
    await waitFor(() => got.length === 2, { timeoutMs: 5000, intervalMs: 10, message: 'two new events' });
    await sleep(50);
    assert.deepEqual(got, [
      ['message', '__keyevent@0__:new', 'km:new1'],
      ['message', '__keyevent@0__:new', 'km:new2'],
    ]);
  } finally {
    await r.config('SET', 'notify-keyspace-events', '');
  }
});

test("the KeyspaceSource seam: a source (the future change feed) reports expired and other gateways' writes", async () => {
  // A stand-in for the change feed: the gateway takes its events instead of the interim source.
  const listeners = new Set<(e: KeyspaceEvent) => void>();
  const feed: KeyspaceSource = {
    subscribe(onEvent) {
      listeners.add(onEvent);
      return () => void listeners.delete(onEvent);
    },
  };
  const gw = await store.startAnotherGateway({ redisPort: 0, port: 0, redisNotifyKeyspaceEvents: 'KEA' }, { keyspaceSource: feed });
  const sub = client(gw.redisPort!);
  const w = client(gw.redisPort!);
  const got = record(sub);
  await sub.psubscribe('__keyevent@0__:*');
  for (const l of listeners) l({ type: 'expired', key: Buffer.from('fd:gone') });
  for (const l of listeners) l({ type: 'put', key: Buffer.from('fd:elsewhere') }); // a put without op: set
  await w.set('fd:local', 'x'); // with a source given, the interim one is off: no event from here
  for (const l of listeners) l({ type: 'put', key: Buffer.from('fd:n'), op: 8 /* OP_INCR */, created: true });
  await waitFor(() => got.length === 3, { timeoutMs: 5000, intervalMs: 10, message: 'three events' });
  await sleep(50);
  assert.deepEqual(got, [
    ['pmessage', '__keyevent@0__:*', '__keyevent@0__:expired', 'fd:gone'],
    ['pmessage', '__keyevent@0__:*', '__keyevent@0__:set', 'fd:elsewhere'],
    ['pmessage', '__keyevent@0__:*', '__keyevent@0__:incrby', 'fd:n'],
  ]);
});

test('the PublishBus seam: PUBLISH on one gateway reaches subscribers of another; the count is local, as in Redis Cluster', async () => {
  // An in-memory bus standing in for the feed: each gateway gets the others' messages.
  const members: Array<(ch: Buffer, msg: Buffer, shard: boolean) => void> = [];
  const busFor = (): PublishBus => {
    let mine: ((ch: Buffer, msg: Buffer, shard: boolean) => void) | null = null;
    return {
      publish: (ch, msg, shard) => {
        for (const m of members) if (m !== mine) m(ch, msg, shard);
      },
      subscribe: (on) => {
        mine = on;
        members.push(on);
        return () => void members.splice(members.indexOf(on), 1);
      },
    };
  };
  const g1 = await store.startAnotherGateway({ redisPort: 0, port: 0 }, { publishBus: busFor() });
  const g2 = await store.startAnotherGateway({ redisPort: 0, port: 0 }, { publishBus: busFor() });
  const sub2 = client(g2.redisPort!);
  const got = record(sub2);
  await sub2.subscribe('bus:ch');
  const pub1 = client(g1.redisPort!);
  assert.equal(await pub1.publish('bus:ch', 'across'), 0, "no subscriber on the publisher's gateway");
  await waitFor(() => got.length === 1, { timeoutMs: 5000, intervalMs: 10, message: 'the message on the other gateway' });
  assert.deepEqual(got, [['message', 'bus:ch', 'across']]);
});

test('output-buffer limit: a subscriber that does not read is disconnected past the hard limit; a reading one is not', async () => {
  const gw = await store.startAnotherGateway({ redisPort: 0, port: 0, redisPubsubBufferLimit: [512 * 1024, 0, 0] });
  const p = gw.redisPort!;
  const slow = new Raw(p);
  slow.cmd('SUBSCRIBE', 'flood');
  await slow.expect(push3(2, 'subscribe', 'flood', 1));
  slow.sock.pause(); // stops reading: the kernel buffers fill, then the gateway's
  const fast = client(p);
  let received = 0;
  fast.on('messageBuffer', () => received++);
  await fast.subscribe('flood');
  const pub = client(p);
  const big = Buffer.alloc(64 * 1024, 'x');
  let sent = 0;
  let counts = 2;
  while (counts === 2 && sent < 1024) {
    counts = (await pub.publish('flood', big)) as number;
    sent++;
  }
  assert.equal(counts, 1, `the slow subscriber was cut off (after ${sent} messages of 64 KiB)`);
  assert.ok(sent < 1024);
  assert.deepEqual(await pub.pubsub('NUMSUB', 'flood'), ['flood', 1]);
  await waitFor(() => received === sent, { timeoutMs: 5000, intervalMs: 10, message: 'the reading subscriber got everything' });
  slow.sock.resume();
  await waitFor(() => slow.closed, { timeoutMs: 5000, intervalMs: 10, message: 'the slow connection closed' });
  slow.close();
});

test('output-buffer limit: over the soft limit for longer than its seconds disconnects', async () => {
  const gw = await store.startAnotherGateway({ redisPort: 0, port: 0, redisPubsubBufferLimit: [0, 256 * 1024, 1] });
  const p = gw.redisPort!;
  const slow = new Raw(p);
  slow.cmd('SUBSCRIBE', 'soft');
  await slow.expect(push3(2, 'subscribe', 'soft', 1));
  slow.sock.pause();
  const pub = client(p);
  const big = Buffer.alloc(64 * 1024, 'y');
  // Fill the kernel buffers, then the gateway's past the soft limit: no hard limit, so the cut
  // comes only once the buffer stayed over the soft limit for more than a second.
  const t0 = Date.now();
  while (Date.now() - t0 < 15_000) {
    if ((await pub.publish('soft', big)) === 0) break;
    await sleep(5);
  }
  const cutAfter = Date.now() - t0;
  assert.deepEqual(await pub.pubsub('NUMSUB', 'soft'), ['soft', 0], 'cut off');
  assert.ok(cutAfter >= 1000, `not before the soft seconds passed (cut after ${cutAfter} ms)`);
  slow.close();
});

test('auth: channels follow the key prefix rules; notifications go only to readers of the key; CONFIG SET needs admin', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-pubsub-auth-'));
  const file = path.join(dir, 'tokens.jsonl');
  const rwA = makeToken('rw-a', [{ rights: ['read', 'write'], prefixes: ['a/'] }]);
  const all = makeToken('all', [{ rights: ['read', 'write'], prefixes: [''] }]);
  const admin = makeToken('admin', [{ rights: ['read', 'write', 'admin'], prefixes: [''] }]);
  writeTokenFile(file, [rwA, all, admin]);
  const s = await startTestStore({ mysql: store.mysql, config: { authFile: file, authFailuresPerMinute: 100_000 } });
  const auth = (token: string): Redis => {
    const c = new Redis({ port: s.server.redisPort!, host: '127.0.0.1', password: token, maxRetriesPerRequest: 0, retryStrategy: () => null });
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  };
  try {
    const a = auth(rwA.token);
    await assert.rejects(a.subscribe('b/ch'), /NOPERM KV_ERR_FORBIDDEN/);
    await assert.rejects(a.subscribe('a/ch', 'b/ch'), /NOPERM/, 'refused whole');
    await assert.rejects(a.psubscribe('*'), /NOPERM/);
    await assert.rejects(a.psubscribe('__keyspace@0__:*'), /NOPERM/);
    await assert.rejects(a.call('PUBLISH', 'b/ch', 'x'), /NOPERM/);
    await assert.rejects(a.config('SET', 'notify-keyspace-events', 'KEA'), /NOPERM KV_ERR_FORBIDDEN CONFIG SET needs a token with the admin right/);
    const root = auth(admin.token);
    assert.equal(await root.config('SET', 'notify-keyspace-events', 'KEA'), 'OK');
    const got = record(a);
    assert.equal(await a.subscribe('a/ch', '__keyevent@0__:set'), 2);
    assert.equal(await a.psubscribe('__keyspace@0__:a/*'), 3);
    const w = auth(all.token);
    assert.equal(await w.publish('a/ch', 'hi'), 1);
    await w.set('b/secret', '1'); // not readable by rw-a: no event reaches it
    await w.set('a/open', '1');
    await waitFor(() => got.length === 3, { timeoutMs: 5000, intervalMs: 10, message: 'three deliveries' });
    await sleep(50);
    assert.deepEqual(got, [
      ['message', 'a/ch', 'hi'],
      ['pmessage', '__keyspace@0__:a/*', '__keyspace@0__:a/open', 'set'],
      ['message', '__keyevent@0__:set', 'a/open'],
    ]);
    // RESET forgets the credentials.
    const raw = new Raw(s.server.redisPort!);
    raw.cmd('AUTH', rwA.token);
    await raw.expect('+OK\r\n');
    raw.cmd('RESET');
    await raw.expect('+RESET\r\n');
    raw.cmd('PUBLISH', 'a/ch', 'x');
    await raw.expect('-NOAUTH Authentication required.\r\n');
    raw.close();
  } finally {
    await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
