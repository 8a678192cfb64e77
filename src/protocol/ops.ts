/**
 * Owns the operation model shared by every way in: HTTP, WebSocket and the gateway/actor
 * MessagePort all carry the same requests and replies. Relies on errors.ts. Pure: no I/O.
 *
 * On the MessagePort a request is a positional array (msgpack packs it in a few bytes and decodes
 * it without building an object per field):
 *
 *   Request = [ id, op, key, value | null, ttlMs | 0, flags, ifVersion | 0 ]
 *   Reply   = [ id, status, ...payload ]          payload by op and status, see Replies below
 *
 * `id` is chosen by the sender and unique among its in-flight requests; replies come back in any
 * order and are matched on it.
 */
import { ERRORS, RETRY_AFTER_SECONDS, statusOf, type ErrorCode } from './errors';

export const OP_GET = 1;
export const OP_PUT = 2;
export const OP_DEL = 3;
export const OP_EXPIRE = 4;
export const OP_PERSIST = 5;
export const OP_TTL = 6;
/** Internal: the expirer's conditional delete of a row that is still expired. Never on a wire. */
export const OP_REAP = 7;
/**
 * Read-modify-write ops: decided in the actor's write transaction from the row it locked (its
 * value read with the lock), so they are atomic per key whatever the number of gateways.
 *   incr    value = the delta as ASCII (a signed 64-bit integer, or a float with FLAG_FLOAT)
 *   append  value = the bytes to append
 *   getdel  delete, answering the value deleted
 *   getex   answer the value and set its TTL (ttlMs > 0), clear it (FLAG_CLEAR_TTL), or neither
 *   setrange value = the bytes to write, ifVersion = the byte offset to write them at (setrange
 *           has no version condition, so that position carries its one number; checked at the
 *           edge by protocol/setrange); zero-padded past the end, TTL kept, as Redis's SETRANGE
 */
export const OP_INCR = 8;
export const OP_APPEND = 9;
export const OP_GETDEL = 10;
export const OP_GETEX = 11;

/**
 * A page of keys in byte order (HTTP GET /v1/kv, the WebSocket list op, Redis SCAN and KEYS).
 * Never in a port Request: the gateway asks every shard with a 'scan' message (port-messages).
 */
export const OP_SCAN = 12;

/** Several ops on keys of one shard, atomic and isolated: a packed program as the value (txn.ts). */
export const OP_TXN = 13;
/** A Lua script on its declared keys, run in one transaction of their shard (txn.ts, EvalProgram). */
export const OP_EVAL = 14;

/**
 * Change feed (WebSocket only, gateway work like list): watch streams a prefix's changes under the
 * request's id until unwatch (its key position holds the watch's id) or an error. Never in a port
 * Request.
 */
export const OP_WATCH = 15;
export const OP_UNWATCH = 16;

/** Read-modify-write, like append: see above. */
export const OP_SETRANGE = 17;

export type OpCode = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 13 | 14 | 17;

export const OP_NAMES: Record<number, string> = {
  [OP_GET]: 'get',
  [OP_PUT]: 'put',
  [OP_DEL]: 'del',
  [OP_EXPIRE]: 'expire',
  [OP_PERSIST]: 'persist',
  [OP_TTL]: 'ttl',
  [OP_REAP]: 'reap',
  [OP_INCR]: 'incr',
  [OP_APPEND]: 'append',
  [OP_GETDEL]: 'getdel',
  [OP_GETEX]: 'getex',
  [OP_SCAN]: 'scan',
  [OP_TXN]: 'txn',
  [OP_EVAL]: 'eval',
  [OP_WATCH]: 'watch',
  [OP_UNWATCH]: 'unwatch',
  [OP_SETRANGE]: 'setrange',
};

export function isReadOp(op: number): boolean {
  return op === OP_GET || op === OP_TTL;
}

/** Writes whose outcome depends on the key's current value: the locking read fetches it. */
export function needsValue(op: number, flags: number): boolean {
  return op === OP_INCR || op === OP_APPEND || op === OP_SETRANGE || op === OP_GETDEL || op === OP_GETEX || (op === OP_PUT && (flags & FLAG_GET_OLD) !== 0);
}

/** Writes that answer with the key's value, so they need the right to read it as well. */
export function readsToo(op: number, flags = 0): boolean {
  return needsValue(op, flags);
}

/** put: keep the key's current TTL when no ttl is given (default is to clear it). */
export const FLAG_KEEP_TTL = 1;
/** put: write only when the key is absent or expired (HTTP `If-None-Match: *`). */
export const FLAG_IF_ABSENT = 2;
/** put/del: write only when the live key has version `ifVersion` (HTTP `If-Match`). */
export const FLAG_IF_VERSION = 4;
/** put: write only when the key exists and is live (HTTP `If-Match: *`, Redis `SET ... XX`). */
export const FLAG_IF_EXISTS = 8;
/** incr: the delta and the value are floats (Redis INCRBYFLOAT), not 64-bit integers. */
export const FLAG_FLOAT = 16;
/** getex: remove the key's TTL (Redis GETEX ... PERSIST). */
export const FLAG_CLEAR_TTL = 32;
/**
 * expire: only when the key has no TTL (NX), has one (XX), the new expiry is later (GT) or
 * earlier (LT) than the current one; as Redis, a key without TTL counts as an infinite one for GT
 * and LT. Not met: 412.
 */
export const FLAG_TTL_NX = 64;
export const FLAG_TTL_XX = 128;
export const FLAG_TTL_GT = 256;
export const FLAG_TTL_LT = 512;
/**
 * put: also answer the value the put replaced (null: absent), as Redis SET ... GET and GETSET;
 * decided from the locked row like incr, so it is one atomic op. The reply gains that value.
 */
export const FLAG_GET_OLD = 1024;

export type Request = [id: number, op: OpCode, key: Uint8Array, value: Uint8Array | null, ttlMs: number, flags: number, ifVersion: number];

/**
 * Replies, one named shape per op (the only place their positions are written down: build them
 * with the constructors below and read them through these types, so that changing one op's reply
 * is a compile error wherever it is built or read):
 *
 *   get     200 [value, version, expiresAt|null]       404 []
 *   put     200 replaced / 201 created [version, expiresAt|null]   412 [current version|null]
 *           with FLAG_GET_OLD both gain a last element: the value replaced (null: absent)
 *   del     204 []   404 []   412 [current version]
 *   expire  200 [expiresAt]   404 []
 *   persist 200 [1 a TTL was removed | 0 there was none]   404 []
 *   ttl     200 [expiresAt|null, nowMs, version]   404 []
 *   reap    200 [1 deleted | 0 kept]
 *   incr    200 incremented / 201 created [value, version, expiresAt|null]
 *   append  200 appended / 201 created [version, expiresAt|null, length]
 *   setrange as append; an empty value writes nothing: 200 [version, expiresAt|null, length] of the
 *           live key as it is, 404 [] when it is absent (nothing created)
 *   getdel  200 [value, version, expiresAt|null] (the row deleted)   404 []
 *   getex   200 [value, version, expiresAt|null] (expiresAt as set)  404 []
 *   expire with FLAG_TTL_*: 412 [version] when the condition is not met
 *   txn     200 [1 the compares held | 0 they did not, [replies of the ops that ran]]
 *   eval    200 [the script's reply as RESP2 bytes (an error reply when it failed)]
 *   any     4xx/5xx [code, message, retryAfter?]        (an error, see errors.ts)
 *   any     503 ['KV_ERR_WRONG_SHARD', message, movedTo] (WrongShard: for the gateway, never a client)
 *
 * The arrays go over the MessagePort as they are (msgpack), so their layout is a wire format.
 */
export type NotFound = [id: number, status: 404];
/** A failed condition; `current` is the key's version (null: absent), so a CAS loop needs no read. */
export type PreconditionFailed = [id: number, status: 412, current: number | null, old?: Uint8Array | null];
export type GetHit = [id: number, status: 200, value: Uint8Array, version: number, expiresAt: number | null];
export type GetReply = GetHit | NotFound;
export type PutDone = [id: number, status: 200 | 201, version: number, expiresAt: number | null, old?: Uint8Array | null];
export type PutReply = PutDone | PreconditionFailed;
export type Deleted = [id: number, status: 204];
export type DelReply = Deleted | NotFound | PreconditionFailed;
export type ExpireSet = [id: number, status: 200, expiresAt: number];
export type ExpireReply = ExpireSet | NotFound | PreconditionFailed;
export type Persisted = [id: number, status: 200, removed: 0 | 1];
export type PersistReply = Persisted | NotFound;
/** `nowMs` is the shard's clock when the row was read: the TTL left is measured against it. */
export type TtlHit = [id: number, status: 200, expiresAt: number | null, nowMs: number, version: number];
export type TtlReply = TtlHit | NotFound;
export type ReapReply = [id: number, status: 200, deleted: 0 | 1];
/** The value after the increment, as ASCII (Redis replies with it; it may exceed 2^53). */
export type IncrDone = [id: number, status: 200 | 201, value: Uint8Array, version: number, expiresAt: number | null];
/** A script's reply, encoded as the Redis door sends it (RESP2). */
export type EvalDone = [id: number, status: 200, resp: Uint8Array];
/** A transaction's result (txn.ts): whether its compares held, and the replies of the ops that ran. */
export type TxnDone = [id: number, status: 200, succeeded: 0 | 1, replies: Reply[]];
export type AppendDone = [id: number, status: 200 | 201, version: number, expiresAt: number | null, length: number];
/**
 * `retryAfter` (RETRY_AFTER_SECONDS) has always ridden along on the actor's errors and is kept so
 * the port's bytes stay as they were; nothing reads it: every door takes Retry-After from the
 * registry's policy (errors.ts retryAfterOf). The gateway's own errors may leave it out.
 */
export type ErrorReply = [id: number, status: number, code: ErrorCode, message: string, retryAfter?: number];

/**
 * A shard's refusal of an op whose slot it does not own: its own shape, consumed by the gateway
 * (shard-pool/redirects.ts re-routes it) and never written to a client as is. `movedTo` is the
 * shard index of the slot's new owner as the refusing shard knows it (its own when it is taking
 * the slot over), -1 when unknown. It has an error's layout so anything that is not the pool
 * (a test, a log) still reads it as one.
 */
export type WrongShard = [id: number, status: typeof ERRORS.KV_ERR_WRONG_SHARD, code: 'KV_ERR_WRONG_SHARD', message: string, movedTo: number];

export const wrongShard = (id: number, message: string, movedTo: number): WrongShard => [id, ERRORS.KV_ERR_WRONG_SHARD, 'KV_ERR_WRONG_SHARD', message, movedTo];

export const isWrongShard = (r: Reply): r is WrongShard => r[2] === 'KV_ERR_WRONG_SHARD';

/** The reply of each op, when it is not an ErrorReply. */
export interface ReplyOf {
  [OP_GET]: GetReply;
  [OP_PUT]: PutReply;
  [OP_DEL]: DelReply;
  [OP_EXPIRE]: ExpireReply;
  [OP_PERSIST]: PersistReply;
  [OP_TTL]: TtlReply;
  [OP_REAP]: ReapReply;
  [OP_INCR]: IncrDone;
  [OP_APPEND]: AppendDone;
  [OP_SETRANGE]: AppendDone | NotFound;
  [OP_GETDEL]: GetReply;
  [OP_GETEX]: GetReply;
  [OP_TXN]: TxnDone;
  [OP_EVAL]: EvalDone;
}

export type Reply = ReplyOf[OpCode] | ErrorReply;

export const notFound = (id: number): NotFound => [id, 404];
export const preconditionFailed = (id: number, current: number | null): PreconditionFailed => [id, 412, current];
export const getHit = (id: number, value: Uint8Array, version: number, expiresAt: number | null): GetHit => [id, 200, value, version, expiresAt];
export const putDone = (id: number, created: boolean, version: number, expiresAt: number | null): PutDone => [id, created ? 201 : 200, version, expiresAt];
export const deleted = (id: number): Deleted => [id, 204];
export const expireSet = (id: number, expiresAt: number): ExpireSet => [id, 200, expiresAt];
export const persisted = (id: number, removed: boolean): Persisted => [id, 200, removed ? 1 : 0];
export const ttlHit = (id: number, expiresAt: number | null, nowMs: number, version: number): TtlHit => [id, 200, expiresAt, nowMs, version];
export const reaped = (id: number, deleted: boolean): ReapReply => [id, 200, deleted ? 1 : 0];
export const incrDone = (id: number, created: boolean, value: Uint8Array, version: number, expiresAt: number | null): IncrDone => [
  id,
  created ? 201 : 200,
  value,
  version,
  expiresAt,
];
export const txnDone = (id: number, succeeded: boolean, replies: Reply[]): TxnDone => [id, 200, succeeded ? 1 : 0, replies];
export const appendDone = (id: number, created: boolean, version: number, expiresAt: number | null, length: number): AppendDone => [
  id,
  created ? 201 : 200,
  version,
  expiresAt,
  length,
];

/** An error as a reply, its status from the registry. */
export function errorReply(id: number, code: ErrorCode, message: string): ErrorReply {
  return [id, statusOf(code), code, message, RETRY_AFTER_SECONDS];
}

/** True when `r` is an error (4xx/5xx with a code), whatever the op. 404 and 412 are results. */
export function isErrorReply(r: Reply): r is ErrorReply {
  return r[1] >= 400 && typeof r[2] === 'string';
}

/**
 * The reply of `op` as its own shape: the caller knows which op it submitted, and the error case
 * was taken out first (isErrorReply).
 */
export function replyOf<O extends OpCode>(_op: O, r: Reply): ReplyOf[O] {
  return r as ReplyOf[O];
}

/** True when a reap deleted the row (it was still expired), false when it kept it. */
export function reapDeleted(r: ReapReply): boolean {
  return r[2] === 1;
}

/** Milliseconds a key has left (0 once due), or null when it has no TTL: the one TTL computation. */
export function ttlLeftMs(r: TtlHit): number | null {
  return r[2] === null ? null : Math.max(0, r[2] - r[3]);
}

/** Largest TTL accepted: 10 years. */
export const MAX_TTL_MS = 10 * 365 * 24 * 3600 * 1000;
