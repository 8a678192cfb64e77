/**
 * Owns deterministic randomness for fuzzers: a seeded PRNG (mulberry32) and a few pickers. The
 * seed comes from KVSQL_FUZZ_SEED when set (to replay a failure), else the caller's fixed default;
 * every failure message names it. Pure: no I/O.
 */
export class Rng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  bool(p = 0.5): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

export function fuzzSeed(fallback: number): number {
  const env = process.env.KVSQL_FUZZ_SEED;
  return env !== undefined && env !== '' ? Number(env) >>> 0 : fallback;
}
