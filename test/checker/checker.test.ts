/**
 * The checker on hand-made histories: every anomaly it names must be flagged (by the named check
 * and, where it breaks linearizability, by the search too), and valid concurrent histories, with
 * overlapping ops and unknown outcomes that did or did not happen, must pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { HistoryOp, OpKind, Outcome } from './history';
import { checkHistory, describeReport, violationCount } from './check';
import type { AnomalyKind } from './anomalies';
import { checkKeyLinearizable } from './linearizability';

/** Builds a history: times are [invoke, complete]; `r` fields are the answer. */
class H {
  readonly ops: HistoryOp[] = [];
  private add(kind: OpKind, at: [number, number], outcome: Outcome, fields: Partial<HistoryOp>): this {
    this.ops.push({
      id: this.ops.length,
      client: fields.client ?? this.ops.length,
      key: fields.key ?? 'k',
      kind,
      invoke: at[0],
      complete: at[1],
      outcome,
      ...fields,
    });
    return this;
  }
  put(value: string, at: [number, number], version: number, created: boolean, more: Partial<HistoryOp> = {}): this {
    return this.add('put', at, 'ok', { value, found: true, version, created, ttl: false, ...more });
  }
  putUnknown(value: string, at: [number, number], more: Partial<HistoryOp> = {}): this {
    return this.add('put', at, 'unknown', { value, ttl: false, ...more });
  }
  putFailed(value: string, at: [number, number]): this {
    return this.add('put', at, 'fail', { value, note: 'KV_ERR_SHARD_UNAVAILABLE' });
  }
  create(value: string, at: [number, number], version: number | null): this {
    return this.add('create', at, 'ok', version === null ? { value, found: false } : { value, found: true, version, created: true, ttl: false });
  }
  cas(value: string, ifVersion: number, at: [number, number], version: number | null): this {
    return this.add(
      'cas',
      at,
      'ok',
      version === null ? { value, ifVersion, found: false } : { value, ifVersion, found: true, version, created: false, ttl: false },
    );
  }
  get(at: [number, number], value: string | null, version?: number, more: Partial<HistoryOp> = {}): this {
    return this.add('get', at, 'ok', value === null ? { found: false, ...more } : { found: true, readValue: value, version, hasTtl: false, ...more });
  }
  del(at: [number, number], found: boolean | 'unknown'): this {
    return found === 'unknown' ? this.add('del', at, 'unknown', {}) : this.add('del', at, 'ok', { found });
  }
  ttl(kind: 'expire' | 'persist', at: [number, number], found: boolean): this {
    return this.add(kind, at, 'ok', { found });
  }
}

function assertValid(h: H): void {
  const r = checkHistory(h.ops);
  assert.equal(violationCount(r), 0, describeReport(r));
  assert.equal(r.linearizable, 'yes', describeReport(r));
}

/** The named check finds `kind`; the search agrees unless `linearizable` says the anomaly is a named-only one. */
function assertFlags(h: H, kind: AnomalyKind | null, opts: { linearizable?: boolean } = {}): void {
  const r = checkHistory(h.ops);
  if (kind !== null)
    assert.ok(
      r.anomalies.some((a) => a.kind === kind),
      `expected ${kind}, got:\n${describeReport(r) || '(nothing)'}`,
    );
  assert.equal(r.linearizable, opts.linearizable === true ? 'yes' : 'no', describeReport(r));
  assert.ok(violationCount(r) > 0);
}

test('valid: a sequential history of every op kind', () => {
  assertValid(
    new H()
      .get([0, 1], null)
      .put('a', [2, 3], 10, true)
      .get([4, 5], 'a', 10)
      .put('b', [6, 7], 20, false)
      .del([8, 9], true)
      .get([10, 11], null)
      .del([12, 13], false)
      .create('c', [14, 15], 30)
      .create('x', [16, 17], null)
      .cas('d', 30, [18, 19], 40)
      .cas('y', 30, [20, 21], null)
      .ttl('expire', [22, 23], true)
      .get([24, 25], 'd', 40, { hasTtl: true })
      .ttl('persist', [26, 27], true)
      .get([28, 29], 'd', 40)
      .put('e', [30, 31], 50, false, { keepTtl: true })
      .get([32, 33], 'e', 50),
  );
});

test('valid: overlapping writes and reads, versions in linearization order, not invoke order', () => {
  // a and b overlap; b took effect first (v5), then a (v10). Reads inside the overlap may see
  // nothing, b or a; reads after both see a.
  assertValid(
    new H()
      .put('a', [0, 10], 10, false)
      .put('b', [1, 9], 5, true)
      .get([2, 3], null)
      .get([3, 12], 'b', 5)
      .get([4, 11], 'a', 10)
      .get([11, 12], 'a', 10)
      .del([13, 20], true)
      .get([14, 15], 'a', 10)
      .get([21, 22], null),
  );
});

test('valid: two creates racing, one 201 and one 412; two deletes racing, one 204 and one 404', () => {
  assertValid(new H().create('a', [0, 10], 7).create('b', [1, 9], null).get([11, 12], 'a', 7).del([13, 20], true).del([14, 19], false).get([21, 22], null));
});

test('valid: unknown outcomes either way', () => {
  // u1 never happened (nobody sees it); u2 happened, late: after b, so its version is above b's.
  assertValid(
    new H()
      .put('a', [0, 1], 10, true)
      .putUnknown('u1', [2, 3])
      .get([4, 5], 'a', 10)
      .putUnknown('u2', [6, 7])
      .put('b', [8, 9], 20, false)
      .get([10, 11], 'b', 20)
      .get([12, 13], 'u2', 25)
      .del([14, 15], 'unknown')
      .get([16, 17], 'u2', 25)
      .get([18, 19], null)
      .putFailed('f', [20, 21])
      .get([22, 23], null),
  );
});

test('valid: an unknown delete that happened, then a create (201) that needs it', () => {
  assertValid(new H().put('a', [0, 1], 10, true).del([2, 3], 'unknown').create('b', [4, 5], 20).get([6, 7], 'b', 20));
});

test('phantom: a value no op wrote, a failed write, a write answered 412, a read from the future', () => {
  assertFlags(new H().put('a', [0, 1], 10, true).get([2, 3], 'zzz', 10), 'phantom');
  assertFlags(new H().putFailed('f', [0, 1]).get([2, 3], 'f', 10), 'phantom');
  assertFlags(new H().put('a', [0, 1], 10, true).create('c', [2, 3], null).get([4, 5], 'c', 11), 'phantom');
  assertFlags(new H().get([0, 1], 'late', 10).put('late', [2, 3], 10, true), 'phantom');
});

test('stale read: an older value after a newer write was acknowledged', () => {
  assertFlags(new H().put('a', [0, 1], 10, true).put('b', [2, 3], 20, false).get([4, 5], 'a', 10), 'stale-read');
});

test('stale read: a version lower than one already acknowledged (the writes overlapped)', () => {
  // a got v20 and b v10: b went first, a last. A read after both must see a.
  assertFlags(new H().put('a', [0, 10], 20, false).put('b', [1, 9], 10, true).get([11, 12], 'b', 10), 'stale-read');
});

test('stale read: 404 after an acknowledged write with no delete', () => {
  assertFlags(new H().put('a', [0, 1], 10, true).get([2, 3], null), 'stale-read');
});

test('stale read: non-monotonic reads (a newer version seen, then an older one)', () => {
  assertFlags(new H().put('a', [0, 10], 10, true).put('b', [0, 10], 20, false).get([1, 2], 'b', 20).get([3, 4], 'a', 10), 'stale-read');
});

test('resurrection: a value read after a delete acknowledged after its write', () => {
  assertFlags(new H().put('a', [0, 1], 10, true).del([2, 3], true).get([4, 5], 'a', 10), 'resurrection');
});

test('lost write: the final read misses an acknowledged write', () => {
  assertFlags(new H().put('a', [0, 1], 10, true).put('b', [2, 3], 20, false).get([9, 10], 'a', 10, { final: true }), 'lost-write');
  assertFlags(new H().put('a', [0, 1], 10, true).get([9, 10], null, undefined, { final: true }), 'lost-write');
  // Explained by an unknown delete: not lost.
  assertValid(new H().put('a', [0, 1], 10, true).del([2, 3], 'unknown').get([9, 10], null, undefined, { final: true }));
});

test('versions go backwards: the two-gateway bug shape (201 high, then 200 lower)', () => {
  assertFlags(
    new H().put('old', [0, 1], 1250001, true).del([2, 3], true).put('a', [4, 5], 1260001, true).put('b', [6, 7], 1250009, false),
    'version-backwards',
  );
});

test('versions go backwards across a delete and re-create', () => {
  assertFlags(new H().put('a', [0, 1], 20, true).del([2, 3], true).put('b', [4, 5], 10, true), 'version-backwards');
});

test('version mismatch and duplicate versions', () => {
  assertFlags(new H().put('a', [0, 1], 10, true).get([2, 3], 'a', 11), 'version-mismatch');
  assertFlags(new H().putUnknown('u', [0, 1]).get([2, 3], 'u', 11).get([4, 5], 'u', 12), 'version-mismatch');
  assertFlags(new H().put('a', [0, 1], 10, true).put('b', [2, 3], 10, false), 'duplicate-version');
});

test('compare-and-set: two successes on one version, and a success on an overwritten version', () => {
  assertFlags(new H().put('a', [0, 1], 10, true).cas('b', 10, [2, 6], 20).cas('c', 10, [3, 5], 30), 'cas-not-exclusive');
  assertFlags(new H().put('a', [0, 1], 10, true).put('b', [2, 3], 20, false).cas('c', 10, [4, 5], 30), 'cas-not-exclusive');
});

test('compare-and-set answered 412 although its version was current: only the search sees it', () => {
  assertFlags(new H().put('a', [0, 1], 10, true).cas('b', 10, [2, 3], null), null);
});

test('create-if-absent: two creates with no delete between them', () => {
  assertFlags(new H().create('a', [0, 1], 10).create('b', [2, 3], 20), 'create-not-exclusive');
  assertFlags(new H().create('a', [0, 5], 10).create('b', [1, 4], 20), 'create-not-exclusive');
  assertFlags(new H().put('a', [0, 1], 10, true).put('b', [2, 3], 20, true), 'create-not-exclusive');
});

test('delete: two deletes of a live key with no write between them', () => {
  assertFlags(new H().put('a', [0, 1], 10, true).del([2, 3], true).del([4, 5], true), 'delete-not-exclusive');
});

test('TTL: a read must agree with the last TTL set or cleared (search only)', () => {
  assertFlags(new H().put('a', [0, 1], 10, true, { ttl: true }).get([2, 3], 'a', 10), null);
  assertFlags(new H().put('a', [0, 1], 10, true).ttl('expire', [2, 3], true).ttl('persist', [4, 5], true).get([6, 7], 'a', 10, { hasTtl: true }), null);
  assertFlags(new H().get([0, 1], null).ttl('expire', [2, 3], true), null);
});

test('keys are independent; a key too large for the budget is reported undecided, not passed', () => {
  const h = new H();
  // 12 overlapping unknown writes, never read, then reads of one acknowledged value: many orders.
  for (let i = 0; i < 12; i++) h.putUnknown(`u${i}`, [i, i + 1], { key: 'big' });
  h.put('a', [20, 21], 1000, false, { key: 'big' });
  h.get([22, 23], null, undefined, { key: 'other' });
  const r = checkKeyLinearizable(
    'big',
    h.ops.filter((o) => o.key === 'big'),
    3,
  );
  assert.equal(r.linearizable, null);
  const all = checkHistory(h.ops, { searchBudget: 3 });
  assert.equal(all.linearizable, 'partial');
  assert.deepEqual(all.undecided, ['big']);
  assert.match(describeReport(all), /undecided key="big"/);
  assert.equal(checkHistory(h.ops).linearizable, 'yes');
});
