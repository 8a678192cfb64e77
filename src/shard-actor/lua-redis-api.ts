/**
 * Owns the JS half of `redis.*` and of Redis's `math.random`: `redis.call` / `redis.pcall`
 * (luaRedisGenericCommand: argument checks, the read-only refusal, the caller's `call`),
 * `redis.sha1hex`, `redis.setresp`, `redis.log`, and the 48-bit PRNG Redis reseeds before every
 * script; and the state of the run in progress they read (its `call`, read-only flag, PRNG).
 * Relies on `LuaHeap`, `lua-values.ts` for replies, and `LuaVm` for the abort. Never touches the
 * script cache or the budget: a JS exception from `call` becomes an abort, never a wasm unwind.
 * The Lua half (error_reply, status_reply, log's argument checks) is in `lua-prelude.ts`.
 */

import type { LuaHeap } from './lua-heap';
import { SCRIPT_ERRORS, type CallMode, type RedisValue, type ScriptCall, type ScriptRunnerOptions } from './lua-sandbox';
import { sha1hex } from './lua-script-cache';
import { formatG, pushErrorTable, pushRedis } from './lua-values';
import { T_NUMBER, T_STRING } from './lua-wasm';
import type { LuaVm, PreludeApi } from './lua-vm';

export class RedisApi implements PreludeApi {
  /** The run in progress: set by the runner before lua_pcall, cleared after. */
  call: ScriptCall | null = null;
  readOnly = false;
  private prng = 0n;
  readonly functions: Record<string, (L: number) => number>;
  readonly version: string;

  constructor(
    private readonly h: LuaHeap,
    private readonly vm: LuaVm,
    private readonly options: ScriptRunnerOptions,
  ) {
    this.version = options.redisVersion ?? '7.2.0';
    this.functions = {
      call: (l) => this.redisCall(l, 'call'),
      pcall: (l) => this.redisCall(l, 'pcall'),
      sha1hex: this.luaSha1hex,
      setresp: this.luaSetresp,
      log: this.luaLog,
      random: this.luaRandom,
      randomseed: this.luaRandomseed,
    };
  }

  /** Before every script, as Redis (redisSrand48(0)). */
  resetRandom(): void {
    this.prng = 0x330en;
  }

  /** redis.call / redis.pcall (luaRedisGenericCommand). */
  private redisCall(L: number, mode: CallMode): number {
    const { h } = this;
    const { x } = h;
    if (this.vm.abort !== null) h.raiseString(L, 'script aborted');
    const argc = x.lua_gettop(L);
    let failure: string | undefined;
    const args: Buffer[] = new Array(argc);
    if (argc === 0) failure = SCRIPT_ERRORS.noArgs;
    for (let i = 0; i < argc && failure === undefined; i++) {
      const t = x.lua_type(L, i + 1);
      if (t === T_NUMBER) args[i] = Buffer.from(formatG(x.lua_tonumber(L, i + 1), 17));
      else if (t === T_STRING) args[i] = h.readBytes(L, i + 1)!;
      else failure = SCRIPT_ERRORS.badArgType;
    }
    x.lua_settop(L, 0);
    if (failure === undefined && this.readOnly && this.options.isWriteCommand?.(args[0]!.toString('latin1').toLowerCase())) {
      failure = SCRIPT_ERRORS.writeInReadOnly;
    }
    if (failure !== undefined) {
      pushErrorTable(h, L, failure, false);
      if (mode === 'call') x.lua_error(L);
      return 1;
    }
    const call = this.call;
    if (call === null) {
      pushErrorTable(h, L, 'ERR redis.call/pcall can only be called inside a script invocation', false);
      x.lua_error(L);
      return 1;
    }
    let reply: RedisValue;
    try {
      reply = call(args, mode);
    } catch (e) {
      // Never let a JS exception unwind wasm frames: it would leave the Lua state half-done.
      this.vm.setAbort({ reason: 'call-threw', cause: e });
      this.h.raiseString(L, 'script aborted'); // `this.h`: a never-returning call narrows only on a declared type
    }
    pushRedis(h, L, reply);
    if (mode === 'call' && reply !== null && typeof reply === 'object' && 'error' in reply) x.lua_error(L);
    return 1;
  }

  private readonly luaSha1hex = (L: number): number => {
    const { h } = this;
    if (h.x.lua_gettop(L) !== 1) {
      pushErrorTable(h, L, 'ERR wrong number of arguments', false);
      return h.x.lua_error(L);
    }
    const b = h.readBytes(L, 1) ?? Buffer.alloc(0);
    h.pushText(L, sha1hex(b));
    return 1;
  };

  /** redis.setresp: RESP2 only (kvsql's script replies and command replies are RESP2). */
  private readonly luaSetresp = (L: number): number => {
    const { h } = this;
    const { x } = h;
    if (x.lua_gettop(L) !== 1) {
      pushErrorTable(h, L, 'ERR redis.setresp() requires one argument.', false);
      return x.lua_error(L);
    }
    const v = Math.trunc(x.lua_tonumber(L, 1));
    if (v !== 2 && v !== 3) {
      pushErrorTable(h, L, 'ERR RESP version must be 2 or 3.', false);
      return x.lua_error(L);
    }
    if (v === 3) {
      pushErrorTable(h, L, 'ERR kvsql scripts speak RESP2 only: redis.setresp(3) is not supported', false);
      return x.lua_error(L);
    }
    return 0;
  };

  private readonly luaLog = (L: number): number => {
    const level = this.h.x.lua_tonumber(L, 1);
    const msg = this.h.readString(L, 2) ?? '';
    this.options.log?.(level, msg);
    return 0;
  };

  // Redis's redisLrand48 (48-bit LCG, 31-bit outputs), reseeded to 0 before each script.
  private nextRand(): number {
    this.prng = (0x5deece66dn * this.prng + 0xbn) & 0xffffffffffffn;
    return Number(this.prng >> 17n);
  }

  private readonly luaRandom = (L: number): number => {
    const { h } = this;
    const { x } = h;
    const MAX = 2147483647; // REDIS_LRAND48_MAX = INT32_MAX
    const r = (this.nextRand() % MAX) / MAX;
    const argc = x.lua_gettop(L);
    if (argc === 0) x.lua_pushnumber(L, r);
    else if (argc === 1) {
      const u = Math.trunc(x.lua_tonumber(L, 1));
      if (!(u >= 1)) h.raiseString(L, "bad argument #1 to 'random' (interval is empty)");
      x.lua_pushnumber(L, Math.floor(r * u) + 1);
    } else if (argc === 2) {
      const l = Math.trunc(x.lua_tonumber(L, 1));
      const u = Math.trunc(x.lua_tonumber(L, 2));
      if (!(l <= u)) h.raiseString(L, "bad argument #2 to 'random' (interval is empty)");
      x.lua_pushnumber(L, Math.floor(r * (u - l + 1)) + l);
    } else h.raiseString(L, 'wrong number of arguments');
    return 1;
  };

  private readonly luaRandomseed = (L: number): number => {
    const seed = BigInt(Math.trunc(this.h.x.lua_tonumber(L, 1)) | 0);
    this.prng = ((BigInt.asUintN(32, seed) << 16n) | 0x330en) & 0xffffffffffffn;
    return 0;
  };
}
