/**
 * Owns the latency histogram every scenario records into. Relies on nothing. Must stay mergeable
 * across processes (child load generators send theirs as data), so it is a plain counts array,
 * not node:perf_hooks (whose histograms cannot be serialised and merged exactly).
 *
 * Log-linear buckets over microseconds, HdrHistogram style, relative error <= 1/1024:
 *
 *   index:  0 .. 2047            | 2048 + (e-1)*1024 + (v>>e) - 1024   for e = 1..40
 *   value:  exact µs (0..2047)   | [m << e, (m+1) << e)   m = 1024..2047
 *
 * so 0..2 ms are exact to the microsecond and a 10 s value is within 0.1 %.
 */

const SUB = 1024;
const EXACT = 2 * SUB;
const MAX_EXP = 40;
const SIZE = EXACT + MAX_EXP * SUB;

function indexOf(us: number): number {
  if (us < EXACT) return us < 0 ? 0 : us;
  // floor(log2(us)) - 10 = how far `us` must shift right to land in 1024..2047.
  const e = Math.floor(Math.log2(us)) - 10;
  if (e > MAX_EXP) return SIZE - 1;
  const m = Math.floor(us / 2 ** e);
  return EXACT + (e - 1) * SUB + (m - SUB);
}

/** Midpoint of a bucket, in µs: the value reported for a percentile that lands in it. */
function valueOf(index: number): number {
  if (index < EXACT) return index;
  const e = Math.floor((index - EXACT) / SUB) + 1;
  const m = SUB + ((index - EXACT) % SUB);
  return (m + 0.5) * 2 ** e;
}

/** Wire form: sparse [index, count] pairs plus totals. */
export interface HistogramData {
  pairs: number[];
  count: number;
  sumUs: number;
  maxUs: number;
}

export class LatencyHistogram {
  private counts = new Float64Array(SIZE);
  count = 0;
  sumUs = 0;
  maxUs = 0;

  /** Records one latency given in milliseconds (performance.now() differences). */
  recordMs(ms: number): void {
    const us = Math.round(ms * 1000);
    this.counts[indexOf(us)]++;
    this.count++;
    this.sumUs += us;
    if (us > this.maxUs) this.maxUs = us;
  }

  merge(other: LatencyHistogram | HistogramData): void {
    if (other instanceof LatencyHistogram) {
      for (let i = 0; i < SIZE; i++) if (other.counts[i] !== 0) this.counts[i] += other.counts[i];
    } else {
      for (let i = 0; i < other.pairs.length; i += 2) this.counts[other.pairs[i]] += other.pairs[i + 1];
    }
    this.count += other.count;
    this.sumUs += other.sumUs;
    if (other.maxUs > this.maxUs) this.maxUs = other.maxUs;
  }

  /** Value at percentile p (0..100) in milliseconds; NaN when empty. */
  percentileMs(p: number): number {
    if (this.count === 0) return NaN;
    if (p >= 100) return this.maxUs / 1000;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < SIZE; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(valueOf(i), this.maxUs) / 1000;
    }
    return this.maxUs / 1000;
  }

  meanMs(): number {
    return this.count === 0 ? NaN : this.sumUs / this.count / 1000;
  }

  toData(): HistogramData {
    const pairs: number[] = [];
    for (let i = 0; i < SIZE; i++) if (this.counts[i] !== 0) pairs.push(i, this.counts[i]);
    return { pairs, count: this.count, sumUs: this.sumUs, maxUs: this.maxUs };
  }
}

/** The percentiles every result row carries, in ms. */
export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export function percentilesOf(h: LatencyHistogram): Percentiles {
  return {
    p50: h.percentileMs(50),
    p90: h.percentileMs(90),
    p99: h.percentileMs(99),
    p999: h.percentileMs(99.9),
    max: h.maxUs / 1000,
    mean: h.meanMs(),
  };
}
