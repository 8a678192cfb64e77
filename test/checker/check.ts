/**
 * Owns checking a whole history: split by key, run the named anomaly checks on every key and the
 * linearizability search on every key it fits, and say plainly what was and was not decided.
 * Relies on anomalies.ts and linearizability.ts. Pure: no I/O, no clock.
 */
import { checkKeyAnomalies, describeAnomaly, type Anomaly } from './anomalies';
import { byKey, describeOp, type HistoryOp } from './history';
import { checkKeyLinearizable, type LinearizabilityResult } from './linearizability';

export interface CheckOptions {
  /** Keys with more ops than this are not searched (reported as too large). */
  maxSearchOps?: number;
  /** Cache entries the search may explore per key before it gives up (reported as too large). */
  searchBudget?: number;
}

export interface CheckReport {
  anomalies: Anomaly[];
  linearizability: LinearizabilityResult[];
  /** Keys not searched or not decided within the budget. */
  undecided: string[];
  /** 'yes' when every key was searched and is linearizable; 'no' when any key is not; else 'partial'. */
  linearizable: 'yes' | 'no' | 'partial';
  counts: { ops: number; ok: number; failed: number; unknown: number; keys: number };
}

export function checkHistory(history: HistoryOp[], opts: CheckOptions = {}): CheckReport {
  const maxSearchOps = opts.maxSearchOps ?? 100_000;
  const anomalies: Anomaly[] = [];
  const linearizability: LinearizabilityResult[] = [];
  const undecided: string[] = [];
  const keys = byKey(history);
  for (const [key, ops] of keys) {
    anomalies.push(...checkKeyAnomalies(key, ops));
    if (ops.length > maxSearchOps) {
      undecided.push(key);
      linearizability.push({ key, linearizable: null, ops: ops.length, explored: 0 });
      continue;
    }
    const r = checkKeyLinearizable(key, ops, opts.searchBudget);
    linearizability.push(r);
    if (r.linearizable === null) undecided.push(key);
  }
  const anyFalse = linearizability.some((r) => r.linearizable === false);
  const counts = { ops: history.length, ok: 0, failed: 0, unknown: 0, keys: keys.size };
  for (const op of history) {
    if (op.outcome === 'ok') counts.ok++;
    else if (op.outcome === 'fail') counts.failed++;
    else counts.unknown++;
  }
  return { anomalies, linearizability, undecided, linearizable: anyFalse ? 'no' : undecided.length > 0 ? 'partial' : 'yes', counts };
}

/** Violations: named anomalies plus keys the search proved not linearizable. */
export function violationCount(r: CheckReport): number {
  return r.anomalies.length + r.linearizability.filter((l) => l.linearizable === false).length;
}

/** Human-readable details of every violation and every undecided key (empty when all is well). */
export function describeReport(r: CheckReport, maxItems = 20): string {
  const lines: string[] = [];
  for (const a of r.anomalies.slice(0, maxItems)) lines.push(describeAnomaly(a));
  if (r.anomalies.length > maxItems) lines.push(`... and ${r.anomalies.length - maxItems} more anomalies`);
  for (const l of r.linearizability) {
    if (l.linearizable === false) {
      lines.push(`not linearizable key=${JSON.stringify(l.key)} (${l.ops} ops): no order places`);
      if (l.stuckAt) lines.push(`    ${describeOp(l.stuckAt)}`);
      if (l.prefix?.length) lines.push('  after the longest valid prefix ending with:', ...l.prefix.map((o) => `    ${describeOp(o)}`));
    } else if (l.linearizable === null) {
      lines.push(
        `linearizability undecided key=${JSON.stringify(l.key)}: ${l.ops} ops, search too large (explored ${l.explored} states); named checks still ran`,
      );
    }
  }
  return lines.join('\n');
}
