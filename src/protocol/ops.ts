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

export const OP_GET = 1;
export const OP_PUT = 2;
export const OP_DEL = 3;
export const OP_EXPIRE = 4;
export const OP_PERSIST = 5;
export const OP_TTL = 6;
/** Internal: the expirer's conditional delete of a row that is still expired. Never on a wire. */
export const OP_REAP = 7;

export type OpCode = 1 | 2 | 3 | 4 | 5 | 6 | 7;

export const OP_NAMES: Record<number, string> = {
  [OP_GET]: 'get',
  [OP_PUT]: 'put',
  [OP_DEL]: 'del',
  [OP_EXPIRE]: 'expire',
  [OP_PERSIST]: 'persist',
  [OP_TTL]: 'ttl',
  [OP_REAP]: 'reap',
};

export function isReadOp(op: number): boolean {
  return op === OP_GET || op === OP_TTL;
}

/** put: keep the key's current TTL when no ttl is given (default is to clear it). */
export const FLAG_KEEP_TTL = 1;
/** put: write only when the key is absent or expired (HTTP `If-None-Match: *`). */
export const FLAG_IF_ABSENT = 2;
/** put/del: write only when the live key has version `ifVersion` (HTTP `If-Match`). */
export const FLAG_IF_VERSION = 4;
/** put: write only when the key exists and is live (HTTP `If-Match: *`, Redis `SET ... XX`). */
export const FLAG_IF_EXISTS = 8;

export type Request = [
  id: number,
  op: OpCode,
  key: Uint8Array,
  value: Uint8Array | null,
  ttlMs: number,
  flags: number,
  ifVersion: number,
];

/**
 * Replies:
 *   get     200 [value, version, expiresAt|null]       404 []
 *   put     200 replaced / 201 created [version, expiresAt|null]   412 [current version|null]
 *   del     204 []   404 []   412 [current version]
 *   expire  200 [expiresAt]   404 []
 *   persist 200 [1 a TTL was removed | 0 there was none]   404 []
 *   ttl     200 [expiresAt|null, nowMs]   404 []
 *   reap    200 [1 deleted | 0 kept]
 *   any     4xx/5xx [code, message]                     (an error, see errors.ts)
 */
export type Reply = [id: number, status: number, a?: unknown, b?: unknown, c?: unknown];

/** Largest TTL accepted: 10 years. */
export const MAX_TTL_MS = 10 * 365 * 24 * 3600 * 1000;
