/**
 * Owns the server's reading of a client's request frame (docs/websocket-protocol.md): checking and
 * decoding it into validated requests or per-request errors. Relies on msgpack-scan (the
 * structural scan before msgpackr unpacks), ws-format (options), ops.ts, errors.ts and
 * validate.ts. Pure: no I/O, no timers. Must not know about sockets or the pool.
 *
 *   frame = [ request, ... ]   request = [id, op, key, ...args]
 *
 * Decoding is two passes over bytes from an untrusted peer: unpackChecked (scan, then unpack),
 * then each request is checked in turn.
 */
import { KvError, toErrorData, type ErrorData } from './errors';
import { OP_DEL, OP_EXPIRE, OP_GET, OP_GETDEL, OP_INCR, OP_PERSIST, OP_PUT, OP_SCAN, OP_TTL, OP_TXN, OP_UNWATCH, OP_WATCH, type OpCode } from './ops';
import { EXISTS, MAX_TXN_OPS, TXN_OPS, type TxnCompare, type TxnOp, type TxnProgram } from './txn';
import { checkListRequest, type ScanRequest } from './listing';
import { describe, unpackChecked } from './msgpack-scan';
import { badRequest, readDelOptions, readIncr, readListOptions, readPutOptions, type OpFields } from './ws-format';
import { checkKey, checkTtlMs, checkValue, type Limits } from './validate';

/** Receives the outcome of decodeFrame, one call per request in frame order. */
export interface RequestSink {
  /** A valid request. `key` and `value` may be views of the frame's bytes. */
  request(id: number, op: OpCode, key: Uint8Array, value: Uint8Array | null, ttlMs: number, flags: number, ifVersion: number): void;
  /** A valid list request (op 12): a page of keys. `prefix` and `after` may be views of the frame. */
  list(id: number, request: ScanRequest): void;
  /** A valid transaction (op 13). Its keys and values may be views of the frame. */
  txn(id: number, program: TxnProgram): void;
  /** A watch request (op 15): stream changes of keys under `prefix` (or the key, `exact`) from `from` ('now' or a cursor). */
  watch?(id: number, prefix: Uint8Array, exact: boolean, from: string): void;
  /** An unwatch request (op 16) for the watch with id `watchId`. */
  unwatch?(id: number, watchId: number): void;
  /** A request with a usable id that failed validation; `op` is 0 when it was not a known op. */
  reject(id: number, op: number, err: ErrorData): void;
  /** The frame, or one request in it, has no usable id: answer under FRAME_ERROR_ID. */
  frameError(message: string): void;
}

export const OP_LIST = '1 get, 2 put, 3 del, 4 expire, 5 persist, 6 ttl, 8 incr, 10 getdel, 12 list, 13 txn, 15 watch, 16 unwatch';

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
  [OP_INCR]: [4, 5, '[id, 8, key, delta, options?]'],
  [OP_GETDEL]: [3, 3, '[id, 10, key]'],
  [OP_SCAN]: [3, 4, '[id, 12, prefix, options?]'],
  [OP_WATCH]: [3, 4, '[id, 15, prefix, options?]'],
  [OP_UNWATCH]: [3, 3, '[id, 16, watchId]'],
};

/** A watch request: `[id, 15, prefix, {from?, exact?}?]`; from is "now" (default) or a cursor. */
function parseWatch(r: unknown[]): { prefix: Uint8Array; exact: boolean; from: string } {
  if (r.length < 3 || r.length > 4) throw badRequest(`op 15 takes [id, 15, prefix, options?], got ${r.length} elements`);
  const prefix = toBytes(r[2]);
  if (prefix === null) throw new KvError('KV_ERR_BAD_KEY', `prefix must be bin or str, got ${describe(r[2])}`);
  if (prefix.length > 1024) throw new KvError('KV_ERR_KEY_TOO_LONG', `prefix is ${prefix.length} bytes, the limit is 1024`);
  let from = 'now';
  let exact = false;
  const o = r[3];
  if (o !== null && o !== undefined) {
    if (typeof o !== 'object' || Array.isArray(o) || o instanceof Uint8Array) throw badRequest(`watch options must be a map, got ${describe(o)}`);
    for (const [name, v] of Object.entries(o as Record<string, unknown>)) {
      if (v === null || v === undefined) continue;
      if (name === 'from') {
        if (typeof v !== 'string' || v.length === 0) throw badRequest(`from must be "now" or a cursor string, got ${describe(v)}`);
        from = v;
      } else if (name === 'exact') {
        if (typeof v !== 'boolean') throw badRequest(`exact must be true or false, got ${describe(v)}`);
        exact = v;
      } else throw badRequest(`unknown watch option "${name.slice(0, 40)}" (allowed: from, exact)`);
    }
  }
  return { prefix, exact, from };
}

/** A list request (op 12): `[id, 12, prefix, {after?, limit?, values?}?]`; an empty prefix lists every key. */
function parseList(r: unknown[], limits: Limits): ScanRequest {
  if (r.length < 3 || r.length > 4) throw badRequest(`op 12 takes [id, 12, prefix, options?], got ${r.length} elements`);
  const prefix = toBytes(r[2]);
  if (prefix === null) throw new KvError('KV_ERR_BAD_KEY', `prefix must be bin or str, got ${describe(r[2])}`);
  const o = readListOptions(r[3]);
  return checkListRequest(prefix, o.after, o.limit, o.values, limits);
}

/**
 * A transaction (op 13): `[id, 13, compares, success, failure]`, compares `[key, version]`
 * (version 0: absent, -1: exists), ops as requests without their id: `[op, key, ...args]`.
 */
function parseTxn(r: unknown[], limits: Limits): TxnProgram {
  if (r.length !== 5) throw badRequest(`op 13 takes [id, 13, compares, success, failure], got ${r.length} elements`);
  const [, , c, s, f] = r;
  if (!Array.isArray(c) || !Array.isArray(s) || !Array.isArray(f)) throw badRequest('compares, success and failure must be arrays');
  if (c.length + s.length + f.length > MAX_TXN_OPS) throw badRequest(`a transaction holds at most ${MAX_TXN_OPS} compares and ops`);
  const compares: TxnCompare[] = c.map((x, i) => {
    const key = Array.isArray(x) && x.length === 2 ? toBytes(x[0]) : null;
    if (key === null || !Number.isSafeInteger(x[1]) || x[1] < EXISTS)
      throw badRequest(`compare ${i} must be [key, version] (version 0: absent, -1: exists), got ${describe(x)}`);
    checkKey(key, limits);
    return [key, x[1] as number];
  });
  const ops = (list: unknown[], name: string): TxnOp[] =>
    list.map((x, i) => {
      if (!Array.isArray(x) || !TXN_OPS.has(x[0] as number))
        throw badRequest(`${name} op ${i} must be [op, key, ...args] with op one of 1 get, 2 put, 3 del, 4 expire, 5 persist, 6 ttl, 8 incr, 10 getdel`);
      const op = parseRequest([0, ...x], x[0], limits);
      return [op, cur.key, cur.value, cur.ttlMs, cur.flags, cur.ifVersion];
    });
  return [compares, ops(s, 'success'), ops(f, 'failure')];
}

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
    case OP_INCR:
      cur.value = readIncr(r[3], r[4], cur);
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
      if (r[1] === OP_SCAN) {
        sink.list(id, parseList(r, limits));
        continue;
      }
      if (r[1] === OP_TXN) {
        sink.txn(id, parseTxn(r, limits));
        continue;
      }
      if (r[1] === OP_WATCH) {
        const w = parseWatch(r);
        if (sink.watch === undefined) throw new KvError('KV_ERR_UNKNOWN_OP', 'watch is not served here');
        sink.watch(id, w.prefix, w.exact, w.from);
        continue;
      }
      if (r[1] === OP_UNWATCH) {
        if (r.length !== 3 || typeof r[2] !== 'number' || !Number.isSafeInteger(r[2])) throw badRequest('op 16 takes [id, 16, watchId]');
        if (sink.unwatch === undefined) throw new KvError('KV_ERR_UNKNOWN_OP', 'unwatch is not served here');
        sink.unwatch(id, r[2]);
        continue;
      }
      op = parseRequest(r, r[1], limits);
    } catch (err) {
      const known = typeof r[1] === 'number' && (SHAPES[r[1]] !== undefined || r[1] === OP_TXN);
      sink.reject(id, known ? (r[1] as number) : 0, toErrorData(err));
      continue;
    }
    sink.request(id, op, cur.key, cur.value, cur.ttlMs, cur.flags, cur.ifVersion);
  }
}
