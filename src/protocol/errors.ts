/**
 * Owns the error registry: every error kvsql reports has a stable `KV_ERR_*` code and an HTTP
 * status, defined here and nowhere else. Relies on nothing. Pure: no I/O.
 *
 * Errors cross the gateway/actor MessagePort and the WebSocket as data (`{code, message}`), never
 * as Error instances: structured clone drops an Error's class and `code`. Match on `code`.
 */

export const ERRORS = {
  KV_ERR_BAD_KEY: 400,
  KV_ERR_KEY_TOO_LONG: 414,
  KV_ERR_VALUE_TOO_LARGE: 413,
  KV_ERR_BAD_TTL: 400,
  KV_ERR_BAD_REQUEST: 400,
  KV_ERR_BAD_FRAME: 400,
  /** Auth is on and the request carries no valid token (missing, malformed, unknown or revoked). */
  KV_ERR_UNAUTHORIZED: 401,
  /** The token is valid but has no right for this key (or route, or op). */
  KV_ERR_FORBIDDEN: 403,
  KV_ERR_UNKNOWN_OP: 400,
  KV_ERR_NOT_FOUND: 404,
  KV_ERR_ROUTE_NOT_FOUND: 404,
  KV_ERR_METHOD_NOT_ALLOWED: 405,
  KV_ERR_PRECONDITION_FAILED: 412,
  /** incr on a value that is not a 64-bit integer in canonical form (Redis: "not an integer"). */
  KV_ERR_NOT_INTEGER: 409,
  /** incr with FLAG_FLOAT on a value that is not a number. */
  KV_ERR_NOT_FLOAT: 409,
  /** incr whose result leaves the signed 64-bit range, or is NaN or infinite for floats. */
  KV_ERR_OVERFLOW: 409,
  /**
   * A transaction (Redis MULTI/EXEC, MSET, HTTP/WebSocket txn) names keys served by more than one
   * shard: kvsql runs a transaction atomically only within one shard (DESIGN.md §13.2).
   */
  KV_ERR_CROSS_SHARD: 400,
  /** Too many failed token checks from this source address; wait Retry-After seconds. */
  KV_ERR_TOO_MANY_AUTH_FAILURES: 429,
  KV_ERR_OVERLOADED: 503,
  KV_ERR_BUSY: 503,
  KV_ERR_SHARD_UNAVAILABLE: 503,
  /**
   * A write may or may not have been applied (MySQL connection lost during COMMIT, actor died).
   * 500, not 503: a 503 with Retry-After tells proxies and client libraries "not applied, retry"
   * (nginx proxy_next_upstream http_503, Envoy retry_on gateway-error, SDK retry policies), and a
   * blind retry could apply a write twice or undo another client's. Not 504 either: Envoy's
   * gateway-error policy and most SDKs retry 504 as well. 500 says "the server cannot tell":
   * read the key back, or retry a conditional write.
   */
  KV_ERR_OUTCOME_UNKNOWN: 500,
  KV_ERR_SHUTTING_DOWN: 503,
  /** A shard does not own the key's slot (it moved). The gateway refreshes its map and re-routes; a client sees it only after several re-routes failed. */
  KV_ERR_WRONG_SHARD: 503,
  /** The key's slot stayed fenced (being moved) longer than KVSQL_SLOT_HOLD_MS; retry. */
  KV_ERR_SLOT_MOVING: 503,
  /** A change-feed cursor older than the feed's retention: events after it were trimmed. */
  KV_ERR_CURSOR_EXPIRED: 410,
  /** A change-feed cursor that does not decode (not issued by this store). */
  KV_ERR_BAD_CURSOR: 400,
  /** A watcher that did not read its events fast enough was cut off; resume from the error's cursor. */
  KV_ERR_WATCH_TOO_SLOW: 503,
  /** Raised by the client library when an op gets no reply within its timeout; never by the server. */
  KV_ERR_TIMEOUT: 504,
  KV_ERR_INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ERRORS;

/** The shape of an error on every wire: HTTP body, WebSocket reply, MessagePort message. */
export interface ErrorData {
  code: ErrorCode;
  message: string;
}

export class KvError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'KvError';
    this.code = code;
    this.status = ERRORS[code];
  }
  toData(): ErrorData {
    return { code: this.code, message: this.message };
  }
}

/** Seconds a client should wait before retrying a 503, sent as Retry-After. */
export const RETRY_AFTER_SECONDS = 1;
/** Retry-After of a 429 (failed token checks): about one refill of the failure budget. */
export const AUTH_RETRY_AFTER_SECONDS = 1;

/**
 * The one mapping of a code to its HTTP status, on every door (HTTP, WebSocket, Redis, client).
 * A code not in the registry (a newer server's, or garbage) is a 500.
 */
export function statusOf(code: string): number {
  return (ERRORS as Record<string, number>)[code] ?? 500;
}

/**
 * The Retry-After policy: seconds to send with an error of this code, or null for none. A 503 is
 * "not applied, retry later"; a 429 "stop guessing tokens for a while". Nothing else says retry
 * (KV_ERR_OUTCOME_UNKNOWN is a 500 on purpose, see above).
 */
export function retryAfterOf(code: string): number | null {
  const status = statusOf(code);
  return status === 503 ? RETRY_AFTER_SECONDS : status === 429 ? AUTH_RETRY_AFTER_SECONDS : null;
}

/** What a client is told instead of a hidden 500's message. */
export const INTERNAL_MESSAGE = 'internal error';

/**
 * What a client may see of an error's message, the same on every door (HTTP, WebSocket, Redis):
 * all of it, except for a 500 other than KV_ERR_OUTCOME_UNKNOWN (KV_ERR_INTERNAL, or a code not in
 * the registry): a bug or a MySQL error kvsql has no code for, whose text is for the log only.
 * KV_ERR_OUTCOME_UNKNOWN's message is what the client needs to act on, so it is shown.
 */
export function clientMessage(code: string, message: string): string {
  return code === 'KV_ERR_OUTCOME_UNKNOWN' || statusOf(code) !== 500 ? message : INTERNAL_MESSAGE;
}

/**
 * The one mapper from anything thrown (or received as data) to an error's wire shape: a KvError,
 * or `{code, message}` data with a registered code (errors that crossed a MessagePort), keeps its
 * code and message; anything else is an internal error, its message not leaked as-is.
 */
export function toErrorData(err: unknown): ErrorData {
  if (err instanceof KvError) return err.toData();
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code in ERRORS) {
    return { code: code as ErrorCode, message: String((err as Error).message ?? code) };
  }
  return { code: 'KV_ERR_INTERNAL', message: INTERNAL_MESSAGE };
}

/**
 * An error as data for a log line (pino's `{ err }` convention: type, message, stack), for errors
 * that cross a MessagePort before they are logged: structured clone would drop their class.
 */
export function errLog(err: unknown): { type: string; message: string; code?: string; stack?: string } {
  const e = err as { name?: unknown; message?: unknown; code?: unknown; stack?: unknown } | null;
  return {
    type: typeof e?.name === 'string' ? e.name : typeof err,
    message: typeof e?.message === 'string' ? e.message : String(err),
    ...(typeof e?.code === 'string' ? { code: e.code } : {}),
    ...(typeof e?.stack === 'string' ? { stack: e.stack } : {}),
  };
}
