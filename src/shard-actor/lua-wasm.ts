/**
 * Owns loading the Lua VM: the raw Lua 5.1 C API of `wasmoon-lua5.1`'s wasm module (and libc's
 * allocator inside it), the C constants used from it, and instantiating one module per runner.
 * Relies on `wasmoon-lua5.1` exposing the Emscripten module and its exports. Never creates a
 * lua_State or touches one: that is `lua-vm.ts`.
 */

/** The raw wasm exports used here (Lua 5.1 C API plus libc's allocator). */
export interface LuaExports {
  malloc(n: number): number;
  free(p: number): void;
  realloc(p: number, n: number): number;
  lua_newstate(f: number, ud: number): number;
  luaL_openlibs(L: number): void;
  lua_close(L: number): void;
  lua_atpanic(L: number, f: number): number;
  lua_gettop(L: number): number;
  lua_checkstack(L: number, n: number): number;
  lua_settop(L: number, i: number): void;
  lua_pushvalue(L: number, i: number): void;
  lua_insert(L: number, i: number): void;
  lua_type(L: number, i: number): number;
  lua_tolstring(L: number, i: number, lenPtr: number): number;
  lua_tonumber(L: number, i: number): number;
  lua_toboolean(L: number, i: number): number;
  lua_objlen(L: number, i: number): number;
  lua_pushnil(L: number): void;
  lua_pushnumber(L: number, n: number): void;
  lua_pushboolean(L: number, b: number): void;
  lua_pushlstring(L: number, p: number, n: number): void;
  lua_pushstring(L: number, p: number): void;
  lua_pushcclosure(L: number, f: number, n: number): void;
  lua_createtable(L: number, na: number, nh: number): void;
  lua_rawgeti(L: number, i: number, n: number): void;
  lua_rawseti(L: number, i: number, n: number): void;
  lua_rawget(L: number, i: number): void;
  lua_getfield(L: number, i: number, k: number): void;
  lua_setfield(L: number, i: number, k: number): void;
  lua_setfenv(L: number, i: number): number;
  lua_next(L: number, i: number): number;
  lua_pcall(L: number, na: number, nr: number, ef: number): number;
  lua_error(L: number): number;
  lua_sethook(L: number, f: number, mask: number, count: number): number;
  lua_gc(L: number, what: number, data: number): number;
  luaL_loadbuffer(L: number, p: number, n: number, name: number): number;
  luaL_ref(L: number, t: number): number;
  luaL_unref(L: number, t: number, r: number): void;
  luaL_where(L: number, level: number): void;
  lua_concat(L: number, n: number): void;
}

export interface EmModule {
  HEAPU8: Uint8Array;
  HEAPU32: Uint32Array;
  addFunction(f: (...a: number[]) => number | void, sig: string): number;
  removeFunction(p: number): void;
  [k: string]: unknown;
}

export const LUA_REGISTRYINDEX = -10000;
export const LUA_GLOBALSINDEX = -10002;
/** lua_upvalueindex(1). */
export const LUA_UPVALUE1 = -10003;
export const LUA_MULTRET = -1;
export const T_NIL = 0;
export const T_BOOLEAN = 1;
export const T_NUMBER = 3;
export const T_STRING = 4;
export const T_TABLE = 5;
export const LUA_MASKCOUNT = 8;
export const LUA_GCCOLLECT = 2;

/**
 * Instantiates the wasm module and captures its raw exports. The package's own wrappers of each
 * export (an assertion and a rest-args call each) cost more than the Lua call they wrap, so the
 * exports are taken from the WebAssembly.instantiate result while it runs. Initializations are
 * serialized so that each capture is its own.
 */
let initChain: Promise<unknown> = Promise.resolve();
export async function instantiate(): Promise<{ m: EmModule; x: LuaExports }> {
  const run = async (): Promise<{ m: EmModule; x: LuaExports }> => {
    // Loaded when the first script runs, not when every worker starts; typed by hand to the raw module it exposes.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { LuaApi } = require('wasmoon-lua5.1') as { LuaApi: { initialize(): Promise<{ module: EmModule }> } };
    // lib es2022 has no WebAssembly types; only `instantiate` is touched, and put back.
    const wasm = (globalThis as unknown as { WebAssembly: { instantiate: (...a: unknown[]) => Promise<unknown> } }).WebAssembly;
    const original = wasm.instantiate;
    let captured: Record<string, unknown> | undefined;
    wasm.instantiate = async function (this: unknown, ...a: unknown[]) {
      const r = (await original.apply(this, a)) as { instance?: { exports: unknown }; exports?: unknown };
      captured ??= (r.instance ? r.instance.exports : r.exports) as Record<string, unknown>;
      return r;
    };
    let api: { module: EmModule };
    try {
      api = await LuaApi.initialize();
    } finally {
      wasm.instantiate = original;
    }
    const m = api.module;
    const x: Record<string, unknown> = {};
    for (const name of EXPORT_NAMES) {
      const raw = captured?.[name] ?? m[`_${name}`];
      if (typeof raw !== 'function') throw new Error(`wasmoon-lua5.1 lacks ${name}`);
      x[name] = raw;
    }
    return { m, x: x as unknown as LuaExports };
  };
  const p = initChain.then(run, run);
  initChain = p.catch(() => undefined);
  return p;
}

const EXPORT_NAMES = [
  'malloc',
  'free',
  'realloc',
  'lua_newstate',
  'luaL_openlibs',
  'lua_close',
  'lua_atpanic',
  'lua_gettop',
  'lua_checkstack',
  'lua_settop',
  'lua_pushvalue',
  'lua_insert',
  'lua_type',
  'lua_tolstring',
  'lua_tonumber',
  'lua_toboolean',
  'lua_objlen',
  'lua_pushnil',
  'lua_pushnumber',
  'lua_pushboolean',
  'lua_pushlstring',
  'lua_pushstring',
  'lua_pushcclosure',
  'lua_createtable',
  'lua_rawgeti',
  'lua_rawseti',
  'lua_rawget',
  'lua_getfield',
  'lua_setfield',
  'lua_setfenv',
  'lua_next',
  'lua_pcall',
  'lua_error',
  'lua_sethook',
  'lua_gc',
  'luaL_loadbuffer',
  'luaL_ref',
  'luaL_unref',
  'luaL_where',
  'lua_concat',
] as const;
