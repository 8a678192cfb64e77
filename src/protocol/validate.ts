/**
 * Owns input validation at the edge (HTTP and WebSocket decoders call it; the actor trusts what
 * passed). Relies on errors.ts and ops.ts. Pure: no I/O. Messages are precise because they are
 * what a client developer reads when a call is rejected.
 */
import { KvError } from './errors';
import { MAX_TTL_MS } from './ops';

export interface Limits {
  maxKeyBytes: number;
  maxValueBytes: number;
}

export function checkKey(key: Uint8Array, limits: Limits): void {
  if (key.length === 0) throw new KvError('KV_ERR_BAD_KEY', 'key must not be empty');
  if (key.length > limits.maxKeyBytes) {
    throw new KvError('KV_ERR_KEY_TOO_LONG', `key is ${key.length} bytes, the limit is ${limits.maxKeyBytes}`);
  }
}

export function checkValue(length: number, limits: Limits): void {
  if (length > limits.maxValueBytes) {
    throw new KvError('KV_ERR_VALUE_TOO_LARGE', `value is ${length} bytes, the limit is ${limits.maxValueBytes}`);
  }
}

const DECIMAL = /^(?:\d+(?:\.\d*)?|\.\d+)$/;

/**
 * A TTL in seconds as text (HTTP `?ttl=`): a positive decimal, at most 10 years, rounded up to
 * the millisecond (so 0.0001 is 1 ms, never 0). Exponents, signs, NaN and Infinity are refused.
 */
export function parseTtlSeconds(text: string): number {
  if (!DECIMAL.test(text)) throw new KvError('KV_ERR_BAD_TTL', `ttl must be a positive number of seconds, got "${text.slice(0, 40)}"`);
  const seconds = Number(text);
  // The epsilon absorbs binary rounding upward (2.007 * 1000 = 2007.0000000000002 is 2007 ms,
  // not 2008); max(1, ...) keeps a positive TTL too small for it (1e-12 s) from becoming 0.
  return checkTtlMs(seconds > 0 ? Math.max(1, Math.ceil(seconds * 1000 - 1e-9)) : 0, text);
}

/** A TTL in milliseconds (WebSocket): a positive integer, at most 10 years. */
export function checkTtlMs(ms: unknown, shown: unknown = ms): number {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms <= 0) {
    throw new KvError('KV_ERR_BAD_TTL', `ttl must be positive, got ${String(shown).slice(0, 40)}`);
  }
  if (ms > MAX_TTL_MS) throw new KvError('KV_ERR_BAD_TTL', `ttl must be at most 10 years (${MAX_TTL_MS / 1000} s)`);
  return ms;
}

/** A version as sent in `If-Match: "<version>"` (quotes optional, weak tags refused). */
export function parseVersionTag(text: string): number {
  const m = /^\s*(?:"(\d{1,16})"|(\d{1,16}))\s*$/.exec(text);
  if (!m) throw new KvError('KV_ERR_BAD_REQUEST', `If-Match must be one version tag like "42", got ${text.slice(0, 40)}`);
  const v = Number(m[1] ?? m[2]);
  if (!Number.isSafeInteger(v)) throw new KvError('KV_ERR_BAD_REQUEST', 'If-Match version out of range');
  return v;
}
