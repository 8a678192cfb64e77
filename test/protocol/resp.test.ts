/**
 * Tests src/protocol/resp.ts: the request parser on whole, cut and malformed input (every cut
 * point of a mixed stream, one byte at a time, random chunkings), its limits (oversized bulks are
 * skipped and flagged without buffering, absurd lengths are protocol errors), inline commands with
 * quotes, and the reply encoders for RESP2 and RESP3.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RespMap, RespProtocolError, RespRequestParser, Simple, bulk, encode, inlineWords, nil, type RespLimits } from '../../src/protocol/resp';

const LIMITS: RespLimits = { maxBulkBytes: 1024, maxArgs: 1000, maxRequestBytes: 64 * 1024 };

function req(...args: Array<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** Feeds the chunks in order and collects every request as strings (binary as latin1). */
function parseAll(chunks: Buffer[], limits = LIMITS): { reqs: string[][]; oversized: number[] } {
  const p = new RespRequestParser(limits);
  const reqs: string[][] = [];
  const oversized: number[] = [];
  for (const c of chunks) {
    p.feed(c);
    for (let r = p.next(); r !== null; r = p.next()) {
      reqs.push(r.map((b) => b.toString('latin1')));
      oversized.push(p.oversized);
    }
  }
  return { reqs, oversized };
}

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const STREAM = Buffer.concat([
  req('SET', 'k', 'v'),
  req('GET', 'k'),
  Buffer.from('PING\r\n'),
  req('SET', 'bin', ALL_BYTES),
  Buffer.from('\r\n'), // an empty line between requests is skipped
  req('ECHO', ''),
  Buffer.from('set "a b" \'c d\'\n'), // inline with quotes and a bare LF
  req('MGET', 'a', 'b', 'c'),
]);
const EXPECTED = [
  ['SET', 'k', 'v'],
  ['GET', 'k'],
  ['PING'],
  ['SET', 'bin', ALL_BYTES.toString('latin1')],
  ['ECHO', ''],
  ['set', 'a b', 'c d'],
  ['MGET', 'a', 'b', 'c'],
];

test('a stream of requests parses whole, cut in two at every offset, and one byte at a time', () => {
  assert.deepEqual(parseAll([STREAM]).reqs, EXPECTED);
  for (let cut = 0; cut <= STREAM.length; cut++) {
    assert.deepEqual(parseAll([STREAM.subarray(0, cut), STREAM.subarray(cut)]).reqs, EXPECTED, `cut at ${cut}`);
  }
  assert.deepEqual(parseAll([...STREAM].map((b) => Buffer.from([b]))).reqs, EXPECTED);
});

test('random chunkings of a long stream give the same requests', () => {
  let seed = 7;
  const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
  const many = Buffer.concat(Array.from({ length: 50 }, () => STREAM));
  const expected = Array.from({ length: 50 }, () => EXPECTED).flat();
  for (let round = 0; round < 30; round++) {
    const chunks: Buffer[] = [];
    for (let at = 0; at < many.length;) {
      const n = 1 + rnd(round % 2 === 0 ? 7 : 900);
      chunks.push(many.subarray(at, at + n));
      at += n;
    }
    assert.deepEqual(parseAll(chunks).reqs, expected, `round ${round}`);
  }
});

test('an incomplete request yields nothing until its last byte arrives', () => {
  const p = new RespRequestParser(LIMITS);
  const r = req('SET', 'key', 'value');
  p.feed(r.subarray(0, r.length - 1));
  assert.equal(p.next(), null);
  p.feed(r.subarray(r.length - 1));
  assert.deepEqual(p.next()?.map(String), ['SET', 'key', 'value']);
  assert.equal(p.next(), null);
  assert.equal(p.buffered, 0);
});

test('a bulk over maxBulkBytes is skipped without buffering and flagged; the next request parses', () => {
  const big = Buffer.alloc(10_000, 0x61);
  const stream = Buffer.concat([req('SET', 'k', big), req('GET', 'k')]);
  for (const size of [stream.length, 1, 100, 4096]) {
    const chunks: Buffer[] = [];
    for (let at = 0; at < stream.length; at += size) chunks.push(stream.subarray(at, at + size));
    const p = new RespRequestParser(LIMITS);
    const out: Array<[string[], number]> = [];
    let maxBuffered = 0;
    for (const c of chunks) {
      p.feed(c);
      maxBuffered = Math.max(maxBuffered, p.buffered);
      for (let r = p.next(); r !== null; r = p.next()) out.push([r.map(String), p.oversized]);
    }
    assert.deepEqual(
      out,
      [
        [['SET', 'k', ''], 10_000],
        [['GET', 'k'], 0],
      ],
      `chunks of ${size}`,
    );
    if (size < stream.length) assert.ok(maxBuffered <= Math.max(size, 64), `buffered ${maxBuffered} with chunks of ${size}`);
  }
});

test('malformed requests are protocol errors, at whatever cut they arrive', () => {
  const bad: Array<[string, RegExp]> = [
    ['*2\r\n$3\r\nGET\r\n:12\r\n', /expected '\$', got ':'/],
    ['*x\r\n', /invalid multibulk length/],
    ['*1\r\n$abc\r\n', /invalid bulk length/],
    ['*1\r\n$-1\r\n', /invalid bulk length/],
    ['*1\r\n$999999999999\r\n', /invalid bulk length/],
    ['*1\r\n$3\r\nGETXX', /expected '\\r\\n' after a bulk string/],
    ['*1001\r\n', /too many arguments/],
    ['set "a b\r\n', /unbalanced quotes/],
  ];
  for (const [text, re] of bad) {
    const bytes = Buffer.from(text);
    for (let cut = 0; cut <= bytes.length; cut++) {
      assert.throws(
        () => parseAll([bytes.subarray(0, cut), bytes.subarray(cut)]),
        (err: unknown) => err instanceof RespProtocolError && re.test(err.message),
        `${JSON.stringify(text)} cut at ${cut}`,
      );
    }
  }
  // A line that never ends is refused once it passes 64 KiB, not buffered forever.
  assert.throws(() => parseAll([Buffer.alloc(70 * 1024, 0x61)]), /too big inline request/);
  assert.throws(() => parseAll([Buffer.concat([Buffer.from('*1\r\n$'), Buffer.alloc(70 * 1024, 0x31)])]), /too big bulk count string/);
  // A request whose arguments together pass maxRequestBytes.
  const many = Buffer.concat([
    Buffer.from('*100\r\n'),
    ...Array.from({ length: 100 }, () => Buffer.concat([Buffer.from('$1000\r\n'), Buffer.alloc(1000, 0x62), Buffer.from('\r\n')])),
  ]);
  assert.throws(() => parseAll([many]), /request larger than/);
});

test('random garbage never throws anything but a protocol error', () => {
  let seed = 99;
  const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
  const alphabet = Buffer.from('*$\r\n0123456789-abc "\'\\x');
  for (let round = 0; round < 2000; round++) {
    const bytes = Buffer.from(Array.from({ length: 1 + rnd(60) }, () => alphabet[rnd(alphabet.length)]));
    try {
      parseAll([bytes.subarray(0, rnd(bytes.length + 1)), bytes]);
    } catch (err) {
      assert.ok(err instanceof RespProtocolError, `round ${round}: ${String(err)}`);
    }
  }
});

test('*0 and *-1 are no request; inline words split on spaces and tabs, with quotes and escapes', () => {
  assert.deepEqual(parseAll([Buffer.from('*0\r\n*-1\r\nPING\r\n')]).reqs, [['PING']]);
  const words = (s: string) => inlineWords(Buffer.from(s)).map((b) => b.toString('latin1'));
  assert.deepEqual(words('  get\t key  '), ['get', 'key']);
  assert.deepEqual(words('set k "a\\"b\\n\\x41"'), ['set', 'k', 'a"b\nA']);
  assert.deepEqual(words("set k 'it\\'s'"), ['set', 'k', "it's"]);
  assert.deepEqual(words('set k ""'), ['set', 'k', '']);
});

test('encoders: nil differs by protocol; maps are %n in RESP3 and flat arrays in RESP2', () => {
  assert.equal(nil(2), '$-1\r\n');
  assert.equal(nil(3), '_\r\n');
  assert.deepEqual(bulk(Buffer.from('hi')), Buffer.from('$2\r\nhi\r\n'));
  const m = new RespMap([
    ['a', 1],
    ['b', [new Simple('x'), null]],
  ]);
  assert.equal(encode(m, 3), '%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n*2\r\n+x\r\n_\r\n');
  assert.equal(encode(m, 2), '*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n*2\r\n+x\r\n$-1\r\n');
  assert.deepEqual(
    encode(['é', Buffer.from([0, 255])], 2),
    Buffer.concat([Buffer.from('*2\r\n$2\r\né\r\n$2\r\n'), Buffer.from([0, 255]), Buffer.from('\r\n')]),
  );
});
