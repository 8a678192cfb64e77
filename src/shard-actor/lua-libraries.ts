/**
 * Owns the libraries Redis gives scripts beside the standard ones, written in Lua 5.1: `cjson`
 * (lua-cjson 2.1 as Redis bundles it: encode, decode, null, and its settings), `cmsgpack`
 * (lua-cmsgpack: pack, unpack, unpack_one, unpack_limit) and `bit` (LuaBitOp: 32-bit operations on
 * Lua numbers). Run in each fresh Lua state just before the prelude, in the prelude's chunk, so
 * that the error handler skips their frames as it skips the prelude's; each function is wrapped by
 * the VM's C trampoline (`api.wrap`, lua-vm.ts) so that its errors name the script's line as a C
 * library's luaL_error does. Relies on the standard libraries only. Pure data: no I/O. The prelude
 * makes the tables read-only.
 *
 * Redis's behaviour kept: an empty table encodes as `{}` in JSON and as an empty array in
 * MessagePack; a table whose keys are all integers >= 1 is a JSON array (holes become null) unless
 * it is excessively sparse (max key > 2 x count and > 10: an error), and a MessagePack array only
 * without holes; JSON numbers as %.14g, `/` escaped as `\/`; JSON null decodes to `cjson.null` (a
 * userdata, which a reply turns into nil); MessagePack's smallest integer form, float32 when exact,
 * tables nested past 16 levels packed as nil. Errors carry Redis's texts and positions ("Expected
 * comma or array end but found T_END at character 5", "Missing bytes in input.").
 *
 * Not kept: speed (a small table's encode + decode costs ~30 µs in cmsgpack and ~60 µs in cjson
 * here, against a few µs in C; 100,000 elements take ~0.3 s, a noticeable part of the time budget);
 * bit.tobit of numbers past 2^51 (LuaBitOp reads the low word of the double; here it is the value
 * mod 2^32).
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

do -- cmsgpack (lua-cmsgpack as Redis bundles it): pack, unpack, unpack_one, unpack_limit
  local type, select, error, tonumber, floor, huge = type, select, error, tonumber, math.floor, math.huge
  local frexp, ldexp = math.frexp, math.ldexp
  local char, byte, sub, concat = string.char, string.byte, string.sub, table.concat
  local wrap = lib_wrap
  local MAX_NESTING = 16

  -- Every byte as a one-byte string made once: encoding appends these to out and concatenates
  -- once at the end (an allocation per byte would cost more than the rest: each is a JS call).
  local CH = {}
  for i = 0, 255 do CH[i] = char(i) end

  -- n (an integer, |n| < 2^53 or a power of two past it) as so many big-endian bytes, two's complement.
  local function be(n, bytes, out)
    if n < 0 then n = n + 2 ^ (8 * bytes) end
    local top = #out
    for i = bytes, 1, -1 do
      out[top + i] = CH[n % 256]
      n = floor(n / 256)
    end
  end
  -- 2^64 + n loses the low bits of a negative n: split it into two 32-bit halves first.
  local function be64(n, out)
    local hi = floor(n / 4294967296)
    be(hi % 4294967296, 4, out)
    be(n - hi * 4294967296, 4, out)
  end

  local function ieee(d, ebits, mbits, out)
    local bias = 2 ^ (ebits - 1) - 1
    local sign = (d < 0 or (d == 0 and 1 / d < 0)) and 1 or 0
    if sign == 1 then d = -d end
    local e, m
    if d ~= d then e, m = 2 ^ ebits - 1, 2 ^ (mbits - 1)
    elseif d == huge then e, m = 2 ^ ebits - 1, 0
    elseif d == 0 then e, m = 0, 0
    else
      local fr, ex = frexp(d) -- d = fr * 2^ex, 0.5 <= fr < 1
      e = ex + bias - 1
      if e <= 0 then m, e = ldexp(fr, mbits + ex + bias - 1), 0 -- subnormal
      else m = (fr * 2 - 1) * 2 ^ mbits end
    end
    if mbits == 52 then -- 64 bits do not fit a double: the high and low words apart
      local mhi = floor(m / 4294967296)
      be((sign * 2 ^ ebits + e) * 2 ^ 20 + mhi, 4, out)
      be(m - mhi * 4294967296, 4, out)
    else
      be((sign * 2 ^ ebits + e) * 2 ^ mbits + m, 4, out)
    end
  end

  local function is_float32(d)
    if d ~= d then return false end -- C: NaN ~= (float)NaN, so a NaN goes as a double
    if d == huge or d == -huge then return true end
    if d == 0 then return true end
    local fr, ex = frexp(d < 0 and -d or d)
    if ex > 128 or ex < -148 then return false end
    local mbits = ex >= -125 and 24 or (ex + 149)
    local scaled = ldexp(fr, mbits)
    return scaled == floor(scaled)
  end

  local INT64_MIN, INT64_END = -2 ^ 63, 2 ^ 63
  local function is_int64(n) return n == floor(n) and n >= INT64_MIN and n < INT64_END end

  local function encode_int(n, out)
    local top = #out
    if n >= 0 then
      if n <= 127 then out[top + 1] = CH[n]
      elseif n <= 0xff then out[top + 1] = CH[0xcc]; out[top + 2] = CH[n]
      elseif n <= 0xffff then out[top + 1] = CH[0xcd]; be(n, 2, out)
      elseif n <= 0xffffffff then out[top + 1] = CH[0xce]; be(n, 4, out)
      else out[top + 1] = CH[0xcf]; be64(n, out) end
    else
      if n >= -32 then out[top + 1] = CH[256 + n]
      elseif n >= -128 then out[top + 1] = CH[0xd0]; be(n, 1, out)
      elseif n >= -32768 then out[top + 1] = CH[0xd1]; be(n, 2, out)
      elseif n >= -2147483648 then out[top + 1] = CH[0xd2]; be(n, 4, out)
      else out[top + 1] = CH[0xd3]; be64(n, out) end
    end
  end

  local function header(n, fix, fixmax, c16, c32, out)
    if n <= fixmax then out[#out + 1] = CH[fix + n]
    elseif n <= 0xffff then out[#out + 1] = CH[c16]; be(n, 2, out)
    else out[#out + 1] = CH[c32]; be(n, 4, out) end
  end

  local function is_array(t)
    local count, max = 0, 0
    for k in next, t do
      if type(k) ~= 'number' or k <= 0 or k ~= floor(k) then return false end
      if k > max then max = k end
      count = count + 1
    end
    return max == count
  end

  local encode
  encode = function(v, level, out)
    local t = type(v)
    if t == 'table' and level == MAX_NESTING then t = 'nil' end
    if t == 'number' then
      if is_int64(v) then encode_int(v, out)
      elseif is_float32(v) then out[#out + 1] = CH[0xca]; ieee(v, 8, 23, out)
      else out[#out + 1] = CH[0xcb]; ieee(v, 11, 52, out) end
    elseif t == 'string' then
      local n = #v
      if n < 32 then out[#out + 1] = CH[0xa0 + n]
      elseif n <= 0xff then out[#out + 1] = CH[0xd9]; out[#out + 1] = CH[n]
      elseif n <= 0xffff then out[#out + 1] = CH[0xda]; be(n, 2, out)
      else out[#out + 1] = CH[0xdb]; be(n, 4, out) end
      out[#out + 1] = v
    elseif t == 'boolean' then out[#out + 1] = v and CH[0xc3] or CH[0xc2]
    elseif t == 'table' then
      if is_array(v) then
        local n = #v
        header(n, 0x90, 15, 0xdc, 0xdd, out)
        for i = 1, n do encode(v[i], level + 1, out) end
      else
        local n = 0
        for _ in next, v do n = n + 1 end
        header(n, 0x80, 15, 0xde, 0xdf, out)
        for k, x in next, v do
          encode(k, level + 1, out)
          encode(x, level + 1, out)
        end
      end
    else out[#out + 1] = CH[0xc0] end
  end

  local function pack(...)
    local argc = select('#', ...)
    if argc == 0 then error("bad argument #0 to 'pack' (MessagePack pack needs input.)", 0) end
    local out = {}
    for i = 1, argc do encode((select(i, ...)), 0, out) end
    return concat(out)
  end

  -- Decoding: a cursor over s; a short input or an unknown type byte throws a marker.
  local EOF, BADFMT = {}, {}
  local function need(s, p, n) if p + n - 1 > #s then error(EOF, 0) end end
  local function uint(s, p, n)
    need(s, p, n)
    local v = 0
    for i = p, p + n - 1 do v = v * 256 + byte(s, i) end
    return v
  end
  local function sint(s, p, n)
    local v = uint(s, p, n)
    if v >= 2 ^ (8 * n - 1) then v = v - 2 ^ (8 * n) end
    return v
  end
  local function float(s, p, ebits, mbits)
    local bytes = (1 + ebits + mbits) / 8
    local hi = uint(s, p, 4)
    local lo = bytes == 8 and uint(s, p + 4, 4) or 0
    local sign = hi >= 2147483648 and -1 or 1
    if hi >= 2147483648 then hi = hi - 2147483648 end
    local mhi = 2 ^ (mbits - (bytes - 4) * 8)
    local e = floor(hi / mhi)
    local m = (hi % mhi) * 2 ^ ((bytes - 4) * 8) + lo
    local bias = 2 ^ (ebits - 1) - 1
    if e == 2 ^ ebits - 1 then
      if m == 0 then return sign * huge end
      return 0 / 0
    end
    if e == 0 then return sign * ldexp(m, 1 - bias - mbits) end
    return sign * ldexp(m + 2 ^ mbits, e - bias - mbits)
  end

  local decode
  local function str(s, p, n) need(s, p, n) return sub(s, p, p + n - 1), p + n end
  local function array(s, p, n)
    local t = {}
    for i = 1, n do t[i], p = decode(s, p) end
    return t, p
  end
  local function map(s, p, n)
    local t = {}
    for _ = 1, n do
      local k, v
      k, p = decode(s, p)
      v, p = decode(s, p)
      t[k] = v
    end
    return t, p
  end
  -- The value at p and the position after it.
  decode = function(s, p)
    need(s, p, 1)
    local c = byte(s, p)
    if c < 0x80 then return c, p + 1 end
    if c >= 0xe0 then return c - 256, p + 1 end
    if c >= 0xa0 and c < 0xc0 then return str(s, p + 1, c - 0xa0) end
    if c >= 0x90 and c < 0xa0 then return array(s, p + 1, c - 0x90) end
    if c >= 0x80 and c < 0x90 then return map(s, p + 1, c - 0x80) end
    if c == 0xc0 then return nil, p + 1 end
    if c == 0xc2 then return false, p + 1 end
    if c == 0xc3 then return true, p + 1 end
    if c == 0xca then return float(s, p + 1, 8, 23), p + 5 end
    if c == 0xcb then return float(s, p + 1, 11, 52), p + 9 end
    if c == 0xcc then return uint(s, p + 1, 1), p + 2 end
    if c == 0xcd then return uint(s, p + 1, 2), p + 3 end
    if c == 0xce then return uint(s, p + 1, 4), p + 5 end
    if c == 0xcf then return uint(s, p + 1, 4) * 4294967296 + uint(s, p + 5, 4), p + 9 end
    if c == 0xd0 then return sint(s, p + 1, 1), p + 2 end
    if c == 0xd1 then return sint(s, p + 1, 2), p + 3 end
    if c == 0xd2 then return sint(s, p + 1, 4), p + 5 end
    if c == 0xd3 then return sint(s, p + 1, 4) * 4294967296 + uint(s, p + 5, 4), p + 9 end
    if c == 0xd9 then return str(s, p + 2, uint(s, p + 1, 1)) end
    if c == 0xda then return str(s, p + 3, uint(s, p + 1, 2)) end
    if c == 0xdb then return str(s, p + 5, uint(s, p + 1, 4)) end
    if c == 0xdc then return array(s, p + 3, uint(s, p + 1, 2)) end
    if c == 0xdd then return array(s, p + 5, uint(s, p + 1, 4)) end
    if c == 0xde then return map(s, p + 3, uint(s, p + 1, 2)) end
    if c == 0xdf then return map(s, p + 5, uint(s, p + 1, 4)) end
    error(BADFMT, 0)
  end

  local raw_pcall, raw_unpack = pcall, unpack
  -- mp_unpack_full: limit 0 and offset 0 decode everything and return no offset.
  local function unpack_full(s, limit, offset)
    if type(s) ~= 'string' and type(s) ~= 'number' then
      error("bad argument #1 to 'unpack' (string expected, got " .. (s == nil and 'no value' or type(s)) .. ')', 0)
    end
    s = s .. ''
    local all = limit == 0 and offset == 0
    if offset < 0 or limit < 0 then
      error('Invalid request to unpack with offset of ' .. offset .. ' and limit of ' .. #s .. '.', 0)
    elseif offset > #s then
      error('Start offset ' .. offset .. ' greater than input length ' .. #s .. '.', 0)
    end
    if all then limit = huge end
    local out, n, p = {}, 0, offset + 1
    while p <= #s and n < limit do
      local ok, v, np = raw_pcall(decode, s, p)
      if not ok then
        if v == EOF then error('Missing bytes in input.', 0) end
        if v == BADFMT then error('Bad data format in input.', 0) end
        error(v, 0)
      end
      n = n + 1
      out[n] = v
      p = np
    end
    if all then return raw_unpack(out, 1, n) end
    return (p > #s) and -1 or (p - 1), raw_unpack(out, 1, n)
  end

  local function int_arg(v, i, name, default)
    if v == nil then
      if default ~= nil then return default end
      error("bad argument #" .. i .. " to '" .. name .. "' (number expected, got no value)", 0)
    end
    local n = tonumber(v)
    if n == nil then error("bad argument #" .. i .. " to '" .. name .. "' (number expected, got " .. type(v) .. ')', 0) end
    return n >= 0 and floor(n) or -floor(-n)
  end

  cmsgpack = {
    _NAME = 'lua-cmsgpack', _VERSION = 'lua-cmsgpack 0.4.0',
    pack = wrap(pack),
    unpack = wrap(function(s) return unpack_full(s, 0, 0) end),
    unpack_one = wrap(function(s, offset) return unpack_full(s, 1, int_arg(offset, 2, 'unpack_one', 0)) end),
    unpack_limit = wrap(function(s, limit, offset)
      return unpack_full(s, int_arg(limit, 2, 'unpack_limit'), int_arg(offset, 3, 'unpack_limit', 0))
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
