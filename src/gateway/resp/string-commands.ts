/**
 * Owns the Redis door's string, counter and TTL commands past GET/SET/DEL (INCR family, APPEND,
 * SETRANGE, GETDEL, GETEX, SETNX, SETEX, PSETEX, GETSET, STRLEN, GETRANGE, TYPE, TIME, EXPIRE with
 * NX/XX/GT/LT, EXPIREAT, EXPIRETIME), each as Redis 7 answers it, and the door's reading of a
 * time option (expiryOption). Relies on the connection's RespCall (command-api.ts: submit ops,
 * reply), protocol/ops, numbers, redis-options and resp. Must not touch sockets or the pool.
 *
 * Atomicity is per key, as the actor gives it: INCR, APPEND, SETRANGE, GETDEL and GETEX are single ops
 * decided in the actor's write transaction from the row it locked, so no increment is lost with
 * any number of gateways. MSET and MSETNX, all-or-nothing across keys, are transactions
 * (transactions.ts).
 *
 * Absolute times (EXPIREAT, SET/GETEX ... EXAT/PXAT) are turned into a TTL with this gateway's
 * clock; expiry itself follows the shard's clock (DESIGN.md §5), so a skew between the two shifts
 * the expiry by that skew.
 */
import {
  FLAG_FLOAT,
  FLAG_IF_ABSENT,
  OP_APPEND,
  OP_DEL,
  OP_EXPIRE,
  OP_GET,
  OP_GETDEL,
  OP_GETEX,
  OP_INCR,
  OP_PUT,
  OP_SETRANGE,
  OP_TTL,
  replyOf,
} from '../../protocol/ops';
import { parseFloatText, parseInt64 } from '../../protocol/numbers';
import {
  expirePastWithCondition,
  isOptionError,
  parseExpireOptions,
  parseGetexOptions,
  timeArgMs,
  type ExpiryUnit,
  type OptionError,
} from '../../protocol/redis-options';
import * as resp from '../../protocol/resp';
import { setRangeError } from '../../protocol/setrange';
import { KvError } from '../../protocol/errors';
import { intArg } from './args';
import type { Combine, RespCall, RowTuple } from './command-api';
import { ERR_NOT_FLOAT, ERR_NOT_INTEGER } from './errors';

/** Called with the arity of its row already checked (dispatch.ts). */
type Handler = (c: RespCall, args: Buffer[]) => void;

const OK: Combine = () => resp.OK;

// ---------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------

/** The value after an increment is ASCII digits: the integer reply is its text. */
const incrReply: Combine = (r) => `:${Buffer.from(replyOf(OP_INCR, r[0])[2]).toString('latin1')}\r\n`;
const incrFloatReply: Combine = (r) => resp.bulk(replyOf(OP_INCR, r[0])[2]);

function incrBy(c: RespCall, name: string, key: Buffer, delta: bigint): void {
  c.ops(name, [{ op: OP_INCR, key, value: Buffer.from(delta.toString(), 'latin1') }], incrReply);
}

const incr: Handler = (c, a) => incrBy(c, 'incr', a[1], 1n);
const decr: Handler = (c, a) => incrBy(c, 'decr', a[1], -1n);

const incrby: Handler = (c, a) => {
  const d = parseInt64(a[2]);
  if (d === null) return c.reply(ERR_NOT_INTEGER);
  incrBy(c, 'incrby', a[1], d);
};

const decrby: Handler = (c, a) => {
  const d = parseInt64(a[2]);
  if (d === null) return c.reply(ERR_NOT_INTEGER);
  if (d === -(2n ** 63n)) return c.reply(resp.error('ERR decrement would overflow'));
  incrBy(c, 'decrby', a[1], -d);
};

const incrbyfloat: Handler = (c, a) => {
  const d = parseFloatText(a[2]);
  if (d === null) return c.reply(ERR_NOT_FLOAT);
  if (!Number.isFinite(d)) return c.reply(resp.error('ERR increment would produce NaN or Infinity'));
  c.ops('incrbyfloat', [{ op: OP_INCR, key: a[1], value: a[2], flags: FLAG_FLOAT }], incrFloatReply);
};

// ---------------------------------------------------------------------------------------------
// Strings
// ---------------------------------------------------------------------------------------------

const valueOrNil: Combine = (r, proto) => {
  const g = replyOf(OP_GET, r[0]);
  return g[1] === 200 ? resp.bulk(g[2]) : resp.nil(proto);
};

const append: Handler = (c, a) => {
  c.ops('append', [{ op: OP_APPEND, key: a[1], value: a[2] }], (r) => resp.integer(replyOf(OP_APPEND, r[0])[4]));
};

/** The length of a GET's value (0: absent), as STRLEN answers it. */
const lengthOf: Combine = (r) => {
  const g = replyOf(OP_GET, r[0]);
  return resp.integer(g[1] === 200 ? g[2].length : 0);
};

/**
 * SETRANGE key offset value: one op decided on the locked row (zero-padded, TTL kept). An empty
 * value writes nothing in Redis: here it is a read of the length (STRLEN), so the read right.
 */
const setrange: Handler = (c, a) => {
  const offset = parseInt64(a[2]);
  if (offset === null) return c.reply(ERR_NOT_INTEGER);
  const refused = setRangeError(offset, a[3].length, c.maxValueBytes);
  if (refused !== null) {
    if ('redis' in refused) return c.reply(resp.error(refused.redis));
    throw new KvError(refused.code, refused.message);
  }
  if (a[3].length === 0) return c.ops('setrange', [{ op: OP_GET, key: a[1] }], lengthOf);
  c.ops('setrange', [{ op: OP_SETRANGE, key: a[1], value: a[3], ifVersion: Number(offset) }], (r) => resp.integer(replyOf(OP_APPEND, r[0])[4]));
};

const getdel: Handler = (c, a) => {
  c.ops('getdel', [{ op: OP_GETDEL, key: a[1] }], valueOrNil);
};

/**
 * A TTL from EX/PX (relative) or EXAT/PXAT (absolute, turned relative with this gateway's clock).
 * Returns the milliseconds (<= 0: already past, for EXAT/PXAT), or an error reply (Redis's texts,
 * as scripts give them: redis-options timeArgMs).
 */
export function expiryOption(opt: ExpiryUnit, arg: Buffer, cmd: string): number | OptionError {
  return timeArgMs(arg, opt === 'ex' || opt === 'exat' ? 1000 : 1, opt === 'exat' || opt === 'pxat', Date.now(), cmd, true);
}

const getex: Handler = (c, a) => {
  const o = parseGetexOptions(a, (unit, arg) => expiryOption(unit, arg, 'getex'));
  if (isOptionError(o)) return c.reply(resp.error(o.error));
  if (o.kind === 'get') return c.ops('getex', [{ op: OP_GET, key: a[1] }], valueOrNil);
  // An absolute time already past: Redis deletes the key and answers the value it had.
  if (o.kind === 'ttl' && o.ttlMs <= 0) return c.ops('getex', [{ op: OP_GETDEL, key: a[1] }], valueOrNil);
  c.ops('getex', [{ op: OP_GETEX, key: a[1], ttlMs: o.ttlMs, flags: o.flags }], valueOrNil);
};

const setnx: Handler = (c, a) => {
  c.ops('setnx', [{ op: OP_PUT, key: a[1], value: a[2], flags: FLAG_IF_ABSENT }], (r) => resp.integer(r[0][1] === 412 ? 0 : 1));
};

const setex =
  (name: string, unitMs: number): Handler =>
  (c, a) => {
    const t = expiryOption(unitMs === 1000 ? 'ex' : 'px', a[2], name);
    if (typeof t !== 'number') return c.reply(resp.error(t.error));
    c.ops(name, [{ op: OP_PUT, key: a[1], value: a[3], ttlMs: t }], OK);
  };

const getset: Handler = (c, a) => c.setGet(a[1], a[2], 0, 0);

const strlen: Handler = (c, a) => c.ops('strlen', [{ op: OP_GET, key: a[1] }], lengthOf);

/** Redis's GETRANGE: inclusive offsets, negative ones from the end, clamped. */
export function substr(v: Uint8Array, start: number, end: number): Uint8Array {
  const n = v.length;
  if (start < 0 && end < 0 && start > end) return v.subarray(0, 0);
  if (start < 0) start = Math.max(0, n + start);
  if (end < 0) end = Math.max(0, n + end);
  end = Math.min(end, n - 1);
  if (n === 0 || start > end) return v.subarray(0, 0);
  return v.subarray(start, end + 1);
}

const getrange: Handler = (c, a) => {
  const start = intArg(a[2]);
  const end = intArg(a[3]);
  if (start === null || end === null) return c.reply(ERR_NOT_INTEGER);
  c.ops('getrange', [{ op: OP_GET, key: a[1] }], (r) => {
    const g = replyOf(OP_GET, r[0]);
    return resp.bulk(g[1] === 200 ? substr(g[2], start, end) : Buffer.alloc(0));
  });
};

const type: Handler = (c, a) => {
  c.ops('type', [{ op: OP_TTL, key: a[1] }], (r) => resp.simple(r[0][1] === 200 ? 'string' : 'none'));
};

const time: Handler = (c) => {
  const us = BigInt(Date.now()) * 1000n + BigInt(Math.floor((performance.now() % 1) * 1000));
  c.reply(resp.encode([String(us / 1_000_000n), String(us % 1_000_000n)], c.proto));
};

// ---------------------------------------------------------------------------------------------
// TTL
// ---------------------------------------------------------------------------------------------

/** EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT: 1 when the TTL was set (or the key deleted), else 0. */
const expire =
  (name: string, unitMs: 1 | 1000, absolute: boolean): Handler =>
  (c, a) => {
    // Redis's order: the options first, then the time (redis-options timeArgMs, as in scripts).
    const flags = parseExpireOptions(a, 3);
    if (typeof flags !== 'number') return c.reply(resp.error(flags.error));
    const ms = timeArgMs(a[2], unitMs, absolute, Date.now(), name, false);
    if (typeof ms !== 'number') return c.reply(resp.error(ms.error));
    if (ms <= 0) {
      // As in Redis, a time already past deletes the key (1 if it existed). With NX/XX/GT/LT the
      // condition would have to be decided on the row first: not supported.
      if (flags !== 0) return c.reply(resp.error(expirePastWithCondition(name).error));
      return c.ops(name, [{ op: OP_DEL, key: a[1] }], (r) => resp.integer(r[0][1] === 204 ? 1 : 0));
    }
    c.ops(name, [{ op: OP_EXPIRE, key: a[1], ttlMs: ms, flags }], (r) => resp.integer(r[0][1] === 200 ? 1 : 0));
  };

/** EXPIRETIME, PEXPIRETIME: the absolute expiry (shard clock), -1 without TTL, -2 absent. */
const expiretime =
  (name: string, unitMs: number): Handler =>
  (c, a) => {
    c.ops(name, [{ op: OP_TTL, key: a[1] }], (r) => {
      const t = replyOf(OP_TTL, r[0]);
      if (t[1] !== 200) return resp.integer(-2);
      return resp.integer(t[2] === null ? -1 : Math.floor(t[2] / unitMs));
    });
  };

/** [name, handler, arity, flags, first key, last key, step] as COMMAND shows them (Redis 7's). */
export const STRING_COMMANDS: ReadonlyArray<RowTuple<RespCall>> = [
  ['incr', incr, 2, ['write', 'denyoom', 'fast'], 1, 1, 1],
  ['decr', decr, 2, ['write', 'denyoom', 'fast'], 1, 1, 1],
  ['incrby', incrby, 3, ['write', 'denyoom', 'fast'], 1, 1, 1],
  ['decrby', decrby, 3, ['write', 'denyoom', 'fast'], 1, 1, 1],
  ['incrbyfloat', incrbyfloat, 3, ['write', 'denyoom', 'fast'], 1, 1, 1],
  ['append', append, 3, ['write', 'denyoom', 'fast'], 1, 1, 1],
  ['setrange', setrange, 4, ['write', 'denyoom'], 1, 1, 1],
  ['getdel', getdel, 2, ['write', 'fast'], 1, 1, 1],
  ['getex', getex, -2, ['write', 'fast'], 1, 1, 1],
  ['setnx', setnx, 3, ['write', 'denyoom', 'fast'], 1, 1, 1],
  ['setex', setex('setex', 1000), 4, ['write', 'denyoom'], 1, 1, 1],
  ['psetex', setex('psetex', 1), 4, ['write', 'denyoom'], 1, 1, 1],
  ['getset', getset, 3, ['write', 'denyoom', 'fast'], 1, 1, 1],
  ['strlen', strlen, 2, ['readonly', 'fast'], 1, 1, 1],
  ['getrange', getrange, 4, ['readonly'], 1, 1, 1],
  ['substr', getrange, 4, ['readonly'], 1, 1, 1],
  ['type', type, 2, ['readonly', 'fast'], 1, 1, 1],
  ['time', time, 1, ['loading', 'stale', 'fast'], 0, 0, 0],
  ['expire', expire('expire', 1000, false), -3, ['write', 'fast'], 1, 1, 1],
  ['pexpire', expire('pexpire', 1, false), -3, ['write', 'fast'], 1, 1, 1],
  ['expireat', expire('expireat', 1000, true), -3, ['write', 'fast'], 1, 1, 1],
  ['pexpireat', expire('pexpireat', 1, true), -3, ['write', 'fast'], 1, 1, 1],
  ['expiretime', expiretime('expiretime', 1000), 2, ['readonly', 'fast'], 1, 1, 1],
  ['pexpiretime', expiretime('pexpiretime', 1), 2, ['readonly', 'fast'], 1, 1, 1],
];
