/**
 * Owns the option grammar of Redis's SET (NX|XX, GET, EX|PX|EXAT|PXAT|KEEPTTL), of GETEX
 * (EX|PX|EXAT|PXAT|PERSIST) and of the EXPIRE family (NX|XX|GT|LT): which words are options, which combine, and Redis's error texts for the
 * rest. Both the Redis door (gateway/resp) and scripts (shard-actor/script-session) parse with
 * these, so a command reads the same from a client and from `redis.call`. Relies on ops (flags).
 * Pure: no I/O, no clock; must not decide what a time means (the caller's `expiryOf` does: the
 * door with its clock, a script with its transaction's `now`).
 *
 * Errors are texts without RESP framing (`{ error: 'ERR ...' }`, the shape a script's reply takes);
 * the door frames them with resp.error.
 */
import { FLAG_CLEAR_TTL, FLAG_IF_ABSENT, FLAG_IF_EXISTS, FLAG_KEEP_TTL, FLAG_TTL_GT, FLAG_TTL_LT, FLAG_TTL_NX, FLAG_TTL_XX } from './ops';

/** A refused option: the Redis error reply's text (its first word is the code: ERR, ...). */
export interface OptionError {
  readonly error: string;
}

export const SYNTAX_ERROR: OptionError = Object.freeze({ error: 'ERR syntax error' });
export const NOT_INTEGER_ERROR: OptionError = Object.freeze({ error: 'ERR value is not an integer or out of range' });

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
