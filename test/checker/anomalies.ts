/**
 * Owns the named per-key checks of a history against a register with versions: each finds one
 * kind of anomaly and says which ops show it. Relies on history.ts. Pure: no I/O, no clock.
 *
 * These are necessary conditions, cheap (n log n per key) on any history size, and they name what
 * went wrong; linearizability.ts is the complete check where the search fits its budget.
 *
 * Real-time order: a -> b when a completed before b was invoked. An op with an unknown outcome
 * may take effect at any time after its invoke (or never), so it never "completes" here.
 * TTLs: the workload uses TTLs far longer than the run, so no key expires during a check; a
 * TTL only shows as "has a TTL or not" (see linearizability.ts), never as an expiry.
 */
import { describeOp, isWrite, type HistoryOp } from './history';

export type AnomalyKind =
  | 'phantom' // a read returned a value no applied (or possibly applied) write wrote
  | 'version-mismatch' // a read's version differs from the version its write was given
  | 'stale-read' // a read missed a write acknowledged (or a version observed) before it began
  | 'resurrection' // a read returned a value deleted by a delete acknowledged before it began
  | 'lost-write' // a final read shows an acknowledged write gone with nothing to explain it
  | 'version-backwards' // a write acknowledged after another write/read began has a lower version
  | 'duplicate-version' // two writes of one key with the same version
  | 'cas-not-exclusive' // two If-Match writes succeeded on the same version, or on an overwritten one
  | 'create-not-exclusive' // two creates (201) with no delete that could sit between them
  | 'delete-not-exclusive'; // two deletes of a live key (204) with no write that could sit between

export interface Anomaly {
  kind: AnomalyKind;
  key: string;
  message: string;
  ops: HistoryOp[];
}

/** Version a write is known to have: its answer, or what reads of its value saw (unknown writes). */
export function knownVersions(ops: HistoryOp[]): Map<HistoryOp, number> {
  const writeOf = new Map<string, HistoryOp>();
  for (const op of ops) if (isWrite(op) && op.value !== undefined) writeOf.set(op.value, op);
  const v = new Map<HistoryOp, number>();
  for (const op of ops) if (isWrite(op) && op.outcome === 'ok' && op.found) v.set(op, op.version!);
  for (const op of ops) {
    if (op.kind !== 'get' || op.outcome !== 'ok' || !op.found) continue;
    const w = writeOf.get(op.readValue!);
    if (w !== undefined && w.outcome === 'unknown' && !v.has(w)) v.set(w, op.version!);
  }
  return v;
}

export function checkKeyAnomalies(key: string, all: HistoryOp[]): Anomaly[] {
  const out: Anomaly[] = [];
  const flag = (kind: AnomalyKind, message: string, ...ops: HistoryOp[]): void => void out.push({ kind, key, message, ops });

  const writeOf = new Map<string, HistoryOp>();
  for (const op of all) if (isWrite(op) && op.value !== undefined) writeOf.set(op.value, op);
  // Definitely failed ops never happened; unknown reads say nothing.
  const ops = all.filter((op) => op.outcome === 'ok' || (op.outcome === 'unknown' && op.kind !== 'get'));
  const reads = ops.filter((op) => op.kind === 'get' && op.outcome === 'ok');
  const applied = ops.filter((op) => isWrite(op) && op.outcome === 'ok' && op.found === true);
  // Ops that may have removed or replaced the value: writes and deletes, unless they certainly did nothing.
  const removers = ops.filter((op) => isWrite(op) && (op.outcome === 'unknown' || op.found === true));
  const versions = knownVersions(ops);

  // ---- phantom values and read versions
  const seenVersion = new Map<HistoryOp, HistoryOp>();
  const readWrite = new Map<HistoryOp, HistoryOp>();
  for (const r of reads) {
    if (!r.found) continue;
    const w = writeOf.get(r.readValue!);
    if (w === undefined) flag('phantom', `read ${r.readValue}, which no op wrote`, r);
    else if (w.outcome === 'fail') flag('phantom', `read ${r.readValue}, written by an op answered as failed (${w.note ?? 'error'})`, r, w);
    else if (w.outcome === 'ok' && !w.found) flag('phantom', `read ${r.readValue}, written by an op answered 412 (not applied)`, r, w);
    else if (w.invoke > r.complete) flag('phantom', `read ${r.readValue} before its write was invoked`, r, w);
    else {
      readWrite.set(r, w);
      if (w.outcome === 'ok' && w.version !== r.version)
        flag('version-mismatch', `read version ${r.version}, but the write was answered version ${w.version}`, r, w);
      const first = seenVersion.get(w);
      if (first === undefined) seenVersion.set(w, r);
      else if (first.version !== r.version) flag('version-mismatch', `two reads of one write saw versions ${first.version} and ${r.version}`, first, r, w);
    }
  }

  // ---- stale reads, resurrections, lost writes (real-time order only, no versions)
  // w -> o -> r, with o an applied write or an acknowledged delete (204 or 404): r must not see w.
  const overwrites = new IntervalIndex(applied);
  const acknowledgedDeletes = new IntervalIndex(ops.filter((o) => o.kind === 'del' && o.outcome === 'ok'));
  const deletes = new IntervalIndex(ops.filter((o) => o.kind === 'del'));
  const appliedByComplete = [...applied].sort((a, b) => a.complete - b.complete);
  const latestInvoked: HistoryOp[] = []; // latestInvoked[i]: the latest-invoked of appliedByComplete[0..i]
  for (const w of appliedByComplete) {
    const prev = latestInvoked[latestInvoked.length - 1];
    latestInvoked.push(prev === undefined || w.invoke > prev.invoke ? w : prev);
  }
  for (const r of reads) {
    if (r.found) {
      const w = readWrite.get(r);
      if (w === undefined || w.outcome === 'unknown') continue; // an unknown write may land late
      const d = acknowledgedDeletes.startsAfterEndsBefore(w.complete, r.invoke);
      if (d !== null) {
        flag(r.final ? 'lost-write' : 'resurrection', `read ${r.readValue} after a delete acknowledged after that write`, w, d, r);
        continue;
      }
      const o = overwrites.startsAfterEndsBefore(w.complete, r.invoke);
      if (o !== null) flag(r.final ? 'lost-write' : 'stale-read', `read ${r.readValue}, overwritten by a write acknowledged before the read began`, w, o, r);
    } else {
      // 404: the last-invoked write acknowledged before r began must have been removed by a
      // delete that could sit after it (not acknowledged before it began) and before r ended.
      const i = lastBelow(appliedByComplete, (x) => x.complete, r.invoke);
      if (i < 0) continue;
      const w = latestInvoked[i];
      if (deletes.startsBeforeEndsAfter(r.complete, w.invoke) === null) {
        flag(r.final ? 'lost-write' : 'stale-read', '404, but a write was acknowledged before the read began and no delete could follow it', w, r);
      }
    }
  }

  // ---- versions against real time: every observation (a write's version, a read's version)
  // bounds what any op invoked after it completed may observe.
  const observations = [...applied, ...reads.filter((r) => r.found && readWrite.has(r))];
  const byComplete = [...observations].sort((a, b) => a.complete - b.complete);
  const byInvoke = [...observations].sort((a, b) => a.invoke - b.invoke);
  let j = 0;
  let max: HistoryOp | null = null;
  for (const o of byInvoke) {
    while (j < byComplete.length && byComplete[j].complete < o.invoke) {
      if (max === null || byComplete[j].version! > max.version!) max = byComplete[j];
      j++;
    }
    if (max === null) continue;
    if (isWrite(o) && o.version! <= max.version!) {
      flag('version-backwards', `written with version ${o.version}, after ${isWrite(max) ? 'a write' : 'a read'} of version ${max.version} completed`, max, o);
    } else if (!isWrite(o) && o.version! < max.version!) {
      flag('stale-read', `read version ${o.version}, after ${isWrite(max) ? 'a write' : 'a read'} of version ${max.version} completed`, max, o);
    }
  }
  const byVersion = new Map<number, HistoryOp>();
  for (const [w, v] of versions) {
    const other = byVersion.get(v);
    if (other !== undefined && other !== w) flag('duplicate-version', `two writes got version ${v}`, other, w);
    byVersion.set(v, w);
  }

  // ---- exclusive conditional writes
  const casByVersion = new Map<number, HistoryOp>();
  for (const c of applied) {
    if (c.kind !== 'cas') continue;
    const other = casByVersion.get(c.ifVersion!);
    if (other !== undefined) flag('cas-not-exclusive', `two If-Match writes succeeded on version ${c.ifVersion}`, other, c);
    casByVersion.set(c.ifVersion!, c);
    const base = byVersion.get(c.ifVersion!);
    if (base === undefined) {
      flag('phantom', `If-Match succeeded on version ${c.ifVersion}, which no write was given`, c);
      continue;
    }
    const o = overwrites.startsAfterEndsBefore(base.complete, c.invoke) ?? acknowledgedDeletes.startsAfterEndsBefore(base.complete, c.invoke);
    if (base.outcome === 'ok' && o !== null) flag('cas-not-exclusive', `If-Match succeeded on version ${c.ifVersion}, replaced before it began`, base, o, c);
  }
  // Two creates need a delete that could sit between them (and two 204 deletes a write): one
  // whose interval meets [first invoke, later completion].
  const mayDelete = new IntervalIndex(ops.filter((o) => o.kind === 'del' && (o.outcome === 'unknown' || o.found === true)));
  const mayWrite = new IntervalIndex(removers.filter(isWrite));
  const pairs = (list: HistoryOp[], gap: IntervalIndex, kind: AnomalyKind, message: string): void => {
    list.sort((a, b) => a.invoke - b.invoke);
    for (let i = 1; i < list.length; i++) {
      const [a, b] = [list[i - 1], list[i]];
      if (gap.startsBeforeEndsAfter(Math.max(a.complete, b.complete), a.invoke) === null) flag(kind, message, a, b);
    }
  };
  pairs(
    applied.filter((w) => w.created),
    mayDelete,
    'create-not-exclusive',
    'two writes created the key (201) and no delete could sit between them',
  );
  pairs(
    ops.filter((d) => d.kind === 'del' && d.outcome === 'ok' && d.found),
    mayWrite,
    'delete-not-exclusive',
    'two deletes found the key live (204) and no write could sit between them',
  );
  return out;
}

export function describeAnomaly(a: Anomaly): string {
  return `${a.kind} key=${JSON.stringify(a.key)}: ${a.message}\n${a.ops.map((o) => `    ${describeOp(o)}`).join('\n')}`;
}

/** Index of the last element whose `at` is below `t` in a list sorted by `at`; -1 if none. */
function lastBelow<T>(sorted: T[], at: (x: T) => number, t: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (at(sorted[mid]) < t) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/**
 * Interval queries over ops sorted by invoke. An unknown op's completion counts as +infinity.
 *
 *   byInvoke:     o0 o1 o2 ... (invoke ascending)
 *   suffixMin[i]: the op among o_i.. that completed first
 *   prefixMax[i]: the op among ..o_i that completed last
 */
class IntervalIndex {
  private readonly ops: HistoryOp[];
  private readonly suffixMin: HistoryOp[];
  private readonly prefixMax: HistoryOp[];
  constructor(ops: HistoryOp[]) {
    this.ops = [...ops].sort((a, b) => a.invoke - b.invoke);
    const n = this.ops.length;
    this.suffixMin = new Array<HistoryOp>(n);
    this.prefixMax = new Array<HistoryOp>(n);
    for (let i = n - 1; i >= 0; i--) {
      const o = this.ops[i];
      this.suffixMin[i] = i === n - 1 || end(o) < end(this.suffixMin[i + 1]) ? o : this.suffixMin[i + 1];
    }
    for (let i = 0; i < n; i++) {
      const o = this.ops[i];
      this.prefixMax[i] = i === 0 || end(o) > end(this.prefixMax[i - 1]) ? o : this.prefixMax[i - 1];
    }
  }
  /** An op invoked after t0 that completed before t1, or null. */
  startsAfterEndsBefore(t0: number, t1: number): HistoryOp | null {
    let lo = 0;
    let hi = this.ops.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ops[mid].invoke <= t0) lo = mid + 1;
      else hi = mid;
    }
    if (lo >= this.ops.length) return null;
    const o = this.suffixMin[lo];
    return end(o) < t1 ? o : null;
  }
  /** An op invoked before t1 that completed after t0 (or never), or null. */
  startsBeforeEndsAfter(t1: number, t0: number): HistoryOp | null {
    const i = lastBelow(this.ops, (x) => x.invoke, t1);
    if (i < 0) return null;
    const o = this.prefixMax[i];
    return end(o) > t0 ? o : null;
  }
}

const end = (o: HistoryOp): number => (o.outcome === 'unknown' ? Infinity : o.complete);
