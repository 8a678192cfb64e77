/**
 * Fuzzes the server's WebSocket frame decoder (src/protocol/ws-requests.ts decodeFrame) with a seeded
 * generator (test/helpers/seeded; replay with KVSQL_FUZZ_SEED=<seed>): random request frames,
 * mutated ones (bit flips, truncation, inserted and overwritten bytes, huge declared lengths,
 * trailing bytes, deep nesting) and plain random bytes. For every frame:
 *   - decodeFrame never throws;
 *   - every request is answered exactly once, in order: either the whole frame gets one frame-level
 *     error, or it is an array of N elements and the sink saw exactly N calls, the i-th naming the
 *     i-th element's id (request or reject) or its index (frameError);
 *   - it stays within its allocation bounds: the keys and values it hands out total at most the
 *     frame's length, a 5-byte header declaring 2^24 items or 4 GiB allocates nothing, and the heap does not grow
 *     over the run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Packr, Unpackr } from 'msgpackr';
import { scanMsgpack } from '../../src/protocol/msgpack-scan';
import { decodeFrame, type RequestSink } from '../../src/protocol/ws-requests';
import { Rng, fuzzSeed } from '../helpers/seeded';

const limits = { maxKeyBytes: 1024, maxValueBytes: 4096 };
const packr = new Packr({ useRecords: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'auto' as 'bigint' });
const SEED = fuzzSeed(0x6b76_7371);
const FRAMES = 6_000;

type Call = { kind: 'request'; id: number; bytes: number } | { kind: 'reject'; id: number; code: string } | { kind: 'frame'; message: string };

function decode(frame: Uint8Array): Call[] {
  const calls: Call[] = [];
  const sink: RequestSink = {
    request: (id, _op, key, value) => calls.push({ kind: 'request', id, bytes: key.length + (value?.length ?? 0) }),
    list: (id, q) => calls.push({ kind: 'request', id, bytes: q.prefix.length + (q.after?.length ?? 0) }),
    txn: (id, p) => calls.push({ kind: 'request', id, bytes: [...p[1], ...p[2]].reduce((n, o) => n + o[1].length + (o[2]?.length ?? 0), 0) }),
    reject: (id, _op, err) => calls.push({ kind: 'reject', id, code: err.code }),
    frameError: (message) => calls.push({ kind: 'frame', message }),
  };
  decodeFrame(frame, limits, sink);
  return calls;
}

function genScalar(r: Rng): unknown {
  switch (r.int(12)) {
    case 0:
      return r.int(10);
    case 1:
      return -r.int(1000);
    case 2:
      return r.int(2 ** 31) * 2 ** r.int(30); // up to past 2^53
    case 3:
      return r.next() * 1000;
    case 4:
      return null;
    case 5:
      return r.bool();
    case 6:
      return r.bytes(r.int(40)).toString('latin1');
    case 7:
      return r.bytes(r.int(40));
    case 8:
      return 'é'.repeat(r.int(600));
    case 9:
      return Buffer.alloc(r.pick([0, 1, 1024, 1025, 4096, 4097]), 1);
    case 10:
      return BigInt(2) ** BigInt(63) - BigInt(r.int(3));
    default:
      return r.pick(['', 'k', 'ttl', 'keepTtl', 'ifAbsent', 'ifVersion']);
  }
}

function genValue(r: Rng, depth: number): unknown {
  if (depth > 5 || r.bool(0.7)) return genScalar(r);
  if (r.bool()) return Array.from({ length: r.int(5) }, () => genValue(r, depth + 1));
  const o: Record<string, unknown> = {};
  for (let i = r.int(4); i > 0; i--) o[r.pick(['ttl', 'keepTtl', 'ifAbsent', 'ifVersion', 'x', ''])] = genValue(r, depth + 1);
  return o;
}

/** A request that is often valid and often off by one thing. */
function genRequest(r: Rng): unknown {
  if (r.bool(0.1)) return genValue(r, 1);
  const id = r.bool(0.9) ? 1 + r.int(1_000_000) : genScalar(r);
  const op = r.bool(0.85) ? 1 + r.int(6) : genScalar(r);
  const key = r.bool(0.85) ? `key-${r.int(100)}` : genScalar(r);
  const req: unknown[] = [id, op, key];
  if (op === 2 || r.bool(0.2)) req.push(r.bool(0.8) ? r.bytes(r.int(64)) : genScalar(r));
  if (r.bool(0.4)) {
    req.push(
      r.bool(0.6)
        ? {
            ...(r.bool() ? { ttl: r.pick([1, 1500, 0, -1, 1.5, 2 ** 53, null]) } : {}),
            ...(r.bool() ? { ifVersion: r.pick([0, 7, -1, 2 ** 53]) } : {}),
            ...(r.bool(0.2) ? { keepTtl: r.bool() } : {}),
            ...(r.bool(0.2) ? { ifAbsent: r.bool() } : {}),
          }
        : genValue(r, 2),
    );
  }
  if (op === 4 && r.bool(0.7)) req[3] = r.pick([1, 60_000, 0, -5, 1.5, 'x', 10 * 365 * 24 * 3600 * 1000 + 1]);
  return req;
}

const HUGE_HEADERS = [
  [0xdd, 0xff, 0xff, 0xff, 0xff], // array32 of 2^32-1
  [0xdf, 0xff, 0xff, 0xff, 0xff], // map32
  [0xdb, 0xff, 0xff, 0xff, 0xff], // str32 of 4 GiB
  [0xc6, 0xff, 0xff, 0xff, 0xff], // bin32
  [0xdc, 0xff, 0xff], // array16
  [0xc9, 0xff, 0xff, 0xff, 0xff, 0x01], // ext32
  // Sizes a decoder would honour: 2^24 items is a 128 MiB array, 64 MiB of str or bin.
  [0xdd, 0x01, 0x00, 0x00, 0x00],
  [0xdf, 0x01, 0x00, 0x00, 0x00],
  [0xdb, 0x04, 0x00, 0x00, 0x00],
  [0xc6, 0x04, 0x00, 0x00, 0x00],
];

function mutate(r: Rng, b: Buffer): Buffer {
  const out = Buffer.from(b);
  switch (r.int(8)) {
    case 0: {
      // flip bits
      for (let i = 1 + r.int(4); i > 0 && out.length > 0; i--) out[r.int(out.length)] ^= 1 << r.int(8);
      return out;
    }
    case 1: // truncate
      return out.subarray(0, r.int(out.length + 1));
    case 2: {
      // insert random bytes
      const at = r.int(out.length + 1);
      return Buffer.concat([out.subarray(0, at), r.bytes(1 + r.int(8)), out.subarray(at)]);
    }
    case 3: {
      // overwrite with a huge header
      const h = Buffer.from(r.pick(HUGE_HEADERS));
      const at = r.int(out.length + 1);
      return Buffer.concat([out.subarray(0, at), h, out.subarray(Math.min(out.length, at + h.length))]);
    }
    case 4: // trailing bytes
      return Buffer.concat([out, r.bytes(1 + r.int(4))]);
    case 5: // deep nesting
      return Buffer.concat([Buffer.alloc(1 + r.int(12), 0x91), out]);
    case 6: {
      // a random byte replaced by a type byte
      if (out.length > 0) out[r.int(out.length)] = r.pick([0xc1, 0xd4, 0xc7, 0xdd, 0xdf, 0xdb, 0xc6, 0xcf, 0xd3, 0xcb, 0x9f, 0x8f, 0xbf]);
      return out;
    }
    default: // whole frame random
      return r.bytes(r.int(64));
  }
}

/** What the frame is, read by msgpackr alone (the reference), or undefined when unreadable. */
function reference(frame: Uint8Array): unknown {
  try {
    return unpackr.unpack(frame);
  } catch {
    return undefined;
  }
}

/** Decodes and checks one frame; returns how many answers it got. */
function checkFrame(frame: Buffer, seed: number, index: number): number {
  const where = `seed ${seed} frame ${index} (${frame.subarray(0, 48).toString('hex')}${frame.length > 48 ? '...' : ''}, ${frame.length} bytes)`;
  let calls: Call[];
  const heapBefore = jsHeap();
  try {
    calls = decode(frame);
  } catch (err) {
    assert.fail(`${where}: decodeFrame threw ${(err as Error).stack}`);
  }
  const grew = jsHeap() - heapBefore;
  assert.ok(grew < 16 * 1024 * 1024, `${where}: the heap grew ${grew} bytes decoding it`);
  const handedOut = calls.reduce((n, c) => n + (c.kind === 'request' ? c.bytes : 0), 0);
  assert.ok(handedOut <= frame.length, `${where}: handed out ${handedOut} bytes of keys and values from a ${frame.length}-byte frame`);
  const frameLevel = calls.length === 1 && calls[0].kind === 'frame' && /^frame (is not valid msgpack|must be a msgpack array)/.test(calls[0].message);
  if (frameLevel) {
    // Refused as a whole: fine when msgpackr cannot read it, it is not an array, or the scan
    // refused it for a reason of its own (ext types, bad UTF-8, nesting, trailing bytes...).
    // (msgpackr alone is asked only about frames the scan passed: on the others it may allocate
    // what the frame declares, which is what the scan is there to prevent.)
    assert.ok(scanMsgpack(frame) !== null || !Array.isArray(reference(frame)), `${where}: a readable array was refused as a whole: ${JSON.stringify(calls)}`);
    return 1;
  }
  const ref = reference(frame);
  assert.ok(Array.isArray(ref), `${where}: per-request answers for a frame that is not an array: ${JSON.stringify(calls)}`);
  assert.equal(calls.length, ref.length, `${where}: ${ref.length} requests, ${calls.length} answers`);
  for (let i = 0; i < calls.length; i++) {
    const c = calls[i];
    const el: unknown = ref[i];
    if (c.kind === 'frame')
      assert.ok(c.message.startsWith(`request ${i} of the frame`), `${where}: answer ${i} is a frame error about something else: ${c.message}`);
    else assert.equal(c.id, (el as unknown[])[0], `${where}: answer ${i} has id ${c.id}`);
  }
  return calls.length;
}

/** The JS heap alone: cheap enough to read around every decode (a 2^24-item array lands here). */
function jsHeap(): number {
  return v8.getHeapStatistics().used_heap_size;
}

function heapNow(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

test(`${FRAMES} random and mutated frames: never throws, answers each request exactly once, hands out at most the frame's bytes`, () => {
  const r = new Rng(SEED);
  let requests = 0;
  let frameErrors = 0;
  for (let i = 0; i < FRAMES; i++) {
    const reqs = Array.from({ length: r.int(12) }, () => genRequest(r));
    let frame: Buffer = Buffer.from(packr.pack(r.bool(0.95) ? reqs : genValue(r, 0)));
    if (r.bool(0.6)) frame = mutate(r, frame);
    if (r.bool(0.1)) frame = mutate(r, frame);
    const calls = checkFrame(frame, SEED, i);
    requests += calls;
    if (calls === 1) frameErrors++;
  }
  // The generator must exercise both sides: many accepted requests, many refused frames.
  assert.ok(requests > FRAMES, `only ${requests} answers over ${FRAMES} frames`);
  assert.ok(frameErrors > FRAMES / 20, `only ${frameErrors} single-answer frames`);
});

test('a header declaring 16 Mi items or 64 MiB to 4 GiB (array, map, str, bin, ext) allocates nothing and is one frame error', () => {
  for (const h of HUGE_HEADERS) {
    for (const prefix of [[], [0x91], [0x93], [0x91, 0x93, 0x01, 0x02]]) {
      const frame = Buffer.from([...prefix, ...h, 0x01, 0x02, 0x03]);
      const before = heapNow();
      const calls = decode(frame);
      const grew = heapNow() - before;
      assert.ok(grew < 8 * 1024 * 1024, `${frame.toString('hex')}: the heap grew ${grew} bytes`);
      assert.equal(calls.length, 1, `${frame.toString('hex')}: ${JSON.stringify(calls)}`);
      assert.equal(calls[0].kind, 'frame');
    }
  }
});

test('the heap does not grow over a run of hostile frames', () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const r = new Rng(SEED ^ 0x55aa);
  const frames = Array.from({ length: 2000 }, () => mutate(r, Buffer.from(packr.pack(Array.from({ length: 8 }, () => genRequest(r))))));
  for (const f of frames) decode(f); // warm up
  gc();
  const before = heapNow();
  for (let round = 0; round < 5; round++) for (const f of frames) decode(f);
  gc();
  const grew = heapNow() - before;
  assert.ok(grew < 16 * 1024 * 1024, `the heap grew ${grew} bytes over ${5 * frames.length} decodes`);
});
