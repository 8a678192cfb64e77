/**
 * Tests src/gateway/ws-api.ts at the socket level against a real store (real MySQL, real
 * gateway on port 0), with raw frames from the `ws` package rather than the kvsql client: per-
 * request validation replies, frame-level errors, truncated frames, oversized frames, flow
 * control (in-flight limit, send backpressure, a peer that never reads), replies for closed
 * sockets, and graceful shutdown.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { Packr } from 'msgpackr';
import WebSocket from 'ws';
import { decodeReplyFrame } from '../../src/protocol/ws-client-codec';
import type { WireReply } from '../../src/protocol/ws-format';
import type { Server } from '../../src/gateway/server';
import { startTestStore, type TestStore } from '../helpers/store';
import { holdRowLock } from '../helpers/row-lock';
import { sleep, waitFor } from '../helpers/wait';

const MAX_VALUE = 64 * 1024;
const FRAME_LIMIT = MAX_VALUE + 64 * 1024;
const packr = new Packr({ useRecords: false, moreTypes: false });
const pack = (v: unknown): Buffer => Buffer.from(packr.pack(v));

let store!: TestStore;
before(async () => {
  // No queue-wait bound and a long op deadline: the backpressure tests send thousands of large
  // GETs at once and count on every reply being the 60 KB value; on a loaded machine both bounds
  // would (correctly) answer part of such a burst with small 503s, which do not fill the buffers.
  store = await startTestStore({ config: { maxValueBytes: MAX_VALUE, queueWaitMs: 0, opDeadlineMs: 60_000 } });
});
after(() => store?.close());

/** A raw WebSocket that collects every reply it reads. */
class Raw {
  readonly replies: WireReply[] = [];
  closed: { code: number; reason: string } | null = null;
  private wake: (() => void) | null = null;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      this.replies.push(...decodeReplyFrame(data));
      this.wake?.();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake?.();
    });
    ws.on('error', () => undefined);
  }

  static async open(port: number): Promise<Raw> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws`);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    return new Raw(ws);
  }

  send(frame: unknown[] | Buffer): void {
    this.ws.send(Buffer.isBuffer(frame) ? frame : pack(frame));
  }

  /** Waits until `pred` holds (checked on every reply and on close). */
  async until(pred: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; have ${this.replies.length} replies, closed=${JSON.stringify(this.closed)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  /** Waits for `n` more replies than were taken so far and returns them by id. */
  private taken = 0;
  async take(n: number): Promise<Map<number, WireReply>> {
    const want = this.taken + n;
    await this.until(() => this.replies.length >= want, `${n} replies`);
    const got = this.replies.slice(this.taken, want);
    this.taken = want;
    const byId = new Map<number, WireReply>();
    for (const r of got) byId.set(r[0], r);
    return byId;
  }

  async waitClosed(timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
    await this.until(() => this.closed !== null, 'close', timeoutMs);
    return this.closed!;
  }

  /** Stops reading from the TCP socket (the kernel buffers fill, then the server's). */
  pauseReading(): void {
    (this.ws as unknown as { _socket: Socket })._socket.pause();
  }

  resumeReading(): void {
    (this.ws as unknown as { _socket: Socket })._socket.resume();
  }

  close(): void {
    this.ws.terminate();
  }
}

const err = (code: string, message: RegExp | string) => ({ code, message });

function assertError(r: WireReply | undefined, status: number, code: string, message: RegExp): void {
  assert.ok(r, `a reply for ${code}`);
  assert.equal(r[1], status, JSON.stringify(r));
  const e = r[2] as { code: string; message: string };
  assert.equal(e.code, code);
  assert.match(e.message, message);
  assert.equal(r.length, 3);
}

async function metric(base: string, line: RegExp): Promise<number | null> {
  const text = await (await fetch(`${base}/metrics`)).text();
  for (const l of text.split('\n')) {
    const m = line.exec(l);
    if (m) return Number(l.slice(l.lastIndexOf(' ') + 1));
  }
  return null;
}

test('every op replies in its wire shape, and bad requests get their own errors while the rest run', async () => {
  const s = await Raw.open(store.port);
  after(() => s.close());
  s.send([
    [1, 2, 'ws-a', Buffer.from([0, 1, 2, 255]), { ttl: 60_000 }],
    [2, 2, Buffer.from('ws-b'), 'text value'],
    [3, 9, 'ws-a'],
    [4, 2, 'ws-a', 'v', { ttl: 0 }],
    [5, 1, 'k'.repeat(1025)],
    [6, 1, ''],
    [7, 2, 'ws-c', Buffer.alloc(MAX_VALUE + 1)],
    [8, 4, 'ws-a', -3],
  ]);
  const first = await s.take(8);
  const put1 = first.get(1)!;
  assert.equal(put1[1], 201);
  assert.ok(Number.isSafeInteger(put1[2]) && (put1[2] as number) > 0, 'version');
  assert.ok(Math.abs((put1[3] as number) - Date.now() - 60_000) < 5_000, 'expiresAt is about now + ttl');
  assert.deepEqual(first.get(2)!.slice(1, 2), [201]);
  assert.equal(first.get(2)![3], null, 'no ttl: expiresAt null');
  assertError(
    first.get(3),
    400,
    'KV_ERR_UNKNOWN_OP',
    /op must be one of 1 get, 2 put, 3 del, 4 expire, 5 persist, 6 ttl, 8 incr, 10 getdel, 12 list, 13 txn, 15 watch, 16 unwatch; got int 9/,
  );
  assertError(first.get(4), 400, 'KV_ERR_BAD_TTL', /ttl must be positive, got int 0/);
  assertError(first.get(5), 414, 'KV_ERR_KEY_TOO_LONG', /key is 1025 bytes, the limit is 1024/);
  assertError(first.get(6), 400, 'KV_ERR_BAD_KEY', /key must not be empty/);
  assertError(first.get(7), 413, 'KV_ERR_VALUE_TOO_LARGE', new RegExp(`value is ${MAX_VALUE + 1} bytes, the limit is ${MAX_VALUE}`));
  assertError(first.get(8), 400, 'KV_ERR_BAD_TTL', /ttl must be positive/);

  const version = put1[2] as number;
  s.send([
    [10, 1, 'ws-a'],
    [11, 6, 'ws-a'],
    [12, 2, 'ws-a', 'x', { ifVersion: version + 1000 }],
    [13, 2, 'ws-a', 'x', { ifAbsent: true }],
    [14, 3, 'ws-a', { ifVersion: version + 1000 }],
    [15, 1, 'ws-missing'],
    [16, 3, 'ws-missing'],
    [17, 4, 'ws-missing', 1000],
    [18, 5, 'ws-missing'],
    [19, 6, 'ws-missing'],
  ]);
  const second = await s.take(10);
  const get = second.get(10)!;
  assert.equal(get[1], 200);
  assert.ok(Buffer.isBuffer(get[2]), 'the value is bin');
  assert.deepEqual([...(get[2] as Buffer)], [0, 1, 2, 255]);
  assert.deepEqual(get.slice(3), [version, put1[3]]);
  const ttl = second.get(11)!;
  assert.equal(ttl[1], 200);
  assert.ok((ttl[2] as number) > 50_000 && (ttl[2] as number) <= 60_000, `ttl left ${ttl[2]} ms`);
  assert.equal(ttl[3], put1[3]);
  for (const id of [12, 13, 14]) assert.deepEqual(second.get(id), [id, 412]);
  for (const id of [15, 16, 17, 18, 19]) assert.deepEqual(second.get(id), [id, 404]);

  s.send([
    [20, 2, 'ws-a', 'y', { keepTtl: true, ifVersion: version }],
    [21, 5, 'ws-a'],
    [22, 6, 'ws-a'],
    [23, 4, 'ws-a', 30_000],
    [24, 3, 'ws-a'],
    [25, 1, 'ws-a'],
  ]);
  const third = await s.take(6);
  // Ops on one key run in the order sent (the actor's per-key scheduler).
  assert.equal(third.get(20)![1], 200, 'replaced');
  assert.equal(third.get(20)![3], put1[3], 'keepTtl kept the expiry');
  assert.deepEqual(third.get(21), [21, 200]);
  assert.deepEqual(third.get(22), [22, 200, null, null]);
  assert.equal(third.get(23)![1], 200);
  assert.ok(Math.abs((third.get(23)![2] as number) - Date.now() - 30_000) < 5_000);
  assert.deepEqual(third.get(24), [24, 204]);
  assert.deepEqual(third.get(25), [25, 404]);
});

test('put with ifExists writes only over a live key, as HTTP If-Match: * does (412 when absent)', async () => {
  const s = await Raw.open(store.port);
  after(() => s.close());
  s.send([[1, 2, 'ws-xx', 'first', { ifExists: true }]]);
  assert.deepEqual((await s.take(1)).get(1), [1, 412], 'absent: not written');
  s.send([[2, 1, 'ws-xx']]);
  assert.deepEqual((await s.take(1)).get(2), [2, 404]);
  s.send([[3, 2, 'ws-xx', 'v1', { ttl: 60_000 }]]);
  const created = (await s.take(1)).get(3)!;
  assert.equal(created[1], 201);
  s.send([
    [4, 2, 'ws-xx', 'v2', { ifExists: true, keepTtl: true }],
    [5, 1, 'ws-xx'],
    [6, 2, 'ws-xx', 'v3', { ifExists: true, ifAbsent: true }],
  ]);
  const r = await s.take(3);
  assert.equal(r.get(4)![1], 200, 'replaced');
  assert.ok((r.get(4)![2] as number) > (created[2] as number), 'a new version');
  assert.equal(r.get(4)![3], created[3], 'keepTtl kept the expiry');
  assert.deepEqual(Buffer.from(r.get(5)![2] as Buffer).toString(), 'v2');
  assertError(r.get(6), 400, 'KV_ERR_BAD_REQUEST', /^send ifAbsent or ifExists, not both$/);
});

test('frames that cannot be read are answered under id 0 and the connection keeps serving', async () => {
  const s = await Raw.open(store.port);
  after(() => s.close());
  const frames: Array<[Buffer | string, RegExp]> = [
    [Buffer.from([0xc1, 0x00]), /frame is not valid msgpack: byte 0xc1 at offset 0 is not valid msgpack/],
    [pack({ get: 'k' }), /frame must be a msgpack array of requests, got map/],
    [pack([['x', 1, 'k']]), /request 0 of the frame: id must be an integer in 1..2\^53-1, got str "x"/],
    [pack([42]), /request 0 of the frame must be an array \[id, op, key, \.\.\.\], got int 42/],
    ['[[1,1,"k"]]', /frames must be binary \(msgpack\); got a text frame/],
  ];
  for (const [frame, message] of frames) {
    s.ws.send(frame);
    const got = await s.take(1);
    assertError(got.get(0), 400, 'KV_ERR_BAD_FRAME', message);
  }
  s.send([[7, 1, 'ws-frame-errors']]);
  assert.deepEqual((await s.take(1)).get(7), [7, 404]);
  assert.equal(s.closed, null);
});

test('truncated frames (a sample of cut lengths) are refused cleanly; the socket keeps serving', async () => {
  const s = await Raw.open(store.port);
  after(() => s.close());
  const fixture = pack([
    [1, 2, 'ws-trunc', Buffer.alloc(500, 9), { ttl: 120_000, ifAbsent: true }],
    [2, 3, 'ws-trunc', { ifVersion: 12 }],
    [3, 4, 'ключ', 5000],
  ]);
  const cuts = new Set<number>([0, 1, 2, 3, fixture.length - 1]);
  for (let cut = 5; cut < fixture.length; cut += 37) cuts.add(cut);
  for (const cut of cuts) {
    s.send(fixture.subarray(0, cut));
    const got = await s.take(1);
    assertError(got.get(0), 400, 'KV_ERR_BAD_FRAME', /^frame is not valid msgpack: frame is (truncated|empty)/);
  }
  s.send(fixture);
  const whole = await s.take(3);
  assert.equal(whole.get(1)![1], 201);
  assert.deepEqual(whole.get(2), [2, 412]);
  assert.deepEqual(whole.get(3), [3, 404]);
});

test('an oversized frame closes that connection with 1009; other connections are unaffected', async () => {
  const other = await Raw.open(store.port);
  after(() => other.close());
  const big = await Raw.open(store.port);
  big.send([[1, 2, 'ws-big', Buffer.alloc(FRAME_LIMIT)]]);
  const closed = await big.waitClosed();
  assert.equal(closed.code, 1009);
  const m = /^frame is (\d+) bytes, the limit is (\d+)$/.exec(closed.reason);
  assert.ok(m, closed.reason);
  assert.ok(Number(m[1]) > FRAME_LIMIT && Number(m[2]) === FRAME_LIMIT);
  assert.equal(big.replies.length, 0);

  // Beyond uWS's own limit (twice ours) the connection is dropped without a close frame.
  const huge = await Raw.open(store.port);
  huge.send([[1, 2, 'ws-big', Buffer.alloc(2 * FRAME_LIMIT + 1)]]);
  assert.equal((await huge.waitClosed()).code, 1006);

  // A frame at the limit is read (and its too-large value refused per request).
  other.send([[1, 2, 'ws-big', Buffer.alloc(FRAME_LIMIT - 64)]]);
  assertError((await other.take(1)).get(1), 413, 'KV_ERR_VALUE_TOO_LARGE', /value is/);
  other.send([[2, 1, 'ws-big']]);
  assert.deepEqual((await other.take(1)).get(2), [2, 404]);
});

test('ops past the in-flight limit are answered KV_ERR_BUSY at once', async () => {
  const gw = await store.startAnotherGateway({ wsMaxInflight: 8 });
  const s = await Raw.open(gw.port);
  after(() => s.close());
  s.send(Array.from({ length: 50 }, (_, i) => [i + 1, 1, `ws-busy-${i}`]));
  const got = await s.take(50);
  const busy = [...got.values()].filter((r) => r[1] === 503);
  assert.equal(busy.length, 42);
  for (const r of busy) assertError(r, 503, 'KV_ERR_BUSY', /^8 operations are in flight on this connection \(the limit\); wait for replies$/);
  for (let id = 1; id <= 8; id++) assert.deepEqual(got.get(id), [id, 404], 'the first 8 ran');
  // Once answered, the window is free again.
  s.send(Array.from({ length: 8 }, (_, i) => [100 + i, 1, 'ws-busy-x']));
  const again = await s.take(8);
  assert.ok([...again.values()].every((r) => r[1] === 404));
});

test('a peer that stops reading gets KV_ERR_BUSY; one that never reads is closed', async () => {
  const value = Buffer.alloc(60_000, 7);
  const writer = await Raw.open(store.port);
  after(() => writer.close());
  writer.send([[1, 2, 'ws-bp', value]]);
  await writer.take(1);

  const gets = (from: number, n: number) => Array.from({ length: n }, (_, i) => [from + i, 1, 'ws-bp']);
  const gets200 = () => metric(store.base, /^kvsql_requests_total\{api="ws",op="get",status="200"\}/).then((v) => v ?? 0);

  // 700 replies of 60 KB (42 MB) fill the kernel's buffers and leave well over 4 MiB in the
  // server's: the next frame's ops are refused.
  const slow = await Raw.open(store.port);
  after(() => slow.close());
  slow.pauseReading();
  const before = await gets200();
  slow.send(gets(1, 700));
  await waitFor(async () => (await gets200()) >= before + 700, { message: 'the 700 gets to be answered' });
  await sleep(50); // the flush after the last reply
  slow.send(gets(1000, 10));
  await sleep(100);
  slow.resumeReading();
  const got = await slow.take(710);
  for (let id = 1; id <= 700; id++) assert.equal(got.get(id)![1], 200);
  for (let id = 1000; id < 1010; id++) {
    assertError(got.get(id), 503, 'KV_ERR_BUSY', /bytes of replies wait to be sent on this connection; read them before sending more/);
  }

  // 3 x 700 replies (126 MB) to a peer that never reads pass the 64 MiB send-buffer limit.
  const connections = () => metric(store.base, /^kvsql_websocket_connections /).then((v) => v ?? -1);
  const open = await connections();
  const deaf = await Raw.open(store.port);
  deaf.pauseReading();
  deaf.send(gets(1, 700));
  deaf.send(gets(701, 700));
  deaf.send(gets(1401, 700));
  await waitFor(async () => (await connections()) === open, { message: 'the server to close the deaf connection' });
  deaf.resumeReading();
  await deaf.waitClosed();
  assert.ok(deaf.replies.length < 2100, 'not everything was delivered');

  writer.send([[2, 3, 'ws-bp']]);
  assert.deepEqual((await writer.take(1)).get(2), [2, 204], 'the server still serves others');
});

test('replies for a socket closed mid-flight are dropped; metrics and shutdown accounting stay right', async () => {
  const gw: Server = await store.startAnotherGateway({ shutdownTimeoutMs: 20_000 });
  const base = `http://127.0.0.1:${gw.port}`;
  const gone = await Raw.open(gw.port);
  gone.send(Array.from({ length: 500 }, (_, i) => [i + 1, 2, `ws-gone-${i}`, 'v']));
  gone.close(); // before any reply can come back
  const s = await Raw.open(gw.port);
  after(() => s.close());
  await waitFor(async () => ((await metric(base, /^kvsql_requests_total\{api="ws",op="put",status="201"\}/)) ?? 0) === 500, { message: 'the 500 puts' });
  s.send([[1, 1, 'ws-gone-499']]);
  const r = (await s.take(1)).get(1)!;
  assert.equal(r[1], 200, 'the writes of the closed socket happened');
  assert.equal(await metric(base, /^kvsql_websocket_connections /), 1);
  // If a dropped reply were still counted in flight, close() would wait 20 s for it.
  const started = Date.now();
  await gw.close();
  assert.ok(Date.now() - started < 5000, `shutdown took ${Date.now() - started} ms`);
  assert.equal((await s.waitClosed()).code, 1001);
});

test('graceful shutdown answers every op it read, refuses ops read during it, then closes sockets with 1001 and stops listening', async () => {
  const gw = await store.startAnotherGateway();
  // One op held in MySQL by a row lock keeps the shutdown waiting, so the ops sent during it
  // surely arrive while the socket is still open.
  assert.equal((await fetch(`http://127.0.0.1:${gw.port}/v1/kv/ws-shut-held`, { method: 'PUT', body: 'x' })).status, 201);
  const lock = await holdRowLock(store, 'ws-shut-held');
  after(() => lock.release());
  const s = await Raw.open(gw.port);
  s.send([...Array.from({ length: 2000 }, (_, i) => [i + 1, 2, `ws-shut-${i}`, 'v']), [2001, 2, 'ws-shut-held', 'y']]);
  await s.until(() => s.replies.length > 0, 'the first reply'); // the frame was read
  const closing = gw.close();
  s.send(Array.from({ length: 10 }, (_, i) => [5000 + i, 1, 'ws-shut-0']));
  await s.until(() => s.replies.filter((r) => r[0] >= 5000).length === 10, 'the 10 ops sent during the shutdown');
  assert.equal(s.closed, null, 'the socket closed while an op was still in flight');
  await lock.release();
  const closed = await s.waitClosed();
  await closing;
  assert.equal(closed.code, 1001);
  assert.equal(closed.reason, 'server shutting down');
  const byId = new Map(s.replies.map((r) => [r[0], r]));
  // Every op read before the shutdown was finished and answered...
  for (let id = 1; id <= 2000; id++) assert.equal(byId.get(id)?.[1], 201, `put ${id}`);
  assert.equal(byId.get(2001)?.[1], 200, 'the held put');
  // ...and every op read during it was refused.
  const late = s.replies.filter((r) => r[0] >= 5000);
  assert.equal(late.length, 10);
  for (const r of late) assert.deepEqual(r.slice(1), [503, err('KV_ERR_SHUTTING_DOWN', 'server is shutting down')]);
  await assert.rejects(Raw.open(gw.port), /ECONNREFUSED/);
});
