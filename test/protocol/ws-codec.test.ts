/**
 * Tests the WebSocket wire format without sockets (src/protocol/ws-requests, ws-replies,
 * ws-client-codec, msgpack-scan, msgpack-writer): request decoding and validation, frame-level
 * errors, every truncation of a few fixture frames, the msgpack writer's integer encodings, reply
 * shaping and frame cutting, and the client's side (encode requests, decode replies).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr, Unpackr } from 'msgpackr';
import type { ErrorData } from '../../src/protocol/errors';
import { FLAG_IF_ABSENT, FLAG_IF_EXISTS, FLAG_IF_VERSION, FLAG_KEEP_TTL, MAX_TTL_MS, type Reply } from '../../src/protocol/ops';
import { scanMsgpack } from '../../src/protocol/msgpack-scan';
import { MsgpackWriter } from '../../src/protocol/msgpack-writer';
import { decodeReplyFrame, encodeRequestFrame, type ClientRequest } from '../../src/protocol/ws-client-codec';
import type { WireReply } from '../../src/protocol/ws-format';
import { ReplyFrameEncoder, toWireReply } from '../../src/protocol/ws-replies';
import type { TxnProgram } from '../../src/protocol/txn';
import { decodeFrame, type RequestSink } from '../../src/protocol/ws-requests';
import type { ScanRequest } from '../../src/protocol/listing';

const limits = { maxKeyBytes: 1024, maxValueBytes: 1000 };
const packr = new Packr({ useRecords: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, moreTypes: false, int64AsType: 'auto' as 'bigint' });
const pack = (v: unknown): Buffer => Buffer.from(packr.pack(v));

type Seen =
  | { kind: 'request'; id: number; op: number; key: string; value: string | null; ttlMs: number; flags: number; ifVersion: number }
  | { kind: 'reject'; id: number; op: number; err: ErrorData }
  | { kind: 'frame'; message: string }
  | { kind: 'list'; id: number; q: ScanRequest }
  | { kind: 'txn'; id: number; p: TxnProgram };

function decode(bytes: Uint8Array): Seen[] {
  const seen: Seen[] = [];
  const sink: RequestSink = {
    request: (id, op, key, value, ttlMs, flags, ifVersion) =>
      seen.push({
        kind: 'request',
        id,
        op,
        key: Buffer.from(key).toString('latin1'),
        value: value && Buffer.from(value).toString('latin1'),
        ttlMs,
        flags,
        ifVersion,
      }),
    list: (id, q) => seen.push({ kind: 'list', id, q }),
    txn: (id, p) => seen.push({ kind: 'txn', id, p }),
    reject: (id, op, err) => seen.push({ kind: 'reject', id, op, err }),
    frameError: (message) => seen.push({ kind: 'frame', message }),
  };
  decodeFrame(bytes, limits, sink);
  return seen;
}

/** The single per-request error of a one-request frame. */
function rejectOf(request: unknown[]): ErrorData {
  const seen = decode(pack([request]));
  assert.equal(seen.length, 1, JSON.stringify(seen));
  assert.equal(seen[0].kind, 'reject', JSON.stringify(seen));
  return (seen[0] as { err: ErrorData }).err;
}

function frameErrorOf(bytes: Uint8Array): string {
  const seen = decode(bytes);
  assert.equal(seen.length, 1, JSON.stringify(seen));
  assert.equal(seen[0].kind, 'frame', JSON.stringify(seen));
  return (seen[0] as { message: string }).message;
}

test('decodes every op, str and bin keys alike, with options', () => {
  const seen = decode(
    pack([
      [1, 1, 'k'],
      [2, 2, Buffer.from('k'), Buffer.from([0, 255]), { ttl: 1500 }],
      [3, 2, 'k', 'v', { keepTtl: true, ifVersion: 7 }],
      [4, 2, 'k', 'v', { ifAbsent: true, ttl: null }],
      [5, 2, 'k', 'v', null],
      [6, 3, 'k'],
      [7, 3, 'k', { ifVersion: 0 }],
      [8, 4, 'k', 60_000],
      [9, 5, 'k'],
      [10, 6, 'é'],
    ]),
  );
  const r = (id: number, op: number, key: string, value: string | null, ttlMs = 0, flags = 0, ifVersion = 0) => ({
    kind: 'request',
    id,
    op,
    key,
    value,
    ttlMs,
    flags,
    ifVersion,
  });
  assert.deepEqual(seen, [
    r(1, 1, 'k', null),
    r(2, 2, 'k', '\u0000\u00ff', 1500),
    r(3, 2, 'k', 'v', 0, FLAG_KEEP_TTL | FLAG_IF_VERSION, 7),
    r(4, 2, 'k', 'v', 0, FLAG_IF_ABSENT),
    r(5, 2, 'k', 'v'),
    r(6, 3, 'k', null),
    r(7, 3, 'k', null, 0, FLAG_IF_VERSION, 0),
    r(8, 4, 'k', null, 60_000),
    r(9, 5, 'k', null),
    r(10, 6, Buffer.from('é', 'utf8').toString('latin1'), null),
  ]);
});

test('64-bit integer encodings (as Go writes them) are understood', () => {
  // [[id uint64 5, op uint64 4, "k", ttl int64 1000]]
  const frame = Buffer.from([0x91, 0x94, 0xcf, 0, 0, 0, 0, 0, 0, 0, 5, 0xcf, 0, 0, 0, 0, 0, 0, 0, 4, 0xa1, 0x6b, 0xd3, 0, 0, 0, 0, 0, 0, 0x03, 0xe8]);
  assert.deepEqual(decode(frame), [{ kind: 'request', id: 5, op: 4, key: 'k', value: null, ttlMs: 1000, flags: 0, ifVersion: 0 }]);
});

test('per-request validation errors carry the HTTP codes and precise messages', () => {
  const cases: Array<[unknown[], string, RegExp]> = [
    [
      [1, 9, 'k'],
      'KV_ERR_UNKNOWN_OP',
      /op must be one of 1 get, 2 put, 3 del, 4 expire, 5 persist, 6 ttl, 8 incr, 10 getdel, 12 list, 13 txn, 15 watch, 16 unwatch; got int 9/,
    ],
    [[1, 8, 'k'], 'KV_ERR_BAD_REQUEST', /op 8 takes \[id, 8, key, delta, options\?\]/],
    [[1, 8, 'k', 1.5], 'KV_ERR_BAD_REQUEST', /incr delta must be a signed 64-bit integer \(a string beyond 2\^53\), got float 1.5/],
    [[1, 8, 'k', '9223372036854775808'], 'KV_ERR_BAD_REQUEST', /incr delta must be a signed 64-bit integer/],
    [[1, 8, 'k', 'x', { float: true }], 'KV_ERR_BAD_REQUEST', /incr delta must be a finite number/],
    [[1, 8, 'k', 1, { by: 2 }], 'KV_ERR_BAD_REQUEST', /unknown incr option "by" \(allowed: float\)/],
    [[1, 7, 'k'], 'KV_ERR_UNKNOWN_OP', /got int 7/], // the expirer's internal reap is not on the wire
    [[1, 'get', 'k'], 'KV_ERR_UNKNOWN_OP', /got str "get"/],
    [[1], 'KV_ERR_UNKNOWN_OP', /got nil/],
    [[1, 1], 'KV_ERR_BAD_REQUEST', /op 1 takes \[id, 1, key\], got 2 elements/],
    [[1, 1, 'k', 'extra'], 'KV_ERR_BAD_REQUEST', /op 1 takes \[id, 1, key\], got 4 elements/],
    [[1, 2, 'k'], 'KV_ERR_BAD_REQUEST', /op 2 takes \[id, 2, key, value, options\?\]/],
    [[1, 4, 'k'], 'KV_ERR_BAD_REQUEST', /op 4 takes \[id, 4, key, ttlMs\]/],
    [[1, 1, ''], 'KV_ERR_BAD_KEY', /^key must not be empty$/],
    [[1, 1, Buffer.alloc(0)], 'KV_ERR_BAD_KEY', /^key must not be empty$/],
    [[1, 1, 42], 'KV_ERR_BAD_KEY', /key must be bin or str, got int 42/],
    [[1, 1, null], 'KV_ERR_BAD_KEY', /key must be bin or str, got nil/],
    [[1, 1, 'x'.repeat(1025)], 'KV_ERR_KEY_TOO_LONG', /key is 1025 bytes, the limit is 1024/],
    [[1, 1, 'é'.repeat(513)], 'KV_ERR_KEY_TOO_LONG', /key is 1026 bytes/], // bytes, not characters
    [[1, 2, 'k', 5], 'KV_ERR_BAD_REQUEST', /value must be bin or str, got int 5/],
    [[1, 2, 'k', Buffer.alloc(1001)], 'KV_ERR_VALUE_TOO_LARGE', /value is 1001 bytes, the limit is 1000/],
    [[1, 2, 'k', 'v', { ttl: 0 }], 'KV_ERR_BAD_TTL', /ttl must be positive, got int 0/],
    [[1, 2, 'k', 'v', { ttl: -5 }], 'KV_ERR_BAD_TTL', /ttl must be positive/],
    [[1, 2, 'k', 'v', { ttl: 1.5 }], 'KV_ERR_BAD_TTL', /got float 1.5/],
    [[1, 2, 'k', 'v', { ttl: '10' }], 'KV_ERR_BAD_TTL', /got str "10"/],
    [[1, 2, 'k', 'v', { ttl: MAX_TTL_MS + 1 }], 'KV_ERR_BAD_TTL', /at most 10 years/],
    [[1, 2, 'k', 'v', { ttl: 10, keepTtl: true }], 'KV_ERR_BAD_REQUEST', /ttl and keepTtl: true contradict/],
    [[1, 2, 'k', 'v', { ifAbsent: true, ifVersion: 3 }], 'KV_ERR_BAD_REQUEST', /send ifAbsent or ifVersion, not both/],
    [[1, 2, 'k', 'v', { ifAbsent: true, ifExists: true }], 'KV_ERR_BAD_REQUEST', /^send ifAbsent or ifExists, not both$/],
    [[1, 2, 'k', 'v', { ifExists: true, ifVersion: 3 }], 'KV_ERR_BAD_REQUEST', /^send ifExists or ifVersion, not both$/],
    [[1, 2, 'k', 'v', { ifExists: 'yes' }], 'KV_ERR_BAD_REQUEST', /ifExists must be true or false, got str "yes"/],
    [[1, 2, 'k', 'v', { keepTtl: 1 }], 'KV_ERR_BAD_REQUEST', /keepTtl must be true or false, got int 1/],
    [[1, 2, 'k', 'v', { ifVersion: -1 }], 'KV_ERR_BAD_REQUEST', /ifVersion must be an integer in 0..2\^53-1, got int -1/],
    [[1, 2, 'k', 'v', { ttlMs: 10 }], 'KV_ERR_BAD_REQUEST', /unknown put option "ttlMs" \(allowed: ttl, keepTtl, ifAbsent, ifExists, ifVersion\)/],
    [[1, 2, 'k', 'v', [10]], 'KV_ERR_BAD_REQUEST', /put options must be a map, got array of 1/],
    [[1, 3, 'k', { ttl: 5 }], 'KV_ERR_BAD_REQUEST', /unknown del option "ttl" \(allowed: ifVersion\)/],
    [[1, 3, 'k', 'x'], 'KV_ERR_BAD_REQUEST', /del options must be a map/],
    [[1, 4, 'k', 0], 'KV_ERR_BAD_TTL', /ttl must be positive, got int 0/],
    [[1, 4, 'k', null], 'KV_ERR_BAD_TTL', /ttl must be positive, got nil/],
  ];
  for (const [request, code, message] of cases) {
    const err = rejectOf(request);
    assert.equal(err.code, code, `${JSON.stringify(request).slice(0, 80)}: ${err.message}`);
    assert.match(err.message, message, JSON.stringify(request).slice(0, 80));
  }
  // The op is reported for metrics when it is known, 0 when it is not.
  const seen = decode(
    pack([
      [1, 9, 'k'],
      [2, 2, '', 'v'],
    ]),
  );
  assert.deepEqual(
    seen.map((s) => (s.kind === 'reject' ? s.op : -1)),
    [0, 2],
  );
});

test('a bad request gets its own reply and the others in the frame still run', () => {
  const seen = decode(pack([[1, 1, 'a'], [2, 9, 'b'], [3, 1, ''], 'junk', [0, 1, 'c'], [4, 1, 'd']]));
  assert.deepEqual(
    seen.map((s) => (s.kind === 'frame' ? `frame:${s.message}` : `${s.kind}:${s.id}`)),
    [
      'request:1',
      'reject:2',
      'reject:3',
      'frame:request 3 of the frame must be an array [id, op, key, ...], got str "junk"',
      'frame:request 4 of the frame: id must be an integer in 1..2^53-1, got int 0',
      'request:4',
    ],
  );
});

test('frames that cannot be read are one frame-level error with a precise message', () => {
  const cases: Array<[Uint8Array, RegExp]> = [
    [Buffer.alloc(0), /frame is empty \(0 bytes\)/],
    [Buffer.from([0xc1]), /byte 0xc1 at offset 0 is not valid msgpack/],
    [pack({ a: 1 }), /frame must be a msgpack array of requests, got map/],
    [pack(5), /got int 5/],
    [pack('[[1,1,"k"]]'), /got str/],
    [Buffer.concat([pack([[1, 1, 'k']]), Buffer.from([0x01])]), /1 bytes after the end of its value at byte 6; send one array per frame/],
    [Buffer.from([0x91, 0x93, 0x01, 0x01, 0xd4, 0x01, 0x00]), /msgpack ext type \(0xd4\) at offset 4 is not used by this protocol/],
    [Buffer.from([0x91, 0x93, 0x01, 0x01, 0xa2, 0xc3, 0x28]), /str at byte 4 is not valid UTF-8 \(send bytes that are not UTF-8 as bin\)/],
    [Buffer.from([0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x01]), /containers nest deeper than 5 levels at byte 5/],
    // Declared counts far beyond the bytes present are refused before anything is allocated.
    [Buffer.from([0xdd, 0x01, 0x00, 0x00, 0x00]), /the array at byte 0 declares 16777216 items, only 0 bytes follow/],
    [Buffer.from([0x91, 0xdf, 0x7f, 0xff, 0xff, 0xff]), /the map at byte 1 declares 2147483647 entries, only 0 bytes follow/],
    [Buffer.from([0xc6, 0xff, 0xff, 0xff, 0xff]), /the bin at byte 0 needs 4294967300 bytes, the frame ends at 5/],
  ];
  for (const [bytes, message] of cases) assert.match(frameErrorOf(bytes), message, Buffer.from(bytes).toString('hex'));
  // A huge declared array must not cost a huge allocation (msgpackr alone allocates it first).
  const started = performance.now();
  for (let i = 0; i < 100; i++) frameErrorOf(Buffer.from([0xdd, 0x07, 0xff, 0xff, 0xff]));
  assert.ok(performance.now() - started < 200, 'refusing a huge declared array is cheap');
});

test('ids that are not integers in 1..2^53-1 are frame errors (no id to answer under)', () => {
  const bad: Array<[unknown, RegExp]> = [
    [0, /got int 0/],
    [-1, /got int -1/],
    [1.5, /got float 1.5/],
    ['1', /got str "1"/],
    [null, /got nil/],
    [2 ** 53, /got int 9007199254740992/],
  ];
  for (const [id, message] of bad) assert.match(frameErrorOf(pack([[id, 1, 'k']])), message);
  assert.match(frameErrorOf(pack([[]])), /got nothing/);
  // uint64 beyond 2^53 decodes as a bigint.
  assert.match(frameErrorOf(Buffer.from([0x91, 0x93, 0xcf, 0xff, 0, 0, 0, 0, 0, 0, 1, 0x01, 0xa1, 0x6b])), /out of range/);
});

test('every truncation of the fixture frames is one clean frame error', () => {
  const fixtures = [
    pack([[1, 1, 'key']]),
    pack([
      [1, 2, Buffer.from('bin-key'), Buffer.alloc(300, 7), { ttl: 2 ** 33, keepTtl: false, ifVersion: 123456789012 }],
      [2, 3, 'k', { ifVersion: 9 }],
      [3, 4, 'ключ', 86_400_000],
      [4, 6, 'k'],
    ]),
    encodeRequestFrame(
      Array.from({ length: 40 }, (_, i): ClientRequest => ({ id: i + 1, op: 2, key: `k${i}`, value: 'v'.repeat(i * 10), ttlMs: 0, opts: { ttl: 1000 + i } })),
      0,
      40,
    ),
  ];
  for (const frame of fixtures) {
    assert.ok(
      decode(frame).every((s) => s.kind === 'request'),
      'the whole frame is valid',
    );
    for (let cut = 0; cut < frame.length; cut++) {
      const seen = decode(frame.subarray(0, cut));
      assert.equal(seen.length, 1, `cut at ${cut}: ${JSON.stringify(seen)}`);
      assert.equal(seen[0].kind, 'frame', `cut at ${cut}`);
      assert.match((seen[0] as { message: string }).message, /^frame is not valid msgpack: frame is (truncated|empty)/, `cut at ${cut}`);
    }
  }
});

test('MsgpackWriter writes integers as msgpack ints (64-bit above 2^32), never float', () => {
  const w = new MsgpackWriter(16); // small: exercises growth
  const ints = [
    0,
    1,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2 ** 32 - 1,
    2 ** 32,
    1_767_225_600_000,
    2 ** 53 - 1,
    -1,
    -32,
    -33,
    -128,
    -129,
    -32768,
    -32769,
    -(2 ** 31),
    -(2 ** 31) - 1,
    -(2 ** 53 - 1),
  ];
  for (const n of ints) {
    w.reset();
    w.number(n);
    const bytes = Buffer.from(w.view());
    assert.equal(unpackr.unpack(bytes), n, `${n} round-trips`);
    assert.notEqual(bytes[0], 0xcb, `${n} is not a float64`);
    assert.notEqual(bytes[0], 0xca, `${n} is not a float32`);
  }
  w.reset();
  w.number(1_767_225_600_000);
  assert.equal(w.view()[0], 0xcf, 'an expiresAt is a uint64');
  w.reset();
  w.number(0.5);
  assert.equal(w.view()[0], 0xcb);
  const value = {
    s: 'x'.repeat(70_000),
    short: 'é',
    b: Buffer.alloc(70_000, 1),
    small: Buffer.from([1]),
    a: Array.from({ length: 20 }, (_, i) => i),
    t: true,
    f: false,
    n: null,
  };
  w.reset();
  w.value(value);
  assert.deepEqual(unpackr.unpack(Buffer.from(w.view())), value);
});

test('toWireReply reshapes actor replies in place', () => {
  const r = (x: unknown[]) => x as Reply;
  assert.deepEqual(toWireReply(r([99, 200, Buffer.from('v'), 3, null]), 7, 1), [7, 200, Buffer.from('v'), 3, null]);
  assert.deepEqual(toWireReply(r([99, 404]), 7, 1), [7, 404]);
  assert.deepEqual(toWireReply(r([99, 201, 4, 5000]), 7, 2), [7, 201, 4, 5000]);
  assert.deepEqual(toWireReply(r([99, 412]), 7, 2), [7, 412]);
  assert.deepEqual(toWireReply(r([99, 204]), 7, 3), [7, 204]);
  assert.deepEqual(toWireReply(r([99, 200, 5000]), 7, 4), [7, 200, 5000]);
  assert.deepEqual(toWireReply(r([99, 200]), 7, 5), [7, 200]);
  assert.deepEqual(toWireReply(r([99, 200, 5000, 3800]), 7, 6), [7, 200, 1200, 5000]);
  assert.deepEqual(toWireReply(r([99, 200, 5000, 6000]), 7, 6), [7, 200, 0, 5000], 'an expiry in the past is 0 left');
  assert.deepEqual(toWireReply(r([99, 200, null, 3800]), 7, 6), [7, 200, null, null]);
  // A 500's detail is the log's, not the client's (errors.ts clientMessage), as on HTTP and Redis.
  assert.deepEqual(toWireReply(r([0, 500, 'KV_ERR_INTERNAL', 'shard 0: ER_NO_SUCH_TABLE', 1]), 7, 1), [
    7,
    500,
    { code: 'KV_ERR_INTERNAL', message: 'internal error' },
  ]);
  assert.deepEqual(toWireReply(r([0, 503, 'KV_ERR_OVERLOADED', 'shard 0 has 9 operations queued', 1]), 7, 2), [
    7,
    503,
    { code: 'KV_ERR_OVERLOADED', message: 'shard 0 has 9 operations queued' },
  ]);
  const same = r([1, 204]);
  assert.equal(toWireReply(same, 2, 3), same);
});

test('ReplyFrameEncoder cuts replies into frames near the size asked, at least one reply each', () => {
  const replies: WireReply[] = Array.from({ length: 10 }, (_, i) => [i + 1, 200, Buffer.alloc(100_000, i), i, null]);
  const enc = new ReplyFrameEncoder();
  const got: WireReply[] = [];
  let frames = 0;
  for (let i = 0; i < replies.length; i = enc.next) {
    const decoded = decodeReplyFrame(Buffer.from(enc.encode(replies, i, 250_000)));
    assert.ok(decoded.length >= 1 && decoded.length <= 3);
    got.push(...decoded);
    frames++;
  }
  assert.equal(frames, 4);
  assert.deepEqual(got, replies);
  // One reply larger than the limit still goes, alone.
  assert.equal(decodeReplyFrame(Buffer.from(enc.encode(replies, 0, 10))).length, 1);
});

test('client requests encode to frames the server decodes to the same requests', () => {
  const reqs: ClientRequest[] = [
    { id: 1, op: 1, key: 'a', value: null, ttlMs: 0, opts: undefined },
    { id: 2, op: 2, key: Buffer.from([1, 2]), value: 'v', ttlMs: 0, opts: { ttl: 500, ifVersion: undefined } },
    { id: 3, op: 2, key: 'a', value: Buffer.from([0]), ttlMs: 0, opts: undefined },
    { id: 4, op: 3, key: 'a', value: null, ttlMs: 0, opts: { ifVersion: 2 ** 40 } },
    { id: 5, op: 4, key: 'a', value: null, ttlMs: MAX_TTL_MS, opts: undefined },
    { id: 2 ** 32 - 1, op: 6, key: 'a', value: null, ttlMs: 0, opts: undefined },
  ];
  const frame = encodeRequestFrame(reqs, 1, 6);
  assert.deepEqual(
    decode(frame).map((s) => (s.kind === 'request' ? [s.id, s.op, s.ttlMs, s.flags, s.ifVersion] : s)),
    [
      [2, 2, 500, 0, 0],
      [3, 2, 0, 0, 0],
      [4, 3, 0, FLAG_IF_VERSION, 2 ** 40],
      [5, 4, MAX_TTL_MS, 0, 0],
      [2 ** 32 - 1, 6, 0, 0, 0],
    ],
  );
  // The frame is the caller's: a later encode does not change it.
  const copy = Buffer.from(frame);
  encodeRequestFrame(reqs, 0, 6);
  assert.ok(frame.equals(copy));
});

test('decodeReplyFrame checks the envelope', () => {
  assert.deepEqual(
    decodeReplyFrame(
      pack([
        [1, 204],
        [2, 404],
      ]),
    ),
    [
      [1, 204],
      [2, 404],
    ],
  );
  assert.throws(() => decodeReplyFrame(pack({ a: 1 })), /reply frame must be a msgpack array, got map/);
  assert.throws(() => decodeReplyFrame(pack([[1]])), /reply 0 of the frame must be \[id, status, \.\.\.\], got array of 1/);
  assert.throws(() => decodeReplyFrame(pack([['1', 200]])), /reply 0/);
  assert.throws(() => decodeReplyFrame(pack([[1, 200]]).subarray(0, 3)), /truncated/);
});

test('scanMsgpack accepts what msgpackr writes for every type the protocol uses', () => {
  const values = [
    null,
    true,
    false,
    0,
    -1,
    2 ** 31,
    -(2 ** 40),
    0.25,
    '',
    'x'.repeat(40),
    'y'.repeat(300),
    'z'.repeat(70_000),
    Buffer.alloc(0),
    Buffer.alloc(300),
    Buffer.alloc(70_000),
    [],
    Array.from({ length: 20 }, () => 1),
    Array.from({ length: 70_000 }, () => 1),
    {},
    Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i])),
  ];
  for (const v of values) assert.equal(scanMsgpack(pack([v])), null, JSON.stringify(v).slice(0, 40));
});

test('a transaction (op 13) decodes into compares and two op lists; a bad one is rejected whole', () => {
  const seen = decode(
    pack([
      [
        1,
        13,
        [
          ['a', 7],
          ['b', 0],
        ],
        [
          [2, 'a', 'v', { ttl: 1000 }],
          [8, 'n', '5'],
          [1, 'b'],
        ],
        [[6, 'a']],
      ],
    ]),
  );
  assert.equal(seen.length, 1);
  assert.equal(seen[0].kind, 'txn');
  const p = (seen[0] as { p: TxnProgram }).p;
  const text = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString());
  assert.deepEqual(
    p[0].map(([k, v]) => [text(k), v]),
    [
      ['a', 7],
      ['b', 0],
    ],
  );
  assert.deepEqual(
    p[1].map((o) => [o[0], text(o[1]), text(o[2]), o[3]]),
    [
      [2, 'a', 'v', 1000],
      [8, 'n', '5', 0],
      [1, 'b', null, 0],
    ],
  );
  assert.deepEqual(
    p[2].map((o) => [o[0], text(o[1])]),
    [[6, 'a']],
  );
  assert.match(rejectOf([1, 13, [], [[12, 'a']], []]).message, /success op 0 must be \[op, key, \.\.\.args\]/);
  assert.match(rejectOf([1, 13, [['a', -2]], [], []]).message, /compare 0 must be \[key, version\]/);
  assert.match(rejectOf([1, 13, [], [[2, 'a']], []]).message, /op 2 takes/);
  assert.equal(rejectOf([1, 13, [], []]).code, 'KV_ERR_BAD_REQUEST');
});

test('put option ifExists (HTTP If-Match: *, Redis SET XX) decodes to FLAG_IF_EXISTS', () => {
  const seen = decode(
    pack([
      [1, 2, 'k', 'v', { ifExists: true }],
      [2, 2, 'k', 'v', { ifExists: true, keepTtl: true }],
      [3, 2, 'k', 'v', { ifExists: false, ifVersion: 4 }],
    ]),
  );
  assert.deepEqual(
    seen.map((s) => (s.kind === 'request' ? s.flags : -1)),
    [FLAG_IF_EXISTS, FLAG_IF_EXISTS | FLAG_KEEP_TTL, FLAG_IF_VERSION],
  );
});
