/**
 * Owns the client's side of the WebSocket wire format (docs/websocket-protocol.md): encoding
 * request frames and reading reply frames. Relies on msgpack-writer, msgpack-scan, ws-format and
 * ops.ts; nothing of the server. Pure: no I/O, no timers.
 */
import type { ErrorCode, ErrorData } from './errors';
import { OP_DEL, OP_EXPIRE, OP_INCR, OP_PUT, OP_SCAN, OP_TXN, type OpCode } from './ops';
import { describe, isMap, unpackChecked } from './msgpack-scan';
import { MsgpackWriter } from './msgpack-writer';
import type { DelOptions, IncrOptions, ListOptions, PutOptions, WireReply } from './ws-format';

/** One request as the client holds it until it is written. */
export interface ClientRequest {
  id: number;
  op: OpCode | typeof OP_SCAN;
  /** list: the prefix (may be empty). */
  key: Uint8Array | string;
  /** put: the value; incr: the delta as decimal text. */
  value: Uint8Array | string | null;
  /** expire: the TTL in ms. */
  ttlMs: number;
  /** put/del/incr/list: the options, sent as a map when present; txn: its compares and ops. */
  opts: PutOptions | DelOptions | IncrOptions | ListOptions | TxnRequestWire | undefined;
}

/** A transaction's body on the wire: [key, version] compares, and the two lists of [op, key, ...args]. */
export interface TxnRequestWire {
  compares: Array<[Uint8Array | string, number]>;
  wire: [success: unknown[], failure: unknown[]];
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
    if (op === OP_TXN) {
      const t = r.opts as TxnRequestWire;
      w.arrayHeader(5);
      w.number(r.id);
      w.number(op);
      w.value(t.compares);
      w.value(t.wire[0]);
      w.value(t.wire[1]);
      continue;
    }
    const withOpts = r.opts !== undefined && (op === OP_PUT || op === OP_DEL || op === OP_INCR || op === OP_SCAN);
    const n = op === OP_PUT || op === OP_EXPIRE || op === OP_INCR ? 4 : 3;
    w.arrayHeader(n + (withOpts ? 1 : 0));
    w.number(r.id);
    w.number(op);
    w.value(r.key);
    if (op === OP_PUT || op === OP_INCR) w.value(r.value);
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
