/**
 * Owns the option grammar of Redis's SET (NX|XX, GET, EX|PX|EXAT|PXAT|KEEPTTL), of GETEX
 * (EX|PX|EXAT|PXAT|PERSIST) and of the EXPIRE family (NX|XX|GT|LT): which words are options, which
 * combine, and Redis's error texts for the rest, including what a time argument may be (timeArgMs:
 * one reading for SET EX, SETEX, GETEX, EXPIRE and the rest, on the door and in scripts). Both the
 * Redis door (gateway/resp) and scripts (shard-actor/script-session) parse with
 * these, so a command reads the same from a client and from `redis.call`. Relies on ops (flags).
 * Pure: no I/O, no clock; must not decide what a time means (the caller's `expiryOf` does: the
 * door with its clock, a script with its transaction's `now`).
 *
 * Errors are texts without RESP framing (`{ error: 'ERR ...' }`, the shape a script's reply takes);
 * the door frames them with resp.error.
 */
import { FLAG_CLEAR_TTL, FLAG_IF_ABSENT, FLAG_IF_EXISTS, FLAG_KEEP_TTL, FLAG_TTL_GT, FLAG_TTL_LT, FLAG_TTL_NX, FLAG_TTL_XX, MAX_TTL_MS } from './ops';

/** A refused option: the Redis error reply's text (its first word is the code: ERR, ...). */
export interface OptionError {
  readonly error: string;
}

export const SYNTAX_ERROR: OptionError = Object.freeze({ error: 'ERR syntax error' });
export const NOT_INTEGER_ERROR: OptionError = Object.freeze({ error: 'ERR value is not an integer or out of range' });
/**
 * kvsql's refusals where Redis would act on a time already past under a condition (the delete
 * would have to be conditional on the key's state): the same text from the door and from scripts.
 */
export const SET_PAST_WITH_CONDITION: OptionError = Object.freeze({ error: 'ERR kvsql does not support SET with NX, XX or GET and an EXAT/PXAT in the past' });
export const expirePastWithCondition = (name: string): OptionError => ({
  error: `ERR kvsql does not support ${name.toUpperCase()} with NX, XX, GT or LT and a time in the past`,
});

/** Redis's text for a time it cannot use (SET-family: not positive; any: past its signed 64-bit milliseconds). */
export const expireTimeError = (cmd: string): OptionError => ({ error: `ERR invalid expire time in '${cmd}' command` });
/** kvsql's limit, not Redis's (which has none short of 64-bit overflow): a TTL past 10 years. */
export const TTL_TOO_LONG_ERROR: OptionError = Object.freeze({ error: `ERR KV_ERR_BAD_TTL ttl must be at most 10 years (${MAX_TTL_MS / 1000} s)` });

export const isOptionError = (x: unknown): x is OptionError => typeof x === 'object' && x !== null && 'error' in x;

/** SET's time options. */
export type ExpiryUnit = 'ex' | 'px' | 'exat' | 'pxat';

/**
 * One EX/PX/EXAT/PXAT argument as a TTL in milliseconds, by the caller's rules (its number parser,
 * clock and range), or its refusal. Called as the option is met, so a bad number is reported before
 * a later bad word, as before.
 */
export type ExpiryOf = (unit: ExpiryUnit, arg: Buffer) => number | OptionError;

/** SET key value [options]: what the options ask for. */
export interface SetOptions {
  /** FLAG_IF_ABSENT (NX), FLAG_IF_EXISTS (XX), FLAG_KEEP_TTL (KEEPTTL); never FLAG_GET_OLD. */
  flags: number;
  /** GET: answer the value replaced. */
  get: boolean;
  /** What `expiryOf` made of EX/PX/EXAT/PXAT; 0 without one. */
  ttlMs: number;
  /** One of EX, PX, EXAT, PXAT or KEEPTTL was given. */
  expiry: boolean;
}

/**
 * SET's options, `args[3..]` (args[0..2] are SET key value). NX and XX exclude each other, one
 * time option at most (KEEPTTL counts as one), GET may repeat; anything else is a syntax error.
 */
export function parseSetOptions(args: Buffer[], expiryOf: ExpiryOf): SetOptions | OptionError {
  let flags = 0;
  let ttlMs = 0;
  let get = false;
  let expiry = false;
  for (let i = 3; i < args.length; i++) {
    const opt = args[i].toString('latin1').toLowerCase();
    if (opt === 'nx' && (flags & FLAG_IF_EXISTS) === 0) flags |= FLAG_IF_ABSENT;
    else if (opt === 'xx' && (flags & FLAG_IF_ABSENT) === 0) flags |= FLAG_IF_EXISTS;
    else if (opt === 'get') get = true;
    else if (opt === 'keepttl' && !expiry) {
      flags |= FLAG_KEEP_TTL;
      expiry = true;
    } else if ((opt === 'ex' || opt === 'px' || opt === 'exat' || opt === 'pxat') && !expiry && i + 1 < args.length) {
      const t = expiryOf(opt, args[++i]);
      if (typeof t !== 'number') return t;
      ttlMs = t;
      expiry = true;
    } else return SYNTAX_ERROR;
  }
  return { flags, get, ttlMs, expiry };
}

/** GETEX key [options]: what the option asks for. */
export interface GetexOptions {
  /** No option (a plain GET), PERSIST, or a new TTL (EX/PX/EXAT/PXAT). */
  kind: 'get' | 'persist' | 'ttl';
  /** What `expiryOf` made of EX/PX/EXAT/PXAT (<= 0: an absolute time already past); 0 otherwise. */
  ttlMs: number;
  /** FLAG_CLEAR_TTL for PERSIST, else 0. */
  flags: number;
}

/** GETEX's options, `args[2..]`: at most one of EX|PX|EXAT|PXAT time, PERSIST; anything else is a syntax error. */
export function parseGetexOptions(args: Buffer[], expiryOf: ExpiryOf): GetexOptions | OptionError {
  const o: GetexOptions = { kind: 'get', ttlMs: 0, flags: 0 };
  for (let i = 2; i < args.length; i++) {
    if (o.kind !== 'get') return SYNTAX_ERROR;
    const opt = args[i].toString('latin1').toLowerCase();
    if (opt === 'persist') {
      o.kind = 'persist';
      o.flags = FLAG_CLEAR_TTL;
    } else if ((opt === 'ex' || opt === 'px' || opt === 'exat' || opt === 'pxat') && i + 1 < args.length) {
      const t = expiryOf(opt, args[++i]);
      if (typeof t !== 'number') return t;
      o.kind = 'ttl';
      o.ttlMs = t;
    } else return SYNTAX_ERROR;
  }
  return o;
}

/** EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT's NX|XX|GT|LT, `args[from..]`, as flags, with Redis's errors for incompatible ones. */
export function parseExpireOptions(args: Buffer[], from: number): number | OptionError {
  let flags = 0;
  for (let i = from; i < args.length; i++) {
    const opt = args[i].toString('latin1').toLowerCase();
    if (opt === 'nx') flags |= FLAG_TTL_NX;
    else if (opt === 'xx') flags |= FLAG_TTL_XX;
    else if (opt === 'gt') flags |= FLAG_TTL_GT;
    else if (opt === 'lt') flags |= FLAG_TTL_LT;
    else return { error: `ERR Unsupported option ${args[i].toString('utf8', 0, 40)}` };
  }
  if ((flags & FLAG_TTL_NX) !== 0 && (flags & (FLAG_TTL_XX | FLAG_TTL_GT | FLAG_TTL_LT)) !== 0) {
    return { error: 'ERR NX and XX, GT or LT options at the same time are not compatible' };
  }
  if ((flags & FLAG_TTL_GT) !== 0 && (flags & FLAG_TTL_LT) !== 0) return { error: 'ERR GT and LT options at the same time are not compatible' };
  return flags;
}

/** Redis's integer syntax (string2ll): "0", or an optional "-" and up to 19 digits without a leading zero. */
const INT_TEXT = /^(0|-?[1-9][0-9]{0,18})$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * A time argument as a TTL in milliseconds, read as Redis 7 reads it, on the door and in scripts:
 *
 *   not an integer                                        ERR value is not an integer or out of range
 *   `positive` (SET EX/PX/EXAT/PXAT, SETEX, GETEX) and <= 0  ERR invalid expire time in '<cmd>' command
 *   t * unit (+ now when relative) past signed 64 bits    ERR invalid expire time in '<cmd>' command
 *   a TTL over 10 years (kvsql's limit)                   ERR KV_ERR_BAD_TTL ttl must be at most 10 years
 *
 * An absolute time (EXAT, EXPIREAT, ...) is made relative to `nowMs`; the result may be <= 0 (a
 * time already past, or a negative EXPIRE): the caller decides what that does. Allocates no
 * BigInt unless the number is past 2^53 (then it is refused or already past).
 */
export function timeArgMs(arg: Buffer, unitMs: 1 | 1000, absolute: boolean, nowMs: number, cmd: string, positive: boolean): number | OptionError {
  const s = arg.toString('latin1');
  if (!INT_TEXT.test(s)) return NOT_INTEGER_ERROR;
  const n = Number(s);
  // |n| <= 2^53: n * 1000 + now stays far inside 64 bits, so only the 10-year limit can refuse it.
  if (!Number.isSafeInteger(n)) return bigTimeArg(BigInt(s), unitMs, absolute, nowMs, cmd, positive);
  if (positive && n <= 0) return expireTimeError(cmd);
  const ms = absolute ? n * unitMs - nowMs : n * unitMs;
  return ms > MAX_TTL_MS ? TTL_TOO_LONG_ERROR : ms;
}

/** timeArgMs past 2^53: Redis's overflow checks in BigInt; what passes is long past or over 10 years. */
function bigTimeArg(t: bigint, unitMs: number, absolute: boolean, nowMs: number, cmd: string, positive: boolean): number | OptionError {
  if (t < INT64_MIN || t > INT64_MAX) return NOT_INTEGER_ERROR;
  if (positive && t <= 0n) return expireTimeError(cmd);
  const when = t * BigInt(unitMs) + (absolute ? 0n : BigInt(nowMs));
  if (when < INT64_MIN || when > INT64_MAX) return expireTimeError(cmd);
  return t < 0n ? -1 : TTL_TOO_LONG_ERROR;
}
