/**
 * Owns running Redis scripts (`EVAL` bodies) in a real Lua 5.1 VM: compiling and caching them by
 * SHA1, Redis's value conversions both ways, `redis.*`, the sandbox, the time budget and the
 * memory bound. Relies on `wasmoon-lua5.1` (Lua 5.1.5 compiled to wasm; only its raw C API is used)
 * and on the caller's synchronous `call` for every `redis.call`. Never touches MySQL, keys, the
 * clock of the wheel or the MessagePort: the shard actor runs a script inside its own write
 * transaction and decides what a reply or an error means there.
 *
 * Why Lua 5.1 in wasm: Redis embeds Lua 5.1, and 5.3/5.4 differ where scripts notice (`10/2` prints
 * `5.0`, `unpack` is gone, integer division); fengari (5.3 in JS) was 2-5x slower per script and has
 * no allocator to bound memory. Numbers: bench/evidence/lua-vm-choice.md.
 *
 * One runner = one wasm instance (16 MB linear memory to start) = one lua_State, used by one
 * thread, one script at a time. `run` is synchronous from start to end: the actor must not yield
 * inside a script, and cannot, since `call` returns a value, not a promise.
 *
 *   run(body) ──sha1──► cache (LRU, sha → registry ref of the compiled function)
 *        │                 miss: luaL_loadbuffer("@user_script") under the memory limit
 *        ▼
 *   stack: [handler, fn]   KEYS, ARGV set in G; fn's env reset to ENV (a script may have setfenv'd)
 *        │  hook: every HOOK_COUNT instructions, check the deadline
 *        │  allocator: refuse growth past memoryBytes while the script runs
 *        ▼
 *   lua_pcall ──► reply (Lua → RedisValue) or error (Redis 7's text: "... script: <sha>, on @user_script:N.")
 *
 * A timeout, an allocation refused, or an exception thrown by `call` *aborts* the run: the hook is
 * set to fire on every instruction and redis.call raises, so a script's pcall cannot swallow it; the
 * result is the abort whatever the script returned. The state stays usable (Lua unwinds cleanly).
 */

import { createHash } from 'node:crypto';
import { LUA_PRELUDE, PRELUDE_CHUNK } from './lua-prelude';

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/**
 * A RESP2 reply as scripts see it. Bulk strings are bytes; integers are numbers (or bigint past
 * 2^53, as `call` may answer INCR with); `null` is a nil bulk (and a nil array).
 */
export type RedisValue = null | number | bigint | Buffer | RedisValue[] | RedisStatus | RedisError;
export interface RedisStatus {
  status: string;
}
/** `error` starts with its code word (ERR, WRONGTYPE, ...), as in `-ERR ...` without the dash. */
export interface RedisError {
  error: string;
}

/** Why a run failed. `script`: the script raised (Redis keeps writes made before it). */
export type RunFailure = 'compile' | 'script' | 'timeout' | 'memory' | 'call-threw' | 'internal';

export type RunResult = { ok: true; reply: RedisValue } | { ok: false; reason: RunFailure; error: string; cause?: unknown };

export type CallMode = 'call' | 'pcall';
/** Runs one command for the script; must be synchronous. An error is a reply ({error}), not a throw. */
export type ScriptCall = (args: Buffer[], mode: CallMode) => RedisValue;

export interface ScriptLimits {
  /** Wall-clock budget of one run; past it the script is stopped (reason 'timeout'). */
  timeBudgetMs: number;
  /** Bound on the Lua heap of this runner's state (cached scripts included). */
  memoryBytes: number;
}

export interface ScriptRunnerOptions {
  /** Most compiled scripts kept (least recently used dropped first). Default 1000. */
  maxCachedScripts?: number;
  /** Write commands, lower case; with readOnly they are refused before `call` sees them. */
  isWriteCommand?: (lowerName: string) => boolean;
  /** redis.log; level 0 debug .. 3 warning. Default: dropped. */
  log?: (level: number, message: string) => void;
  /** What redis.REDIS_VERSION says. */
  redisVersion?: string;
}

/** Flags from a `#!lua flags=...` first line (Redis 7). */
export interface ScriptFlags {
  noWrites: boolean;
  allowOom: boolean;
  allowStale: boolean;
  noCluster: boolean;
  allowCrossSlotKeys: boolean;
}

export type LoadResult = { ok: true; sha: string; flags: ScriptFlags } | { ok: false; error: string };

export interface ScriptRunner {
  /** SCRIPT LOAD and the first half of EVAL: compiles (unless cached) and returns the sha. */
  load(body: Buffer | string): LoadResult;
  /** EVAL: compiles if needed, then runs. readOnly (EVAL_RO, or a no-writes shebang) refuses writes. */
  run(body: Buffer | string, keys: Buffer[], argv: Buffer[], call: ScriptCall, readOnly: boolean): RunResult;
  /** EVALSHA: runs a cached script; undefined when this runner has no such sha (the caller
   *  then finds the body in its registry and calls run, or answers NOSCRIPT). */
  runSha(sha: string, keys: Buffer[], argv: Buffer[], call: ScriptCall, readOnly: boolean): RunResult | undefined;
  has(sha: string): boolean;
  /** Flags of a cached script (EVALSHA_RO, no-writes), undefined if not cached. */
  flagsOf(sha: string): ScriptFlags | undefined;
  /** SCRIPT FLUSH: drops every compiled script. */
  flush(): void;
  sha1hex(s: Buffer | string): string;
  stats(): { cachedScripts: number; luaHeapBytes: number; runs: number; compiles: number };
  close(): void;
}

// ---------------------------------------------------------------------------------------------
// Exact texts (Redis 7 where Redis has one)
// ---------------------------------------------------------------------------------------------

export const SCRIPT_ERRORS = {
  noArgs: 'ERR Please specify at least one argument for this redis lib call',
  badArgType: 'ERR Lua redis lib command arguments must be strings or integers',
  writeInReadOnly: 'ERR Write commands are not allowed from read-only scripts.',
  /** For the lead's `call` (Redis's texts, lua_script.c / script.c). */
  unknownCommand: 'ERR Unknown Redis command called from script',
  wrongArity: 'ERR Wrong number of args calling Redis command from script',
  noscript: 'NOSCRIPT No matching script. Please use EVAL.',
} as const;

export const timeoutError = (ms: number): string => `ERR Script stopped: it ran past its time budget of ${ms} ms`;
export const memoryError = (bytes: number): string => `ERR Script stopped: it needed more than its memory limit of ${bytes} bytes`;

// ---------------------------------------------------------------------------------------------
// The raw Lua C API of the wasm module
// ---------------------------------------------------------------------------------------------

/** The raw wasm exports used here (Lua 5.1 C API plus libc's allocator). */
interface LuaExports {
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
}

interface EmModule {
  HEAPU8: Uint8Array;
  HEAPU32: Uint32Array;
  addFunction(f: (...a: number[]) => number | void, sig: string): number;
  removeFunction(p: number): void;
  [k: string]: unknown;
}

const LUA_REGISTRYINDEX = -10000;
const LUA_GLOBALSINDEX = -10002;
const T_NIL = 0;
const T_BOOLEAN = 1;
const T_NUMBER = 3;
const T_STRING = 4;
const T_TABLE = 5;
const LUA_MASKCOUNT = 8;
const LUA_GCCOLLECT = 2;
/** Instructions between two deadline checks: ~0.3 ms of a tight loop on this machine. */
const HOOK_COUNT = 10_000;
/** Deepest nesting of a returned table converted (Redis: the Lua C stack limit). */
const MAX_REPLY_DEPTH = 1000;

/**
 * Instantiates the wasm module and captures its raw exports. The package's own wrappers of each
 * export (an assertion and a rest-args call each) cost more than the Lua call they wrap, so the
 * exports are taken from the WebAssembly.instantiate result while it runs. Initializations are
 * serialized so that each capture is its own.
 */
let initChain: Promise<unknown> = Promise.resolve();
async function instantiate(): Promise<{ m: EmModule; x: LuaExports }> {
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
] as const;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

export function sha1hex(s: Buffer | string): string {
  return createHash('sha1').update(s).digest('hex');
}

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

const sanitize = (s: string): string => s.replace(/[\r\n]/g, ' ');

const NO_FLAGS: ScriptFlags = Object.freeze({
  noWrites: false,
  allowOom: false,
  allowStale: false,
  noCluster: false,
  allowCrossSlotKeys: false,
});

const SHEBANG_FLAGS: Record<string, keyof ScriptFlags> = {
  'no-writes': 'noWrites',
  'allow-oom': 'allowOom',
  'allow-stale': 'allowStale',
  'no-cluster': 'noCluster',
  'allow-cross-slot-keys': 'allowCrossSlotKeys',
};

/** Redis 7's shebang: `#!lua [flags=a,b]` on the first line; the code keeps that line's newline. */
function parseShebang(body: Buffer): { code: Buffer; flags: ScriptFlags } | { error: string } {
  if (body[0] !== 0x23 || body[1] !== 0x21) return { code: body, flags: NO_FLAGS };
  let nl = body.indexOf(0x0a);
  if (nl < 0) nl = body.length;
  const parts = body
    .subarray(0, nl)
    .toString('latin1')
    .split(' ')
    .filter((s) => s !== '');
  if (parts.length === 0) return { error: 'ERR Invalid engine in script shebang' };
  if (parts[0] !== '#!lua') return { error: `ERR Unexpected engine in script shebang: ${parts[0]}` };
  const flags: ScriptFlags = { ...NO_FLAGS };
  for (const part of parts.slice(1)) {
    if (!part.startsWith('flags=')) return { error: `ERR Unknown lua shebang option: ${part}` };
    for (const f of part.slice(6).split(',')) {
      if (f === '') continue;
      const key = SHEBANG_FLAGS[f];
      if (!key) return { error: `ERR Unexpected flag in script shebang: ${f}` };
      flags[key] = true;
    }
  }
  return { code: body.subarray(nl), flags };
}

// ---------------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------------

interface CachedScript {
  ref: number;
  flags: ScriptFlags;
}

type Abort = { reason: 'timeout' | 'memory' | 'call-threw'; cause?: unknown } | null;

export async function createScriptRunner(limits: ScriptLimits, options: ScriptRunnerOptions = {}): Promise<ScriptRunner> {
  const { m, x } = await instantiate();
  return new LuaScriptRunner(m, x, limits, options);
}

class LuaPanic extends Error {
  override name = 'LuaPanic';
}

class LuaScriptRunner implements ScriptRunner {
  private L = 0;
  private readonly lenPtr: number;
  private scratch = 0;
  private scratchCap = 0;
  private readonly names = new Map<string, number>();
  private readonly cache = new Map<string, CachedScript>();
  private readonly maxCached: number;

  // Allocator accounting (bytes the Lua state holds) and the bound, active only inside a run.
  private memUsed = 0;
  private limitActive = false;
  private deadline = 0;
  private abort: Abort = null;

  // The run in progress.
  private call: ScriptCall | null = null;
  private readOnly = false;
  private prng = 0n;

  private handlerRef = 0;
  private envRef = 0;
  private runs = 0;
  private compiles = 0;
  private readonly fnPtrs: number[] = [];
  private readonly allocPtr: number;
  private readonly hookPtr: number;
  private readonly panicPtr: number;

  constructor(
    private readonly m: EmModule,
    private readonly x: LuaExports,
    private readonly limits: ScriptLimits,
    private readonly options: ScriptRunnerOptions,
  ) {
    this.maxCached = options.maxCachedScripts ?? 1000;
    this.lenPtr = x.malloc(8);
    this.allocPtr = m.addFunction(this.alloc, 'iiiii');
    this.hookPtr = m.addFunction(this.hook, 'vii');
    this.panicPtr = m.addFunction(this.panic, 'ii');
    this.newState();
  }

  // --- memory -------------------------------------------------------------------------------

  /** lua_Alloc: the only allocator of the state; refuses growth past the limit during a run. */
  private readonly alloc = (_ud: number, ptr: number, osize: number, nsize: number): number => {
    if (nsize === 0) {
      if (ptr) {
        this.memUsed -= osize;
        this.x.free(ptr);
      }
      return 0;
    }
    const delta = ptr ? nsize - osize : nsize;
    if (delta > 0 && this.limitActive && this.memUsed + delta > this.limits.memoryBytes) {
      this.setAbort({ reason: 'memory' });
      return 0;
    }
    const out = this.x.realloc(ptr, nsize);
    if (out) this.memUsed += delta;
    return out;
  };

  private readonly hook = (L: number): void => {
    if (this.abort === null && performance.now() > this.deadline) this.setAbort({ reason: 'timeout' });
    if (this.abort !== null) this.raiseString(L, 'script aborted');
  };

  private readonly panic = (L: number): number => {
    throw new LuaPanic(this.readString(L, -1) ?? 'unprotected error in the Lua state');
  };

  private setAbort(a: NonNullable<Abort>): void {
    if (this.abort !== null) return;
    this.abort = a;
    // From now on every instruction raises: a pcall in the script cannot keep it running.
    this.x.lua_sethook(this.L, this.hookPtr, LUA_MASKCOUNT, 1);
  }

  // --- bytes in and out of the wasm heap ------------------------------------------------------

  private put(b: Uint8Array): number {
    if (b.length + 1 > this.scratchCap) {
      if (this.scratch) this.x.free(this.scratch);
      this.scratchCap = Math.max(4096, (b.length + 1) * 2);
      this.scratch = this.x.malloc(this.scratchCap);
      if (!this.scratch) throw new Error('out of wasm memory');
    }
    this.m.HEAPU8.set(b, this.scratch);
    return this.scratch;
  }

  /** A NUL-terminated name kept for the runner's life (field names, chunk names). */
  private name(s: string): number {
    let p = this.names.get(s);
    if (p === undefined) {
      const b = Buffer.from(`${s}\0`);
      p = this.x.malloc(b.length);
      this.m.HEAPU8.set(b, p);
      this.names.set(s, p);
    }
    return p;
  }

  private pushBytes(L: number, b: Uint8Array): void {
    this.x.lua_pushlstring(L, this.put(b), b.length);
  }

  private pushText(L: number, s: string): void {
    this.pushBytes(L, Buffer.from(s));
  }

  /** The string (or number, converted in place) at i as bytes; undefined for other types. */
  private readBytes(L: number, i: number): Buffer | undefined {
    const p = this.x.lua_tolstring(L, i, this.lenPtr);
    if (!p) return undefined;
    const n = this.m.HEAPU32[this.lenPtr >> 2]!;
    return Buffer.from(this.m.HEAPU8.subarray(p, p + n));
  }

  private readString(L: number, i: number): string | undefined {
    return this.readBytes(L, i)?.toString();
  }

  /** Raises a Lua error with a string message (longjmps through this JS frame). */
  private raiseString(L: number, msg: string): never {
    this.pushText(L, msg);
    this.x.lua_error(L);
    throw new Error('unreachable: lua_error returned');
  }

  // --- the state -----------------------------------------------------------------------------

  private newState(): void {
    const { x } = this;
    this.memUsed = 0;
    const L = x.lua_newstate(this.allocPtr, 0);
    if (!L) throw new Error('lua_newstate failed');
    this.L = L;
    x.lua_atpanic(L, this.panicPtr);
    x.luaL_openlibs(L);

    // The C functions the prelude receives, in one table.
    x.lua_createtable(L, 0, 12);
    const fn = (name: string, f: (L: number) => number): void => {
      const p = this.m.addFunction(f, 'ii');
      this.fnPtrs.push(p);
      x.lua_pushcclosure(L, p, 0);
      x.lua_setfield(L, -2, this.name(name));
    };
    fn('call', (l) => this.redisCall(l, 'call'));
    fn('pcall', (l) => this.redisCall(l, 'pcall'));
    fn('sha1hex', this.luaSha1hex);
    fn('setresp', this.luaSetresp);
    fn('log', this.luaLog);
    fn('random', this.luaRandom);
    fn('randomseed', this.luaRandomseed);
    const version = this.options.redisVersion ?? '7.2.0';
    this.pushText(L, version);
    x.lua_setfield(L, -2, this.name('version'));
    const [maj, min, patch] = version.split('.').map((s) => Number(s) || 0);
    x.lua_pushnumber(L, ((maj! & 0xff) << 16) | ((min! & 0xff) << 8) | (patch! & 0xff));
    x.lua_setfield(L, -2, this.name('version_num'));

    const src = Buffer.from(LUA_PRELUDE);
    if (x.luaL_loadbuffer(L, this.put(src), src.length, this.name(PRELUDE_CHUNK)) !== 0) {
      throw new Error(`prelude: ${this.readString(L, -1)}`);
    }
    x.lua_insert(L, -2); // fn, api
    if (x.lua_pcall(L, 1, 2, 0) !== 0) throw new Error(`prelude: ${this.readString(L, -1)}`);
    this.envRef = x.luaL_ref(L, LUA_REGISTRYINDEX); // pops ENV
    this.handlerRef = x.luaL_ref(L, LUA_REGISTRYINDEX); // pops handler
    x.lua_settop(L, 0);
  }

  /** After a panic the state is not closed (lua_close could fault again): its memory is leaked. */
  private closeState(closeLua = true): void {
    if (this.L && closeLua) this.x.lua_close(this.L);
    this.L = 0;
    this.cache.clear();
    for (const p of this.fnPtrs.splice(0)) this.m.removeFunction(p);
  }

  // --- compile and cache ----------------------------------------------------------------------

  sha1hex(s: Buffer | string): string {
    return sha1hex(s);
  }

  has(sha: string): boolean {
    return this.cache.has(sha.toLowerCase());
  }

  flagsOf(sha: string): ScriptFlags | undefined {
    return this.cache.get(sha.toLowerCase())?.flags;
  }

  load(body: Buffer | string): LoadResult {
    const b = typeof body === 'string' ? Buffer.from(body) : body;
    const sha = sha1hex(b);
    const got = this.compile(sha, b);
    return 'error' in got ? { ok: false, error: got.error } : { ok: true, sha, flags: got.flags };
  }

  private compile(sha: string, body: Buffer): CachedScript | { error: string } {
    const hit = this.cache.get(sha);
    if (hit) {
      this.cache.delete(sha); // most recently used goes last
      this.cache.set(sha, hit);
      return hit;
    }
    const parsed = parseShebang(body);
    if ('error' in parsed) return parsed;
    const { x, L } = this;
    if (parsed.code[0] === 0x1b) {
      // Redis's Lua cannot undump: a binary chunk is read as text and fails at its first byte.
      return { error: "ERR Error compiling script (new function): user_script:1: unexpected symbol near 'char(27)'" };
    }
    this.limitActive = true;
    const status = x.luaL_loadbuffer(L, this.put(parsed.code), parsed.code.length, this.name('@user_script'));
    this.limitActive = false;
    this.abort = null;
    x.lua_sethook(L, 0, 0, 0);
    if (status !== 0) {
      const msg = status === 4 ? memoryError(this.limits.memoryBytes) : (this.readString(L, -1) ?? 'unknown error');
      x.lua_settop(L, 0);
      if (status === 4) return { error: msg };
      return { error: `ERR Error compiling script (new function): ${msg}` };
    }
    this.compiles++;
    const entry: CachedScript = { ref: x.luaL_ref(L, LUA_REGISTRYINDEX), flags: parsed.flags };
    this.cache.set(sha, entry);
    if (this.cache.size > this.maxCached) {
      const [oldSha, old] = this.cache.entries().next().value as [string, CachedScript];
      this.cache.delete(oldSha);
      x.luaL_unref(L, LUA_REGISTRYINDEX, old.ref);
    }
    return entry;
  }

  flush(): void {
    for (const s of this.cache.values()) this.x.luaL_unref(this.L, LUA_REGISTRYINDEX, s.ref);
    this.cache.clear();
    this.x.lua_gc(this.L, LUA_GCCOLLECT, 0);
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
    const s = this.cache.get(lower);
    if (!s) return undefined;
    this.cache.delete(lower);
    this.cache.set(lower, s);
    return this.execute(lower, s, keys, argv, call, readOnly);
  }

  private execute(sha: string, s: CachedScript, keys: Buffer[], argv: Buffer[], call: ScriptCall, readOnly: boolean): RunResult {
    const { x } = this;
    const L = this.L;
    this.runs++;
    try {
      x.lua_settop(L, 0);
      x.lua_rawgeti(L, LUA_REGISTRYINDEX, this.handlerRef);
      x.lua_rawgeti(L, LUA_REGISTRYINDEX, s.ref);
      x.lua_rawgeti(L, LUA_REGISTRYINDEX, this.envRef);
      x.lua_setfenv(L, -2); // a script may have setfenv'd itself last time
      this.setArray(L, 'KEYS', keys);
      this.setArray(L, 'ARGV', argv);

      this.call = call;
      this.readOnly = readOnly || s.flags.noWrites;
      this.prng = 0x330en; // redisSrand48(0) before every script
      this.abort = null;
      this.deadline = performance.now() + this.limits.timeBudgetMs;
      x.lua_sethook(L, this.hookPtr, LUA_MASKCOUNT, HOOK_COUNT);
      this.limitActive = true;
      let status: number;
      try {
        status = x.lua_pcall(L, 0, 1, 1);
      } finally {
        this.limitActive = false;
        x.lua_sethook(L, 0, 0, 0);
        this.call = null;
      }
      const abort = this.abort as Abort;
      this.abort = null;
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
      const reply = this.toRedis(L, 0);
      x.lua_settop(L, 0);
      return { ok: true, reply };
    } catch (e) {
      // A panic or a bug: the state cannot be trusted; start a fresh one (cached scripts lost).
      this.limitActive = false;
      this.call = null;
      this.abort = null;
      this.closeState(!(e instanceof LuaPanic));
      this.newState();
      return { ok: false, reason: 'internal', error: `ERR Script engine failure: ${(e as Error).message}`, cause: e };
    }
  }

  private setArray(L: number, name: string, items: Buffer[]): void {
    const { x } = this;
    x.lua_createtable(L, items.length, 0);
    for (let i = 0; i < items.length; i++) {
      this.pushBytes(L, items[i]!);
      x.lua_rawseti(L, -2, i + 1);
    }
    x.lua_setfield(L, LUA_GLOBALSINDEX, this.name(name));
  }

  /** The error object on top of the stack (Redis 7's handler table) as Redis 7's reply text. */
  private scriptError(L: number, sha: string, status: number): string {
    const { x } = this;
    if (x.lua_type(L, -1) !== T_TABLE) {
      const msg = status === 4 ? 'not enough memory' : (this.readString(L, -1) ?? 'execution failure');
      return sanitize(`ERR Error running script ${sha}, ${msg.slice(0, 100)}`);
    }
    x.lua_getfield(L, -1, this.name('err'));
    const msg = this.readString(L, -1) ?? 'ERR unknown error';
    x.lua_getfield(L, -2, this.name('source'));
    const source = this.readString(L, -1);
    x.lua_getfield(L, -3, this.name('line'));
    const line = this.readString(L, -1);
    x.lua_settop(L, -4);
    const suffix = source !== undefined && line !== undefined ? ` script: ${sha}, on ${source}:${line}.` : '';
    return sanitize(msg + suffix);
  }

  // --- Lua → Redis (a script's return value) ----------------------------------------------------

  private toRedis(L: number, depth: number): RedisValue {
    const { x } = this;
    switch (x.lua_type(L, -1)) {
      case T_STRING:
        return this.readBytes(L, -1)!;
      case T_BOOLEAN:
        return x.lua_toboolean(L, -1) ? 1 : null;
      case T_NUMBER:
        return toInteger(x.lua_tonumber(L, -1));
      case T_TABLE:
        return this.tableToRedis(L, depth);
      default:
        return null;
    }
  }

  /** Redis's order: err (string), ok (string), double, big_number, verbatim_string, map, set, array. */
  private tableToRedis(L: number, depth: number): RedisValue {
    const { x } = this;
    // Every level keeps up to 4 values on the Lua stack; past its 20 free slots, ask for room.
    if (depth >= MAX_REPLY_DEPTH || !x.lua_checkstack(L, 4)) return { error: 'ERR reached lua stack limit' };
    const field = (k: string): number => {
      this.pushText(L, k);
      x.lua_rawget(L, -2);
      return x.lua_type(L, -1);
    };
    if (field('err') === T_STRING) {
      const e = this.readString(L, -1)!;
      x.lua_settop(L, -2);
      return { error: sanitize(e) };
    }
    x.lua_settop(L, -2);
    if (field('ok') === T_STRING) {
      const s = this.readString(L, -1)!;
      x.lua_settop(L, -2);
      return { status: sanitize(s) };
    }
    x.lua_settop(L, -2);
    if (field('double') === T_NUMBER) {
      const d = x.lua_tonumber(L, -1);
      x.lua_settop(L, -2);
      return Buffer.from(formatG(d, 17)); // RESP2 has no double: a bulk string
    }
    x.lua_settop(L, -2);
    if (field('big_number') === T_STRING) {
      const s = this.readString(L, -1)!;
      x.lua_settop(L, -2);
      return Buffer.from(sanitize(s));
    }
    x.lua_settop(L, -2);
    if (field('verbatim_string') === T_TABLE) {
      this.pushText(L, 'string');
      x.lua_rawget(L, -2);
      if (x.lua_type(L, -1) === T_STRING) {
        const v = this.readBytes(L, -1)!;
        x.lua_settop(L, -3);
        return v;
      }
      x.lua_settop(L, -2);
    }
    x.lua_settop(L, -2);
    if (field('map') === T_TABLE) {
      const out: RedisValue[] = []; // RESP2: key, value, key, value, ...
      x.lua_pushnil(L);
      while (x.lua_next(L, -2) !== 0) {
        x.lua_pushvalue(L, -2);
        out.push(this.toRedis(L, depth + 1));
        x.lua_settop(L, -2);
        out.push(this.toRedis(L, depth + 1));
        x.lua_settop(L, -2);
      }
      x.lua_settop(L, -2);
      return out;
    }
    x.lua_settop(L, -2);
    if (field('set') === T_TABLE) {
      const out: RedisValue[] = [];
      x.lua_pushnil(L);
      while (x.lua_next(L, -2) !== 0) {
        x.lua_settop(L, -2);
        x.lua_pushvalue(L, -1);
        out.push(this.toRedis(L, depth + 1));
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
      out.push(this.toRedis(L, depth + 1));
      x.lua_settop(L, -2);
    }
    return out;
  }

  // --- Redis → Lua (a command's reply) ----------------------------------------------------------

  private pushRedis(L: number, v: RedisValue | string | undefined): void {
    const { x } = this;
    if (v === null || v === undefined) x.lua_pushboolean(L, 0);
    else if (typeof v === 'number') x.lua_pushnumber(L, v);
    else if (typeof v === 'bigint') x.lua_pushnumber(L, Number(v));
    else if (typeof v === 'string') this.pushText(L, v);
    else if (v instanceof Uint8Array) this.pushBytes(L, v);
    else if (Array.isArray(v)) {
      if (!x.lua_checkstack(L, 3)) this.raiseString(L, 'reached lua stack limit');
      x.lua_createtable(L, v.length, 0);
      for (let i = 0; i < v.length; i++) {
        this.pushRedis(L, v[i]);
        x.lua_rawseti(L, -2, i + 1);
      }
    } else if ('status' in v) {
      x.lua_createtable(L, 0, 1);
      this.pushText(L, v.status);
      x.lua_setfield(L, -2, this.name('ok'));
    } else this.pushErrorTable(L, errorText(`-${v.error}`), true);
  }

  /** {err = text} (and, for a command's error, ignore_error_stats_update = true, as Redis). */
  private pushErrorTable(L: number, text: string, fromCommand: boolean): void {
    const { x } = this;
    x.lua_createtable(L, 0, 2);
    this.pushText(L, text);
    x.lua_setfield(L, -2, this.name('err'));
    if (fromCommand) {
      x.lua_pushboolean(L, 1);
      x.lua_setfield(L, -2, this.name('ignore_error_stats_update'));
    }
  }

  // --- redis.* in JS ----------------------------------------------------------------------------

  /** redis.call / redis.pcall (luaRedisGenericCommand). */
  private redisCall(L: number, mode: CallMode): number {
    const { x } = this;
    if (this.abort !== null) this.raiseString(L, 'script aborted');
    const argc = x.lua_gettop(L);
    let failure: string | undefined;
    const args: Buffer[] = new Array(argc);
    if (argc === 0) failure = SCRIPT_ERRORS.noArgs;
    for (let i = 0; i < argc && failure === undefined; i++) {
      const t = x.lua_type(L, i + 1);
      if (t === T_NUMBER) args[i] = Buffer.from(formatG(x.lua_tonumber(L, i + 1), 17));
      else if (t === T_STRING) args[i] = this.readBytes(L, i + 1)!;
      else failure = SCRIPT_ERRORS.badArgType;
    }
    x.lua_settop(L, 0);
    if (failure === undefined && this.readOnly && this.options.isWriteCommand?.(args[0]!.toString('latin1').toLowerCase())) {
      failure = SCRIPT_ERRORS.writeInReadOnly;
    }
    if (failure !== undefined) {
      this.pushErrorTable(L, failure, false);
      if (mode === 'call') x.lua_error(L);
      return 1;
    }
    const call = this.call;
    if (call === null) {
      this.pushErrorTable(L, 'ERR redis.call/pcall can only be called inside a script invocation', false);
      x.lua_error(L);
      return 1;
    }
    let reply: RedisValue;
    try {
      reply = call(args, mode);
    } catch (e) {
      // Never let a JS exception unwind wasm frames: it would leave the Lua state half-done.
      this.setAbort({ reason: 'call-threw', cause: e });
      this.raiseString(L, 'script aborted');
    }
    this.pushRedis(L, reply);
    if (mode === 'call' && reply !== null && typeof reply === 'object' && 'error' in reply) x.lua_error(L);
    return 1;
  }

  private readonly luaSha1hex = (L: number): number => {
    if (this.x.lua_gettop(L) !== 1) {
      this.pushErrorTable(L, 'ERR wrong number of arguments', false);
      return this.x.lua_error(L);
    }
    const b = this.readBytes(L, 1) ?? Buffer.alloc(0);
    this.pushText(L, sha1hex(b));
    return 1;
  };

  /** redis.setresp: RESP2 only (kvsql's script replies and command replies are RESP2). */
  private readonly luaSetresp = (L: number): number => {
    const { x } = this;
    if (x.lua_gettop(L) !== 1) {
      this.pushErrorTable(L, 'ERR redis.setresp() requires one argument.', false);
      return x.lua_error(L);
    }
    const v = Math.trunc(x.lua_tonumber(L, 1));
    if (v !== 2 && v !== 3) {
      this.pushErrorTable(L, 'ERR RESP version must be 2 or 3.', false);
      return x.lua_error(L);
    }
    if (v === 3) {
      this.pushErrorTable(L, 'ERR kvsql scripts speak RESP2 only: redis.setresp(3) is not supported', false);
      return x.lua_error(L);
    }
    return 0;
  };

  private readonly luaLog = (L: number): number => {
    const level = this.x.lua_tonumber(L, 1);
    const msg = this.readString(L, 2) ?? '';
    this.options.log?.(level, msg);
    return 0;
  };

  // Redis's redisLrand48 (48-bit LCG, 31-bit outputs), reseeded to 0 before each script.
  private nextRand(): number {
    this.prng = (0x5deece66dn * this.prng + 0xbn) & 0xffffffffffffn;
    return Number(this.prng >> 17n);
  }

  private readonly luaRandom = (L: number): number => {
    const { x } = this;
    const MAX = 2147483647; // REDIS_LRAND48_MAX = INT32_MAX
    const r = (this.nextRand() % MAX) / MAX;
    const argc = x.lua_gettop(L);
    if (argc === 0) x.lua_pushnumber(L, r);
    else if (argc === 1) {
      const u = Math.trunc(x.lua_tonumber(L, 1));
      if (!(u >= 1)) this.raiseString(L, "bad argument #1 to 'random' (interval is empty)");
      x.lua_pushnumber(L, Math.floor(r * u) + 1);
    } else if (argc === 2) {
      const l = Math.trunc(x.lua_tonumber(L, 1));
      const u = Math.trunc(x.lua_tonumber(L, 2));
      if (!(l <= u)) this.raiseString(L, "bad argument #2 to 'random' (interval is empty)");
      x.lua_pushnumber(L, Math.floor(r * (u - l + 1)) + l);
    } else this.raiseString(L, 'wrong number of arguments');
    return 1;
  };

  private readonly luaRandomseed = (L: number): number => {
    const seed = BigInt(Math.trunc(this.x.lua_tonumber(L, 1)) | 0);
    this.prng = ((BigInt.asUintN(32, seed) << 16n) | 0x330en) & 0xffffffffffffn;
    return 0;
  };

  stats(): { cachedScripts: number; luaHeapBytes: number; runs: number; compiles: number } {
    return { cachedScripts: this.cache.size, luaHeapBytes: this.memUsed, runs: this.runs, compiles: this.compiles };
  }

  close(): void {
    this.closeState();
    this.m.removeFunction(this.allocPtr);
    this.m.removeFunction(this.hookPtr);
    this.m.removeFunction(this.panicPtr);
  }
}
