/**
 * Owns Redis's value conversions both ways, as Redis 7 does them for RESP2: a script's return value
 * (the Lua value on top of the stack) to a reply, a command's reply to the Lua value `redis.call`
 * returns, and a Lua number to a command argument. Relies on `LuaHeap` for bytes in and out of the
 * VM. Never runs a script, never keeps state: every function works on the stack it is given.
 *
 *   Lua → Redis: string → bulk, number → integer (truncated), true → 1, false/nil → nil,
 *                {err=} → error, {ok=} → status, {double=}, {big_number=}, {verbatim_string=},
 *                {map=}, {set=}, else an array up to the first nil
 *   Redis → Lua: nil → false, integer → number, bulk → string, array → table,
 *                status → {ok=}, error → {err=, ignore_error_stats_update=true}
 */

import type { LuaHeap } from './lua-heap';
import type { RedisValue } from './lua-sandbox';
import { T_BOOLEAN, T_NIL, T_NUMBER, T_STRING, T_TABLE } from './lua-wasm';

/** Deepest nesting of a returned table converted (Redis: the Lua C stack limit). */
const MAX_REPLY_DEPTH = 1000;

/** C's printf("%.<p>g", x): how Redis turns a Lua number into a command argument (p = 17). */
export function formatG(x: number, p: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  const exp = Number(x.toExponential(p - 1).split('e')[1]);
  if (exp < -4 || exp >= p) {
    const [mant, e] = x.toExponential(p - 1).split('e');
    const m = mant!.includes('.') ? mant!.replace(/0+$/, '').replace(/\.$/, '') : mant!;
    const n = Number(e);
    return `${m}e${n < 0 ? '-' : '+'}${String(Math.abs(n)).padStart(2, '0')}`;
  }
  const fixed = x.toFixed(Math.max(0, p - 1 - exp));
  return fixed.includes('.') ? fixed.replace(/0+$/, '').replace(/\.$/, '') : fixed;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
/** C's (long long)d on x86-64: truncation; NaN and out of range give INT64_MIN. */
function toInteger(d: number): number | bigint {
  const t = Math.trunc(d);
  if (Number.isSafeInteger(t)) return t === 0 ? 0 : t;
  if (!Number.isFinite(t)) return INT64_MIN;
  const b = BigInt(t);
  return b < INT64_MIN || b > INT64_MAX ? INT64_MIN : b;
}

/** Redis's error text parsing (luaPushErrorBuff): "-CODE msg" → "CODE msg"; "msg" → "ERR msg". */
function errorText(buf: string): string {
  let code: string;
  let msg: string;
  if (buf.startsWith('-')) {
    const sp = buf.indexOf(' ');
    if (sp < 0) [code, msg] = ['ERR', buf.slice(1)];
    else [code, msg] = [buf.slice(1, sp), buf.slice(sp + 1)];
  } else [code, msg] = ['ERR', buf];
  return `${code} ${msg.replace(/^[\r\n]+|[\r\n]+$/g, '')}`;
}

/** A reply line cannot hold CR or LF. */
export const sanitize = (s: string): string => s.replace(/[\r\n]/g, ' ');

// --- Lua → Redis (a script's return value) ----------------------------------------------------

/** The value on top of the stack as a reply; leaves the stack as it found it. */
export function toRedis(h: LuaHeap, L: number, depth: number): RedisValue {
  const { x } = h;
  switch (x.lua_type(L, -1)) {
    case T_STRING:
      return h.readBytes(L, -1)!;
    case T_BOOLEAN:
      return x.lua_toboolean(L, -1) ? 1 : null;
    case T_NUMBER:
      return toInteger(x.lua_tonumber(L, -1));
    case T_TABLE:
      return tableToRedis(h, L, depth);
    default:
      return null;
  }
}

/** Pushes t[k] for the table on top of the stack; returns its Lua type. */
function field(h: LuaHeap, L: number, k: string): number {
  h.pushText(L, k);
  h.x.lua_rawget(L, -2);
  return h.x.lua_type(L, -1);
}

/** Redis's order: err (string), ok (string), double, big_number, verbatim_string, map, set, array. */
function tableToRedis(h: LuaHeap, L: number, depth: number): RedisValue {
  const { x } = h;
  // Every level keeps up to 4 values on the Lua stack; past its 20 free slots, ask for room.
  if (depth >= MAX_REPLY_DEPTH || !x.lua_checkstack(L, 4)) return { error: 'ERR reached lua stack limit' };
  if (field(h, L, 'err') === T_STRING) {
    const e = h.readString(L, -1)!;
    x.lua_settop(L, -2);
    return { error: sanitize(e) };
  }
  x.lua_settop(L, -2);
  if (field(h, L, 'ok') === T_STRING) {
    const s = h.readString(L, -1)!;
    x.lua_settop(L, -2);
    return { status: sanitize(s) };
  }
  x.lua_settop(L, -2);
  if (field(h, L, 'double') === T_NUMBER) {
    const d = x.lua_tonumber(L, -1);
    x.lua_settop(L, -2);
    return Buffer.from(formatG(d, 17)); // RESP2 has no double: a bulk string
  }
  x.lua_settop(L, -2);
  if (field(h, L, 'big_number') === T_STRING) {
    const s = h.readString(L, -1)!;
    x.lua_settop(L, -2);
    return Buffer.from(sanitize(s));
  }
  x.lua_settop(L, -2);
  if (field(h, L, 'verbatim_string') === T_TABLE) {
    h.pushText(L, 'string');
    x.lua_rawget(L, -2);
    if (x.lua_type(L, -1) === T_STRING) {
      const v = h.readBytes(L, -1)!;
      x.lua_settop(L, -3);
      return v;
    }
    x.lua_settop(L, -2);
  }
  x.lua_settop(L, -2);
  if (field(h, L, 'map') === T_TABLE) {
    const out: RedisValue[] = []; // RESP2: key, value, key, value, ...
    x.lua_pushnil(L);
    while (x.lua_next(L, -2) !== 0) {
      x.lua_pushvalue(L, -2);
      out.push(toRedis(h, L, depth + 1));
      x.lua_settop(L, -2);
      out.push(toRedis(h, L, depth + 1));
      x.lua_settop(L, -2);
    }
    x.lua_settop(L, -2);
    return out;
  }
  x.lua_settop(L, -2);
  if (field(h, L, 'set') === T_TABLE) {
    const out: RedisValue[] = [];
    x.lua_pushnil(L);
    while (x.lua_next(L, -2) !== 0) {
      x.lua_settop(L, -2);
      x.lua_pushvalue(L, -1);
      out.push(toRedis(h, L, depth + 1));
      x.lua_settop(L, -2);
    }
    x.lua_settop(L, -2);
    return out;
  }
  x.lua_settop(L, -2);
  // An array: 1, 2, ... up to the first nil.
  const out: RedisValue[] = [];
  for (let j = 1; ; j++) {
    x.lua_rawgeti(L, -1, j);
    if (x.lua_type(L, -1) === T_NIL) {
      x.lua_settop(L, -2);
      break;
    }
    out.push(toRedis(h, L, depth + 1));
    x.lua_settop(L, -2);
  }
  return out;
}

// --- Redis → Lua (a command's reply) ----------------------------------------------------------

/** Pushes a command's reply as the value `redis.call` returns (a string is pushed as text). */
export function pushRedis(h: LuaHeap, L: number, v: RedisValue | string | undefined): void {
  const { x } = h;
  if (v === null || v === undefined) x.lua_pushboolean(L, 0);
  else if (typeof v === 'number') x.lua_pushnumber(L, v);
  else if (typeof v === 'bigint') x.lua_pushnumber(L, Number(v));
  else if (typeof v === 'string') h.pushText(L, v);
  else if (v instanceof Uint8Array) h.pushBytes(L, v);
  else if (Array.isArray(v)) {
    if (!x.lua_checkstack(L, 3)) h.raiseString(L, 'reached lua stack limit');
    x.lua_createtable(L, v.length, 0);
    for (let i = 0; i < v.length; i++) {
      pushRedis(h, L, v[i]);
      x.lua_rawseti(L, -2, i + 1);
    }
  } else if ('status' in v) {
    x.lua_createtable(L, 0, 1);
    h.pushText(L, v.status);
    x.lua_setfield(L, -2, h.name('ok'));
  } else pushErrorTable(h, L, errorText(`-${v.error}`), true);
}

/** {err = text} (and, for a command's error, ignore_error_stats_update = true, as Redis). */
export function pushErrorTable(h: LuaHeap, L: number, text: string, fromCommand: boolean): void {
  const { x } = h;
  x.lua_createtable(L, 0, 2);
  h.pushText(L, text);
  x.lua_setfield(L, -2, h.name('err'));
  if (fromCommand) {
    x.lua_pushboolean(L, 1);
    x.lua_setfield(L, -2, h.name('ignore_error_stats_update'));
  }
}
