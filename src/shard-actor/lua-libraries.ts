/**
 * Owns the libraries Redis gives scripts beside the standard ones, written in Lua 5.1: `cjson`
 * (lua-cjson 2.1 as Redis bundles it: encode, decode, null, and its settings) and `bit` (LuaBitOp:
 * 32-bit operations on Lua numbers). Run in each fresh Lua state just before the prelude, in the
 * prelude's chunk, so that the error handler skips their frames as it skips the prelude's (an
 * error names the script's line, as a C library's luaL_error does). Relies on the standard
 * libraries only. Pure data: no I/O. The prelude makes the tables read-only.
 *
 * Redis's behaviour kept: an empty table encodes as `{}`; a table whose keys are all integers >= 1
 * is an array (holes become null) unless it is excessively sparse (max key > 2 x count and > 10:
 * an error); numbers as %.14g; `/` escaped as `\/`; JSON null decodes to `cjson.null` (a
 * userdata, which a reply turns into nil). Errors carry Redis's texts and position ("Expected
 * comma or array end but found T_END at character 5", "Cannot serialise function: type not
 * supported"). Not kept: bit.tobit of numbers past 2^51 (LuaBitOp reads the low word of the
 * double; here it is the value mod 2^32).
 */

export const LUA_LIBRARIES = String.raw`
-- lib_wrap(f): f as a C function (a closure of the VM's trampoline): an error raised inside gets
-- the caller's position as luaL_error gives it, and a script's "return cjson.encode(x)" is no tail
-- call that would hide the script's line.
local lib_wrap = (...).wrap

do -- cjson
  local type, pairs, next, tostring, tonumber, error, rawequal = type, pairs, next, tostring, tonumber, error, rawequal
  local floor, huge = math.floor, math.huge
  local format, byte, char, sub, find, gsub, concat = string.format, string.byte, string.char, string.sub, string.find, string.gsub, table.concat
  local wrap = lib_wrap

  local null = newproxy(false)
  local cfg = {
    sparse_convert = false, sparse_ratio = 2, sparse_safe = 10,
    encode_max_depth = 1000, decode_max_depth = 1000,
    encode_invalid_numbers = false, decode_invalid_numbers = true,
    keep_buffer = true, precision = 14,
  }

  local ESC = {}
  for i = 0, 31 do ESC[char(i)] = format('\\u%04x', i) end
  ESC['\b'] = '\\b'; ESC['\t'] = '\\t'; ESC['\n'] = '\\n'; ESC['\f'] = '\\f'; ESC['\r'] = '\\r'
  ESC['"'] = '\\"'; ESC['\\'] = '\\\\'; ESC['/'] = '\\/'; ESC['\127'] = '\\u007f'

  local function fail(t, why) error('Cannot serialise ' .. t .. ': ' .. why, 0) end

  local function enc_number(n)
    if n ~= n or n == huge or n == -huge then
      if cfg.encode_invalid_numbers == false then fail('number', 'must not be NaN or Inf') end
      if cfg.encode_invalid_numbers == 'null' then return 'null' end
      if n ~= n then return 'nan' end
    end
    return format('%.' .. cfg.precision .. 'g', n)
  end

  local function enc_string(s) return '"' .. gsub(s, '[%c"\\/\127]', ESC) .. '"' end

  local function array_length(t)
    local max, items = 0, 0
    for k in pairs(t) do
      if type(k) == 'number' and k ~= 0 and floor(k) == k and k >= 1 then
        if k > max then max = k end
        items = items + 1
      else
        return -1
      end
    end
    if cfg.sparse_ratio > 0 and max > items * cfg.sparse_ratio and max > cfg.sparse_safe then
      if not cfg.sparse_convert then fail('table', 'excessively sparse array') end
      return -1
    end
    return max
  end

  local encode_value
  local function enc_table(t, depth, out)
    depth = depth + 1
    if depth > cfg.encode_max_depth then error('Cannot serialise, excessive nesting (' .. depth .. ')', 0) end
    local len = array_length(t)
    if len > 0 then
      out[#out + 1] = '['
      for i = 1, len do
        if i > 1 then out[#out + 1] = ',' end
        encode_value(t[i], depth, out)
      end
      out[#out + 1] = ']'
      return
    end
    out[#out + 1] = '{'
    local comma = false
    for k, v in next, t do
      if comma then out[#out + 1] = ',' else comma = true end
      local kt = type(k)
      if kt == 'number' then out[#out + 1] = '"' .. enc_number(k) .. '":'
      elseif kt == 'string' then out[#out + 1] = enc_string(k) .. ':'
      else fail(kt, 'table key must be a number or string') end
      encode_value(v, depth, out)
    end
    out[#out + 1] = '}'
  end

  encode_value = function(v, depth, out)
    local t = type(v)
    if t == 'string' then out[#out + 1] = enc_string(v)
    elseif t == 'number' then out[#out + 1] = enc_number(v)
    elseif t == 'boolean' then out[#out + 1] = v and 'true' or 'false'
    elseif t == 'table' then enc_table(v, depth, out)
    elseif t == 'nil' or rawequal(v, null) then out[#out + 1] = 'null'
    else fail(t, 'type not supported') end
  end

  local function encode(...)
    if select('#', ...) ~= 1 then error("bad argument #1 to 'encode' (expected 1 argument)", 0) end
    local out = {}
    encode_value((...), 0, out)
    return concat(out)
  end

  -- Decoding: a tokenizer as lua-cjson's (token names in errors are its), then recursive descent.
  local T_END, T_ERROR = 'T_END', 'T_ERROR'
  local SIMPLE = { ['{'] = 'T_OBJ_BEGIN', ['}'] = 'T_OBJ_END', ['['] = 'T_ARR_BEGIN', [']'] = 'T_ARR_END', [':'] = 'T_COLON', [','] = 'T_COMMA' }
  local UNESC = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r', t = '\t' }

  local function utf8(cp)
    if cp < 0x80 then return char(cp) end
    if cp < 0x800 then return char(0xc0 + floor(cp / 64), 0x80 + cp % 64) end
    if cp < 0x10000 then return char(0xe0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64) end
    return char(0xf0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64, 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
  end

  -- Returns type, value, start, next position.
  local function token(s, i)
    local _, e = find(s, '^[ \t\n\r]*', i)
    i = e + 1
    if i > #s then return T_END, nil, i, i end
    local c = sub(s, i, i)
    local simple = SIMPLE[c]
    if simple then return simple, nil, i, i + 1 end
    if c == '"' then
      local parts, j = {}, i + 1
      while true do
        local a, b = find(s, '["\\]', j)
        if not a then return T_ERROR, 'unexpected end of string', #s + 1, #s + 1 end
        parts[#parts + 1] = sub(s, j, a - 1)
        if sub(s, a, a) == '"' then return 'T_STRING', concat(parts), i, a + 1 end
        local x = sub(s, a + 1, a + 1)
        if x == 'u' then
          local hex = sub(s, a + 2, a + 5)
          if not find(hex, '^%x%x%x%x$') then return T_ERROR, 'invalid unicode escape code', a, a end
          local cp, nxt = tonumber(hex, 16), a + 6
          if cp >= 0xd800 and cp <= 0xdbff then
            local lo = find(s, '^\\u[dD][c-fC-F]%x%x', nxt) and tonumber(sub(s, nxt + 2, nxt + 5), 16)
            if not lo then return T_ERROR, 'invalid unicode escape code', a, a end
            cp, nxt = 0x10000 + (cp - 0xd800) * 1024 + (lo - 0xdc00), nxt + 6
          elseif cp >= 0xdc00 and cp <= 0xdfff then
            return T_ERROR, 'invalid unicode escape code', a, a
          end
          parts[#parts + 1] = utf8(cp)
          j = nxt
        else
          local u = UNESC[x]
          if not u then return T_ERROR, 'invalid escape code', a, a end
          parts[#parts + 1] = u
          j = a + 2
        end
      end
    end
    if sub(s, i, i + 3) == 'true' then return 'T_BOOLEAN', true, i, i + 4 end
    if sub(s, i, i + 4) == 'false' then return 'T_BOOLEAN', false, i, i + 5 end
    if sub(s, i, i + 3) == 'null' then return 'T_NULL', null, i, i + 4 end
    if find(c, '^[-0-9]') or (cfg.decode_invalid_numbers and find(s, '^[+iInN]', i)) then
      local _, e2 = find(s, '^[-+0-9.eExXa-fA-FiInNtTyY]+', i)
      local text = sub(s, i, e2)
      local n = tonumber(text)
      if n == nil then
        local l = text:lower()
        if l == 'nan' or l == '-nan' then n = 0 / 0 elseif l == 'inf' or l == 'infinity' then n = huge elseif l == '-inf' or l == '-infinity' then n = -huge end
      end
      if n ~= nil then return 'T_NUMBER', n, i, e2 + 1 end
      return T_ERROR, 'invalid number', i, i
    end
    return T_ERROR, 'invalid token', i, i
  end

  local function parse_error(expected, tt, tv, at)
    error('Expected ' .. expected .. ' but found ' .. (tt == T_ERROR and tv or tt) .. ' at character ' .. at, 0)
  end

  local parse_value
  local function descend(depth, at)
    depth = depth + 1
    if depth > cfg.decode_max_depth then error('Found too many nested data structures (' .. depth .. ') at character ' .. at, 0) end
    return depth
  end

  local function parse_object(s, i, depth, at)
    depth = descend(depth, at)
    local t = {}
    local tt, tv, ts, ni = token(s, i)
    if tt == 'T_OBJ_END' then return t, ni end
    while true do
      if tt ~= 'T_STRING' then parse_error('object key string', tt, tv, ts) end
      local key = tv
      tt, tv, ts, ni = token(s, ni)
      if tt ~= 'T_COLON' then parse_error('colon', tt, tv, ts) end
      local v
      v, ni = parse_value(s, ni, depth)
      t[key] = v
      tt, tv, ts, ni = token(s, ni)
      if tt == 'T_OBJ_END' then return t, ni end
      if tt ~= 'T_COMMA' then parse_error('comma or object end', tt, tv, ts) end
      tt, tv, ts, ni = token(s, ni)
    end
  end

  local function parse_array(s, i, depth, at)
    depth = descend(depth, at)
    local t, n = {}, 0
    local tt, tv, ts, ni = token(s, i)
    if tt == 'T_ARR_END' then return t, ni end
    while true do
      local v
      v, ni = parse_value(s, ts, depth)
      n = n + 1
      t[n] = v
      tt, tv, ts, ni = token(s, ni)
      if tt == 'T_ARR_END' then return t, ni end
      if tt ~= 'T_COMMA' then parse_error('comma or array end', tt, tv, ts) end
      tt, tv, ts, ni = token(s, ni)
    end
  end

  parse_value = function(s, i, depth)
    local tt, tv, ts, ni = token(s, i)
    if tt == 'T_STRING' or tt == 'T_NUMBER' or tt == 'T_BOOLEAN' or tt == 'T_NULL' then return tv, ni end
    if tt == 'T_OBJ_BEGIN' then return parse_object(s, ni, depth, ni - 1) end
    if tt == 'T_ARR_BEGIN' then return parse_array(s, ni, depth, ni - 1) end
    parse_error('value', tt, tv, ts)
  end

  local function decode(...)
    if select('#', ...) ~= 1 then error("bad argument #1 to 'decode' (expected 1 argument)", 0) end
    local s = ...
    if type(s) == 'number' then s = tostring(s) end
    if type(s) ~= 'string' then error("bad argument #1 to 'decode' (string expected, got " .. type(s) .. ')', 0) end
    if #s >= 2 and (byte(s, 1) == 0 or byte(s, 2) == 0) then error('JSON parser does not support UTF-16 or UTF-32', 0) end
    local v, ni = parse_value(s, 1, 0)
    local tt, tv, ts = token(s, ni)
    if tt ~= T_END then parse_error('the end', tt, tv, ts) end
    return v
  end

  -- Settings: each returns the current value(s); an argument sets it first.
  local function setting(name, check)
    return function(v)
      if v ~= nil then cfg[name] = check(v) end
      return cfg[name]
    end
  end
  local function onoff(v)
    if v == true or v == 'on' then return true end
    if v == false or v == 'off' then return false end
    error("bad argument #1 (invalid option '" .. tostring(v) .. "')", 0)
  end
  local function depth(v)
    v = tonumber(v)
    if not v or v < 1 or v ~= floor(v) then error('bad argument #1 (expected integer between 1 and 2147483647)', 0) end
    return v
  end

  cjson = {
    _NAME = 'cjson', _VERSION = '2.1.0',
    null = null,
    encode = wrap(encode),
    decode = wrap(decode),
    encode_max_depth = wrap(setting('encode_max_depth', depth)),
    decode_max_depth = wrap(setting('decode_max_depth', depth)),
    encode_keep_buffer = wrap(setting('keep_buffer', onoff)),
    encode_invalid_numbers = wrap(setting('encode_invalid_numbers', function(v)
      if v == 'null' then return 'null' end
      return onoff(v)
    end)),
    decode_invalid_numbers = wrap(setting('decode_invalid_numbers', onoff)),
    encode_number_precision = wrap(setting('precision', function(v)
      v = tonumber(v)
      if not v or v < 1 or v > 14 or v ~= floor(v) then error('bad argument #1 (expected integer between 1 and 14)', 0) end
      return v
    end)),
    encode_sparse_array = wrap(function(convert, ratio, safe)
      if convert ~= nil then cfg.sparse_convert = onoff(convert) end
      if ratio ~= nil then cfg.sparse_ratio = tonumber(ratio) end
      if safe ~= nil then cfg.sparse_safe = tonumber(safe) end
      return cfg.sparse_convert, cfg.sparse_ratio, cfg.sparse_safe
    end),
  }
end

do -- bit (LuaBitOp 1.0.2): operands and results are signed 32-bit integers
  local floor, select, tonumber, type, error = math.floor, select, tonumber, type, error
  local sub, concat = string.sub, table.concat
  local wrap = lib_wrap
  local P32, P31, ROUND = 4294967296, 2147483648, 6755399441055744

  -- Argument i as its unsigned 32-bit pattern (fractions rounded to even, as LuaBitOp's
  -- 2^52+2^51 trick); Redis's texts for a missing or non-number argument.
  local function u32(x, i, name, argc)
    local n = tonumber(x)
    if n == nil then
      error("bad argument #" .. i .. " to '" .. name .. "' (number expected, got " .. (i > argc and 'no value' or type(x)) .. ')', 0)
    end
    if n > -2251799813685248 and n < 2251799813685248 then n = (n + ROUND) - ROUND end
    return n % P32
  end
  local function s32(u) if u >= P31 then return u - P32 end return u end

  local function band2(a, b)
    local r, p = 0, 1
    for _ = 1, 32 do
      if a % 2 == 1 and b % 2 == 1 then r = r + p end
      a, b, p = floor(a / 2), floor(b / 2), p * 2
    end
    return r
  end
  local function bor2(a, b) return a + b - band2(a, b) end
  local function bxor2(a, b) return a + b - 2 * band2(a, b) end

  local function fold(name, f)
    return function(...)
      local argc = select('#', ...)
      local r = u32((...), 1, name, argc)
      for i = 2, argc do r = f(r, u32((select(i, ...)), i, name, argc)) end
      return s32(r)
    end
  end
  local function unary(name, f)
    return function(...) return s32(f(u32((...), 1, name, select('#', ...)))) end
  end
  -- f(x, k): x unsigned, k the shift count mod 32.
  local function shift(name, f)
    return function(...)
      local argc = select('#', ...)
      local a, n = ...
      local x = u32(a, 1, name, argc)
      return s32(f(x, u32(n, 2, name, argc) % 32))
    end
  end

  bit = {
    tobit = wrap(unary('tobit', function(x) return x end)),
    bnot = wrap(unary('bnot', function(x) return P32 - 1 - x end)),
    bswap = wrap(unary('bswap', function(x)
      local b0, b1, b2, b3 = x % 256, floor(x / 256) % 256, floor(x / 65536) % 256, floor(x / 16777216)
      return ((b0 * 256 + b1) * 256 + b2) * 256 + b3
    end)),
    band = wrap(fold('band', band2)),
    bor = wrap(fold('bor', bor2)),
    bxor = wrap(fold('bxor', bxor2)),
    lshift = wrap(shift('lshift', function(x, k) return (x * 2 ^ k) % P32 end)),
    rshift = wrap(shift('rshift', function(x, k) return floor(x / 2 ^ k) end)),
    arshift = wrap(shift('arshift', function(x, k) return floor(s32(x) / 2 ^ k) % P32 end)),
    rol = wrap(shift('rol', function(x, k) return (x * 2 ^ k) % P32 + floor(x / 2 ^ (32 - k)) end)),
    ror = wrap(shift('ror', function(x, k) return floor(x / 2 ^ k) + (x * 2 ^ (32 - k)) % P32 end)),
    tohex = wrap(function(...)
      local argc = select('#', ...)
      local a, n = ...
      local x = u32(a, 1, 'tohex', argc)
      n = argc < 2 and 8 or s32(u32(n, 2, 'tohex', argc))
      local digits = '0123456789abcdef'
      if n < 0 then
        digits = '0123456789ABCDEF'
        n = -n
      end
      if n > 8 then n = 8 end
      local out = {}
      for i = n, 1, -1 do
        local d = x % 16
        out[i] = sub(digits, d + 1, d + 1)
        x = floor(x / 16)
      end
      return concat(out)
    end),
  }
end
`;
