/**
 * Owns the numbers of counters: which stored values count as integers and floats, and how a
 * result is written back, as Redis does (INCR family and INCRBYFLOAT), so a value written through
 * any door increments the same way. Relies on nothing. Pure: no I/O.
 *
 * Integers are signed 64-bit in canonical form: "0", or an optional "-" and digits without a
 * leading zero, at most 20 characters (Redis's string2ll). "+1", " 1", "01" and "-0" are not
 * integers. Arithmetic is in BigInt: counters past 2^53 stay exact.
 *
 * Floats are decimal text ("10.5", "-.5", "5.0e3", "inf"): no spaces, no hex. Redis computes in
 * long double and prints 17 decimals, trimmed; here the sum is an IEEE double printed with 15
 * significant digits, trimmed, so "10.5" + "0.1" is "10.6" and "0.1" + "0.2" is "0.3" as in Redis.
 * Results that are NaN or infinite are refused (Redis: "increment would produce NaN or Infinity").
 */

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const CANONICAL_INT = /^(0|-?[1-9][0-9]{0,19})$/;
const FLOAT_TEXT = /^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity)$/i;

/** The integer `b` holds, or null when it is not a canonical signed 64-bit integer. */
export function parseInt64(b: Uint8Array): bigint | null {
  if (b.length === 0 || b.length > 20) return null;
  const s = Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1');
  if (!CANONICAL_INT.test(s)) return null;
  const n = BigInt(s);
  return n < INT64_MIN || n > INT64_MAX ? null : n;
}

/** The float `b` holds, or null when it is not one. */
export function parseFloatText(b: Uint8Array): number | null {
  if (b.length === 0 || b.length > 5120) return null;
  const s = Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1');
  if (!FLOAT_TEXT.test(s)) return null;
  const lower = s.toLowerCase();
  if (lower.endsWith('inf') || lower.endsWith('infinity')) return lower.startsWith('-') ? -Infinity : Infinity;
  const n = Number(s);
  return Number.isNaN(n) ? null : n;
}

export type IncrResult =
  { ok: true; value: Buffer } | { ok: false; code: 'KV_ERR_NOT_INTEGER' | 'KV_ERR_NOT_FLOAT' | 'KV_ERR_OVERFLOW' | 'KV_ERR_BAD_REQUEST'; message: string };

/** `current` (null: absent, counts as 0) plus `delta`, as the bytes to store. */
export function increment(current: Uint8Array | null, delta: Uint8Array, float: boolean): IncrResult {
  if (float) {
    const d = parseFloatText(delta);
    if (d === null) return { ok: false, code: 'KV_ERR_BAD_REQUEST', message: 'the increment is not a valid float' };
    const c = current === null ? 0 : parseFloatText(current);
    if (c === null) return { ok: false, code: 'KV_ERR_NOT_FLOAT', message: 'value is not a valid float' };
    const sum = c + d;
    if (!Number.isFinite(sum)) return { ok: false, code: 'KV_ERR_OVERFLOW', message: 'increment would produce NaN or Infinity' };
    return { ok: true, value: Buffer.from(formatFloat(sum), 'latin1') };
  }
  const d = parseInt64(delta);
  if (d === null) return { ok: false, code: 'KV_ERR_BAD_REQUEST', message: 'the increment is not a signed 64-bit integer' };
  const c = current === null ? 0n : parseInt64(current);
  if (c === null) return { ok: false, code: 'KV_ERR_NOT_INTEGER', message: 'value is not an integer or out of range' };
  const sum = c + d;
  if (sum < INT64_MIN || sum > INT64_MAX) return { ok: false, code: 'KV_ERR_OVERFLOW', message: 'increment or decrement would overflow' };
  return { ok: true, value: Buffer.from(sum.toString(), 'latin1') };
}

/** A finite double as Redis prints an INCRBYFLOAT result: plain decimal, no exponent, trimmed. */
export function formatFloat(x: number): string {
  const r = Number(x.toPrecision(15));
  if (r === 0) return '0';
  let s = r.toString();
  if (!s.includes('e')) return s;
  // Exponent form: very large (an integer at this precision) or very small.
  if (Math.abs(r) >= 1) return BigInt(r).toString();
  // Redis prints 17 decimals: anything below 1e-17 is 0.
  s = r.toFixed(17).replace(/0+$/, '');
  s = s.endsWith('.') ? s.slice(0, -1) : s;
  return s === '-0' ? '0' : s;
}
