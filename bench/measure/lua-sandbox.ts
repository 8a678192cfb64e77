/**
 * Per-run cost of the Lua sandbox (src/shard-actor/lua-runner.ts and the files beside it) on the scripts client libraries
 * send: redlock's release, rate-limiter-flexible's consume, and the cost of one redis.call
 * crossing. In-process, no database; `call` is a Map. Prints one JSON line (medians of 5 rounds).
 * Run: node dist/bench/measure/lua-sandbox.js
 */
import { performance } from 'node:perf_hooks';
import { createScriptRunner } from '../../src/shard-actor/lua-runner';
import type { ScriptCall } from '../../src/shard-actor/lua-sandbox';

const REDLOCK = 'if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end';
const RLF = `redis.call('set', KEYS[1], 0, 'EX', ARGV[2], 'NX') \
local consumed = redis.call('incrby', KEYS[1], ARGV[1]) \
local ttl = redis.call('pttl', KEYS[1]) \
if ttl == -1 then \
  redis.call('expire', KEYS[1], ARGV[2]) \
  ttl = 1000 * ARGV[2] \
end \
return {consumed, ttl} `;

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[a.length >> 1]!;

async function main(): Promise<void> {
  const t0 = performance.now();
  const runner = await createScriptRunner({ timeBudgetMs: 5000, memoryBytes: 64 << 20 });
  const createMs = performance.now() - t0;
  const m = new Map<string, Buffer>();
  const call: ScriptCall = (args) => {
    const cmd = args[0]!.toString().toLowerCase();
    const k = args[1]!.toString();
    if (cmd === 'get') return m.get(k) ?? null;
    if (cmd === 'set') return m.has(k) && args.length > 4 ? null : (m.set(k, args[2]!), { status: 'OK' });
    if (cmd === 'del') return m.delete(k) ? 1 : 0;
    if (cmd === 'incrby') {
      const v = Number(m.get(k)?.toString() ?? '0') + Number(args[2]!.toString());
      m.set(k, Buffer.from(String(v)));
      return v;
    }
    if (cmd === 'pttl') return 60000;
    return 1;
  };
  const key = [Buffer.from('lock:1')];
  const tok = [Buffer.from('tok-abc')];
  const cases: Record<string, [() => void, number]> = {
    redlockReleaseHit: [
      () => {
        m.set('lock:1', tok[0]!);
        runner.run(REDLOCK, key, tok, call, false);
      },
      20000,
    ],
    redlockReleaseMiss: [() => runner.run(REDLOCK, key, tok, call, false), 20000],
    rateLimiterFlexible: [() => runner.run(RLF, [Buffer.from('rl:1')], [Buffer.from('1'), Buffer.from('60')], call, false), 20000],
    loop1000Calls: [() => runner.run('for i=1,1000 do redis.call("get",KEYS[1]) end return 1', key, [], call, false), 300],
    pureLoop1000: [() => runner.run('local s=0 for i=1,1000 do s=s+i end return s', [], [], call, false), 300],
  };
  const out: Record<string, number> = { createRunnerMs: +createMs.toFixed(1) };
  for (const [name, [fn, n]] of Object.entries(cases)) {
    for (let i = 0; i < Math.min(n, 2000); i++) fn();
    const rounds: number[] = [];
    for (let r = 0; r < 5; r++) {
      const s = performance.now();
      for (let i = 0; i < n; i++) fn();
      rounds.push(((performance.now() - s) * 1000) / n);
    }
    out[`${name}Us`] = +median(rounds).toFixed(2);
  }
  out.perCallCrossingUs = +((out.loop1000CallsUs! - out.pureLoop1000Us!) / 1000).toFixed(3);
  out.luaHeapKB = +(runner.stats().luaHeapBytes / 1024).toFixed(1);
  runner.close();
  console.log(JSON.stringify(out));
}
void main();
