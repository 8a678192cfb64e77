/**
 * Owns `ScriptRunner` on one Lua VM: compiling a body (shebang, then luaL_loadbuffer under the
 * memory bound) into the cache, and running a compiled script: KEYS and ARGV, the budget around
 * lua_pcall, the reply or Redis 7's error text. Relies on `LuaVm` (state and budget), `RedisApi`
 * (redis.* and the run's `call`), `ScriptCache`, `lua-values.ts` and `lua-shebang.ts`. Never
 * touches MySQL, keys or the MessagePort (see `lua-sandbox.ts` for the whole picture).
 *
 *   run(body) ──sha1──► cache (LRU, sha → registry ref of the compiled function)
 *        │                 miss: luaL_loadbuffer("@user_script") under the memory limit
 *        ▼
 *   stack: [handler, fn]   KEYS, ARGV set in G; fn's env reset to ENV (a script may have setfenv'd)
 *        │  startBudget … endBudget (LuaVm)
 *        ▼
 *   lua_pcall ──► abort? its error : status? Redis 7's error text : reply (Lua → RedisValue)
 */

import { LuaHeap } from './lua-heap';
import { RedisApi } from './lua-redis-api';
import {
  memoryError,
  timeoutError,
  type LoadResult,
  type RunResult,
  type ScriptCall,
  type ScriptFlags,
  type ScriptLimits,
  type ScriptRunner,
  type ScriptRunnerOptions,
} from './lua-sandbox';
import { ScriptCache, sha1hex, type CachedScript } from './lua-script-cache';
import { parseShebang } from './lua-shebang';
import { sanitize, toRedis } from './lua-values';
import { LuaPanic, LuaVm } from './lua-vm';
import { instantiate, LUA_GCCOLLECT, LUA_GLOBALSINDEX, LUA_REGISTRYINDEX, T_TABLE } from './lua-wasm';

export async function createScriptRunner(limits: ScriptLimits, options: ScriptRunnerOptions = {}): Promise<ScriptRunner> {
  const { m, x } = await instantiate();
  return new LuaScriptRunner(new LuaHeap(m, x), limits, options);
}

class LuaScriptRunner implements ScriptRunner {
  private readonly vm: LuaVm;
  private readonly api: RedisApi;
  private readonly cache: ScriptCache;
  private runs = 0;
  private compiles = 0;

  constructor(
    private readonly h: LuaHeap,
    private readonly limits: ScriptLimits,
    options: ScriptRunnerOptions,
  ) {
    this.cache = new ScriptCache(options.maxCachedScripts ?? 1000);
    this.vm = new LuaVm(h, limits.memoryBytes);
    this.api = new RedisApi(h, this.vm, options);
    this.vm.open(this.api);
  }

  // --- compile and cache ----------------------------------------------------------------------

  sha1hex(s: Buffer | string): string {
    return sha1hex(s);
  }

  has(sha: string): boolean {
    return this.cache.peek(sha.toLowerCase()) !== undefined;
  }

  flagsOf(sha: string): ScriptFlags | undefined {
    return this.cache.peek(sha.toLowerCase())?.flags;
  }

  load(body: Buffer | string): LoadResult {
    const b = typeof body === 'string' ? Buffer.from(body) : body;
    const sha = sha1hex(b);
    const got = this.compile(sha, b);
    return 'error' in got ? { ok: false, error: got.error } : { ok: true, sha, flags: got.flags };
  }

  private compile(sha: string, body: Buffer): CachedScript | { error: string } {
    const hit = this.cache.use(sha);
    if (hit) return hit;
    const parsed = parseShebang(body);
    if ('error' in parsed) return parsed;
    const { h, vm } = this;
    const { x } = h;
    const L = vm.L;
    if (parsed.code[0] === 0x1b) {
      // Redis's Lua cannot undump: a binary chunk is read as text and fails at its first byte.
      return { error: "ERR Error compiling script (new function): user_script:1: unexpected symbol near 'char(27)'" };
    }
    vm.limitActive = true;
    const status = x.luaL_loadbuffer(L, h.put(parsed.code), parsed.code.length, h.name('@user_script'));
    vm.limitActive = false;
    vm.abort = null;
    x.lua_sethook(L, 0, 0, 0);
    if (status !== 0) {
      const msg = status === 4 ? memoryError(this.limits.memoryBytes) : (h.readString(L, -1) ?? 'unknown error');
      x.lua_settop(L, 0);
      if (status === 4) return { error: msg };
      return { error: `ERR Error compiling script (new function): ${msg}` };
    }
    this.compiles++;
    const entry: CachedScript = { ref: x.luaL_ref(L, LUA_REGISTRYINDEX), flags: parsed.flags };
    const evicted = this.cache.add(sha, entry);
    if (evicted) x.luaL_unref(L, LUA_REGISTRYINDEX, evicted.ref);
    return entry;
  }

  flush(): void {
    const L = this.vm.L;
    for (const s of this.cache.values()) this.h.x.luaL_unref(L, LUA_REGISTRYINDEX, s.ref);
    this.cache.clear();
    this.h.x.lua_gc(L, LUA_GCCOLLECT, 0);
  }

  // --- run ------------------------------------------------------------------------------------

  run(body: Buffer | string, keys: Buffer[], argv: Buffer[], call: ScriptCall, readOnly: boolean): RunResult {
    const b = typeof body === 'string' ? Buffer.from(body) : body;
    const sha = sha1hex(b);
    const s = this.compile(sha, b);
    if ('error' in s) return { ok: false, reason: 'compile', error: s.error };
    return this.execute(sha, s, keys, argv, call, readOnly);
  }

  runSha(sha: string, keys: Buffer[], argv: Buffer[], call: ScriptCall, readOnly: boolean): RunResult | undefined {
    const lower = sha.toLowerCase();
    const s = this.cache.use(lower);
    if (!s) return undefined;
    return this.execute(lower, s, keys, argv, call, readOnly);
  }

  private execute(sha: string, s: CachedScript, keys: Buffer[], argv: Buffer[], call: ScriptCall, readOnly: boolean): RunResult {
    const { h, vm, api } = this;
    const { x } = h;
    const L = vm.L;
    this.runs++;
    try {
      x.lua_settop(L, 0);
      x.lua_rawgeti(L, LUA_REGISTRYINDEX, vm.handlerRef);
      x.lua_rawgeti(L, LUA_REGISTRYINDEX, s.ref);
      x.lua_rawgeti(L, LUA_REGISTRYINDEX, vm.envRef);
      x.lua_setfenv(L, -2); // a script may have setfenv'd itself last time
      this.setArray(L, 'KEYS', keys);
      this.setArray(L, 'ARGV', argv);

      api.call = call;
      api.readOnly = readOnly || s.flags.noWrites;
      api.resetRandom();
      vm.startBudget(performance.now() + this.limits.timeBudgetMs);
      let status: number;
      try {
        status = x.lua_pcall(L, 0, 1, 1);
      } finally {
        vm.endBudget();
        api.call = null;
      }
      const abort = vm.takeAbort();
      if (abort !== null) {
        x.lua_settop(L, 0);
        x.lua_gc(L, LUA_GCCOLLECT, 0);
        if (abort.reason === 'timeout') return { ok: false, reason: 'timeout', error: timeoutError(this.limits.timeBudgetMs) };
        if (abort.reason === 'memory') return { ok: false, reason: 'memory', error: memoryError(this.limits.memoryBytes) };
        const c = abort.cause;
        return {
          ok: false,
          reason: 'call-threw',
          error: `ERR Script stopped: ${c instanceof Error ? c.message : String(c)}`,
          cause: c,
        };
      }
      if (status !== 0) {
        const error = this.scriptError(L, sha, status);
        x.lua_settop(L, 0);
        return { ok: false, reason: 'script', error };
      }
      const reply = toRedis(h, L, 0);
      x.lua_settop(L, 0);
      return { ok: true, reply };
    } catch (e) {
      // A panic or a bug: the state cannot be trusted; start a fresh one (cached scripts lost).
      api.call = null;
      this.cache.clear();
      vm.replace(e instanceof LuaPanic);
      return { ok: false, reason: 'internal', error: `ERR Script engine failure: ${(e as Error).message}`, cause: e };
    }
  }

  private setArray(L: number, name: string, items: Buffer[]): void {
    const { h } = this;
    const { x } = h;
    x.lua_createtable(L, items.length, 0);
    for (let i = 0; i < items.length; i++) {
      h.pushBytes(L, items[i]!);
      x.lua_rawseti(L, -2, i + 1);
    }
    x.lua_setfield(L, LUA_GLOBALSINDEX, h.name(name));
  }

  /** The error object on top of the stack (Redis 7's handler table) as Redis 7's reply text. */
  private scriptError(L: number, sha: string, status: number): string {
    const { h } = this;
    const { x } = h;
    if (x.lua_type(L, -1) !== T_TABLE) {
      const msg = status === 4 ? 'not enough memory' : (h.readString(L, -1) ?? 'execution failure');
      return sanitize(`ERR Error running script ${sha}, ${msg.slice(0, 100)}`);
    }
    x.lua_getfield(L, -1, h.name('err'));
    const msg = h.readString(L, -1) ?? 'ERR unknown error';
    x.lua_getfield(L, -2, h.name('source'));
    const source = h.readString(L, -1);
    x.lua_getfield(L, -3, h.name('line'));
    const line = h.readString(L, -1);
    x.lua_settop(L, -4);
    const suffix = source !== undefined && line !== undefined ? ` script: ${sha}, on ${source}:${line}.` : '';
    return sanitize(msg + suffix);
  }

  stats(): { cachedScripts: number; luaHeapBytes: number; runs: number; compiles: number } {
    return { cachedScripts: this.cache.size, luaHeapBytes: this.vm.memUsed, runs: this.runs, compiles: this.compiles };
  }

  close(): void {
    this.cache.clear();
    this.vm.close();
  }
}
