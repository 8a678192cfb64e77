/**
 * Tests the client's wire behaviour against a scripted server on a real socket (the `ws`
 * package's server on port 0, speaking the protocol through ws-requests and ws-replies): one
 * frame per tick, the in-flight window, frame size cuts, timeouts of sent and of queued ops, and
 * what a frame-level error from the server does. The store itself is covered by client.test.ts.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { createClient, KvClientError } from '../../src/client';
import type { WireReply } from '../../src/protocol/ws-format';
import { ReplyFrameEncoder } from '../../src/protocol/ws-replies';
import { decodeFrame, type RequestSink } from '../../src/protocol/ws-requests';
import { sleep, waitFor } from '../helpers/wait';

interface Req {
  id: number;
  op: number;
  key: string;
  value: string | null;
}

/** A server that records each frame's requests and answers only when told to. */
class ScriptedServer {
  readonly frames: Req[][] = [];
  readonly sockets: WebSocket[] = [];
  private readonly encoder = new ReplyFrameEncoder();
  private constructor(readonly wss: WebSocketServer) {
    wss.on('connection', (ws) => {
      this.sockets.push(ws);
      ws.on('message', (data: Buffer) => {
        const frame: Req[] = [];
        const sink: RequestSink = {
          request: (id, op, key, value) => frame.push({ id, op, key: Buffer.from(key).toString(), value: value && Buffer.from(value).toString() }),
          list: (id, q) => frame.push({ id, op: 12, key: Buffer.from(q.prefix).toString(), value: null }),
          txn: (id, p) => frame.push({ id, op: 13, key: p[1].map((o) => Buffer.from(o[1]).toString()).join(','), value: null }),
          reject: (id, _op, err) => assert.fail(`the client sent a bad request ${id}: ${err.message}`),
          frameError: (message) => assert.fail(`the client sent a bad frame: ${message}`),
        };
        decodeFrame(data, { maxKeyBytes: 1024, maxValueBytes: 1 << 20 }, sink);
        this.frames.push(frame);
      });
    });
  }

  static async start(): Promise<ScriptedServer> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, path: '/v1/ws' });
    await new Promise((resolve) => wss.once('listening', resolve));
    const s = new ScriptedServer(wss);
    after(() => s.close());
    return s;
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.wss.address() as AddressInfo).port}/v1/ws`;
  }

  get requests(): Req[] {
    return this.frames.flat();
  }

  reply(replies: WireReply[], socket = this.sockets[this.sockets.length - 1]): void {
    socket.send(Buffer.from(this.encoder.encode(replies, 0, Infinity)));
  }

  close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    return new Promise((resolve) => this.wss.close(() => resolve()));
  }
}

const settle = <T>(p: Promise<T>) =>
  p.then(
    (v) => ({ ok: true as const, v }),
    (e: KvClientError) => ({ ok: false as const, e }),
  );

test('ops issued in one tick go out in one frame, queued until the connection opens; replies match by id in any order', async () => {
  const server = await ScriptedServer.start();
  const client = createClient(server.url);
  after(() => client.close());
  const calls = Array.from({ length: 10 }, (_, i) => client.get(`key-${i}`));
  await waitFor(() => server.frames.length === 1, { timeoutMs: 5000, intervalMs: 5, message: 'one frame' });
  const frame = server.frames[0];
  assert.deepEqual(
    frame.map((r) => r.key),
    calls.map((_, i) => `key-${i}`),
  );
  assert.equal(new Set(frame.map((r) => r.id)).size, 10, 'distinct ids');
  assert.ok(frame.every((r) => r.op === 1 && r.id > 0));
  // Answer in reverse, odd keys found.
  server.reply(
    frame
      .slice()
      .reverse()
      .map((r): WireReply => {
        const i = Number(r.key.slice(4));
        return i % 2 === 1 ? [r.id, 200, Buffer.from(`value of ${r.key}`), i, null] : [r.id, 404];
      }),
  );
  const results = await Promise.all(calls);
  results.forEach((r, i) => {
    if (i % 2 === 0) assert.equal(r, null);
    else assert.deepEqual(r, { value: Buffer.from(`value of key-${i}`), version: i, expiresAt: null });
  });
  await sleep(20);
  assert.equal(server.frames.length, 1);
});

test('at most maxInflight ops are on the wire; the rest wait in the client', async () => {
  const server = await ScriptedServer.start();
  const client = createClient(server.url, { maxInflight: 4 });
  after(() => client.close());
  const calls = Array.from({ length: 10 }, (_, i) => client.del(`k${i}`));
  await waitFor(() => server.requests.length === 4, { timeoutMs: 5000, intervalMs: 5, message: '4 requests' });
  await sleep(30);
  assert.equal(server.requests.length, 4, 'no more than the window');
  assert.equal(client.inflight, 4);
  assert.equal(client.queued, 6);
  server.reply(server.requests.slice(0, 3).map((r): WireReply => [r.id, 204]));
  await waitFor(() => server.requests.length === 7, { timeoutMs: 5000, intervalMs: 5, message: '3 more' });
  server.reply(server.requests.slice(3).map((r): WireReply => [r.id, 404]));
  await waitFor(() => server.requests.length === 10, { timeoutMs: 5000, intervalMs: 5, message: 'the rest' });
  server.reply(server.requests.slice(7).map((r): WireReply => [r.id, 204]));
  assert.deepEqual(await Promise.all(calls), [true, true, true, false, false, false, false, true, true, true]);
  assert.deepEqual(
    server.requests.map((r) => r.key),
    calls.map((_, i) => `k${i}`),
    'sent in issue order',
  );
});

test('frames of several ops stay under maxFrameBytes; a bigger op goes alone', async () => {
  const server = await ScriptedServer.start();
  const client = createClient(server.url, { maxFrameBytes: 2000 });
  after(() => client.close());
  const calls = [...Array.from({ length: 20 }, (_, i) => client.put(`k${i}`, 'v'.repeat(300))), client.put('big', 'b'.repeat(5000))];
  await waitFor(() => server.requests.length === 21, { timeoutMs: 5000, intervalMs: 5, message: 'all requests' });
  assert.ok(server.frames.length >= 5, `${server.frames.length} frames`);
  for (const f of server.frames) {
    const bytes = f.reduce((n, r) => n + r.key.length + (r.value?.length ?? 0), 0);
    assert.ok(f.length === 1 || bytes <= 2000, `a frame of ${f.length} ops and ${bytes} bytes`);
  }
  assert.equal(server.frames.at(-1)!.length, 1);
  server.reply(server.requests.map((r, i): WireReply => [r.id, 201, i + 1, null]));
  const results = await Promise.all(calls);
  assert.ok(results.every((r, i) => r.created && r.version === i + 1));
});

test('a sent op that gets no reply times out, and keeps its window slot until the reply comes', async () => {
  const server = await ScriptedServer.start();
  const client = createClient(server.url, { maxInflight: 1, timeoutMs: 150 });
  after(() => client.close());
  const started = Date.now();
  const first = settle(client.put('slow', 'v'));
  await waitFor(() => server.requests.length === 1, { timeoutMs: 5000, intervalMs: 5, message: 'the put' });
  const r = await first;
  assert.ok(!r.ok);
  assert.equal(r.e.code, 'KV_ERR_TIMEOUT');
  assert.equal(r.e.status, 504);
  assert.match(r.e.message, /^put: no reply within 150 ms; the operation may or may not have been applied$/);
  assert.ok(Date.now() - started >= 140);

  const second = client.get('next');
  await sleep(50);
  assert.equal(server.requests.length, 1, 'the server still counts the timed-out put: the next op waits');
  server.reply([[server.requests[0].id, 201, 1, null]]); // the late reply frees the slot
  await waitFor(() => server.requests.length === 2, { timeoutMs: 5000, intervalMs: 5, message: 'the get' });
  server.reply([[server.requests[1].id, 404]]);
  assert.equal(await second, null);
});

test('a queued op times out with why it was not sent', async () => {
  const server = await ScriptedServer.start();
  const url = server.url;
  await server.close(); // nothing listens on the port now
  const client = createClient(url, { timeoutMs: 200, reconnectMinDelayMs: 20, reconnectMaxDelayMs: 50 });
  after(() => client.close());
  const r = await settle(client.get('k'));
  assert.ok(!r.ok);
  assert.equal(r.e.code, 'KV_ERR_TIMEOUT');
  assert.match(r.e.message, new RegExp(`^get: not sent within 200 ms \\(not connected to ${url.replace(/[/.]/g, '\\$&')}: connect ECONNREFUSED`));
  assert.equal(client.queued, 0);
});

test('a frame-level error from the server fails what is in flight (never resent) and the client reconnects', async () => {
  const server = await ScriptedServer.start();
  const client = createClient(server.url, { reconnectMinDelayMs: 10 });
  after(() => client.close());
  const calls = Array.from({ length: 3 }, (_, i) => settle(client.put(`k${i}`, 'v')));
  await waitFor(() => server.requests.length === 3, { timeoutMs: 5000, intervalMs: 5, message: 'the puts' });
  server.reply([[0, 400, { code: 'KV_ERR_BAD_FRAME', message: 'request 1 of the frame: nonsense' }]]);
  for (const r of await Promise.all(calls)) {
    assert.ok(!r.ok);
    assert.equal(r.e.code, 'KV_ERR_CONNECTION_LOST');
    assert.equal(r.e.status, 500);
    assert.match(
      r.e.message,
      /^put: the server rejected a frame: request 1 of the frame: nonsense with the operation in flight; it may or may not have been applied$/,
    );
  }
  await waitFor(() => server.sockets.length === 2, { timeoutMs: 5000, intervalMs: 5, message: 'a new connection' });
  const later = client.get('k0');
  await waitFor(() => server.requests.length === 4, { timeoutMs: 5000, intervalMs: 5, message: 'the get on the new connection' });
  assert.equal(server.requests.filter((r) => r.op === 2).length, 3, 'the puts were not resent');
  server.reply([[server.requests[3].id, 404]]);
  assert.equal(await later, null);
});

test('replies the client cannot read drop the connection', async () => {
  const server = await ScriptedServer.start();
  const client = createClient(server.url, { reconnectMinDelayMs: 10 });
  after(() => client.close());
  const call = settle(client.get('k'));
  await waitFor(() => server.requests.length === 1, { timeoutMs: 5000, intervalMs: 5, message: 'the get' });
  server.sockets[0].send(Buffer.from([0x93, 0x01]));
  const r = await call;
  assert.ok(!r.ok);
  assert.equal(r.e.code, 'KV_ERR_CONNECTION_LOST');
  assert.match(r.e.message, /the server sent an unreadable frame: frame is truncated/);
  // A reply that does not fit its op is that op's error, and the connection stays.
  const odd = settle(client.del('k'));
  await waitFor(() => server.sockets.length === 2 && server.requests.length === 2, { timeoutMs: 5000, intervalMs: 5, message: 'the del' });
  server.reply([[server.requests[1].id, 200, 'what']]);
  const o = await odd;
  assert.ok(!o.ok);
  assert.equal(o.e.code, 'KV_ERR_BAD_FRAME');
  assert.match(o.e.message, /^del: unexpected reply with status 200$/);
  assert.equal(client.connected, true);
});
