/**
 * Owns one Lua VM's lifecycle and budget: the lua_State (made with the prelude run in it, closed,
 * or replaced after a panic), the allocator that bounds its heap, the count hook that checks the
 * time budget, the abort that stops a run, and the C trampoline through which the Lua-written
 * libraries are called. Relies on `lua-wasm.ts` (raw API), `LuaHeap` (bytes in and out),
 * `lua-libraries.ts` (cjson, cmsgpack, bit) and `lua-prelude.ts` (the Lua half of the sandbox).
 * Never compiles or runs a script itself, never decides a reply: `lua-runner.ts` brackets each run
 * with the budget below.
 *
 *   budget off ──startBudget(deadline)──► on: hook every HOOK_COUNT instructions checks the clock,
 *       ▲                                     the allocator refuses growth past memoryBytes
 *       └───────────endBudget()────────────── (either sets `abort`; from then the hook fires on
 *                                              every instruction, so a script's pcall cannot
 *                                              keep it running)
 *
 * What must stay true: a JS exception never unwinds wasm frames except a panic (the state is then
 * abandoned, not closed); an abort is read and cleared by the runner once per run (`takeAbort`).
 */

import type { LuaHeap } from './lua-heap';
import { LUA_LIBRARIES } from './lua-libraries';
import { LUA_PRELUDE, PRELUDE_CHUNK } from './lua-prelude';
import { LUA_MASKCOUNT, LUA_MULTRET, LUA_REGISTRYINDEX, LUA_UPVALUE1, T_STRING } from './lua-wasm';

/** Instructions between two deadline checks: ~0.3 ms of a tight loop on this machine. */
const HOOK_COUNT = 10_000;

export type Abort = { reason: 'timeout' | 'memory' | 'call-threw'; cause?: unknown } | null;

/** The C functions and values the prelude receives in one table (what `redis.*` is made of). */
export interface PreludeApi {
  functions: Record<string, (L: number) => number>;
  version: string;
}

export class LuaPanic extends Error {
  override name = 'LuaPanic';
}

export class LuaVm {
  L = 0;
  /** Bytes the Lua state holds (allocator accounting). */
  memUsed = 0;
  /** The bound is enforced only while true (inside a run or a compile). */
  limitActive = false;
  abort: Abort = null;
  /** Registry refs of the prelude's error handler and of ENV (a script function's environment). */
  handlerRef = 0;
  envRef = 0;
  private deadline = 0;
  private api: PreludeApi | undefined;
  private readonly fnPtrs: number[] = [];
  private readonly allocPtr: number;
  private readonly hookPtr: number;
  private readonly panicPtr: number;
  private readonly trampolinePtr: number;

  constructor(
    private readonly h: LuaHeap,
    private readonly memoryBytes: number,
  ) {
    this.allocPtr = h.m.addFunction(this.alloc, 'iiiii');
    this.hookPtr = h.m.addFunction(this.hook, 'vii');
    this.panicPtr = h.m.addFunction(this.panic, 'ii');
    this.trampolinePtr = h.m.addFunction(this.trampoline, 'ii');
  }

  /** lua_Alloc: the only allocator of the state; refuses growth past the limit during a run. */
  private readonly alloc = (_ud: number, ptr: number, osize: number, nsize: number): number => {
    if (nsize === 0) {
      if (ptr) {
        this.memUsed -= osize;
        this.h.x.free(ptr);
      }
      return 0;
    }
    const delta = ptr ? nsize - osize : nsize;
    if (delta > 0 && this.limitActive && this.memUsed + delta > this.memoryBytes) {
      this.setAbort({ reason: 'memory' });
      return 0;
    }
    const out = this.h.x.realloc(ptr, nsize);
    if (out) this.memUsed += delta;
    return out;
  };

  private readonly hook = (L: number): void => {
    if (this.abort === null && performance.now() > this.deadline) this.setAbort({ reason: 'timeout' });
    if (this.abort !== null) this.h.raiseString(L, 'script aborted');
  };

  private readonly panic = (L: number): number => {
    throw new LuaPanic(this.h.readString(L, -1) ?? 'unprotected error in the Lua state');
  };

  /**
   * A library function written in Lua (lua-libraries.ts), its upvalue, called as a C function is:
   * its errors get the caller's position (luaL_where(1), as luaL_error) and a script's
   * `return cjson.encode(x)` keeps the script's frame (Lua tail-calls only Lua functions).
   */
  private readonly trampoline = (L: number): number => {
    const { x } = this.h;
    const n = x.lua_gettop(L);
    x.lua_pushvalue(L, LUA_UPVALUE1);
    x.lua_insert(L, 1);
    if (x.lua_pcall(L, n, LUA_MULTRET, 0) !== 0) {
      if (x.lua_type(L, -1) === T_STRING) {
        x.luaL_where(L, 1);
        x.lua_insert(L, -2);
        x.lua_concat(L, 2);
      }
      return x.lua_error(L);
    }
    return x.lua_gettop(L);
  };

  /** api.wrap(f): f as a closure of the trampoline. */
  private readonly wrap = (L: number): number => {
    this.h.x.lua_settop(L, 1);
    this.h.x.lua_pushcclosure(L, this.trampolinePtr, 1);
    return 1;
  };

  setAbort(a: NonNullable<Abort>): void {
    if (this.abort !== null) return;
    this.abort = a;
    // From now on every instruction raises: a pcall in the script cannot keep it running.
    this.h.x.lua_sethook(this.L, this.hookPtr, LUA_MASKCOUNT, 1);
  }

  /** Arms the time budget (checked every HOOK_COUNT instructions) and the memory bound. */
  startBudget(deadline: number): void {
    this.abort = null;
    this.deadline = deadline;
    this.h.x.lua_sethook(this.L, this.hookPtr, LUA_MASKCOUNT, HOOK_COUNT);
    this.limitActive = true;
  }

  endBudget(): void {
    this.limitActive = false;
    this.h.x.lua_sethook(this.L, 0, 0, 0);
  }

  /** The abort of the run just ended (null if none), cleared. */
  takeAbort(): Abort {
    const a = this.abort;
    this.abort = null;
    return a;
  }

  /** Makes a fresh state: standard libraries, then the prelude given `api`, as Redis's sandbox. */
  open(api: PreludeApi): void {
    this.api = api;
    const { x } = this.h;
    const h = this.h;
    this.memUsed = 0;
    const L = x.lua_newstate(this.allocPtr, 0);
    if (!L) throw new Error('lua_newstate failed');
    this.L = L;
    x.lua_atpanic(L, this.panicPtr);
    x.luaL_openlibs(L);

    // The C functions the prelude receives, in one table.
    x.lua_createtable(L, 0, 12);
    for (const [name, f] of [...Object.entries(api.functions), ['wrap', this.wrap] as const]) {
      const p = h.m.addFunction(f, 'ii');
      this.fnPtrs.push(p);
      x.lua_pushcclosure(L, p, 0);
      x.lua_setfield(L, -2, h.name(name));
    }
    h.pushText(L, api.version);
    x.lua_setfield(L, -2, h.name('version'));
    const [maj, min, patch] = api.version.split('.').map((s) => Number(s) || 0);
    x.lua_pushnumber(L, ((maj! & 0xff) << 16) | ((min! & 0xff) << 8) | (patch! & 0xff));
    x.lua_setfield(L, -2, h.name('version_num'));

    const src = Buffer.from(LUA_LIBRARIES + LUA_PRELUDE); // one chunk: the error handler skips both
    if (x.luaL_loadbuffer(L, h.put(src), src.length, h.name(PRELUDE_CHUNK)) !== 0) {
      throw new Error(`prelude: ${h.readString(L, -1)}`);
    }
    x.lua_insert(L, -2); // fn, api
    if (x.lua_pcall(L, 1, 2, 0) !== 0) throw new Error(`prelude: ${h.readString(L, -1)}`);
    this.envRef = x.luaL_ref(L, LUA_REGISTRYINDEX); // pops ENV
    this.handlerRef = x.luaL_ref(L, LUA_REGISTRYINDEX); // pops handler
    x.lua_settop(L, 0);
  }

  /** After a panic or a bug the state cannot be trusted: a fresh one (compiled scripts are lost). */
  replace(panicked: boolean): void {
    this.limitActive = false;
    this.abort = null;
    this.closeState(!panicked);
    this.open(this.api!);
  }

  /** After a panic the state is not closed (lua_close could fault again): its memory is leaked. */
  private closeState(closeLua = true): void {
    if (this.L && closeLua) this.h.x.lua_close(this.L);
    this.L = 0;
    for (const p of this.fnPtrs.splice(0)) this.h.m.removeFunction(p);
  }

  close(): void {
    this.closeState();
    this.h.m.removeFunction(this.allocPtr);
    this.h.m.removeFunction(this.hookPtr);
    this.h.m.removeFunction(this.panicPtr);
    this.h.m.removeFunction(this.trampolinePtr);
  }
}
