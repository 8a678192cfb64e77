/**
 * Owns the history format the consistency checker reads: one record per operation a client
 * invoked, with its invoke and completion times (one monotonic clock for the whole run) and what
 * came back. Pure: no I/O, no clock. The workload driver (test/torture) writes these; the checkers
 * (anomalies.ts, linearizability.ts) read them.
 *
 * Outcomes, as a client can know them:
 *   ok       the server answered a result (200/201/204, and also 404 or 412: a definite "no")
 *   fail     the op certainly did not happen (a 503 other than KV_ERR_OUTCOME_UNKNOWN, a refused
 *            connection): the checker treats it as never invoked, so its value must never be seen
 *   unknown  may or may not have happened: KV_ERR_OUTCOME_UNKNOWN, a timeout, a dropped connection
 *
 * Every PUT writes a value no other op writes, so a read names the write it saw.
 */

export type OpKind =
  | 'get'
  | 'put' // plain PUT (optionally with a TTL, or keepttl)
  | 'cas' // PUT If-Match: "<ifVersion>"
  | 'create' // PUT If-None-Match: *
  | 'del'
  | 'expire' // TTL set (PUT /v1/ttl)
  | 'persist'; // TTL clear (DELETE /v1/ttl)

export type Outcome = 'ok' | 'fail' | 'unknown';

export interface HistoryOp {
  /** Unique within the history. */
  id: number;
  /** The client (a sequential process: one op in flight at a time); -1 for the final reads. */
  client: number;
  key: string;
  kind: OpKind;
  /** Monotonic ms. */
  invoke: number;
  /** Monotonic ms when the answer (or the error) arrived. */
  complete: number;
  outcome: Outcome;
  /** put/cas/create: the value written (unique in the whole history). */
  value?: string;
  /** cas: the version the write was conditional on. */
  ifVersion?: number;
  /** put/cas/create: written with a TTL (true), without (false). */
  ttl?: boolean;
  /** put: keep the key's current TTL. */
  keepTtl?: boolean;

  // ---- the answer, when outcome is 'ok' ----
  /**
   * get: the key was there. put/cas/create: the write was applied (false = 412).
   * del/expire/persist: the key was live (false = 404).
   */
  found?: boolean;
  /** get: the value read (found). */
  readValue?: string;
  /** get: the version read; put/cas/create: the version written. */
  version?: number;
  /** put/cas/create: 201 (the key was absent) rather than 200. */
  created?: boolean;
  /** get: the key has a TTL (an X-Expires-At came back). */
  hasTtl?: boolean;
  /** Free text for reports: the status and error code. */
  note?: string;
  /** Set on the reads taken after the workload ended, with no fault active. */
  final?: boolean;
}

export const isWrite = (op: HistoryOp): boolean => op.kind === 'put' || op.kind === 'cas' || op.kind === 'create';

/** The writes that may have taken effect: applied (ok and found) or unknown. */
export const mayHaveWritten = (op: HistoryOp): boolean => isWrite(op) && (op.outcome === 'unknown' || (op.outcome === 'ok' && op.found === true));

/** Ops that change or remove the current value (when they take effect). */
export const mayHaveRemoved = (op: HistoryOp): boolean => op.kind === 'del' && (op.outcome === 'unknown' || op.outcome === 'ok');

export function byKey(history: HistoryOp[]): Map<string, HistoryOp[]> {
  const m = new Map<string, HistoryOp[]>();
  for (const op of history) {
    let list = m.get(op.key);
    if (list === undefined) m.set(op.key, (list = []));
    list.push(op);
  }
  return m;
}

/** One line for reports. */
export function describeOp(op: HistoryOp): string {
  const t = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : 'inf');
  const parts = [`#${op.id}`, `c${op.client}`, op.kind, JSON.stringify(op.key)];
  if (op.value !== undefined) parts.push(`value=${op.value}`);
  if (op.ifVersion !== undefined) parts.push(`ifVersion=${op.ifVersion}`);
  parts.push(`[${t(op.invoke)}..${t(op.complete)}]`, op.outcome);
  if (op.outcome === 'ok') {
    if (op.kind === 'get') parts.push(op.found ? `-> ${op.readValue} v${op.version}${op.hasTtl ? ' ttl' : ''}` : '-> 404');
    else if (isWrite(op)) parts.push(op.found ? `-> ${op.created ? 201 : 200} v${op.version}` : '-> 412');
    else parts.push(op.found ? '-> live' : '-> 404');
  }
  if (op.note) parts.push(`(${op.note})`);
  if (op.final) parts.push('final');
  return parts.join(' ');
}

/**
 * How a client error maps to an outcome. `definite` codes are promises of the server that nothing
 * was written; anything unrecognised is "unknown" (the checker then asks less, never more).
 */
export function outcomeOfError(code: string | undefined): Outcome {
  switch (code) {
    case 'KV_ERR_OVERLOADED':
    case 'KV_ERR_SHARD_UNAVAILABLE':
    case 'KV_ERR_SHUTTING_DOWN':
    case 'KV_ERR_BUSY':
    case 'ECONNREFUSED': // the request never reached a gateway
      return 'fail';
    default:
      return 'unknown';
  }
}
