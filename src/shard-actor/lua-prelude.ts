/**
 * Owns the Lua half of the script sandbox: the text run once in each fresh Lua state, with every
 * standard library still open, that turns it into the environment Redis 7 gives `EVAL` scripts.
 * Relies on the JS half (`lua-vm.ts`, `lua-redis-api.ts`) passing its C functions in one table. Touches nothing
 * outside the Lua state. Pure data: no I/O.
 *
 * Lua 5.1 (as Redis) has no read-only tables, which Redis 7 patches into its Lua. The same promise
 * is kept with proxies:
 *
 *   script function's env ──► ENV  (empty; __newindex: "Attempt to modify a readonly table")
 *                              │ __index (a table: one raw lookup, no call on the hot path)
 *                              ▼
 *                              G   (the real globals: redis, KEYS, ARGV, string, ...; libraries are
 *                              │    read-only proxies; `_G` is ENV)
 *                              │ __index (a function, only for a miss)
 *                              ▼
 *                              error "Script attempted to access nonexistent global variable 'x'"
 *
 * What must stay true: no script can write a table another script reads (G, a library table, the
 * string metatable, `redis`), whatever path it takes: assignment, rawset, setmetatable, getfenv(0),
 * setfenv(0), loadstring's default env. Every such path is wrapped below. A script's own tables
 * are its own.
 */

/** Chunk name of the prelude; the error handler skips its frames when it names the script line. */
export const PRELUDE_CHUNK = '@kvsql_prelude';

export const LUA_PRELUDE = String.raw`
local api = ...
local G = _G
local dbg = debug
local type, tostring, tonumber, select, error, next = type, tostring, tonumber, select, error, next
local rawget, rawset, rawequal, setmetatable, getmetatable = rawget, rawset, rawequal, setmetatable, getmetatable
local raw_pcall, raw_pairs, raw_ipairs, raw_unpack = pcall, pairs, ipairs, unpack
local raw_loadstring, raw_getfenv, raw_setfenv, raw_concat = loadstring, getfenv, setfenv, table.concat
local sub, find, byte = string.sub, string.find, string.byte

-- What Redis does not offer a script (script_lua.c's deny list, and libraries it never loads);
-- of os, Redis 7.2 keeps only os.clock.
local os_clock = os.clock
G.io = nil; G.os = { clock = os_clock }; G.package = nil; G.require = nil; G.module = nil
G.dofile = nil; G.loadfile = nil; G.print = nil; G.debug = nil

-- luaPushErrorBuff: "-CODE msg" keeps its code, "msg" gets ERR; CR/LF trimmed at both ends.
local function err_table(buf)
  local code, msg
  if sub(buf, 1, 1) == '-' then
    local sp = find(buf, ' ', 1, true)
    if sp then code, msg = sub(buf, 2, sp - 1), sub(buf, sp + 1)
    else code, msg = 'ERR', sub(buf, 2) end
  else
    code, msg = 'ERR', buf
  end
  msg = (string.gsub(msg, '^[\r\n]+', '')); msg = (string.gsub(msg, '[\r\n]+$', ''))
  return { err = code .. ' ' .. msg }
end

local function raise(msg) error(err_table(msg)) end

local redis = {
  call = api.call,
  pcall = api.pcall,
  sha1hex = api.sha1hex,
  setresp = api.setresp,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REPL_NONE = 0, REPL_AOF = 1, REPL_SLAVE = 2, REPL_REPLICA = 2, REPL_ALL = 3,
  REDIS_VERSION = api.version, REDIS_VERSION_NUM = api.version_num,
}

function redis.error_reply(...)
  local e = ...
  if select('#', ...) ~= 1 or type(e) ~= 'string' then return err_table('wrong number or type of arguments') end
  if sub(e, 1, 1) ~= '-' then e = '-' .. e end
  return err_table(e)
end

function redis.status_reply(...)
  local s = ...
  if select('#', ...) ~= 1 or type(s) ~= 'string' then return err_table('wrong number or type of arguments') end
  return { ok = s }
end

function redis.log(...)
  local argc = select('#', ...)
  if argc < 2 then raise('redis.log() requires two arguments or more.') end
  local level = ...
  if type(tonumber(level)) ~= 'number' then raise('First argument must be a number (log level).') end
  level = tonumber(level)
  if level < 0 or level > 3 then raise('Invalid debug level.') end
  local parts = {}
  for i = 2, argc do
    local v = select(i, ...)
    if type(v) == 'string' or type(v) == 'number' then parts[#parts + 1] = tostring(v) end
  end
  api.log(level, raw_concat(parts, ' '))
end

function redis.set_repl(...)
  if select('#', ...) ~= 1 then raise('redis.set_repl() requires two arguments.') end
  local flags = tonumber((...)) or 0
  if flags < 0 or flags > 3 or flags % 1 ~= 0 then
    raise('Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.')
  end
end
function redis.replicate_commands() return true end
function redis.breakpoint() return false end
function redis.debug() end

-- Redis's own math.random: a 48-bit LCG reset before every script, the same sequence on every host.
G.math.random = api.random
G.math.randomseed = api.randomseed

-- redis.pcall errors are tables; Lua's pcall gives the string inside, as Redis 7 does.
local function pcall_result(ok, ...)
  if ok then return true, ... end
  local e = ...
  if type(e) == 'table' then
    local m = rawget(e, 'err')
    if type(m) == 'string' or type(m) == 'number' then return false, m end
  end
  return false, e
end
G.pcall = function(f, ...) return pcall_result(raw_pcall(f, ...)) end

-- Read-only proxies. proxied[proxy] = the real table behind it.
local proxied = setmetatable({}, { __mode = 'k' })
local function readonly_error() error('Attempt to modify a readonly table', 2) end
local function readonly(t)
  local p = setmetatable({}, { __index = t, __newindex = readonly_error, __metatable = false })
  proxied[p] = t
  return p
end
local function real(t) return proxied[t] or t end

local ENV = {}
proxied[ENV] = G

-- Iteration and raw access see through a proxy (pairs(string) lists string's functions).
G.next = function(t, k) return next(real(t), k) end
G.pairs = function(t) return next, real(t), nil end
G.ipairs = function(t) return raw_ipairs(real(t)) end
G.rawget = function(t, k) return rawget(real(t), k) end
G.unpack = function(t, i, j) return raw_unpack(real(t), i, j) end
G.rawset = function(t, k, v)
  if proxied[t] or rawequal(t, G) then error('Attempt to modify a readonly table', 2) end
  return rawset(t, k, v)
end
G.setmetatable = function(t, mt)
  if proxied[t] or rawequal(t, G) then error('Attempt to modify a readonly table', 2) end
  return setmetatable(t, mt)
end

-- Environments: getfenv never hands out G; setfenv only re-targets the script's own functions.
G.getfenv = function(f)
  local e
  if f == nil then e = raw_getfenv(2) elseif type(f) == 'number' and f > 0 then e = raw_getfenv(f + 1) else e = raw_getfenv(f) end
  if rawequal(e, G) then return ENV end
  return e
end
G.setfenv = function(f, t)
  local target = f
  if f == nil then target = 2 elseif type(f) == 'number' then
    if f <= 0 then error("'setfenv' cannot change the environment of the script engine", 2) end
    target = f + 1
  end
  local info = dbg.getinfo(target, 'S')
  if not info or info.what == 'C' or info.source == '@kvsql_prelude' then
    error("'setfenv' cannot change the environment of this function", 2)
  end
  if type(target) == 'number' then return raw_setfenv(target, t) end
  return raw_setfenv(f, t)
end

-- Chunks compiled inside a script run in ENV, and never from bytecode (Redis removed undump).
local function guarded_load(s, name)
  if type(s) == 'string' and byte(s, 1) == 27 then return nil, 'bytecode loading is disabled' end
  local f, e = raw_loadstring(s, name)
  if f then raw_setfenv(f, ENV) end
  return f, e
end
G.loadstring = guarded_load
G.load = function(reader, name)
  if type(reader) == 'string' then return guarded_load(reader, name) end
  local parts = {}
  while true do
    local piece = reader()
    if piece == nil or piece == '' then break end
    if type(piece) ~= 'string' then return nil, 'reader function must return a string' end
    parts[#parts + 1] = piece
  end
  return guarded_load(raw_concat(parts), name or '=(load)')
end

-- Error handler: {err=..., source=..., line=...} naming the script line, as Redis 7's
-- __redis__err__handler (skipping C frames and this prelude's own frames).
local function handler(err)
  local at
  for level = 2, 12 do
    local i = dbg.getinfo(level, 'Sl')
    if not i then break end
    if i.what ~= 'C' and i.source ~= '@kvsql_prelude' then at = i; break end
  end
  if type(err) ~= 'table' then err = { err = 'ERR ' .. tostring(err) } end
  if at then rawset(err, 'source', at.source); rawset(err, 'line', at.currentline) end
  return err
end

-- Libraries become read-only proxies; redis too. Strings' methods go through the proxy.
for _, name in raw_ipairs({ 'string', 'math', 'table', 'coroutine', 'os', 'cjson', 'cmsgpack', 'bit' }) do
  if type(rawget(G, name)) == 'table' then rawset(G, name, readonly(rawget(G, name))) end
end
rawset(G, 'redis', readonly(redis))
local string_mt = getmetatable('')
string_mt.__index = rawget(G, 'string')
string_mt.__metatable = readonly({ __index = rawget(G, 'string') })

rawset(G, '_G', ENV)
setmetatable(ENV, { __index = G, __newindex = readonly_error, __metatable = false })
setmetatable(G, {
  __index = function(_, k)
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 0)
  end,
  __metatable = false,
})

return handler, ENV
`;
