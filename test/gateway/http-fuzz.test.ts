/**
 * Fuzzes the gateway over raw sockets against a real store, with a seeded generator
 * (test/helpers/seeded; replay with KVSQL_FUZZ_SEED=<seed>): HTTP requests with duplicate, huge,
 * many and malformed headers, Content-Length with chunked, bad percent-encoding, bytes that are
 * not UTF-8 in paths and headers, odd methods and versions; and WebSocket frames with reserved
 * opcodes, reserved bits, no mask, fragmentation done right and wrong, oversized control frames.
 *
 * Every request gets a 4xx (or a 2xx where it is a valid read), or a clean close, or, where
 * uWebSockets.js answers nothing (HTTP/1.0, a malformed request line or header block, too many
 * headers), silence until uWS's idle timeout closes the socket (pinned below). Never a 5xx, never
 * a WebSocket close 1011, never a crash, and nothing is written: every write the generator can form
 * is conditional on version 0 (which no key ever has) or targets an absent key, and the shards'
 * rows are counted at the end.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Packr } from 'msgpackr';
import { startHttpTestStore, closeHttpTestStore, type TestStore } from '../helpers/store';
import { HttpClient } from '../helpers/http-client';
import { Rng, fuzzSeed } from '../helpers/seeded';

const SEED = fuzzSeed(0x4854_5450);
const packr = new Packr({ useRecords: false, moreTypes: false });

let store: TestStore;
let client: HttpClient;
before(async () => ({ store, http: client } = await startHttpTestStore({ shards: 2 })));
after(() => closeHttpTestStore({ store, http: client }));

interface Exchange {
  data: Buffer;
  /** How the socket ended: the server closed (FIN or RST), or we gave up waiting. */
  end: 'closed' | 'reset' | 'timeout';
  ms: number;
}

/**
 * Sends `chunks` on a fresh socket (one write each) and collects what comes back until it ends.
 * `upgrade`: send the first chunk (the WebSocket handshake), the rest only after the server's first
 * bytes (the 101): checked on uWS 20.30, frames that arrive in the same read as the upgrade
 * request are discarded, and the connection then sits idle.
 */
function exchange(chunks: Buffer[], timeoutMs: number, upgrade = false): Promise<Exchange> {
  return new Promise((resolve) => {
    const started = Date.now();
    const parts: Buffer[] = [];
    let end: Exchange['end'] = 'closed';
    let rest = upgrade ? chunks.slice(1) : [];
    const socket = net.connect(store.port, '127.0.0.1', () => {
      for (const c of upgrade ? chunks.slice(0, 1) : chunks) socket.write(c);
    });
    const timer = setTimeout(() => {
      end = 'timeout';
      socket.destroy();
    }, timeoutMs);
    socket.on('data', (c) => {
      parts.push(c);
      for (const x of rest) socket.write(x);
      rest = [];
    });
    socket.on('error', () => (end = end === 'timeout' ? end : 'reset'));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(parts), end, ms: Date.now() - started });
    });
  });
}

/** Statuses of the complete HTTP replies in `data`; fails on a partial or unparsable reply. */
function statuses(data: Buffer, where: string): number[] {
  const out: number[] = [];
  let rest = data.toString('latin1');
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    assert.ok(end > 0, `${where}: a partial reply: ${JSON.stringify(rest.slice(0, 200))}`);
    const head = rest.slice(0, end);
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(head);
    assert.ok(m, `${where}: not a status line: ${JSON.stringify(head.slice(0, 80))}`);
    if (m[1] === '100') {
      rest = rest.slice(end + 4); // an interim 100 Continue (uWS answers Expect itself): no body
      continue;
    }
    const length = /\r\ncontent-length: (\d+)/i.exec(head);
    const bodyLength = length ? Number(length[1]) : 0;
    assert.ok(rest.length >= end + 4 + bodyLength, `${where}: a truncated body`);
    out.push(Number(m[1]));
    rest = rest.slice(end + 4 + bodyLength);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

const BAD_KEYS = ['%zz', '%', 'a%4', '%ff%fe', 'k'.repeat(1100), 'sp ace', '', 'a%2', '%%41'];
const ODD_KEYS = ['fz%2Fa', 'caf%C3%A9', '%00', '..%2F..', 'fz/deep/path', 'caf\u00e9'];

/**
 * A request that is valid except for 0-2 mutations (so most reach the API's own checks, and the
 * rest probe uWS's parser). Every write it could become is conditional on version 0, which no key
 * ever has, or targets an absent key: nothing can be written.
 */
function genRequest(r: Rng): { bytes: Buffer; what: string } {
  const route = r.pick(['/v1/kv/', '/v1/kv/', '/v1/kv/', '/v1/ttl/', '/v1/ttl/', '/healthz', '/v1/slots', '/nowhere/', '/v1/kv']);
  let method =
    route === '/v1/ttl/'
      ? r.pick(['GET', 'PUT', 'DELETE'])
      : route === '/v1/kv/'
        ? r.pick(['GET', 'PUT', 'PUT', 'DELETE'])
        : r.pick(['GET', 'PUT', 'DELETE', 'POST']);
  let key: Buffer = Buffer.from(route.endsWith('/') ? r.pick(['fz', 'fz-1', 'fz-2', ...ODD_KEYS]) : '', 'latin1');
  let query = route === '/v1/ttl/' && method === 'PUT' ? '?ttl=5' : method === 'PUT' && r.bool(0.3) ? r.pick(['?ttl=5', '?keepttl=true', '?ttl=0.25']) : '';
  let version = 'HTTP/1.1';
  let body = method === 'PUT' && route === '/v1/kv/' ? r.bytes(r.int(32)) : Buffer.alloc(0);
  const headers: Buffer[] = [Buffer.from('Host: fuzz'), Buffer.from('If-Match: "0"'), Buffer.from('Connection: close')];
  let framing: string[] = body.length > 0 || r.bool(0.2) ? [`Content-Length: ${body.length}`] : [];
  let chunked = false;
  for (let m = r.pick([0, 1, 1, 1, 2, 2]); m > 0; m--) {
    switch (r.int(16)) {
      case 0:
        key = Buffer.from(r.pick(BAD_KEYS), 'latin1');
        break;
      case 1:
        key = Buffer.concat([Buffer.from('fz-'), r.bytes(1 + r.int(6)).map((b) => (b < 0x21 ? 0x41 + (b % 26) : b))]);
        break; // raw bytes, often not UTF-8
      case 2:
        query = r.pick(['?ttl=%zz', '?keepttl=maybe', '?ttl=1&keepttl=true', '?x=%', '?ttl=-1', '?ttl=0.0001', '?%ff=1', '?ttl=NaN', '?ttl']);
        break;
      case 3:
        framing = [`Content-Length: ${body.length}`, `Content-Length: ${body.length + r.int(3)}`];
        break;
      case 4:
        framing = [`Content-Length: ${body.length}`, 'Transfer-Encoding: chunked'];
        chunked = true;
        break;
      case 5:
        framing = [`Transfer-Encoding: ${r.pick(['chunked', 'gzip, chunked', 'identity', '', 'chunked, chunked', 'Chunked'])}`];
        chunked = true;
        break;
      case 6:
        framing = [`Content-Length: ${r.pick(['-1', 'abc', '', '1e3', ' 5', '0x10', '99999999999999999999'])}`];
        break;
      case 7:
        headers.push(Buffer.from(`X-Big: ${'b'.repeat(r.pick([100, 4096, 20_000, 150_000]))}`));
        break;
      case 8:
        headers.push(
          Buffer.concat([Buffer.from('X-Bytes: '), r.bytes(1 + r.int(20)).map((b) => (b < 0x20 && r.bool(0.9) ? 0x80 + b : b === 10 || b === 13 ? 0x80 : b))]),
        );
        break;
      case 9:
        for (let j = r.pick([5, 30, 60]); j > 0; j--) headers.push(Buffer.from(`X-Many-${j}: ${j}`));
        break;
      case 10:
        headers.push(Buffer.from(`If-None-Match: ${r.pick(['*', '"1"', 'garbage', ''])}`));
        break;
      case 11:
        headers.push(Buffer.from(r.pick(['X-Fold: a\r\n  b', 'Bad Name: x', ': empty', 'NoColon', 'X-A : 1', 'Expect: 100-continue', 'If-Match: garbage'])));
        break;
      case 12:
        version = r.pick(['HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1 extra', '', 'http/1.1']);
        break;
      case 13:
        method = r.pick(['BREW', 'G\u00c9T', '', 'get', 'PATCH', 'OPTIONS', 'HEAD']);
        break;
      case 14:
        body = r.bytes(r.int(40));
        break; // a body the framing may not announce
      default:
        headers.push(Buffer.from('X-Dup: 1'), Buffer.from('X-Dup: 2'));
    }
  }
  const lines = [
    Buffer.concat([Buffer.from(`${method} ${route}`, 'latin1'), key, Buffer.from(`${query} ${version}`, 'latin1')]),
    ...headers,
    ...framing.map((f) => Buffer.from(f)),
  ];
  const payload = chunked && r.bool(0.7) ? Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]) : body;
  const bytes = Buffer.concat([Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\r\n')])), Buffer.from('\r\n'), payload]);
  return { bytes, what: JSON.stringify(bytes.subarray(0, 160).toString('latin1')) };
}

test('seeded raw HTTP requests: a 4xx, a valid read, a clean close or silence; never a 5xx; nothing written', async (t) => {
  const r = new Rng(SEED);
  const N = 600;
  const requests = Array.from({ length: N }, () => genRequest(r));
  const outcomes = { replied: 0, closedSilently: 0, silent: 0 };
  const byStatus = new Map<number, number>();
  // In parallel batches: silence costs the whole wait, so wait for many at once.
  for (let i = 0; i < N; i += 200) {
    const batch = requests.slice(i, i + 200);
    const results = await Promise.all(batch.map((q) => exchange([q.bytes], 1200)));
    results.forEach((x, j) => {
      const where = `seed ${SEED} request ${i + j} ${batch[j].what}`;
      const got = statuses(x.data, where);
      for (const s of got) {
        assert.ok(s < 500, `${where}: answered ${s}`);
        assert.ok(s >= 400 || s === 200, `${where}: answered ${s}: a fuzzed request may only read`);
      }
      assert.ok(got.length <= 1, `${where}: ${got.length} replies to one request (something ran as a second request)`);
      for (const st of got) byStatus.set(st, (byStatus.get(st) ?? 0) + 1);
      if (got.length > 0) outcomes.replied++;
      else if (x.end === 'timeout') outcomes.silent++;
      else outcomes.closedSilently++;
    });
  }
  t.diagnostic(`${JSON.stringify(outcomes)}; statuses ${JSON.stringify([...byStatus].sort((a, b) => a[0] - b[0]))}`);
  assert.ok(outcomes.replied > N / 2, `only ${outcomes.replied} of ${N} got a reply (${JSON.stringify(outcomes)}): the generator is too wild to test the API`);
  // The API's own answers, not only uWS's refusals: every kind of verdict must show up.
  for (const st of [200, 400, 404, 412]) assert.ok((byStatus.get(st) ?? 0) > 0, `no ${st} among ${JSON.stringify([...byStatus])}`);
  assert.equal(await store.rowCount(), 0, 'a fuzzed request wrote a row');
  assert.equal((await client.request('GET', '/healthz')).status, 200, 'the gateway still serves');
  const metrics = (await client.request('GET', '/metrics')).text();
  assert.doesNotMatch(metrics, /kvsql_requests_total\{[^}]*status="5\d\d"\}/);
});

test('what uWebSockets.js answers nothing to is pinned: silence, then a close by its idle timeout (about 10 s); a header block over ~200 KB is reset', async () => {
  const silent = {
    'HTTP/1.0': 'GET /v1/kv/fz HTTP/1.0\r\nHost: x\r\n\r\n',
    'a garbage request line': 'GARBAGE\r\n\r\n',
    'no Host header': 'GET /v1/kv/fz HTTP/1.1\r\n\r\n',
    'a folded header line': 'GET /v1/kv/fz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n',
    'a space before the colon': 'GET /v1/kv/fz HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n',
    'bare LF line ends': 'GET /v1/kv/fz HTTP/1.1\nHost: x\n\n',
    '49 header lines': `GET /v1/kv/fz HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 48 }, (_, i) => `X-${i}: 1\r\n`).join('')}\r\n`,
  };
  const results = await Promise.all(Object.values(silent).map((s) => exchange([Buffer.from(s)], 20_000)));
  Object.keys(silent).forEach((what, i) => {
    const x = results[i];
    assert.equal(x.data.length, 0, `${what}: answered ${JSON.stringify(x.data.toString('latin1').slice(0, 80))}`);
    assert.notEqual(x.end, 'timeout', `${what}: not closed within 20 s`);
    assert.ok(x.ms >= 5000, `${what}: closed after ${x.ms} ms; pinned: uWS's idle timeout (~10 s) closes it`);
  });
  const huge = await exchange([Buffer.from(`GET /v1/kv/fz HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(300_000)}\r\n\r\n`)], 5000);
  assert.equal(huge.data.length, 0);
  assert.notEqual(huge.end, 'timeout', 'a 300 KB header block must be dropped at once');
  // 48 header lines are served.
  const lines48 = await exchange(
    [Buffer.from(`GET /v1/kv/fz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${Array.from({ length: 46 }, (_, i) => `X-${i}: 1\r\n`).join('')}\r\n`)],
    5000,
  );
  assert.deepEqual(statuses(lines48.data, '48 header lines'), [404]);
  // And below that, a large header is served normally.
  const big = await exchange([Buffer.from(`GET /v1/kv/fz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ${'b'.repeat(100_000)}\r\n\r\n`)], 5000);
  assert.deepEqual(statuses(big.data, '100 KB header'), [404]);
  assert.equal(await store.rowCount(), 0);
});

// ---------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------

const HANDSHAKE = Buffer.from(
  'GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
);

interface FrameSpec {
  fin?: boolean;
  rsv?: number;
  opcode: number;
  mask?: boolean;
  payload: Buffer;
  /** Declare this length instead of the payload's (a lie). */
  declared?: number;
}

function wsFrame(f: FrameSpec): Buffer {
  const len = f.declared ?? f.payload.length;
  const mask = f.mask ?? true;
  const head: number[] = [((f.fin ?? true) ? 0x80 : 0) | ((f.rsv ?? 0) << 4) | f.opcode];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 255);
  else {
    head.push(m | 127);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(len));
    head.push(...b);
  }
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const body = Buffer.from(f.payload);
  if (mask) for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
  return Buffer.concat([Buffer.from(head), mask ? key : Buffer.alloc(0), body]);
}

/** Server frames after the 101 reply: opcode, and the close code if a close. */
function serverFrames(data: Buffer, where: string): Array<{ opcode: number; payload: Buffer; closeCode?: number }> {
  const text = data.toString('latin1');
  const headEnd = text.indexOf('\r\n\r\n');
  assert.ok(text.startsWith('HTTP/1.1 101 '), `${where}: no upgrade: ${text.slice(0, 80)}`);
  const out: Array<{ opcode: number; payload: Buffer; closeCode?: number }> = [];
  let p = headEnd + 4;
  while (p < data.length) {
    assert.ok(p + 2 <= data.length, `${where}: a truncated server frame`);
    const opcode = data[p] & 0x0f;
    let len = data[p + 1] & 0x7f;
    p += 2;
    if (len === 126) {
      len = data.readUInt16BE(p);
      p += 2;
    } else if (len === 127) {
      len = Number(data.readBigUInt64BE(p));
      p += 8;
    }
    assert.ok(p + len <= data.length, `${where}: a truncated server frame payload`);
    const payload = data.subarray(p, p + len);
    out.push({ opcode, payload, closeCode: opcode === 8 && len >= 2 ? payload.readUInt16BE(0) : undefined });
    p += len;
  }
  return out;
}

/** [id, status] of every reply in the data frames, sorted by id. */
function replyStatuses(frames: Array<{ opcode: number; payload: Buffer }>): number[][] {
  const unpackr = new Packr({ useRecords: false });
  return frames
    .filter((f) => f.opcode === 2)
    .flatMap((f) => (unpackr.unpack(f.payload) as unknown[][]).map((x) => [x[0] as number, x[1] as number]))
    .sort((a, b) => a[0] - b[0]);
}

const request = (id: number): Buffer =>
  Buffer.from(
    packr.pack([
      [id, 2, 'fz-ws', 'v', { ifVersion: 0 }],
      [id + 1, 1, 'fz-ws'],
    ]),
  );

test('WebSocket frames with reserved opcodes or bits, no mask, or broken fragmentation end in a clean close; valid fragmentation is served; nothing is written', async () => {
  const req = request(1);
  const half = req.length >> 1;
  const bad: Record<string, Buffer[]> = {};
  for (const op of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) bad[`reserved opcode ${op}`] = [wsFrame({ opcode: op, payload: req })];
  for (const rsv of [1, 2, 4, 7]) bad[`reserved bits ${rsv}`] = [wsFrame({ opcode: 2, rsv, payload: req })];
  Object.assign(bad, {
    'a continuation with nothing to continue': [wsFrame({ opcode: 0, payload: req })],
    'a fragmented ping': [wsFrame({ opcode: 9, fin: false, payload: Buffer.from('x') })],
    'a ping over 125 bytes': [wsFrame({ opcode: 9, payload: Buffer.alloc(126, 1) })],
    'a close with code 999': [wsFrame({ opcode: 8, payload: Buffer.from([0x03, 0xe7]) })],
    'a close with a 1-byte payload': [wsFrame({ opcode: 8, payload: Buffer.from([0x03]) })],
    'a text frame that is not UTF-8': [wsFrame({ opcode: 1, payload: Buffer.from([0xff, 0xfe, 0xfd]) })],
    'a frame declaring 2^62 bytes': [wsFrame({ opcode: 2, payload: Buffer.alloc(0), declared: 2 ** 52 })],
  });
  const names = Object.keys(bad);
  const results = await Promise.all(names.map((n) => exchange([HANDSHAKE, ...bad[n]], 5000, true)));
  names.forEach((name, i) => {
    const x = results[i];
    const frames = serverFrames(x.data, name);
    assert.notEqual(x.end, 'timeout', `${name}: the connection stayed open`);
    for (const f of frames) {
      assert.ok(f.opcode === 8 || f.opcode === 1 || f.opcode === 2, `${name}: server sent opcode ${f.opcode}`);
      if (f.opcode === 8 && f.closeCode !== undefined) assert.notEqual(f.closeCode, 1011, `${name}: closed with 1011 (internal error)`);
      // Data frames may only carry the text-frame refusal (400 KV_ERR_BAD_FRAME), never a reply to the request.
      if (f.opcode !== 8) assert.match(f.payload.toString('latin1'), /KV_ERR_BAD_FRAME/, `${name}: a request inside a bad frame was run`);
    }
  });

  // An unmasked frame (RFC 6455 says: close) is pinned as uWS handles it: it reads it as if masked,
  // so the frame is shorter than it thinks and it waits for the rest; nothing runs, and the
  // socket is left to the idle timeout (120 s, with pings).
  const unmasked = await exchange([HANDSHAKE, wsFrame({ opcode: 2, mask: false, payload: req })], 1500, true);
  assert.deepEqual(serverFrames(unmasked.data, 'an unmasked frame'), [], 'an unmasked frame was answered');

  // A new data frame inside a fragmented message (RFC 6455: fail the connection) is read by uWS
  // as the continuation: pinned, the two halves make one message and it is served.
  const spliced = await exchange(
    [HANDSHAKE, wsFrame({ opcode: 2, fin: false, payload: req.subarray(0, half) }), wsFrame({ opcode: 2, payload: req.subarray(half) })],
    1500,
    true,
  );
  assert.deepEqual(replyStatuses(serverFrames(spliced.data, 'a new message inside a fragmented one')), [
    [1, 412],
    [2, 404],
  ]);

  // Valid fragmentation, with a ping between the fragments: served (a 412 and a 404), with a pong.
  const good = await exchange(
    [
      HANDSHAKE,
      wsFrame({ opcode: 2, fin: false, payload: req.subarray(0, half) }),
      wsFrame({ opcode: 9, payload: Buffer.from('p') }),
      wsFrame({ opcode: 0, payload: req.subarray(half) }),
    ],
    1500,
    true,
  );
  const frames = serverFrames(good.data, 'valid fragmentation');
  assert.ok(
    frames.some((f) => f.opcode === 10),
    'no pong',
  );
  assert.deepEqual(replyStatuses(frames), [
    [1, 412],
    [2, 404],
  ]);
  assert.equal(await store.rowCount(), 0, 'a fuzzed frame wrote a row');
});

test('seeded random WebSocket frames and bytes after the upgrade: never a crash, a 1011 or a write', async () => {
  const r = new Rng(SEED ^ 0x5753);
  const N = 120;
  const convos = Array.from({ length: N }, (_, i) => {
    const frames: Buffer[] = [HANDSHAKE];
    for (let j = 1 + r.int(4); j > 0; j--) {
      if (r.bool(0.2)) frames.push(r.bytes(1 + r.int(40)));
      else {
        let payload = request(10 * i + 1);
        if (r.bool(0.5)) payload = Buffer.concat([payload.subarray(0, r.int(payload.length)), r.bytes(r.int(6))]);
        frames.push(
          wsFrame({ opcode: r.pick([0, 1, 2, 2, 2, 8, 9, 10, 3, 11]), fin: r.bool(0.8), rsv: r.bool(0.1) ? 1 + r.int(7) : 0, mask: r.bool(0.9), payload }),
        );
      }
    }
    return frames;
  });
  for (let i = 0; i < N; i += 40) {
    const results = await Promise.all(convos.slice(i, i + 40).map((c) => exchange(c, 1500, true)));
    results.forEach((x, j) => {
      const where = `seed ${SEED} conversation ${i + j}`;
      for (const f of serverFrames(x.data, where)) {
        assert.ok([1, 2, 8, 9, 10].includes(f.opcode), `${where}: opcode ${f.opcode}`);
        if (f.opcode === 8 && f.closeCode !== undefined) assert.notEqual(f.closeCode, 1011, where);
        if (f.opcode === 2) {
          for (const reply of new Packr({ useRecords: false }).unpack(f.payload) as unknown[][])
            assert.ok((reply[1] as number) < 500, `${where}: reply ${JSON.stringify(reply)}`);
        }
      }
    });
  }
  assert.equal(await store.rowCount(), 0, 'a fuzzed frame wrote a row');
  assert.equal((await client.request('GET', '/healthz')).status, 200);
  const metrics = (await client.request('GET', '/metrics')).text();
  assert.doesNotMatch(metrics, /kvsql_requests_total\{[^}]*status="5\d\d"\}/);
});
