/**
 * Owns the seam of the script sandbox: what the shard actor sees of running Redis scripts (`EVAL`
 * bodies) in a real Lua 5.1 VM (the `ScriptRunner` interface, its values, limits and results) and
 * the exact error texts. Relies on nothing; `createScriptRunner` (lua-runner.ts) builds one. The
 * sandbox never touches MySQL, keys, the clock of the wheel or the MessagePort: the shard actor
 * runs a script inside its own write transaction and decides what a reply or an error means there.
 *
 * Why Lua 5.1 in wasm: Redis embeds Lua 5.1, and 5.3/5.4 differ where scripts notice (`10/2` prints
 * `5.0`, `unpack` is gone, integer division); fengari (5.3 in JS) was 2-5x slower per script and has
 * no allocator to bound memory. Numbers: bench/evidence/lua-vm-choice.md.
 *
 * One runner = one wasm instance (16 MB linear memory to start) = one lua_State, used by one
 * thread, one script at a time. `run` is synchronous from start to end: the actor must not yield
 * inside a script, and cannot, since `call` returns a value, not a promise. The files:
 *
 *   lua-runner.ts        ScriptRunner: compile into the cache, run with KEYS/ARGV, reply or error text
 *   ├─ lua-shebang.ts       `#!lua flags=...` → ScriptFlags
 *   ├─ lua-script-cache.ts  sha1 → compiled function (LRU)
 *   ├─ lua-vm.ts            the lua_State, its allocator (memory bound), hook (time budget), abort
 *   │   ├─ lua-libraries.ts cjson, cmsgpack, bit (in Lua, through the VM's C trampoline)
 *   │   └─ lua-prelude.ts   the Lua half: sandbox, read-only globals, redis.error_reply, ...
 *   ├─ lua-redis-api.ts     redis.call/pcall/sha1hex/setresp/log, math.random
 *   ├─ lua-values.ts        Redis ⇄ Lua conversions, Lua number → argument
 *   └─ lua-heap.ts          bytes in and out of the wasm heap  (all on lua-wasm.ts: the raw C API)
 *
 * A timeout, an allocation refused, or an exception thrown by `call` *aborts* the run: the hook is
 * set to fire on every instruction and redis.call raises, so a script's pcall cannot swallow it; the
 * result is the abort whatever the script returned. The state stays usable (Lua unwinds cleanly).
 */

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
