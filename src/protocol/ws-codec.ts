/**
 * Owns the WebSocket wire format (docs/websocket-protocol.md): checking and decoding a client's
 * request frame into validated requests or per-request errors, shaping and encoding the server's
 * reply frames, and the client's side of both. Relies on ops.ts, errors.ts, validate.ts and
 * msgpackr (decoding only). Pure: no I/O, no timers. Must not know about sockets or the pool.
 *
 *   client -> server   frame = [ request, ... ]   request = [id, op, key, ...args]
 *   server -> client   frame = [ reply, ... ]     reply   = [id, status, ...payload]
 *
 * Decoding is two passes over bytes from an untrusted peer:
 *   1. scanMsgpack walks the bytes without allocating: every declared length must fit in what is
 *      left, nesting is bounded, ext types and 0xc1 are refused, str must be UTF-8. Without it a
 *      5-byte `array32(2^24)` header makes msgpackr allocate a 128 MiB array before failing.
 *   2. msgpackr unpacks what passed (int64AsType 'auto': a peer that always writes 64-bit ints,
 *      as Go's msgpack does by default, is understood), then each request is checked in turn.
 *
 * Encoding uses the small MsgpackWriter below, not msgpackr: msgpackr packs integers above 2^32
 * (every expiresAt) as float64, which typed decoders in other languages refuse for an integer.
 */
import { isUtf8 } from 'node:buffer';
import { Unpackr } from 'msgpackr';
import { ERRORS, KvError, statusOf, toErrorData, type ErrorCode, type ErrorData } from './errors';
import {
  FLAG_IF_ABSENT,
  FLAG_IF_VERSION,
  FLAG_KEEP_TTL,
  OP_DEL,
  OP_EXPIRE,
  OP_GET,
  OP_PERSIST,
  OP_PUT,
  OP_TTL,
  type OpCode,
  type Reply,
} from './ops';
import { checkKey, checkTtlMs, checkValue, type Limits } from './validate';

/** Replies that belong to no request (a frame that cannot be read) carry this id. */
export const FRAME_ERROR_ID = 0;
/** Containers may nest this deep: frame > request > options map > (nothing needs more). */
export const MAX_NESTING = 4;

// ---------------------------------------------------------------------------------------------
// Pass 1: structural scan
// ---------------------------------------------------------------------------------------------

/** Items still to read in each open container, innermost last. Reused: the scan is synchronous. */
const scanStack = new Array<number>(MAX_NESTING + 1).fill(0);

const hex = (b: number): string => `0x${b.toString(16).padStart(2, '0')}`;

/**
 * Checks that `b` holds exactly one well-formed msgpack value that kvsql may decode. Returns null
 * when it does, else a message naming the byte offset of the problem.
 */
export function scanMsgpack(b: Uint8Array, maxNesting: number = MAX_NESTING): string | null {
  const n = b.length;
  if (n === 0) return 'frame is empty (0 bytes); expected a msgpack array';
  // A virtual root container holding exactly one value.
  let depth = 1;
  scanStack[0] = 1;
  let p = 0;
  while (depth > 0) {
    if (scanStack[depth - 1] === 0) {
      depth--;
      continue;
    }
    scanStack[depth - 1]--;
    if (p >= n) return `frame is truncated: it ends at byte ${n} inside an array or map that needs more items`;
    const start = p;
    const t = b[p];
    let items = -1; // >= 0: a container with this many items (a map's count twice) follows
    let isMapHeader = false;
    let skip = 0; // a scalar whose payload is this many bytes
    let lenBytes = 0; // a str/bin whose length is in the next lenBytes bytes
    let isStr = false;
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) {
      p++;
      continue;
    } else if (t <= 0x8f) {
      items = (t & 0x0f) * 2;
      isMapHeader = true;
      p++;
    } else if (t <= 0x9f) {
      items = t & 0x0f;
      p++;
    } else if (t <= 0xbf) {
      skip = t & 0x1f;
      isStr = true;
      p++;
    } else {
      switch (t) {
        case 0xc4: lenBytes = 1; break; // bin 8
        case 0xc5: lenBytes = 2; break; // bin 16
        case 0xc6: lenBytes = 4; break; // bin 32
        case 0xd9: lenBytes = 1; isStr = true; break; // str 8
        case 0xda: lenBytes = 2; isStr = true; break; // str 16
        case 0xdb: lenBytes = 4; isStr = true; break; // str 32
        case 0xcc: case 0xd0: skip = 1; break;
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xca: case 0xce: case 0xd2: skip = 4; break;
        case 0xcb: case 0xcf: case 0xd3: skip = 8; break;
        case 0xdc: case 0xdd: case 0xde: case 0xdf: {
          isMapHeader = t >= 0xde;
          const wide = t === 0xdd || t === 0xdf;
          const head = wide ? 5 : 3;
          if (p + head > n) return `frame is truncated: the ${isMapHeader ? 'map' : 'array'} header at byte ${start} needs ${head} bytes, the frame ends at ${n}`;
          const count = wide ? b[p + 1] * 0x1000000 + ((b[p + 2] << 16) | (b[p + 3] << 8) | b[p + 4]) : (b[p + 1] << 8) | b[p + 2];
          items = isMapHeader ? count * 2 : count;
          p += head;
          break;
        }
        case 0xc1:
          return `byte ${hex(t)} at offset ${start} is not valid msgpack`;
        default: // 0xc7-0xc9 ext 8/16/32, 0xd4-0xd8 fixext
          return `msgpack ext type (${hex(t)}) at offset ${start} is not used by this protocol`;
      }
      if (lenBytes > 0) {
        if (p + 1 + lenBytes > n) return `frame is truncated: the ${isStr ? 'str' : 'bin'} header at byte ${start} needs ${1 + lenBytes} bytes, the frame ends at ${n}`;
        skip = lenBytes === 1 ? b[p + 1] : lenBytes === 2 ? (b[p + 1] << 8) | b[p + 2] : b[p + 1] * 0x1000000 + ((b[p + 2] << 16) | (b[p + 3] << 8) | b[p + 4]);
        p += 1 + lenBytes;
      } else if (items < 0) {
        p++; // a number: the type byte, then `skip` payload bytes
      }
    }
    if (items >= 0) {
      // Every item takes at least one byte: a count larger than what is left cannot be honest.
      if (items > n - p) {
        const what = isMapHeader ? `map at byte ${start} declares ${items / 2} entries` : `array at byte ${start} declares ${items} items`;
        return `frame is truncated: the ${what}, only ${n - p} bytes follow`;
      }
      if (depth > maxNesting) return `containers nest deeper than ${maxNesting} levels at byte ${start}`;
      scanStack[depth++] = items;
      continue;
    }
    if (p + skip > n) return `frame is truncated: the ${isStr ? 'str' : lenBytes > 0 ? 'bin' : 'number'} at byte ${start} needs ${p + skip - start} bytes, the frame ends at ${n}`;
    if (isStr && skip > 0 && !isUtf8(b.subarray(p, p + skip))) {
      return `str at byte ${start} is not valid UTF-8 (send bytes that are not UTF-8 as bin)`;
    }
    p += skip;
  }
  if (p !== n) return `frame has ${n - p} bytes after the end of its value at byte ${p}; send one array per frame`;
  return null;
}

// 'auto' (number when within +-2^53, else bigint) is supported by msgpackr 1.12 but missing from
// its typings.
const unpackr = new Unpackr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'auto' as 'bigint' });

/** Scan, then unpack. Throws a plain Error with a precise message when the bytes are not usable. */
function unpackChecked(bytes: Uint8Array): unknown {
  const problem = scanMsgpack(bytes);
  if (problem !== null) throw new Error(problem);
  return unpackr.unpack(bytes);
}

// ---------------------------------------------------------------------------------------------
// Pass 2: requests (server side)
// ---------------------------------------------------------------------------------------------

/** Receives the outcome of decodeFrame, one call per request in frame order. */
export interface RequestSink {
  /** A valid request. `key` and `value` may be views of the frame's bytes. */
  request(id: number, op: OpCode, key: Uint8Array, value: Uint8Array | null, ttlMs: number, flags: number, ifVersion: number): void;
  /** A request with a usable id that failed validation; `op` is 0 when it was not a known op. */
  reject(id: number, op: number, err: ErrorData): void;
  /** The frame, or one request in it, has no usable id: answer under FRAME_ERROR_ID. */
  frameError(message: string): void;
}

export const OP_LIST = '1 get, 2 put, 3 del, 4 expire, 5 persist, 6 ttl';

/** What a msgpack value decoded as, for messages. */
export function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  switch (typeof v) {
    case 'boolean':
      return 'bool';
    case 'number':
      return Number.isInteger(v) ? `int ${v}` : `float ${v}`;
    case 'bigint':
      return `int ${v} (out of range)`;
    case 'string':
      return `str "${v.length > 40 ? `${v.slice(0, 40)}...` : v}"`;
  }
  if (v instanceof Uint8Array) return `bin (${v.length} bytes)`;
  if (Array.isArray(v)) return `array of ${v.length}`;
  return 'map';
}

/** The fields of one request, filled in place (the decoder allocates nothing per request). */
export interface OpFields {
  ttlMs: number;
  flags: number;
  ifVersion: number;
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);

const badRequest = (message: string): KvError => new KvError('KV_ERR_BAD_REQUEST', message);

function readVersion(v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw badRequest(`ifVersion must be an integer in 0..2^53-1, got ${describe(v)}`);
  }
  return v;
}

function readBool(v: unknown, name: string): boolean {
  if (typeof v !== 'boolean') throw badRequest(`${name} must be true or false, got ${describe(v)}`);
  return v;
}

/**
 * put options {ttl?, keepTtl?, ifAbsent?, ifVersion?} into `out`. A key whose value is nil counts
 * as absent. The same rules as HTTP: ttl and keepTtl contradict, so do ifAbsent and ifVersion.
 */
export function readPutOptions(opts: unknown, out: OpFields): void {
  out.ttlMs = 0;
  out.flags = 0;
  out.ifVersion = 0;
  if (opts === null || opts === undefined) return;
  if (!isMap(opts)) throw badRequest(`put options must be a map, got ${describe(opts)}`);
  for (const name in opts) {
    const v = opts[name];
    if (v === null || v === undefined) continue;
    switch (name) {
      case 'ttl':
        out.ttlMs = checkTtlMs(v, describe(v));
        break;
      case 'keepTtl':
        if (readBool(v, 'keepTtl')) out.flags |= FLAG_KEEP_TTL;
        break;
      case 'ifAbsent':
        if (readBool(v, 'ifAbsent')) out.flags |= FLAG_IF_ABSENT;
        break;
      case 'ifVersion':
        out.ifVersion = readVersion(v);
        out.flags |= FLAG_IF_VERSION;
        break;
      default:
        throw badRequest(`unknown put option "${name.slice(0, 40)}" (allowed: ttl, keepTtl, ifAbsent, ifVersion)`);
    }
  }
  if (out.ttlMs > 0 && (out.flags & FLAG_KEEP_TTL) !== 0) throw badRequest('ttl and keepTtl: true contradict each other; send one');
  if ((out.flags & FLAG_IF_ABSENT) !== 0 && (out.flags & FLAG_IF_VERSION) !== 0) throw badRequest('send ifAbsent or ifVersion, not both');
}

/** del options {ifVersion?} into `out`. */
export function readDelOptions(opts: unknown, out: OpFields): void {
  out.ttlMs = 0;
  out.flags = 0;
  out.ifVersion = 0;
  if (opts === null || opts === undefined) return;
  if (!isMap(opts)) throw badRequest(`del options must be a map, got ${describe(opts)}`);
  for (const name in opts) {
    const v = opts[name];
    if (v === null || v === undefined) continue;
    if (name !== 'ifVersion') throw badRequest(`unknown del option "${name.slice(0, 40)}" (allowed: ifVersion)`);
    out.ifVersion = readVersion(v);
    out.flags |= FLAG_IF_VERSION;
  }
}

function toBytes(v: unknown): Uint8Array | null {
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  return null;
}

const SHAPES: Record<number, [min: number, max: number, shape: string]> = {
  [OP_GET]: [3, 3, '[id, 1, key]'],
  [OP_PUT]: [4, 5, '[id, 2, key, value, options?]'],
  [OP_DEL]: [3, 4, '[id, 3, key, options?]'],
  [OP_EXPIRE]: [4, 4, '[id, 4, key, ttlMs]'],
  [OP_PERSIST]: [3, 3, '[id, 5, key]'],
  [OP_TTL]: [3, 3, '[id, 6, key]'],
};

/** Scratch for the request being decoded: decodeFrame is synchronous and not re-entrant. */
const cur: OpFields & { key: Uint8Array; value: Uint8Array | null } = { key: Buffer.alloc(0), value: null, ttlMs: 0, flags: 0, ifVersion: 0 };

/** Validates everything after the id into `cur`, or throws a KvError. */
function parseRequest(r: unknown[], op: unknown, limits: Limits): OpCode {
  const shape = typeof op === 'number' ? SHAPES[op] : undefined;
  if (shape === undefined) throw new KvError('KV_ERR_UNKNOWN_OP', `op must be one of ${OP_LIST}; got ${describe(op)}`);
  if (r.length < shape[0] || r.length > shape[1]) {
    throw badRequest(`op ${op} takes ${shape[2]}, got ${r.length} elements`);
  }
  const key = toBytes(r[2]);
  if (key === null) throw new KvError('KV_ERR_BAD_KEY', `key must be bin or str, got ${describe(r[2])}`);
  checkKey(key, limits);
  cur.key = key;
  cur.value = null;
  switch (op as OpCode) {
    case OP_PUT: {
      const value = toBytes(r[3]);
      if (value === null) throw badRequest(`value must be bin or str, got ${describe(r[3])}`);
      checkValue(value.length, limits);
      readPutOptions(r[4], cur);
      cur.value = value;
      break;
    }
    case OP_DEL:
      readDelOptions(r[3], cur);
      break;
    case OP_EXPIRE:
      cur.ttlMs = checkTtlMs(r[3], describe(r[3]));
      cur.flags = 0;
      cur.ifVersion = 0;
      break;
    default:
      cur.ttlMs = 0;
      cur.flags = 0;
      cur.ifVersion = 0;
  }
  return op as OpCode;
}

/**
 * Decodes one client frame and reports each request to `sink`, in order. Never throws for bad
 * input: an unreadable frame is one frameError; a request without a usable id is a frameError
 * naming its index; any other bad request is a reject for its id, and the rest still run.
 */
export function decodeFrame(frame: Uint8Array, limits: Limits, sink: RequestSink): void {
  let decoded: unknown;
  try {
    decoded = unpackChecked(frame);
  } catch (err) {
    sink.frameError(`frame is not valid msgpack: ${(err as Error).message}`);
    return;
  }
  if (!Array.isArray(decoded)) {
    sink.frameError(`frame must be a msgpack array of requests, got ${describe(decoded)}`);
    return;
  }
  for (let i = 0; i < decoded.length; i++) {
    const r: unknown = decoded[i];
    if (!Array.isArray(r)) {
      sink.frameError(`request ${i} of the frame must be an array [id, op, key, ...], got ${describe(r)}`);
      continue;
    }
    const id: unknown = r[0];
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1) {
      sink.frameError(`request ${i} of the frame: id must be an integer in 1..2^53-1, got ${r.length === 0 ? 'nothing' : describe(id)}`);
      continue;
    }
    let op: OpCode;
    try {
      op = parseRequest(r, r[1], limits);
    } catch (err) {
      const known = typeof r[1] === 'number' && SHAPES[r[1]] !== undefined;
      sink.reject(id, known ? (r[1] as number) : 0, toErrorData(err));
      continue;
    }
    sink.request(id, op, cur.key, cur.value, cur.ttlMs, cur.flags, cur.ifVersion);
  }
}

// ---------------------------------------------------------------------------------------------
// Replies (server side)
// ---------------------------------------------------------------------------------------------

/**
 * A reply on the wire:
 *   get     [id, 200, value(bin), version, expiresAt|null]    [id, 404]
 *   put     [id, 201|200, version, expiresAt|null]            [id, 412]
 *   del     [id, 204]   [id, 404]   [id, 412]
 *   expire  [id, 200, expiresAt]   [id, 404]
 *   persist [id, 200]   [id, 404]
 *   ttl     [id, 200, ttlMs|null, expiresAt|null]   [id, 404]
 *   error   [id, status, {code, message}]
 */
export type WireReply = [id: number, status: number, a?: unknown, b?: unknown, c?: unknown];

export function errorReply(id: number, err: ErrorData): WireReply {
  return [id, statusOf(err.code), { code: err.code, message: err.message }];
}

export function frameErrorReply(message: string): WireReply {
  return [FRAME_ERROR_ID, ERRORS.KV_ERR_BAD_FRAME, { code: 'KV_ERR_BAD_FRAME', message }];
}

/**
 * Turns the actor's reply for `op` into the wire reply for the client's `id`, IN PLACE: the shard
 * pool hands each Reply array to exactly one target, so reusing it saves an array per op. The
 * actor's shapes are the wire's except ttl ([expiresAt, nowMs] -> [ttlMs, expiresAt]) and errors
 * ([code, message, retryAfter] -> [{code, message}]).
 */
export function toWireReply(r: Reply, id: number, op: OpCode): WireReply {
  r[0] = id;
  const status = r[1];
  if (status >= 400) {
    if (typeof r[2] === 'string') {
      const code = r[2] as ErrorCode;
      r[2] = { code, message: String(r[3]) };
      r.length = 3;
    } else {
      r.length = 2; // 404, 412: no payload on this wire (the actor's 412 carries the current version)
    }
    return r;
  }
  if (op === OP_PERSIST) r.length = 2; // the actor adds whether a TTL was removed; not on this wire
  if (op === OP_TTL) {
    const expiresAt = r[2] as number | null;
    r[2] = expiresAt === null ? null : Math.max(0, expiresAt - (r[3] as number));
    r[3] = expiresAt;
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/**
 * A growable msgpack writer for the few types this protocol uses. Integers are written in the
 * smallest int encoding, uint64/int64 above 32 bits (never as float). The bytes from view() are
 * valid until the next reset().
 */
export class MsgpackWriter {
  private buf: Buffer;
  pos = 0;
  constructor(initial = 64 * 1024) {
    this.buf = Buffer.allocUnsafeSlow(initial);
  }

  reset(): void {
    this.pos = 0;
  }

  view(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafeSlow(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  nil(): void {
    this.room(1);
    this.buf[this.pos++] = 0xc0;
  }

  bool(v: boolean): void {
    this.room(1);
    this.buf[this.pos++] = v ? 0xc3 : 0xc2;
  }

  /** An array header whose count is patched later by patchArray32 (array 32 is valid for any n). */
  reserveArray32(): number {
    this.room(5);
    const at = this.pos;
    this.buf[at] = 0xdd;
    this.pos += 5;
    return at;
  }

  patchArray32(at: number, count: number): void {
    this.buf.writeUInt32BE(count, at + 1);
  }

  arrayHeader(n: number): void {
    this.room(5);
    const b = this.buf;
    if (n < 16) b[this.pos++] = 0x90 | n;
    else if (n < 0x10000) {
      b[this.pos] = 0xdc;
      b.writeUInt16BE(n, this.pos + 1);
      this.pos += 3;
    } else {
      b[this.pos] = 0xdd;
      b.writeUInt32BE(n, this.pos + 1);
      this.pos += 5;
    }
  }

  mapHeader(n: number): void {
    this.room(3);
    if (n < 16) this.buf[this.pos++] = 0x80 | n;
    else {
      this.buf[this.pos] = 0xde;
      this.buf.writeUInt16BE(n, this.pos + 1);
      this.pos += 3;
    }
  }

  number(v: number): void {
    this.room(9);
    const b = this.buf;
    let p = this.pos;
    if (!Number.isInteger(v)) {
      b[p] = 0xcb;
      b.writeDoubleBE(v, p + 1);
      p += 9;
    } else if (v >= 0) {
      if (v < 0x80) b[p++] = v;
      else if (v < 0x100) {
        b[p++] = 0xcc;
        b[p++] = v;
      } else if (v < 0x10000) {
        b[p] = 0xcd;
        b.writeUInt16BE(v, p + 1);
        p += 3;
      } else if (v < 0x100000000) {
        b[p] = 0xce;
        b.writeUInt32BE(v, p + 1);
        p += 5;
      } else {
        b[p] = 0xcf;
        b.writeUInt32BE(Math.floor(v / 0x100000000), p + 1);
        b.writeUInt32BE(v >>> 0, p + 5);
        p += 9;
      }
    } else if (v >= -32) {
      b[p++] = 0x100 + v;
    } else if (v >= -0x80) {
      b[p] = 0xd0;
      b.writeInt8(v, p + 1);
      p += 2;
    } else if (v >= -0x8000) {
      b[p] = 0xd1;
      b.writeInt16BE(v, p + 1);
      p += 3;
    } else if (v >= -0x80000000) {
      b[p] = 0xd2;
      b.writeInt32BE(v, p + 1);
      p += 5;
    } else {
      const hi = Math.floor(v / 0x100000000);
      b[p] = 0xd3;
      b.writeInt32BE(hi, p + 1);
      b.writeUInt32BE(v - hi * 0x100000000, p + 5);
      p += 9;
    }
    this.pos = p;
  }

  bin(v: Uint8Array): void {
    const n = v.length;
    this.room(5 + n);
    this.sizedHeader(n, 0xc4, 0xc5, 0xc6);
    this.buf.set(v, this.pos);
    this.pos += n;
  }

  str(v: string): void {
    const n = Buffer.byteLength(v, 'utf8');
    this.room(5 + n);
    if (n < 32) this.buf[this.pos++] = 0xa0 | n;
    else this.sizedHeader(n, 0xd9, 0xda, 0xdb);
    this.pos += this.buf.write(v, this.pos, n, 'utf8');
  }

  /** The 8/16/32-bit length header of bin and str: the smallest of the three codes that fits. */
  private sizedHeader(n: number, code8: number, code16: number, code32: number): void {
    const b = this.buf;
    if (n < 0x100) {
      b[this.pos] = code8;
      b[this.pos + 1] = n;
      this.pos += 2;
    } else if (n < 0x10000) {
      b[this.pos] = code16;
      b.writeUInt16BE(n, this.pos + 1);
      this.pos += 3;
    } else {
      b[this.pos] = code32;
      b.writeUInt32BE(n, this.pos + 1);
      this.pos += 5;
    }
  }

  /** Any value a reply or request holds: nil, bool, number, str, bin, array, string-keyed map. */
  value(v: unknown): void {
    if (v === null || v === undefined) this.nil();
    else if (typeof v === 'number') this.number(v);
    else if (typeof v === 'string') this.str(v);
    else if (typeof v === 'boolean') this.bool(v);
    else if (v instanceof Uint8Array) this.bin(v);
    else if (Array.isArray(v)) {
      this.arrayHeader(v.length);
      for (let i = 0; i < v.length; i++) this.value(v[i]);
    } else if (typeof v === 'object') {
      const o = v as Record<string, unknown>;
      let n = 0;
      for (const k in o) if (o[k] !== undefined) n++;
      this.mapHeader(n);
      for (const k in o) {
        if (o[k] === undefined) continue;
        this.str(k);
        this.value(o[k]);
      }
    } else {
      throw new TypeError(`cannot encode a ${typeof v} as msgpack`);
    }
  }
}

/**
 * Encodes replies[start..] into one frame of at most about `maxBytes` (always at least one reply)
 * and sets `next` to the first reply left out. The returned bytes are valid until the next encode.
 */
export class ReplyFrameEncoder {
  private readonly w = new MsgpackWriter();
  next = 0;

  encode(replies: readonly WireReply[], start: number, maxBytes: number): Buffer {
    const w = this.w;
    w.reset();
    const header = w.reserveArray32();
    let i = start;
    while (i < replies.length && (i === start || w.pos < maxBytes)) w.value(replies[i++]);
    w.patchArray32(header, i - start);
    this.next = i;
    return w.view();
  }
}

// ---------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------

export interface PutOptions {
  /** Time to live in milliseconds (a positive integer, at most 10 years). */
  ttl?: number;
  /** Keep the key's current TTL (default: a put without ttl clears it). */
  keepTtl?: boolean;
  /** Write only if the key is absent or expired. */
  ifAbsent?: boolean;
  /** Write only if the live key has this version. */
  ifVersion?: number;
}

export interface DelOptions {
  /** Delete only if the live key has this version. */
  ifVersion?: number;
}

/** One request as the client holds it until it is written. */
export interface ClientRequest {
  id: number;
  op: OpCode;
  key: Uint8Array | string;
  /** put: the value. */
  value: Uint8Array | string | null;
  /** expire: the TTL in ms. */
  ttlMs: number;
  /** put/del: the options, sent as a map when present. */
  opts: PutOptions | DelOptions | undefined;
}

const requestWriter = new MsgpackWriter();

/**
 * Encodes requests[start..end) as one client frame. Returns a new Buffer the caller owns (the
 * `ws` package may hold on to what it is given until the socket has written it).
 */
export function encodeRequestFrame(requests: readonly ClientRequest[], start: number, end: number): Buffer {
  const w = requestWriter;
  w.reset();
  w.arrayHeader(end - start);
  for (let i = start; i < end; i++) {
    const r = requests[i];
    const op = r.op;
    const withOpts = r.opts !== undefined && (op === OP_PUT || op === OP_DEL);
    const n = op === OP_PUT ? 4 : op === OP_EXPIRE ? 4 : 3;
    w.arrayHeader(n + (withOpts ? 1 : 0));
    w.number(r.id);
    w.number(op);
    w.value(r.key);
    if (op === OP_PUT) w.value(r.value);
    else if (op === OP_EXPIRE) w.number(r.ttlMs);
    if (withOpts) w.value(r.opts);
  }
  return Buffer.from(w.view());
}

/**
 * Decodes a server frame into replies, checking the envelope only (an array of arrays, each with
 * an integer id and status); the payload is checked by whoever knows which op the id was. Throws
 * an Error with a precise message when the frame is unusable.
 */
export function decodeReplyFrame(bytes: Uint8Array): WireReply[] {
  const decoded = unpackChecked(bytes);
  if (!Array.isArray(decoded)) throw new Error(`reply frame must be a msgpack array, got ${describe(decoded)}`);
  for (let i = 0; i < decoded.length; i++) {
    const r: unknown = decoded[i];
    if (!Array.isArray(r) || r.length < 2 || !Number.isSafeInteger(r[0]) || r[0] < 0 || !Number.isInteger(r[1])) {
      throw new Error(`reply ${i} of the frame must be [id, status, ...], got ${describe(r)}`);
    }
  }
  return decoded as WireReply[];
}

/** The {code, message} of an error reply, or null when `r` is not one. */
export function replyError(r: WireReply): ErrorData | null {
  if (r[1] < 400 || r.length < 3) return null;
  const e = r[2] as { code?: unknown; message?: unknown } | null;
  if (!isMap(e) || typeof e.code !== 'string') return null;
  return { code: e.code as ErrorCode, message: typeof e.message === 'string' ? e.message : e.code };
}
