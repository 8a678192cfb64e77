// Comparison harness for bench/evidence/lua-vm-choice.md. Not built with the project: run it from a
// scratch folder with `npm install wasmoon@1.16.0 fengari@0.1.5 wasmoon-lua5.1@1.18.10`, then
// `node --expose-gc lua-vm-choice.mjs <wasmoon|wasmoon-lua5.1|fengari>`.
// Compares Lua VMs from npm for Redis scripting: cold create, per-script cost, per redis.call
// crossing, memory per VM. Each VM is driven through its raw C API (the way a sandbox would):
// a C function `__call` reads its arguments as bytes, calls a JS in-memory store, pushes the reply.
import { performance } from 'node:perf_hooks';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);

const REDLOCK = 'if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end';
const RLF = `redis.call('set', KEYS[1], 0, 'EX', ARGV[2], 'NX') \
local consumed = redis.call('incrby', KEYS[1], ARGV[1]) \
local ttl = redis.call('pttl', KEYS[1]) \
if ttl == -1 then \
  redis.call('expire', KEYS[1], ARGV[2]) \
  ttl = 1000 * ARGV[2] \
end \
return {consumed, ttl} `;
const LOOP = 'for i=1,1000 do redis.call("get",KEYS[1]) end return 1';
const PURE = 'local s=0 for i=1,1000 do s=s+i end return s';

// A tiny store: replies are Buffer (bulk), number (integer), null.
function makeStore() {
  const m = new Map();
  return (args) => {
    const cmd = args[0].toString().toLowerCase();
    const k = args[1]?.toString();
    switch (cmd) {
      case 'get':
        return m.get(k) ?? null;
      case 'set':
        if (args.length > 3 && args[args.length - 1].toString() === 'NX' && m.has(k)) return null;
        m.set(k, args[2]);
        return 'OK';
      case 'del':
        return m.delete(k) ? 1 : 0;
      case 'incrby': {
        const v = Number(m.get(k) ?? 0) + Number(args[2].toString());
        m.set(k, Buffer.from(String(v)));
        return v;
      }
      case 'pttl':
        return m.has(k) ? 60000 : -2;
      case 'expire':
        return 1;
      default:
        return null;
    }
  };
}

// ---- wasmoon family (5.4 and 5.1): raw exports ----
async function wasmoonAdapter(kind) {
  let mod, v51;
  if (kind === 'wasmoon') {
    const { LuaFactory } = await import('wasmoon');
    const t0 = performance.now();
    const f = new LuaFactory();
    const api = await f.getLuaModule();
    mod = api.module;
    v51 = false;
    return build(mod, v51, performance.now() - t0);
  } else {
    const W = await import('wasmoon-lua5.1');
    const t0 = performance.now();
    const api = await W.LuaApi.initialize();
    mod = api.module;
    v51 = true;
    return build(mod, v51, performance.now() - t0);
  }
}

function build(m, v51, moduleMs) {
  const REG = v51 ? -10000 : -1001000;
  let scratch = m._malloc(65536),
    scratchCap = 65536;
  const lenPtr = m._malloc(8);
  const enc = new TextEncoder();
  function putBytes(buf) {
    if (buf.length > scratchCap) {
      m._free(scratch);
      scratchCap = buf.length * 2;
      scratch = m._malloc(scratchCap);
    }
    m.HEAPU8.set(buf, scratch);
    return scratch;
  }
  function cstr(s) {
    const b = enc.encode(s + '\0');
    const p = m._malloc(b.length);
    m.HEAPU8.set(b, p);
    return p;
  }
  const nameCall = cstr('__call');
  const nameChunk = cstr('@user_script');
  const pcall = v51 ? (L, a, r, e) => m._lua_pcall(L, a, r, e) : (L, a, r, e) => m._lua_pcallk(L, a, r, e, 0, 0);
  const load = v51 ? (L, p, n) => m._luaL_loadbuffer(L, p, n, nameChunk) : (L, p, n) => m._luaL_loadbufferx(L, p, n, nameChunk, 0);
  const setglobal = v51 ? (L, name) => m._lua_setfield(L, -10002, name) : (L, name) => m._lua_setglobal(L, name);
  function toBuf(L, i) {
    const p = m._lua_tolstring(L, i, lenPtr);
    const n = m.HEAPU32[lenPtr >> 2];
    return Buffer.from(m.HEAPU8.subarray(p, p + n));
  }
  function pushBuf(L, b) {
    m._lua_pushlstring(L, putBytes(b), b.length);
  }
  let store;
  const callFn = m.addFunction((L) => {
    const n = m._lua_gettop(L);
    const args = new Array(n);
    for (let i = 0; i < n; i++) args[i] = toBuf(L, i + 1);
    const r = store(args);
    if (r === null) m._lua_pushboolean(L, 0);
    else if (typeof r === 'number') m._lua_pushnumber(L, r);
    else if (typeof r === 'string') {
      m._lua_createtable(L, 0, 1);
      pushBuf(L, Buffer.from(r));
      m._lua_setfield(L, -2, cstr('ok'));
    } else pushBuf(L, r);
    return 1;
  }, 'ii');
  const prelude = 'redis = { call = __call } ';
  function newState() {
    const L = m._luaL_newstate();
    m._luaL_openlibs(L);
    m._lua_pushcclosure(L, callFn, 0);
    setglobal(L, nameCall);
    const b = Buffer.from(prelude);
    load(L, putBytes(b), b.length);
    pcall(L, 0, 0, 0);
    return L;
  }
  const refs = new Map();
  cstr_KEYS = cstr('KEYS');
  cstr_ARGV = cstr('ARGV');
  return {
    moduleMs,
    gcKB: m._lua_gc ? (L) => m._lua_gc(L, 3, 0) : undefined,
    newState,
    close: (L) => m._lua_close(L),
    heapBytes: () => m.HEAPU8.length,
    run(L, body, keys, argv, st) {
      store = st;
      let ref = refs.get(body);
      if (ref === undefined) {
        const b = Buffer.from(body);
        if (load(L, putBytes(b), b.length) !== 0) throw new Error(toBuf(L, -1).toString());
        ref = m._luaL_ref(L, REG);
        refs.set(body, ref);
      }
      m._lua_createtable(L, keys.length, 0);
      for (let i = 0; i < keys.length; i++) {
        pushBuf(L, keys[i]);
        m._lua_rawseti(L, -2, v51 ? i + 1 : BigInt(i + 1));
      }
      setglobal(L, cstr_KEYS);
      m._lua_createtable(L, argv.length, 0);
      for (let i = 0; i < argv.length; i++) {
        pushBuf(L, argv[i]);
        m._lua_rawseti(L, -2, v51 ? i + 1 : BigInt(i + 1));
      }
      setglobal(L, cstr_ARGV);
      m._lua_rawgeti(L, REG, v51 ? ref : BigInt(ref));
      if (pcall(L, 0, 1, 0) !== 0) throw new Error(toBuf(L, -1).toString());
      const t = m._lua_type(L, -1);
      let out;
      if (t === 3) out = m._lua_tonumber ? m._lua_tonumber(L, -1) : m._lua_tonumberx(L, -1, 0);
      else if (t === 4) out = toBuf(L, -1);
      else out = t;
      m._lua_settop(L, 0);
      return out;
    },
  };
  var cstr_KEYS, cstr_ARGV;
}

// ---- fengari ----
function fengariAdapter() {
  const t0 = performance.now();
  const { lua, lauxlib, lualib, to_luastring } = require('fengari');
  const moduleMs = performance.now() - t0;
  let store;
  const callFn = (L) => {
    const n = lua.lua_gettop(L);
    const args = new Array(n);
    for (let i = 0; i < n; i++) args[i] = Buffer.from(lua.lua_tolstring(L, i + 1));
    const r = store(args);
    if (r === null) lua.lua_pushboolean(L, 0);
    else if (typeof r === 'number') lua.lua_pushnumber(L, r);
    else if (typeof r === 'string') {
      lua.lua_createtable(L, 0, 1);
      lua.lua_pushstring(L, to_luastring(r));
      lua.lua_setfield(L, -2, to_luastring('ok'));
    } else lua.lua_pushlstring(L, new Uint8Array(r.buffer, r.byteOffset, r.length), r.length);
    return 1;
  };
  const K = to_luastring('KEYS'),
    A = to_luastring('ARGV'),
    C = to_luastring('__call'),
    chunk = to_luastring('@user_script');
  const refs = new Map();
  return {
    moduleMs,
    newState() {
      const L = lauxlib.luaL_newstate();
      lualib.luaL_openlibs(L);
      lua.lua_pushjsfunction(L, callFn);
      lua.lua_setglobal(L, C);
      lauxlib.luaL_dostring(L, to_luastring('redis = { call = __call }'));
      return L;
    },
    close: (L) => lua.lua_close(L),
    heapBytes: () => 0,
    run(L, body, keys, argv, st) {
      store = st;
      let ref = refs.get(body);
      if (ref === undefined) {
        if (lauxlib.luaL_loadbuffer(L, to_luastring(body), null, chunk) !== 0) throw new Error(lua.lua_tojsstring(L, -1));
        ref = lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX);
        refs.set(body, ref);
      }
      lua.lua_createtable(L, keys.length, 0);
      for (let i = 0; i < keys.length; i++) {
        lua.lua_pushlstring(L, keys[i], keys[i].length);
        lua.lua_rawseti(L, -2, i + 1);
      }
      lua.lua_setglobal(L, K);
      lua.lua_createtable(L, argv.length, 0);
      for (let i = 0; i < argv.length; i++) {
        lua.lua_pushlstring(L, argv[i], argv[i].length);
        lua.lua_rawseti(L, -2, i + 1);
      }
      lua.lua_setglobal(L, A);
      lua.lua_rawgeti(L, lua.LUA_REGISTRYINDEX, ref);
      if (lua.lua_pcall(L, 0, 1, 0) !== 0) throw new Error(lua.lua_tojsstring(L, -1));
      const t = lua.lua_type(L, -1);
      const out = t === 3 ? lua.lua_tonumber(L, -1) : t;
      lua.lua_settop(L, 0);
      return out;
    },
  };
}

function median(a) {
  const s = [...a].sort((x, y) => x - y);
  return s[s.length >> 1];
}

async function main() {
  const which = process.argv[2];
  const t0 = performance.now();
  let ad;
  if (which === 'fengari') ad = fengariAdapter();
  else ad = await wasmoonAdapter(which);
  const coldMs = performance.now() - t0;
  // patch the cstr globals for wasmoon family
  const out = { vm: which, coldModuleMs: +coldMs.toFixed(2) };
  // state create (sync), median of 20
  const creates = [];
  for (let i = 0; i < 20; i++) {
    const s = performance.now();
    const L = ad.newState();
    creates.push(performance.now() - s);
    ad.close(L);
  }
  out.newStateUs = +(median(creates) * 1000).toFixed(1);
  const L = ad.newState();
  if (ad.gcKB) out.freshStateLuaKB = ad.gcKB(L);
  const store = makeStore();
  const key = [Buffer.from('lock:1')],
    tok = [Buffer.from('tok-abc')];
  const cases = {
    redlockUnlockHit: () => {
      store([Buffer.from('set'), key[0], tok[0]]);
      return ad.run(L, REDLOCK, key, tok, store);
    },
    redlockUnlockMiss: () => ad.run(L, REDLOCK, key, [Buffer.from('other')], store),
    rateLimiterFlexible: () => ad.run(L, RLF, [Buffer.from('rl:1')], [Buffer.from('1'), Buffer.from('60')], store),
    loop1000Calls: () => ad.run(L, LOOP, key, tok, store),
    pureLoop1000: () => ad.run(L, PURE, [], [], store),
  };
  for (const [name, fn] of Object.entries(cases)) {
    const n = name.startsWith('loop') || name.startsWith('pure') ? 300 : 20000;
    for (let i = 0; i < Math.min(n, 2000); i++) fn();
    const runs = [];
    for (let r = 0; r < 5; r++) {
      const s = performance.now();
      for (let i = 0; i < n; i++) fn();
      runs.push(((performance.now() - s) * 1000) / n);
    }
    out[name + 'Us'] = +median(runs).toFixed(2);
  }
  out.perCallCrossingUs = +((out.loop1000CallsUs - out.pureLoop1000Us) / 1000).toFixed(3);
  // memory per VM: 50 states in the same module
  global.gc?.();
  const m0 = process.memoryUsage();
  const h0 = ad.heapBytes();
  const states = [];
  for (let i = 0; i < 50; i++) states.push(ad.newState());
  global.gc?.();
  const m1 = process.memoryUsage();
  const h1 = ad.heapBytes();
  out.perStateKB = +((m1.heapUsed - m0.heapUsed + (m1.arrayBuffers - m0.arrayBuffers) + (h1 - h0)) / 50 / 1024).toFixed(1);
  out.wasmHeapMB = +(ad.heapBytes() / 1048576).toFixed(1);
  out.rssMB = +(process.memoryUsage().rss / 1048576).toFixed(1);
  console.log(JSON.stringify(out));
}
main();
