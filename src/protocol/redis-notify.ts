/**
 * Owns the rules of Redis keyspace notifications as kvsql applies them: the flag letters of
 * `notify-keyspace-events` (parsed and printed exactly as Redis's notify.c does), the channels
 * (`__keyspace@0__:<key>`, `__keyevent@0__:<event>`), and the mapping from a change (as the change
 * feed names it: put, del, expire, persist, expired) to Redis's event names and classes. Relies on
 * ops (op codes). Pure: no I/O, no clock. The Redis door's pub/sub hub (gateway/resp/pubsub-hub.ts)
 * publishes what this returns.
 *
 * Flags are Redis's bits (server.h NOTIFY_*), so the canonical string is Redis's byte for byte:
 *
 *   K keyspace  E keyevent  g generic  $ string  l list  s set  h hash  z zset  x expired
 *   e evicted  t stream  m key-miss  d module  n new   A = g$lshzxetd (not m, not n)
 *
 * kvsql has strings only, so the classes that can fire are g, $, x and n; the others are accepted
 * (a client that sets `KEA` or `Kl` gets what Redis would give it for strings: nothing for l).
 */
import { FLAG_FLOAT, OP_APPEND, OP_INCR, OP_SETRANGE, type OpCode } from './ops';

export const NOTIFY_KEYSPACE = 1 << 0; // K
export const NOTIFY_KEYEVENT = 1 << 1; // E
export const NOTIFY_GENERIC = 1 << 2; // g
export const NOTIFY_STRING = 1 << 3; // $
export const NOTIFY_LIST = 1 << 4; // l
export const NOTIFY_SET = 1 << 5; // s
export const NOTIFY_HASH = 1 << 6; // h
export const NOTIFY_ZSET = 1 << 7; // z
export const NOTIFY_EXPIRED = 1 << 8; // x
export const NOTIFY_EVICTED = 1 << 9; // e
export const NOTIFY_STREAM = 1 << 10; // t
export const NOTIFY_KEY_MISS = 1 << 11; // m (not part of A, as in Redis)
export const NOTIFY_MODULE = 1 << 13; // d
export const NOTIFY_NEW = 1 << 14; // n (not part of A, as in Redis)
export const NOTIFY_ALL =
  NOTIFY_GENERIC | NOTIFY_STRING | NOTIFY_LIST | NOTIFY_SET | NOTIFY_HASH | NOTIFY_ZSET | NOTIFY_EXPIRED | NOTIFY_EVICTED | NOTIFY_STREAM | NOTIFY_MODULE;

/** Redis's error text (config.c) for a letter outside the set. */
export const BAD_NOTIFY_FLAGS = "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.";

const LETTERS: Record<string, number> = {
  A: NOTIFY_ALL,
  g: NOTIFY_GENERIC,
  $: NOTIFY_STRING,
  l: NOTIFY_LIST,
  s: NOTIFY_SET,
  h: NOTIFY_HASH,
  z: NOTIFY_ZSET,
  x: NOTIFY_EXPIRED,
  e: NOTIFY_EVICTED,
  K: NOTIFY_KEYSPACE,
  E: NOTIFY_KEYEVENT,
  t: NOTIFY_STREAM,
  m: NOTIFY_KEY_MISS,
  d: NOTIFY_MODULE,
  n: NOTIFY_NEW,
};

/** keyspaceEventsStringToFlags: the flags of `classes`, or -1 when a letter is unknown (case matters). */
export function notifyFlagsOf(classes: string): number {
  let flags = 0;
  for (const c of classes) {
    const f = LETTERS[c];
    if (f === undefined) return -1;
    flags |= f;
  }
  return flags;
}

/** keyspaceEventsFlagsToString: the canonical text (`KEA` reads back as `AKE`). */
export function notifyFlagsText(flags: number): string {
  let s = '';
  if ((flags & NOTIFY_ALL) === NOTIFY_ALL) {
    s += 'A';
  } else {
    if (flags & NOTIFY_GENERIC) s += 'g';
    if (flags & NOTIFY_STRING) s += '$';
    if (flags & NOTIFY_LIST) s += 'l';
    if (flags & NOTIFY_SET) s += 's';
    if (flags & NOTIFY_HASH) s += 'h';
    if (flags & NOTIFY_ZSET) s += 'z';
    if (flags & NOTIFY_EXPIRED) s += 'x';
    if (flags & NOTIFY_EVICTED) s += 'e';
    if (flags & NOTIFY_STREAM) s += 't';
    if (flags & NOTIFY_MODULE) s += 'd';
    if (flags & NOTIFY_NEW) s += 'n';
  }
  if (flags & NOTIFY_KEYSPACE) s += 'K';
  if (flags & NOTIFY_KEYEVENT) s += 'E';
  if (flags & NOTIFY_KEY_MISS) s += 'm';
  return s;
}

/** Notifications go out at all: some class and at least one of K, E. */
export function notifying(flags: number): boolean {
  return (flags & (NOTIFY_KEYSPACE | NOTIFY_KEYEVENT)) !== 0 && (flags & ~(NOTIFY_KEYSPACE | NOTIFY_KEYEVENT)) !== 0;
}

/**
 * One change of one key, as a KeyspaceSource reports it. `type` is the change feed's word; the
 * optional fields say more when the source knows it (the interim local source knows all of them;
 * a feed event without `op` is a plain put, i.e. Redis's `set`).
 */
export interface KeyspaceEvent {
  type: 'put' | 'del' | 'expire' | 'persist' | 'expired';
  key: Uint8Array;
  /** put only: the op that wrote the value (OP_INCR → incrby / incrbyfloat, OP_APPEND → append, OP_SETRANGE → setrange; else set). */
  op?: OpCode;
  /** put only: the op's flags (FLAG_FLOAT marks INCRBYFLOAT). */
  flags?: number;
  /** put only: the key did not exist before (Redis's `new`, class n). */
  created?: boolean;
  /** put only: the put also set a TTL (Redis follows `set` with `expire`, as SET ... EX does). */
  ttl?: boolean;
}

/** One Redis notification: its class bit and its event name. */
export type RedisEvent = readonly [cls: number, name: string];

const NEW: RedisEvent = [NOTIFY_NEW, 'new'];
const SET: RedisEvent = [NOTIFY_STRING, 'set'];
const INCRBY: RedisEvent = [NOTIFY_STRING, 'incrby'];
const INCRBYFLOAT: RedisEvent = [NOTIFY_STRING, 'incrbyfloat'];
const APPEND: RedisEvent = [NOTIFY_STRING, 'append'];
const SETRANGE: RedisEvent = [NOTIFY_STRING, 'setrange'];
const EXPIRE: RedisEvent = [NOTIFY_GENERIC, 'expire'];
const DEL: RedisEvent = [NOTIFY_GENERIC, 'del'];
const PERSIST: RedisEvent = [NOTIFY_GENERIC, 'persist'];
const EXPIRED: RedisEvent = [NOTIFY_EXPIRED, 'expired'];
const ONLY_DEL = [DEL];
const ONLY_EXPIRE = [EXPIRE];
const ONLY_PERSIST = [PERSIST];
const ONLY_EXPIRED = [EXPIRED];

/**
 * The Redis notifications of one change, in Redis's order (a new key's `new` comes first, as
 * dbAdd fires it inside setKey; `set` then `expire` for SET ... EX). Commands map to changes as:
 * SET/SETNX/SETEX/GETSET put; INCR/DECR/INCRBY/DECRBY incrby; INCRBYFLOAT incrbyfloat; APPEND
 * append; SETRANGE setrange; DEL/UNLINK/GETDEL and an EXPIRE or GETEX in the past del; EXPIRE/GETEX EX expire;
 * PERSIST/GETEX PERSIST persist; the expirer's deletion expired.
 */
export function redisEventsOf(e: KeyspaceEvent): readonly RedisEvent[] {
  switch (e.type) {
    case 'put': {
      const main =
        e.op === OP_INCR ? (((e.flags ?? 0) & FLAG_FLOAT) !== 0 ? INCRBYFLOAT : INCRBY) : e.op === OP_APPEND ? APPEND : e.op === OP_SETRANGE ? SETRANGE : SET;
      if (e.created !== true && e.ttl !== true) return [main];
      const out: RedisEvent[] = [];
      if (e.created === true) out.push(NEW);
      out.push(main);
      if (e.ttl === true) out.push(EXPIRE);
      return out;
    }
    case 'del':
      return ONLY_DEL;
    case 'expire':
      return ONLY_EXPIRE;
    case 'persist':
      return ONLY_PERSIST;
    case 'expired':
      return ONLY_EXPIRED;
  }
}

/** `__keyspace@0__:` and `__keyevent@0__:`: kvsql has database 0 only. */
export const KEYSPACE_PREFIX = Buffer.from('__keyspace@0__:', 'latin1');
export const KEYEVENT_PREFIX = Buffer.from('__keyevent@0__:', 'latin1');

/** True when `b` starts with `prefix`. */
export function startsWith(b: Uint8Array, prefix: Uint8Array): boolean {
  if (b.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (b[i] !== prefix[i]) return false;
  return true;
}
