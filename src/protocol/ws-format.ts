/**
 * Owns what both sides of the WebSocket wire format (docs/websocket-protocol.md) share: the frame
 * error id, the shape of each op's reply on this wire, and the put/del options with their checks
 * (so the client refuses locally, with the server's messages, what the server would refuse).
 * Relies on ops.ts, errors.ts, validate.ts and msgpack-scan (describe). Pure: no I/O.
 *
 *   client -> server   frame = [ request, ... ]   request = [id, op, key, ...args]
 *   server -> client   frame = [ reply, ... ]     reply   = [id, status, ...payload]
 */
import { KvError, type ErrorData } from './errors';
import {
  FLAG_FLOAT,
  FLAG_IF_ABSENT,
  FLAG_IF_EXISTS,
  FLAG_IF_VERSION,
  FLAG_KEEP_TTL,
  OP_DEL,
  OP_EXPIRE,
  OP_GET,
  OP_GETDEL,
  OP_INCR,
  OP_PERSIST,
  OP_PUT,
  OP_TTL,
  type Deleted,
  type IncrDone,
  type ExpireReply,
  type GetReply,
  type NotFound,
  type PutDone,
} from './ops';
import { describe, isMap } from './msgpack-scan';
import { parseFloatText, parseInt64 } from './numbers';
import { checkPutRules, WS_PUT_NAMES } from './put-rules';
import { checkTtlMs } from './validate';

/** Replies that belong to no request (a frame that cannot be read) carry this id. */
export const FRAME_ERROR_ID = 0;

/**
 * A reply on the wire: every reply has this envelope, the payload depends on the op and status.
 * The shapes by op (the MessagePort's, see ops.ts, except where marked *):
 *   get     [id, 200, value(bin), version, expiresAt|null]    [id, 404]
 *   put     [id, 201|200, version, expiresAt|null]            [id, 412]*   (* no current version)
 *   del     [id, 204]   [id, 404]   [id, 412]*                             (* no current version)
 *   expire  [id, 200, expiresAt]   [id, 404]
 *   persist [id, 200]*   [id, 404]                            (* not whether a TTL was removed)
 *   ttl     [id, 200, ttlMs|null, expiresAt|null]*   [id, 404]     (* the TTL left, not nowMs)
 *   incr    [id, 200|201, value(bin, decimal text), version, expiresAt|null]
 *   getdel  [id, 200, value(bin), version, expiresAt|null]    [id, 404]
 *   list    [id, 200, keys(bin[]), next(bin)|null, values(bin[])|null, expiresAt((int|null)[])|null]
 *                                                     (* not an actor op: a page of every shard)
 *   txn     [id, 200, succeeded(bool), [reply, ...]]   each reply as its op's, its id the op's
 *                                                      index in the list that ran
 *   error   [id, status, {code, message}]*                           (* one map, no retryAfter)
 */
export type WireReply = [id: number, status: number, a?: unknown, b?: unknown, c?: unknown, d?: unknown];
export type WireErrorReply = [id: number, status: number, error: ErrorData];
export type WirePreconditionFailed = [id: number, status: 412];
export type WirePutReply = PutDone | WirePreconditionFailed;
export type WireDelReply = Deleted | NotFound | WirePreconditionFailed;
export type WirePersistReply = [id: number, status: 200] | NotFound;
export type WireTtlHit = [id: number, status: 200, ttlMs: number | null, expiresAt: number | null];
export type WireTtlReply = WireTtlHit | NotFound;
export type WireTxnReply = [id: number, status: 200, succeeded: boolean, replies: WireReply[]];
/** A page of keys; values and expiresAt only when asked for (else nil). */
export type WireListReply = [
  id: number,
  status: 200,
  keys: Uint8Array[],
  next: Uint8Array | null,
  values: Uint8Array[] | null,
  expiresAt: Array<number | null> | null,
];

/** The wire reply of each op the wire carries, when it is not a WireErrorReply. */
export interface WireReplyOf {
  [OP_GET]: GetReply;
  [OP_PUT]: WirePutReply;
  [OP_DEL]: WireDelReply;
  [OP_EXPIRE]: ExpireReply;
  [OP_PERSIST]: WirePersistReply;
  [OP_TTL]: WireTtlReply;
  [OP_INCR]: IncrDone;
  [OP_GETDEL]: GetReply;
}

/** The reply of `op` as its own shape: whoever holds the reply knows which op it asked for. */
export function wireReplyOf<O extends keyof WireReplyOf>(_op: O, r: WireReply): WireReplyOf[O] {
  return r as WireReplyOf[O];
}

/** The fields of one request, filled in place (the decoder allocates nothing per request). */
export interface OpFields {
  ttlMs: number;
  flags: number;
  ifVersion: number;
}

export const badRequest = (message: string): KvError => new KvError('KV_ERR_BAD_REQUEST', message);

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

/** Clears `out`; returns the options as a map, or null when none were sent (nil or absent). */
function optionsMap(opts: unknown, out: OpFields, op: string): Record<string, unknown> | null {
  out.ttlMs = 0;
  out.flags = 0;
  out.ifVersion = 0;
  if (opts === null || opts === undefined) return null;
  if (!isMap(opts)) throw badRequest(`${op} options must be a map, got ${describe(opts)}`);
  return opts;
}

/**
 * put options {ttl?, keepTtl?, ifAbsent?, ifExists?, ifVersion?} into `out`. A key whose value is
 * nil counts as absent. The same rules as HTTP (put-rules.ts): ttl and keepTtl contradict, and at
 * most one of ifAbsent, ifExists and ifVersion.
 */
export function readPutOptions(given: unknown, out: OpFields): void {
  const opts = optionsMap(given, out, 'put');
  if (opts === null) return;
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
      case 'ifExists':
        if (readBool(v, 'ifExists')) out.flags |= FLAG_IF_EXISTS;
        break;
      case 'ifVersion':
        out.ifVersion = readVersion(v);
        out.flags |= FLAG_IF_VERSION;
        break;
      default:
        throw badRequest(`unknown put option "${name.slice(0, 40)}" (allowed: ttl, keepTtl, ifAbsent, ifExists, ifVersion)`);
    }
  }
  checkPutRules(out.ttlMs, out.flags, WS_PUT_NAMES);
}

/** del options {ifVersion?} into `out`. */
export function readDelOptions(given: unknown, out: OpFields): void {
  const opts = optionsMap(given, out, 'del');
  if (opts === null) return;
  for (const name in opts) {
    const v = opts[name];
    if (v === null || v === undefined) continue;
    if (name !== 'ifVersion') throw badRequest(`unknown del option "${name.slice(0, 40)}" (allowed: ifVersion)`);
    out.ifVersion = readVersion(v);
    out.flags |= FLAG_IF_VERSION;
  }
}

/**
 * incr's delta and options {float?} into `out` (the delta as ASCII, what the actor takes): an
 * integer (a safe integer, or a decimal string for the full signed 64-bit range), or with float:
 * true a finite number or decimal string.
 */
export function readIncr(delta: unknown, given: unknown, out: OpFields): Uint8Array {
  const opts = optionsMap(given, out, 'incr');
  if (opts !== null) {
    for (const name in opts) {
      const v = opts[name];
      if (v === null || v === undefined) continue;
      if (name !== 'float') throw badRequest(`unknown incr option "${name.slice(0, 40)}" (allowed: float)`);
      if (readBool(v, 'float')) out.flags |= FLAG_FLOAT;
    }
  }
  const float = (out.flags & FLAG_FLOAT) !== 0;
  const text =
    typeof delta === 'number'
      ? float
        ? String(delta)
        : Number.isSafeInteger(delta)
          ? String(delta)
          : ''
      : typeof delta === 'bigint'
        ? String(delta)
        : typeof delta === 'string'
          ? delta
          : '';
  const bytes = Buffer.from(text, 'latin1');
  if (float ? parseFloatText(bytes) === null || !Number.isFinite(parseFloatText(bytes)!) : parseInt64(bytes) === null) {
    throw badRequest(`incr delta must be ${float ? 'a finite number' : 'a signed 64-bit integer (a string beyond 2^53)'}, got ${describe(delta)}`);
  }
  return bytes;
}

/** list options {after?, limit?, values?}, as sent (checked by listing.checkListRequest). */
export interface ListOptions {
  /** Only keys strictly after this one (the previous page's `next`). */
  after?: Uint8Array | string | null;
  /** Keys per page, 1..1000 (default 100). */
  limit?: number;
  /** Also return each key's value and expiresAt. */
  values?: boolean;
}

/** Reads list options into their parts; the lengths and the limit's range are checked by the caller. */
export function readListOptions(given: unknown): { after: Uint8Array | null; limit: unknown; values: boolean } {
  const out = { after: null as Uint8Array | null, limit: undefined as unknown, values: false };
  if (given === null || given === undefined) return out;
  if (!isMap(given)) throw badRequest(`list options must be a map, got ${describe(given)}`);
  for (const name in given) {
    const v = given[name];
    if (v === null || v === undefined) continue;
    switch (name) {
      case 'after':
        if (typeof v === 'string') out.after = Buffer.from(v, 'utf8');
        else if (v instanceof Uint8Array) out.after = v;
        else throw badRequest(`after must be bin or str, got ${describe(v)}`);
        break;
      case 'limit':
        out.limit = v;
        break;
      case 'values':
        out.values = readBool(v, 'values');
        break;
      default:
        throw badRequest(`unknown list option "${name.slice(0, 40)}" (allowed: after, limit, values)`);
    }
  }
  return out;
}

export interface PutOptions {
  /** Time to live in milliseconds (a positive integer, at most 10 years). */
  ttl?: number;
  /** Keep the key's current TTL (default: a put without ttl clears it). */
  keepTtl?: boolean;
  /** Write only if the key is absent or expired. */
  ifAbsent?: boolean;
  /** Write only if the key exists and is live (HTTP `If-Match: *`, Redis `SET ... XX`). */
  ifExists?: boolean;
  /** Write only if the live key has this version. */
  ifVersion?: number;
}

export interface IncrOptions {
  /** The delta and the value are floats (Redis INCRBYFLOAT). */
  float?: boolean;
}

export interface DelOptions {
  /** Delete only if the live key has this version. */
  ifVersion?: number;
}
