#!/usr/bin/env node
/**
 * Owns measuring what hash tags cost per op: slotOf (protocol/slot-map.ts, run once per op in the
 * gateway and once in the actor) against the whole-key CRC it replaced, on keys without braces
 * (16 and 64 bytes) and with a tag, alternating the functions in one run (STYLE 20). DESIGN.md §4
 * quotes it (H1). Writes bench/evidence/H1.json.
 *
 *   node dist/bench/measure/slot-of.js [--reps=7] [--rounds=300]
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc16, slotOf, SLOT_COUNT } from '../../src/protocol/slot-map';
import { numberFlag, runScript } from '../options';

const KEYS = 4096;
const SETS: Record<string, Buffer[]> = {
  'plain 16 B': Array.from({ length: KEYS }, (_, i) => Buffer.from(`user:${String(i).padStart(11, '0')}`)),
  'plain 64 B': Array.from({ length: KEYS }, (_, i) => Buffer.from(`session:${String(i).padStart(56, '0')}`)),
  'tagged 20 B': Array.from({ length: KEYS }, (_, i) => Buffer.from(`{user${i % 100}}.f${String(i).padStart(6, '0')}`)),
};
const FNS: Record<string, (k: Buffer) => number> = {
  before: (k) => crc16(k) & (SLOT_COUNT - 1),
  hashTags: (k) => slotOf(k, true),
  wholeKey: (k) => slotOf(k, false),
};

/** ns per call of `fn` over `keys`, `rounds` times. */
function time(fn: (k: Buffer) => number, keys: Buffer[], rounds: number): number {
  let acc = 0;
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) for (let i = 0; i < keys.length; i++) acc += fn(keys[i]);
  const ns = Number(process.hrtime.bigint() - t0) / (rounds * keys.length);
  if (acc < 0) throw new Error('unreachable'); // keeps the sum alive
  return ns;
}

runScript(async () => {
  const reps = numberFlag('reps', 7);
  const rounds = numberFlag('rounds', 300);
  const out: Record<string, Record<string, number>> = {};
  for (const [name, keys] of Object.entries(SETS)) {
    for (const fn of Object.values(FNS)) time(fn, keys, 100); // warm up
    const runs: Record<string, number[]> = { before: [], hashTags: [], wholeKey: [] };
    for (let rep = 0; rep < reps; rep++) {
      const order = rep % 2 === 0 ? Object.keys(FNS) : Object.keys(FNS).reverse();
      for (const f of order) runs[f].push(time(FNS[f], keys, rounds));
    }
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
    out[name] = Object.fromEntries(Object.entries(runs).map(([f, a]) => [f, Math.round(median(a) * 10) / 10]));
    const r = out[name];
    console.log(`${name}: before ${r.before} ns, hash tags ${r.hashTags} ns (${(r.hashTags / r.before).toFixed(2)}x), whole-key rule ${r.wholeKey} ns`);
  }
  const file = path.join(__dirname, '..', '..', '..', 'bench', 'evidence', 'H1.json');
  fs.writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), node: process.version, reps, rounds, nsPerCall: out }, null, 2) + '\n');
});
