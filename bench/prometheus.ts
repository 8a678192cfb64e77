/**
 * Owns reading the gateway's /metrics: fetching the Prometheus text, summing a metric's samples
 * across shards, and quantiles of a histogram between two scrapes. Relies on global fetch.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[2]) for (const l of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return out;
}

export async function scrape(base: string): Promise<Sample[]> {
  const res = await fetch(`${base}/metrics`);
  if (!res.ok) throw new Error(`GET ${base}/metrics: ${res.status}`);
  return parsePrometheus(await res.text());
}

/** Sum of every sample named `name` (all shards, all labels) matching `where`. */
export function sum(samples: Sample[], name: string, where: Record<string, string> = {}): number {
  let s = 0;
  let seen = false;
  for (const x of samples) {
    if (x.name !== name) continue;
    if (Object.entries(where).some(([k, v]) => x.labels[k] !== v)) continue;
    s += x.value;
    seen = true;
  }
  return seen ? s : NaN;
}

/** Cumulative bucket counts of histogram `name`, summed over shards: le -> count. */
export function buckets(samples: Sample[], name: string): Map<number, number> {
  const m = new Map<number, number>();
  for (const x of samples) {
    if (x.name !== `${name}_bucket`) continue;
    const le = x.labels.le === '+Inf' ? Infinity : Number(x.labels.le);
    m.set(le, (m.get(le) ?? 0) + x.value);
  }
  return m;
}

export interface HistogramSummary {
  count: number;
  /** Interpolated within the bucket, like PromQL histogram_quantile. In the metric's unit. */
  p50: number;
  p99: number;
  /** Upper bound of the highest bucket that gained observations (Infinity: beyond the last). */
  maxBound: number;
  mean: number;
}

/** Quantiles of what histogram `name` observed between scrapes `before` and `after`. */
export function histogramDelta(before: Sample[] | null, after: Sample[], name: string): HistogramSummary {
  const a = buckets(after, name);
  const b = before ? buckets(before, name) : new Map<number, number>();
  const les = [...a.keys()].sort((x, y) => x - y);
  const cum = les.map((le) => (a.get(le) ?? 0) - (b.get(le) ?? 0));
  const count = cum.length > 0 ? cum[cum.length - 1] : 0;
  const sumDelta = (sum(after, `${name}_sum`) || 0) - (before ? sum(before, `${name}_sum`) || 0 : 0);
  const q = (p: number): number => {
    if (count === 0) return NaN;
    const rank = p * count;
    for (let i = 0; i < les.length; i++) {
      if (cum[i] >= rank) {
        const lo = i === 0 ? 0 : les[i - 1];
        const hi = les[i];
        if (hi === Infinity) return lo; // as PromQL: the highest finite bound
        const prev = i === 0 ? 0 : cum[i - 1];
        const inBucket = cum[i] - prev;
        return inBucket === 0 ? hi : lo + ((hi - lo) * (rank - prev)) / inBucket;
      }
    }
    return NaN;
  };
  let maxBound = NaN;
  for (let i = les.length - 1; i >= 0; i--) {
    const prev = i === 0 ? 0 : cum[i - 1];
    if (cum[i] - prev > 0) {
      maxBound = les[i];
      break;
    }
  }
  return { count, p50: q(0.5), p99: q(0.99), maxBound, mean: count > 0 ? sumDelta / count : NaN };
}
