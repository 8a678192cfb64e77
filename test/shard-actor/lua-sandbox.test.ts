/**
 * The Lua sandbox alone: conversions both ways (the cases of Redis's tests/unit/scripting.tcl
 * that apply), Redis 7's error texts, binary safety, the sandbox, the time budget, the memory
 * bound, the script cache, and two real libraries' scripts (redlock, rate-limiter-flexible)
 * against a tiny in-memory `call`. No database.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { SCRIPT_ERRORS, timeoutError, memoryError, type RedisValue, type ScriptCall, type ScriptRunner } from '../../src/shard-actor/lua-sandbox';
import { createScriptRunner } from '../../src/shard-actor/lua-runner';
import { sha1hex } from '../../src/shard-actor/lua-script-cache';
import { formatG } from '../../src/shard-actor/lua-values';

const B = (s: string): Buffer => Buffer.from(s);
const MEMORY = 16 * 1024 * 1024;
const BUDGET_MS = 150;

/** A tiny Redis: strings with millisecond TTLs; `now` is passed in. */
function memoryRedis() {
  const data = new Map<string, { v: Buffer; exp: number }>();
  let now = 1_000_000;
  const live = (k: string) => {
    const e = data.get(k);
    if (e && e.exp && e.exp <= now) data.delete(k);
    return data.get(k);
  };
  const calls: string[][] = [];
  const call: ScriptCall = (args) => {
    const a = args.map((x) => x.toString());
    calls.push(a);
    const cmd = a[0]!.toLowerCase();
    const k = a[1]!;
    switch (cmd) {
      case 'get':
        return live(k)?.v ?? null;
      case 'set': {
        let exp = 0;
        let nx = false;
        for (let i = 3; i < a.length; i++) {
          const o = a[i]!.toUpperCase();
          if (o === 'NX') nx = true;
          else if (o === 'EX') exp = now + Number(a[++i]) * 1000;
          else if (o === 'PX') exp = now + Number(a[++i]);
        }
        if (nx && live(k)) return null;
        data.set(k, { v: args[2]!, exp });
        return { status: 'OK' };
      }
      case 'del':
        return live(k) ? (data.delete(k), 1) : 0;
      case 'incrby': {
        const cur = live(k);
        const n = Number(cur?.v.toString() ?? '0');
        if (!Number.isInteger(n)) return { error: 'ERR value is not an integer or out of range' };
        const v = n + Number(a[2]);
        data.set(k, { v: B(String(v)), exp: cur?.exp ?? 0 });
        return v;
      }
      case 'pexpire':
      case 'expire': {
        const cur = live(k);
        if (!cur) return 0;
        cur.exp = now + Number(a[2]) * (cmd === 'expire' ? 1000 : 1);
        return 1;
      }
      case 'pttl': {
        const cur = live(k);
        if (!cur) return -2;
        return cur.exp ? cur.exp - now : -1;
      }
      case 'echo':
        return args[1]!;
      case 'reply':
        return REPLIES[a[1]!]!;
      default:
        return { error: SCRIPT_ERRORS.unknownCommand };
    }
  };
  return { call, data, calls, advance: (ms: number) => (now += ms) };
}

/** Replies a test asks `call` to give back, by name. */
const REPLIES: Record<string, RedisValue> = {
  int: 42,
  big: 2n ** 60n,
  bulk: B('hello'),
  nil: null,
  status: { status: 'OK' },
  error: { error: 'WRONGTYPE Operation against a key holding the wrong kind of value' },
  array: [1, B('two'), null, [B('nested')]],
  empty: [],
  binary: Buffer.from([0x00, 0xff, 0x0d, 0x0a, 0x80]),
};

let runner: ScriptRunner;
before(async () => {
  runner = await createScriptRunner(
    { timeBudgetMs: BUDGET_MS, memoryBytes: MEMORY },
    { isWriteCommand: (n) => ['set', 'del', 'incrby', 'expire', 'pexpire'].includes(n) },
  );
});
after(() => runner.close());

function run(body: string, keys: string[] = [], argv: string[] = [], redis = memoryRedis(), readOnly = false) {
  return runner.run(body, keys.map(B), argv.map(B), redis.call, readOnly);
}
function reply(body: string, keys: string[] = [], argv: string[] = [], redis = memoryRedis()): RedisValue {
  const r = run(body, keys, argv, redis);
  assert.ok(r.ok, `expected a reply, got ${JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))}`);
  return r.reply;
}
function failure(body: string, redis = memoryRedis()) {
  const r = run(body, [], [], redis);
  assert.ok(!r.ok, `expected an error, got ${JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))}`);
  return r;
}
const shaOf = (body: string) => sha1hex(body);

// --- Lua → Redis ------------------------------------------------------------------------------

test('Lua number → integer reply, truncated toward zero (3.99 → 3, -3.99 → -3)', () => {
  assert.equal(reply('return 3.99'), 3);
  assert.equal(reply('return -3.99'), -3);
  assert.equal(reply('return 100.01'), 100);
  assert.equal(reply('return 0'), 0);
  assert.equal(reply('return 2^53 + 2^52'), 2n ** 53n + 2n ** 52n);
});

test('Lua string → bulk, true → 1, false and nil → nil', () => {
  assert.deepEqual(reply("return 'hello'"), B('hello'));
  assert.equal(reply('return true'), 1);
  assert.equal(reply('return false'), null);
  assert.equal(reply('return nil'), null);
  assert.equal(reply('return'), null);
});

test('arrays stop at the first nil; nested arrays convert; hashes give an empty array', () => {
  assert.deepEqual(reply("return {1,2,3,'ciao',{1,2}}"), [1, 2, 3, B('ciao'), [1, 2]]);
  assert.deepEqual(reply('return {1,2,nil,4}'), [1, 2]);
  assert.deepEqual(reply('return {1,false,3}'), [1, null, 3]);
  assert.deepEqual(reply('return {a=1,b=2}'), []);
  assert.deepEqual(reply('return {}'), []);
});

test('status and error tables, redis.status_reply, redis.error_reply', () => {
  assert.deepEqual(reply("return {ok='fine'}"), { status: 'fine' });
  assert.deepEqual(reply("return redis.status_reply('PONG')"), { status: 'PONG' });
  assert.deepEqual(reply("return {err='My Error'}"), { error: 'My Error' });
  assert.deepEqual(reply("return redis.error_reply('My Error')"), { error: 'My Error' });
  assert.deepEqual(reply("return redis.error_reply('-WRONGTYPE bad')"), { error: 'WRONGTYPE bad' });
  assert.deepEqual(reply("return redis.error_reply('boom')"), { error: 'ERR boom' });
  assert.deepEqual(reply('return redis.error_reply(1, 2)'), { error: 'ERR wrong number or type of arguments' });
  assert.deepEqual(reply("return {ok='a\\r\\nb'}"), { status: 'a  b' });
  // err wins over ok, as in Redis's order of checks.
  assert.deepEqual(reply("return {ok='x', err='ERR y'}"), { error: 'ERR y' });
});

test('RESP3-shaped tables are flattened for RESP2: double, map, set', () => {
  assert.deepEqual(reply('return {double=3.5}'), B('3.5'));
  assert.deepEqual(reply('return {map={a=1}}'), [B('a'), 1]);
  assert.deepEqual(reply('return {set={x=true}}'), [B('x')]);
});

test('a table that contains itself stops at the depth limit, not a stack overflow', () => {
  const r = reply('local t = {} t[1] = t return t');
  let depth = 0;
  let v: RedisValue = r;
  while (Array.isArray(v)) {
    v = v[0]!;
    depth++;
  }
  assert.equal(depth, 1000);
  assert.deepEqual(v, { error: 'ERR reached lua stack limit' });
});

// --- Redis → Lua ------------------------------------------------------------------------------

test('command replies → Lua: integer, bulk, nil → false, status → {ok}, array → table', () => {
  assert.deepEqual(reply("return type(redis.call('reply','int')) .. redis.call('reply','int')"), B('number42'));
  assert.equal(reply("return redis.call('reply','big') == 2^60"), 1);
  assert.deepEqual(reply("return redis.call('reply','bulk')"), B('hello'));
  assert.deepEqual(reply("return tostring(redis.call('reply','nil'))"), B('false'));
  assert.deepEqual(reply("return redis.call('reply','status').ok"), B('OK'));
  assert.deepEqual(reply("return redis.call('reply','status')"), { status: 'OK' });
  assert.deepEqual(reply("return redis.call('reply','array')"), [1, B('two'), null, [B('nested')]]);
  assert.deepEqual(reply("local a = redis.call('reply','array') return {#a, type(a[3])}"), [4, B('boolean')]);
  assert.deepEqual(reply("return #redis.call('reply','empty')"), 0);
});

test('redis.call raises a command error with the script line; redis.pcall returns it', () => {
  const sha = shaOf("\nreturn redis.call('reply','error')");
  const r = failure("\nreturn redis.call('reply','error')");
  assert.equal(r.reason, 'script');
  assert.equal(r.error, `WRONGTYPE Operation against a key holding the wrong kind of value script: ${sha}, on @user_script:2.`);
  assert.deepEqual(reply("return redis.pcall('reply','error')"), {
    error: 'WRONGTYPE Operation against a key holding the wrong kind of value',
  });
  assert.deepEqual(reply("local e = redis.pcall('reply','error') return {e.err, tostring(e.ignore_error_stats_update)}"), [
    B('WRONGTYPE Operation against a key holding the wrong kind of value'),
    B('true'),
  ]);
  // Lua's pcall around redis.call gives the error text, as Redis 7's pcall does.
  assert.deepEqual(reply("local ok, e = pcall(redis.call, 'reply', 'error') return {tostring(ok), e}"), [
    B('false'),
    B('WRONGTYPE Operation against a key holding the wrong kind of value'),
  ]);
});

test('bad arguments to redis.call: none, or not a string or number', () => {
  const noArgs = failure('return redis.call()');
  assert.equal(noArgs.error, `${SCRIPT_ERRORS.noArgs} script: ${shaOf('return redis.call()')}, on @user_script:1.`);
  const bad = failure("return redis.call('get', {})");
  assert.match(bad.error, /^ERR Lua redis lib command arguments must be strings or integers script: /);
  assert.deepEqual(reply("return redis.pcall('get', nil)"), { error: SCRIPT_ERRORS.badArgType });
});

test('numbers passed to redis.call are formatted as %.17g', () => {
  const redis = memoryRedis();
  reply("redis.call('echo', 3) redis.call('echo', 0.1) redis.call('echo', 1e20) redis.call('echo', -2.5)", [], [], redis);
  assert.deepEqual(
    redis.calls.map((c) => c[1]),
    ['3', '0.10000000000000001', '1e+20', '-2.5'],
  );
  assert.equal(formatG(1e16, 17), '10000000000000000');
  assert.equal(formatG(1e17, 17), '1e+17');
  assert.equal(formatG(0.0001, 17), '0.0001');
  assert.equal(formatG(0.00001, 17), '1.0000000000000001e-05');
});

test('binary safety: 0x00 and 0xff survive KEYS, ARGV, call arguments, replies', () => {
  const bin = Buffer.from([0x00, 0xff, 0x41, 0x00, 0xfe, 0x0a]);
  const redis = memoryRedis();
  const r = runner.run("redis.call('set', KEYS[1], ARGV[1]) return {redis.call('get', KEYS[1]), #ARGV[1], KEYS[1]}", [bin], [bin], redis.call, false);
  assert.ok(r.ok);
  assert.deepEqual(r.reply, [bin, bin.length, bin]);
  assert.deepEqual(redis.data.get(bin.toString())?.v, bin);
  assert.deepEqual(reply("return redis.call('reply','binary')"), REPLIES.binary);
  assert.deepEqual(reply("return redis.sha1hex('\\0\\255')"), B(sha1hex(Buffer.from([0, 255]))));
});

// --- Errors ------------------------------------------------------------------------------------

test('runtime and compile errors carry Redis 7 texts', () => {
  const body = 'local x = nil\nreturn x.field';
  assert.equal(failure(body).error, `ERR user_script:2: attempt to index local 'x' (a nil value) script: ${shaOf(body)}, on @user_script:2.`);
  assert.equal(failure("error('boom')").error, `ERR user_script:1: boom script: ${shaOf("error('boom')")}, on @user_script:1.`);
  assert.equal(failure("error({err='My Error'})").error, `My Error script: ${shaOf("error({err='My Error'})")}, on @user_script:1.`);
  const c = failure('return x x');
  assert.equal(c.reason, 'compile');
  assert.equal(c.error, "ERR Error compiling script (new function): user_script:1: '<eof>' expected near 'x'");
});

test('shebang: flags parsed, unknown ones refused, line numbers kept', () => {
  const ok = runner.load('#!lua flags=no-writes\nreturn 1');
  assert.ok(ok.ok);
  assert.equal(ok.flags.noWrites, true);
  assert.deepEqual(runner.load('#!lua flags=bogus\nreturn 1'), { ok: false, error: 'ERR Unexpected flag in script shebang: bogus' });
  assert.deepEqual(runner.load('#!python\nreturn 1'), { ok: false, error: 'ERR Unexpected engine in script shebang: #!python' });
  assert.deepEqual(runner.load('#!lua name=x\nreturn 1'), { ok: false, error: 'ERR Unknown lua shebang option: name=x' });
  const body = '#!lua\nerror("here")';
  assert.equal(failure(body).error, `ERR user_script:2: here script: ${shaOf(body)}, on @user_script:2.`);
});

test('read-only runs (EVAL_RO, no-writes) refuse writes before call sees them', () => {
  const redis = memoryRedis();
  const r = run("return redis.call('set', 'k', 'v')", [], [], redis, true);
  assert.ok(!r.ok);
  assert.match(r.error, /^ERR Write commands are not allowed from read-only scripts\. script: /);
  assert.equal(redis.calls.length, 0);
  const ro = runner.run("#!lua flags=no-writes\nreturn redis.pcall('del', 'k')", [], [], redis.call, false);
  assert.deepEqual(ro, { ok: true, reply: { error: SCRIPT_ERRORS.writeInReadOnly } });
  assert.deepEqual(run("return redis.call('get', 'k')", [], [], redis, true), { ok: true, reply: null });
});

// --- Sandbox -----------------------------------------------------------------------------------

test('globals are protected as in Redis 7', () => {
  assert.match(failure('a = 10').error, /^ERR user_script:1: Attempt to modify a readonly table script: /);
  assert.match(failure('return a').error, /^ERR Script attempted to access nonexistent global variable 'a' script: /);
  assert.match(failure('function f() end').error, /Attempt to modify a readonly table/);
  assert.match(failure('redis = nil').error, /Attempt to modify a readonly table/);
  assert.match(failure('redis.call = nil').error, /Attempt to modify a readonly table/);
  assert.match(failure('string.rep = nil').error, /Attempt to modify a readonly table/);
  assert.match(failure('_G.x = 1').error, /Attempt to modify a readonly table/);
  assert.match(failure("rawset(_G, 'x', 1)").error, /Attempt to modify a readonly table/);
  assert.match(failure("rawset(getfenv(0), 'x', 1)").error, /Attempt to modify a readonly table/);
  assert.match(failure("rawset(string, 'x', 1)").error, /Attempt to modify a readonly table/);
  assert.match(failure("getmetatable('').__index = {}").error, /Attempt to modify a readonly table/);
  assert.match(failure("loadstring('y = 1')()").error, /Attempt to modify a readonly table/);
  assert.match(failure('setfenv(0, {})').error, /cannot change the environment/);
  // Locals, and a script's own tables, are the script's.
  assert.deepEqual(reply('local t = {} t.x = 1 rawset(t, "y", 2) setmetatable(t, {}) return t.x + t.y'), 3);
  // setfenv on the script itself does not leak into the next run of the same script.
  const body = "if KEYS[1] == 'a' then setfenv(1, {}) return 1 end return type(redis)";
  assert.equal(reply(body, ['a']), 1);
  assert.deepEqual(reply(body, ['b']), B('table'));
});

test('forbidden libraries and functions are absent; Redis 5.1 builtins are there', () => {
  for (const name of ['io', 'require', 'loadfile', 'dofile', 'debug', 'print', 'package', 'module']) {
    assert.match(failure(`return ${name}`).error, new RegExp(`nonexistent global variable '${name}'`), name);
  }
  assert.equal(reply('return os.execute'), null); // Redis 7.2 keeps only os.clock
  assert.deepEqual(reply('return type(os.clock)'), B('function'));
  assert.deepEqual(reply('return {type(unpack), type(loadstring), type(getfenv), type(table.getn), type(string.gfind), _VERSION}'), [
    B('function'),
    B('function'),
    B('function'),
    B('function'),
    B('function'),
    B('Lua 5.1'),
  ]);
  // Lua 5.1 number formatting, as Redis: no "5.0".
  assert.deepEqual(reply('return tostring(10/2) .. " " .. tostring(1/3)'), B('5 0.33333333333333'));
  assert.deepEqual(reply('return loadstring(string.dump(function() end))'), null);
  assert.deepEqual(reply('local n = 0 for k in pairs(string) do n = n + 1 end return n > 10'), 1);
});

test('math.random is reseeded before every script (same sequence each run), and seedable', () => {
  const a = reply('return {math.random(100), math.random(100), math.random(100)}');
  const b = reply('return {math.random(100), math.random(100), math.random(100)}');
  assert.deepEqual(a, b);
  const c = reply('math.randomseed(42) return {math.random(100), math.random(100), math.random(100)}');
  assert.notDeepEqual(a, c);
  assert.equal(reply('local r = math.random() return r >= 0 and r < 1'), 1);
});

test('redis.sha1hex, redis.log, redis.setresp, version', () => {
  assert.deepEqual(reply("return {redis.sha1hex(''), redis.sha1hex('Pizza & Mandolino')}"), [
    B('da39a3ee5e6b4b0d3255bfef95601890afd80709'),
    B('74822d82031af7493c20eefa13bd07ec4fada82f'),
  ]);
  assert.match(failure('return redis.sha1hex()').error, /^ERR wrong number of arguments script: /);
  assert.equal(reply("redis.log(redis.LOG_WARNING, 'hello', 1) return 1"), 1);
  assert.match(failure("redis.log('x')").error, /^ERR redis.log\(\) requires two arguments or more\. script: /);
  assert.match(failure("redis.log(9, 'x')").error, /^ERR Invalid debug level\. script: /);
  assert.equal(reply('redis.setresp(2) return 1'), 1);
  assert.match(failure('redis.setresp(4)').error, /^ERR RESP version must be 2 or 3\. script: /);
  assert.match(failure('redis.setresp(3)').error, /RESP2 only/);
  assert.deepEqual(reply('return redis.REDIS_VERSION'), B('7.2.0'));
});

// --- Limits ------------------------------------------------------------------------------------

test('a script over its time budget is stopped, even if it pcalls; the runner is reusable', () => {
  for (const body of ['while true do end', 'while true do pcall(function() while true do end end) end', "while true do redis.pcall('get', 'k') end"]) {
    const t0 = performance.now();
    const r = failure(body);
    const took = performance.now() - t0;
    assert.equal(r.reason, 'timeout', body);
    assert.equal(r.error, timeoutError(BUDGET_MS));
    assert.ok(took >= BUDGET_MS && took < BUDGET_MS + 500, `${body}: took ${took} ms`);
    assert.equal(reply('return 7'), 7);
  }
});

test('memory is bounded: a huge table or string fails cleanly; the runner is reusable', () => {
  const before = runner.stats().luaHeapBytes;
  for (const body of [
    'local t = {} for i = 1, 1e8 do t[i] = i end return #t',
    "return string.rep('x', 1e9)",
    "local ok = pcall(function() local t = {} for i = 1, 1e8 do t[i] = {i, i, i} end end) return 'survived'",
    "local s = 'x' while true do s = s .. s end",
  ]) {
    const r = failure(body);
    assert.equal(r.reason, 'memory', body);
    assert.equal(r.error, memoryError(MEMORY));
    assert.equal(reply('return 8'), 8);
  }
  // The garbage is collected (Lua keeps a grown string table and stack: about 1 MB here).
  assert.ok(runner.stats().luaHeapBytes < before + MEMORY / 4, `heap ${runner.stats().luaHeapBytes}`);
});

test('a call that throws aborts the run with the thrown error; the runner is reusable', () => {
  const cause = new Error('lost the transaction');
  const r = runner.run(
    "local ok = pcall(redis.call, 'get', 'x') redis.call('get', 'y') return 1",
    [],
    [],
    () => {
      throw cause;
    },
    false,
  );
  assert.ok(!r.ok);
  assert.equal(r.reason, 'call-threw');
  assert.equal(r.cause, cause);
  assert.equal(reply('return 9'), 9);
});

// --- Cache -------------------------------------------------------------------------------------

test('script cache: lowercase sha, EVALSHA does not recompile, FLUSH, LRU bound', async () => {
  const small = await createScriptRunner({ timeBudgetMs: 1000, memoryBytes: MEMORY }, { maxCachedScripts: 2 });
  try {
    const loaded = small.load('return 1');
    assert.ok(loaded.ok);
    assert.equal(loaded.sha, 'e0e1f9fabfc9d4800c877a703b823ac0578ff8db');
    assert.equal(small.sha1hex('return 1'), loaded.sha);
    const compiles = small.stats().compiles;
    const redis = memoryRedis();
    for (let i = 0; i < 5; i++) assert.deepEqual(small.runSha(loaded.sha.toUpperCase(), [], [], redis.call, false), { ok: true, reply: 1 });
    small.run('return 1', [], [], redis.call, false);
    assert.equal(small.stats().compiles, compiles);
    assert.equal(small.runSha('ffffffffffffffffffffffffffffffffffffffff', [], [], redis.call, false), undefined);
    small.load('return 2');
    small.runSha(loaded.sha, [], [], redis.call, false); // 'return 1' is now the most recent
    small.load('return 3'); // evicts 'return 2'
    assert.ok(small.has(loaded.sha));
    assert.ok(!small.has(sha1hex('return 2')));
    small.flush();
    assert.ok(!small.has(loaded.sha));
    assert.equal(small.stats().cachedScripts, 0);
  } finally {
    small.close();
  }
});

// --- Real libraries' scripts ---------------------------------------------------------------------

const REDLOCK_RELEASE = 'if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end';

const RATE_LIMITER_FLEXIBLE = `redis.call('set', KEYS[1], 0, 'EX', ARGV[2], 'NX') \
local consumed = redis.call('incrby', KEYS[1], ARGV[1]) \
local ttl = redis.call('pttl', KEYS[1]) \
if ttl == -1 then \
  redis.call('expire', KEYS[1], ARGV[2]) \
  ttl = 1000 * ARGV[2] \
end \
return {consumed, ttl} \
`;

test('redlock: release only by the holder', () => {
  const redis = memoryRedis();
  redis.call([B('set'), B('lock'), B('token-a'), B('PX'), B('10000')], 'call');
  assert.equal(reply(REDLOCK_RELEASE, ['lock'], ['token-b'], redis), 0);
  assert.ok(redis.data.has('lock'));
  assert.equal(reply(REDLOCK_RELEASE, ['lock'], ['token-a'], redis), 1);
  assert.ok(!redis.data.has('lock'));
  assert.equal(reply(REDLOCK_RELEASE, ['lock'], ['token-a'], redis), 0);
});

test('rate-limiter-flexible: consume counts within the window, then a new window', () => {
  const redis = memoryRedis();
  assert.deepEqual(reply(RATE_LIMITER_FLEXIBLE, ['rl:ip'], ['1', '60'], redis), [1, 60000]);
  redis.advance(1000);
  assert.deepEqual(reply(RATE_LIMITER_FLEXIBLE, ['rl:ip'], ['2', '60'], redis), [3, 59000]);
  redis.advance(59000);
  assert.deepEqual(reply(RATE_LIMITER_FLEXIBLE, ['rl:ip'], ['1', '60'], redis), [1, 60000]);
  const r = run("redis.call('set', KEYS[1], 'abc') return redis.call('incrby', KEYS[1], 1)", ['n'], [], redis);
  assert.ok(!r.ok);
  assert.match(r.error, /^ERR value is not an integer or out of range script: [0-9a-f]{40}, on @user_script:1\.$/);
});

/** Each `return <call>` fails with Redis 7's text for a library error raised on line 1. */
function raisesAtLine1(cases: Array<[string, string]>): void {
  for (const [call, text] of cases) {
    const body = `return ${call}`;
    assert.equal(failure(body).error, `ERR user_script:1: ${text} script: ${sha1hex(body)}, on @user_script:1.`, call);
  }
}

// --- cjson and bit, against real Redis 7 (tests/unit/scripting.tcl, and redis-server 7.0 EVAL) ----

test('cjson.encode: arrays, objects, "{}" for an empty table, numbers as %.14g, escapes', () => {
  assert.deepEqual(reply('return cjson.encode({})'), B('{}'));
  assert.deepEqual(reply('return cjson.encode({1,2,nil,4})'), B('[1,2,null,4]'));
  assert.deepEqual(reply('return cjson.encode({a={b={c={1,2,3}}}})'), B('{"a":{"b":{"c":[1,2,3]}}}'));
  assert.deepEqual(
    reply('return cjson.encode({1,2,[11]=3, [12]=1, [13]=1, [14]=1, [15]=1, [16]=1})'),
    B('[1,2,null,null,null,null,null,null,null,null,3,1,1,1,1,1]'),
  );
  assert.deepEqual(reply('return cjson.encode({[1.5]=1})'), B('{"1.5":1}'));
  assert.deepEqual(
    reply('return cjson.encode({1.5, 1e20, 0.1, -0, 123456789012345678, 1/3, -0.000001})'),
    B('[1.5,1e+20,0.1,-0,1.2345678901235e+17,0.33333333333333,-1e-06]'),
  );
  assert.deepEqual(reply('return cjson.encode(\'tab\\there\\nnew "q" \\\\ /\')'), B('"tab\\there\\nnew \\"q\\" \\\\ \\/"'));
  assert.deepEqual(reply("return cjson.encode('\\1\\127')"), B('"\\u0001\\u007f"'));
  assert.equal(reply("return #cjson.encode(string.rep('a', 100000))"), 100002);
});

test("cjson.encode errors: Redis's texts, with the script line (or none under pcall)", () => {
  const sha = (body: string) => sha1hex(body);
  const err = (body: string) => failure(body).error;
  let body = 'return cjson.encode(function() end)';
  assert.equal(err(body), `ERR user_script:1: Cannot serialise function: type not supported script: ${sha(body)}, on @user_script:1.`);
  body = 'local t = {} t[20]=1 return cjson.encode(t)';
  assert.equal(err(body), `ERR user_script:1: Cannot serialise table: excessively sparse array script: ${sha(body)}, on @user_script:1.`);
  body = 'return cjson.encode({[true]=1})';
  assert.equal(err(body), `ERR user_script:1: Cannot serialise boolean: table key must be a number or string script: ${sha(body)}, on @user_script:1.`);
  body = 'return cjson.encode(0/0)';
  assert.equal(err(body), `ERR user_script:1: Cannot serialise number: must not be NaN or Inf script: ${sha(body)}, on @user_script:1.`);
  assert.deepEqual(reply('return {pcall(cjson.encode, function() end)}'), [null, B('Cannot serialise function: type not supported')]);
});

test("cjson.decode: values, cjson.null, escapes and surrogate pairs, Redis's parse errors", () => {
  // scripting.tcl "JSON numeric decoding" and "JSON string decoding"
  assert.deepEqual(reply('return table.concat(cjson.decode("[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]"), " ")'), B('0 -5000 -1 0.0003 1023.2 0'));
  assert.deepEqual(reply(`local decoded = cjson.decode('{"keya": "a", "keyb": "b"}') return {decoded.keya, decoded.keyb}`), [B('a'), B('b')]);
  assert.deepEqual(reply("return {type(cjson.null), tostring(cjson.decode('null') == cjson.null), cjson.decode('[true,false,null,\"a\"]')}"), [
    B('userdata'),
    B('true'),
    [1, null, null, B('a')],
  ]);
  assert.deepEqual(reply(`return cjson.decode('"\\\\t\\\\u0041\\\\/\\\\u00e9\\\\ud83d\\\\ude00"')`), B('\tA/é😀'));
  assert.deepEqual(reply(`return cjson.encode(cjson.decode('{"a":[1,{"b":null}]}'))`), B('{"a":[1,{"b":null}]}'));
  const cases: Array<[string, string]> = [
    [`'[1,2'`, 'Expected comma or array end but found T_END at character 5'],
    [`'{"a":1,}'`, 'Expected object key string but found T_OBJ_END at character 8'],
    [`'tru'`, 'Expected value but found invalid token at character 1'],
    [`'  [ 1 , 2 ] x'`, 'Expected the end but found invalid token at character 13'],
    [`'{"a" 1}'`, 'Expected colon but found T_NUMBER at character 6'],
    [`''`, 'Expected value but found T_END at character 1'],
    [`'"abc'`, 'Expected value but found unexpected end of string at character 5'],
    [`'[-]'`, 'Expected value but found invalid number at character 2'],
    [`'"ab\\\\qc"'`, 'Expected value but found invalid escape code at character 4'],
  ];
  raisesAtLine1(cases.map(([arg, text]) => [`cjson.decode(${arg})`, text]));
});

test('cjson: scripting.tcl "JSON smoke test" (settings: max depth, invalid numbers, keep buffer)', () => {
  const r = run(`
    local some_map = { s1="Some string", n1=100, a1={"Some","String","Array"}, nil1=nil, b1=true, b2=false }
    local encoded = cjson.encode(some_map)
    local decoded = cjson.decode(encoded)
    assert(table.concat(some_map) == table.concat(decoded))
    cjson.encode_keep_buffer(false)
    encoded = cjson.encode(some_map)
    decoded = cjson.decode(encoded)
    assert(table.concat(some_map) == table.concat(decoded))
    local table1 = {one="one", [1]="one"}
    encoded = cjson.encode(table1)
    decoded = cjson.decode(encoded)
    assert(decoded["one"] == table1["one"])
    assert(decoded["1"] == table1[1])
    local array1 = {[1]="one", [2]="two"}
    encoded = cjson.encode(array1)
    decoded = cjson.decode(encoded)
    assert(table.concat(array1) == table.concat(decoded))
    local invalid_map = {}
    invalid_map[false] = "false"
    local ok, encoded = pcall(cjson.encode, invalid_map)
    assert(ok == false)
    cjson.encode_max_depth(1)
    ok, encoded = pcall(cjson.encode, some_map)
    assert(ok == false)
    cjson.decode_max_depth(1)
    ok, decoded = pcall(cjson.decode, '{"obj": {"array": [1,2,3,4]}}')
    assert(ok == false)
    ok, encoded = pcall(cjson.encode, {num1=0/0})
    assert(ok == false)
    cjson.encode_invalid_numbers(true)
    ok, encoded = pcall(cjson.encode, {num1=0/0})
    assert(ok == true)
    cjson.decode_max_depth(1000)
    cjson.encode_max_depth(1000)
    cjson.encode_invalid_numbers(false)
    cjson.encode_keep_buffer(true)
  `);
  assert.ok(r.ok, JSON.stringify(r));
});

test('bit (LuaBitOp): 32-bit results as real Redis gives them', () => {
  // scripting.tcl "Verify minimal bitop functionality" and "lua bit.tohex bug"
  assert.equal(
    reply('assert(bit.tobit(1) == 1); assert(bit.band(1) == 1); assert(bit.bxor(1,2) == 3); assert(bit.bor(1,2,4,8,16,32,64,128) == 255) return 1'),
    1,
  );
  assert.deepEqual(reply('return bit.tohex(65535, -2147483648)'), B('0000FFFF'));
  // The rest: redis-server 7.0's EVAL replies.
  assert.deepEqual(
    reply(
      'return {bit.tohex(-1), bit.tohex(255,-4), bit.tobit(2^32+5), bit.tobit(1.5), bit.tobit(2.5), bit.bnot(0), bit.lshift(1,31), bit.rshift(-1,28), bit.arshift(-256,4), bit.rol(0x12345678,12), bit.ror(0x12345678,12), bit.bswap(0x12345678), bit.band(-1, 0xff, 0x0f), bit.bxor(5,3,1), bit.lshift(1,33), bit.tobit(-2^31-1)}',
    ),
    [B('ffffffff'), B('00FF'), 5, 2, 2, -1, -2147483648, 15, -16, 1164411171, 1736516421, 2018915346, 15, 7, 2, 2147483647],
  );
  assert.deepEqual(reply('return {bit.tobit(0xffffffff), bit.tobit(-1), bit.band(0xff00ff00, 0x0ff00ff0)}'), [-1, -1, 251662080]);
  assert.deepEqual(
    reply('return {bit.rshift(0x80000000, 31), bit.arshift(0x80000000, 31), bit.lshift(3, -1), bit.rol(1, -1), bit.ror(1, 1)}'),
    [1, -1, -2147483648, -2147483648, -2147483648],
  );
  assert.deepEqual(reply('return {bit.tohex(1, 2), bit.tohex(0x12345678, 0), bit.tohex(-1, 3), bit.tohex(0x1234, 16)}'), [
    B('01'),
    B(''),
    B('fff'),
    B('00001234'),
  ]);
  assert.deepEqual(
    reply('return {bit.bswap(-1), bit.bswap(1), bit.bnot(0x0f0f0f0f), bit.arshift(-256, 4), bit.arshift(256, 4)}'),
    [-1, 16777216, -252645136, -16, 16],
  );
  assert.deepEqual(reply('return {bit.bor(1, 2^31), bit.bxor(-1, 0x7fffffff), bit.tobit("12")}'), [-2147483647, -2147483648, 12]);
  const cases: Array<[string, string]> = [
    ['bit.tobit()', "bad argument #1 to 'tobit' (number expected, got no value)"],
    ["bit.tobit('x')", "bad argument #1 to 'tobit' (number expected, got string)"],
    ['bit.band(1, nil)', "bad argument #2 to 'band' (number expected, got nil)"],
    ['bit.lshift(1)', "bad argument #2 to 'lshift' (number expected, got no value)"],
    ["bit.tohex(1, 'x')", "bad argument #2 to 'tohex' (number expected, got string)"],
  ];
  raisesAtLine1(cases);
});

const HEX = 'local function hex(e) local h = "" for i = 1, #e do h = h .. string.format("%02x", string.byte(e, i)) end return h end ';

test('cmsgpack.pack: the bytes real Redis gives (scripting.tcl, and redis-server 7.0 replies)', () => {
  assert.deepEqual(reply(HEX + 'return hex(cmsgpack.pack(0.1))'), B('cb3fb999999999999a'));
  assert.deepEqual(reply(HEX + 'return hex(cmsgpack.pack(-1099511627776))'), B('d3ffffff0000000000'));
  const values =
    "1, -1, 127, 128, 255, 256, 65535, 65536, 2^32-1, 2^32, 2^53, -32, -33, -128, -129, -32768, -32769, -2^31, -2^31-1, -2^53, 1.5, -0.25, 1e300, 1/0, -1/0, 3.14159, true, false, 'abc', string.rep('x', 40), {}, {a=1}";
  assert.deepEqual(
    reply(HEX + `local t = {${values}} local out = {} for i = 1, #t do out[i] = hex(cmsgpack.pack(t[i])) end return out`),
    '01 ff 7f cc80 ccff cd0100 cdffff ce00010000 ceffffffff cf0000000100000000 cf0020000000000000 e0 d0df d080 d1ff7f d18000 d2ffff7fff d280000000 d3ffffffff7fffffff d3ffe0000000000000 ca3fc00000 cabe800000 cb7e37e43c8800759c ca7f800000 caff800000 cb400921f9f01b866e c3 c2 a3616263 D928X40 90 81a16101'
      .split(' ')
      .map((h) => B(h === 'D928X40' ? `d928${'78'.repeat(40)}` : h)),
  );
  assert.deepEqual(reply(HEX + "return hex(string.sub(cmsgpack.pack(string.rep('y', 300)), 1, 4))"), B('da012c79'));
});

test('cmsgpack: circular references encode to a depth of 16 (scripting.tcl)', () => {
  assert.deepEqual(
    reply(
      HEX +
        `local a = {x=nil,y=5} local b = {x=a} a['x'] = b
         local encoded = cmsgpack.pack(a) local re = cmsgpack.unpack(encoded)
         assert(re.x.x.x.x.x.x.x.x.x.x.x.x.x.x.y == re.y) assert(re.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x)
         assert(re.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x == nil)
         return {hex(encoded), re.x.x.x.x.x.x.x.x.y == re.y, re.y == 5}`,
    ),
    [
      B('82a17905a17881a17882a17905a17881a17882a17905a17881a17882a17905a17881a17882a17905a17881a17882a17905a17881a17882a17905a17881a17882a17905a17881a178c0'),
      1,
      1,
    ],
  );
});

test('cmsgpack.unpack, unpack_one, unpack_limit and their errors, as Redis', () => {
  assert.deepEqual(
    reply(
      "local e = cmsgpack.pack(1, 'two', {3, {four=4}}, nil, 5.5) local a, b, c, d, f = cmsgpack.unpack(e) return {a, b, c[1], c[2].four, tostring(d), tostring(f), select('#', cmsgpack.unpack(e))}",
    ),
    [1, B('two'), 3, 4, B('nil'), B('5.5'), 5],
  );
  assert.deepEqual(
    reply(
      "local e = cmsgpack.pack('a', 'bb', 'ccc') local o1, v1 = cmsgpack.unpack_one(e) local o2, v2 = cmsgpack.unpack_one(e, o1) local o3, v3 = cmsgpack.unpack_limit(e, 5, o2) return {o1, v1, o2, v2, o3, v3}",
    ),
    [2, B('a'), 5, B('bb'), -1, B('ccc')],
  );
  assert.deepEqual(
    reply(
      "return {cmsgpack.unpack('\\203\\127\\240\\0\\0\\0\\0\\0\\0') == math.huge, cmsgpack.unpack('\\202\\191\\192\\0\\0'), cmsgpack.unpack('\\207\\0\\0\\0\\1\\0\\0\\0\\0'), cmsgpack.unpack('\\211\\255\\255\\255\\255\\255\\255\\255\\254')}",
    ),
    [1, -1, 4294967296, -2],
  );
  const cases: Array<[string, string]> = [
    ["cmsgpack.unpack('\\205\\1')", 'Missing bytes in input.'],
    ["cmsgpack.unpack('\\193')", 'Bad data format in input.'],
    ['cmsgpack.pack()', "bad argument #0 to 'pack' (MessagePack pack needs input.)"],
    ["cmsgpack.unpack_one('abc', 10)", 'Start offset 10 greater than input length 3.'],
  ];
  raisesAtLine1(cases);
});

test('cmsgpack: scripting.tcl "pack/unpack smoke test" (100,000 elements; the same encoded length as Redis)', async () => {
  const big = await createScriptRunner({ timeBudgetMs: 30_000, memoryBytes: 256 * 1024 * 1024 });
  after(() => big.close());
  const r = big.run(SMOKE, [], [], memoryRedis().call, false);
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.reply, 1491977);
});

const SMOKE = `local str_lt_32 = string.rep("x", 30)
local str_lt_255 = string.rep("x", 250)
local str_lt_65535 = string.rep("x", 65530)
local str_long = string.rep("x", 100000)
local array_lt_15 = {1, 2, 3, 4, 5}
local array_lt_65535 = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}
local array_big = {}
for i=1, 100000 do array_big[i] = i end
local map_lt_15 = {a=1, b=2}
local map_big = {}
for i=1, 100000 do map_big[tostring(i)] = i end
local some_map = { s1=str_lt_32, s2=str_lt_255, s3=str_lt_65535, s4=str_long, d1=0.1, i1=1, i2=250, i3=65530, i4=100000, i5=2^40, i6=-1, i7=-120, i8=-32000, i9=-100000, i10=-3147483648, a1=array_lt_15, a2=array_lt_65535, a3=array_big, m1=map_lt_15, m2=map_big, b1=false, b2=true, n=nil }
local encoded = cmsgpack.pack(some_map)
local decoded = cmsgpack.unpack(encoded)
assert(table.concat(some_map) == table.concat(decoded))
local offset, decoded_one = cmsgpack.unpack_one(encoded, 0)
assert(table.concat(some_map) == table.concat(decoded_one))
assert(offset == -1)
local encoded_multiple = cmsgpack.pack(str_lt_32, str_lt_255, str_lt_65535, str_long)
local offset, obj = cmsgpack.unpack_limit(encoded_multiple, 1, 0)
assert(obj == str_lt_32)
offset, obj = cmsgpack.unpack_limit(encoded_multiple, 1, offset)
assert(obj == str_lt_255)
offset, obj = cmsgpack.unpack_limit(encoded_multiple, 1, offset)
assert(obj == str_lt_65535)
offset, obj = cmsgpack.unpack_limit(encoded_multiple, 1, offset)
assert(obj == str_long)
assert(offset == -1)
assert(decoded.a3[100000] == 100000 and decoded.m2['777'] == 777 and decoded.i10 == -3147483648 and decoded.i5 == 2^40 and decoded.d1 == 0.1)
return #encoded
`;

test('cjson, cmsgpack and bit are read-only, as Redis 7', () => {
  for (const body of ['cjson.encode = function() return 1 end', 'cmsgpack.pack = function() return 1 end', 'bit.lshift = function() return 1 end']) {
    assert.match(failure(body).error, /Attempt to modify a readonly table/);
  }
});
