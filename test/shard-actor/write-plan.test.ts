/**
 * Tests src/shard-actor/write-plan.ts, the pure decision of every write from the locked rows and
 * the shard's clock: replies (201/200/204/404/412), versions (only successful puts consume one,
 * in op order), TTL arithmetic (ttl, keepttl, expire, persist), expired rows treated as absent,
 * reaps that delete only what is still expired, and the one mutation a chain folds into.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FLAG_CLEAR_TTL,
  FLAG_FLOAT,
  FLAG_IF_ABSENT,
  FLAG_IF_EXISTS,
  FLAG_IF_VERSION,
  FLAG_KEEP_TTL,
  FLAG_TTL_GT,
  FLAG_TTL_LT,
  FLAG_TTL_NX,
  FLAG_TTL_XX,
  OP_APPEND,
  OP_DEL,
  OP_EXPIRE,
  OP_GET,
  OP_GETDEL,
  OP_GETEX,
  OP_INCR,
  OP_PERSIST,
  OP_PUT,
  OP_REAP,
  OP_SCAN,
  OP_SETRANGE,
  OP_TTL,
  type OpCode,
} from '../../src/protocol/ops';
import type { Chain } from '../../src/shard-actor/key-scheduler';
import type { PendingOp } from '../../src/shard-actor/pending-op';
import type { LockedRow, RowMutations } from '../../src/shard-actor/shard-store';
import { createsKey, highestVersion, planWrites, versionDemand, versionsNeeded } from '../../src/shard-actor/write-plan';

const NOW = 1_800_000_000_000;
const FIRST = 1000;

let nextId = 1;
interface OpOptions {
  value?: string;
  ttlMs?: number;
  flags?: number;
  ifVersion?: number;
}
function op(kind: OpCode, key: string, o: OpOptions = {}): PendingOp {
  const k = Buffer.from(key);
  return {
    id: nextId++,
    op: kind,
    key: k,
    keyStr: k.toString('latin1'),
    slot: 0,
    value: kind === OP_PUT || kind === OP_INCR || kind === OP_APPEND || kind === OP_SETRANGE ? Buffer.from(o.value ?? (kind === OP_INCR ? '1' : 'v')) : null,
    ttlMs: o.ttlMs ?? 0,
    flags: o.flags ?? 0,
    ifVersion: o.ifVersion ?? 0,
    dueAt: 0,
  };
}
const chain = (...ops: PendingOp[]): Chain => ({ keyStr: ops[0].keyStr, key: ops[0].key, slot: ops[0].slot, ops });
const rows = (entries: Record<string, LockedRow>) => new Map(Object.entries(entries).map(([k, v]) => [Buffer.from(k).toString('latin1'), v]));
const LIVE = (version: number, expiresAt: number | null = null): LockedRow => ({ version, expiresAt });
const EXPIRED = (version: number): LockedRow => ({ version, expiresAt: NOW - 1 });

/** No row changes at all, of any kind. */
const isEmpty = (m: RowMutations): boolean => Object.values(m).every((list) => (list as unknown[]).length === 0);
type ValueWrite = [Buffer, Uint8Array, number, number | null];
/** Rows written with a value, whatever statement the store uses for them (upsert, or insert for a key that had no row). */
const valueWrites = (m: RowMutations): ValueWrite[] =>
  Object.entries(m)
    .filter(([kind]) => kind === 'upserts' || kind === 'inserts')
    .flatMap(([, list]) => list as ValueWrite[]);

/** Plans one chain and returns its replies without ids (status and payload). */
function plan(c: Chain, locked = rows({})) {
  const p = planWrites([c], locked, NOW, FIRST);
  assert.deepEqual(
    p.replies.map(([o]) => o.id),
    c.ops.map((o) => o.id),
    'one reply per op, in op order',
  );
  for (const [o, r] of p.replies) assert.equal(r[0], o.id);
  return { ...p, out: p.replies.map(([, r]) => r.slice(1)) };
}

test('put on an absent key: 201 with the first version, one row write, no TTL', () => {
  const p = plan(chain(op(OP_PUT, 'k', { value: 'hello' })));
  assert.deepEqual(p.out, [[201, FIRST, null]]);
  assert.equal(valueWrites(p.mutations).length, 1);
  const [key, value, version, expiresAt] = valueWrites(p.mutations)[0];
  assert.equal(key.toString(), 'k');
  assert.equal(Buffer.from(value).toString(), 'hello');
  assert.equal(version, FIRST);
  assert.equal(expiresAt, null);
  assert.deepEqual(p.mutations.deletes, []);
  assert.deepEqual(p.mutations.ttlUpdates, []);
  assert.deepEqual(p.expiries, []);
});

test('put on a live key: 200 and a new version; with a ttl the expiry is the shard clock plus ttl', () => {
  const p = plan(chain(op(OP_PUT, 'k', { ttlMs: 1500 })), rows({ k: LIVE(7) }));
  assert.deepEqual(p.out, [[200, FIRST, NOW + 1500]]);
  assert.equal(valueWrites(p.mutations)[0][3], NOW + 1500);
  assert.equal(p.expiries.length, 1);
  assert.equal(p.expiries[0][1], NOW + 1500);
});

test('a row whose expires_at is now or earlier is absent to every op', () => {
  for (const expiresAt of [NOW, NOW - 1, 0]) {
    const locked = rows({ k: { version: 7, expiresAt } });
    assert.deepEqual(plan(chain(op(OP_PUT, 'k')), locked).out, [[201, FIRST, null]], `put, expiresAt ${expiresAt}`);
    assert.deepEqual(plan(chain(op(OP_DEL, 'k')), locked).out, [[404]]);
    assert.deepEqual(plan(chain(op(OP_EXPIRE, 'k', { ttlMs: 10 })), locked).out, [[404]]);
    assert.deepEqual(plan(chain(op(OP_PERSIST, 'k')), locked).out, [[404]]);
    assert.deepEqual(plan(chain(op(OP_PUT, 'k', { flags: FLAG_IF_VERSION, ifVersion: 7 })), locked).out, [[412, null]]);
    assert.deepEqual(plan(chain(op(OP_PUT, 'k', { flags: FLAG_IF_ABSENT })), locked).out, [[201, FIRST, null]]);
    assert.deepEqual(plan(chain(op(OP_PUT, 'k', { flags: FLAG_IF_EXISTS })), locked).out, [[412, null]]);
  }
  // One millisecond later is live.
  assert.deepEqual(plan(chain(op(OP_DEL, 'k')), rows({ k: LIVE(7, NOW + 1) })).out, [[204]]);
});

test('put without ttl clears the TTL; keepttl keeps it on a live key, and means none on an absent or expired one', () => {
  const live = rows({ k: LIVE(7, NOW + 5000) });
  assert.deepEqual(plan(chain(op(OP_PUT, 'k')), live).out, [[200, FIRST, null]]);
  assert.deepEqual(plan(chain(op(OP_PUT, 'k', { flags: FLAG_KEEP_TTL })), live).out, [[200, FIRST, NOW + 5000]]);
  assert.deepEqual(plan(chain(op(OP_PUT, 'k', { flags: FLAG_KEEP_TTL })), rows({ k: LIVE(7) })).out, [[200, FIRST, null]]);
  assert.deepEqual(plan(chain(op(OP_PUT, 'k', { flags: FLAG_KEEP_TTL })), rows({ k: EXPIRED(7) })).out, [[201, FIRST, null]]);
  assert.deepEqual(plan(chain(op(OP_PUT, 'k', { flags: FLAG_KEEP_TTL }))).out, [[201, FIRST, null]]);
  // An explicit ttl wins over keepttl (the HTTP layer refuses both; the plan still has an answer).
  assert.deepEqual(plan(chain(op(OP_PUT, 'k', { flags: FLAG_KEEP_TTL, ttlMs: 10 })), live).out, [[200, FIRST, NOW + 10]]);
});

test('If-None-Match (IF_ABSENT): 412 on a live key without consuming a version or writing', () => {
  const p = plan(chain(op(OP_PUT, 'k', { flags: FLAG_IF_ABSENT }), op(OP_PUT, 'k')), rows({ k: LIVE(7) }));
  assert.deepEqual(
    p.out,
    [
      [412, 7],
      [200, FIRST, null],
    ],
    'the 412 carries the current version; the next put gets the first version',
  );
  const only = plan(chain(op(OP_PUT, 'k', { flags: FLAG_IF_ABSENT })), rows({ k: LIVE(7) }));
  assert.ok(isEmpty(only.mutations));
});

test('If-Match (IF_VERSION): the live version matches or 412', () => {
  const locked = rows({ k: LIVE(7) });
  assert.deepEqual(plan(chain(op(OP_PUT, 'k', { flags: FLAG_IF_VERSION, ifVersion: 7 })), locked).out, [[200, FIRST, null]]);
  assert.deepEqual(plan(chain(op(OP_PUT, 'k', { flags: FLAG_IF_VERSION, ifVersion: 6 })), locked).out, [[412, 7]]);
  assert.deepEqual(plan(chain(op(OP_PUT, 'k', { flags: FLAG_IF_VERSION, ifVersion: 0 }))).out, [[412, null]], 'absent');
  assert.deepEqual(plan(chain(op(OP_DEL, 'k', { flags: FLAG_IF_VERSION, ifVersion: 7 })), locked).out, [[204]]);
  const mismatch = plan(chain(op(OP_DEL, 'k', { flags: FLAG_IF_VERSION, ifVersion: 8 })), locked);
  assert.deepEqual(mismatch.out, [[412, 7]]);
  assert.deepEqual(mismatch.mutations.deletes, []);
  // Inside a chain the condition sees the version the previous op wrote.
  const chained = plan(
    chain(op(OP_PUT, 'k'), op(OP_PUT, 'k', { flags: FLAG_IF_VERSION, ifVersion: FIRST }), op(OP_PUT, 'k', { flags: FLAG_IF_VERSION, ifVersion: FIRST })),
    locked,
  );
  assert.deepEqual(chained.out, [
    [200, FIRST, null],
    [200, FIRST + 1, null],
    [412, FIRST + 1],
  ]);
});

test('If-Match: * (IF_EXISTS): writes a live key, 412 with null on an absent or expired one', () => {
  assert.deepEqual(plan(chain(op(OP_PUT, 'k', { flags: FLAG_IF_EXISTS })), rows({ k: LIVE(7, NOW + 50) })).out, [[200, FIRST, null]]);
  assert.deepEqual(plan(chain(op(OP_PUT, 'k', { flags: FLAG_IF_EXISTS | FLAG_KEEP_TTL })), rows({ k: LIVE(7, NOW + 50) })).out, [[200, FIRST, NOW + 50]]);
  const absent = plan(chain(op(OP_PUT, 'k', { flags: FLAG_IF_EXISTS })));
  assert.deepEqual(absent.out, [[412, null]]);
  assert.ok(isEmpty(absent.mutations));
  assert.deepEqual(plan(chain(op(OP_PUT, 'k', { flags: FLAG_IF_EXISTS })), rows({ k: EXPIRED(7) })).out, [[412, null]]);
  // In a chain: a put creates the key, so the next XX put applies; after a delete it does not.
  assert.deepEqual(plan(chain(op(OP_PUT, 'k'), op(OP_PUT, 'k', { flags: FLAG_IF_EXISTS }), op(OP_DEL, 'k'), op(OP_PUT, 'k', { flags: FLAG_IF_EXISTS }))).out, [
    [201, FIRST, null],
    [200, FIRST + 1, null],
    [204],
    [412, null],
  ]);
});

test('delete: 204 and a DELETE for a live key; 404 for an absent one; an expired row is deleted but still 404', () => {
  const live = plan(chain(op(OP_DEL, 'k')), rows({ k: LIVE(7) }));
  assert.deepEqual(live.out, [[204]]);
  assert.deepEqual(
    live.mutations.deletes.map((k) => k.toString()),
    ['k'],
  );
  const absent = plan(chain(op(OP_DEL, 'k')));
  assert.deepEqual(absent.out, [[404]]);
  assert.ok(isEmpty(absent.mutations));
  const expired = plan(chain(op(OP_DEL, 'k')), rows({ k: EXPIRED(7) }));
  assert.deepEqual(expired.out, [[404]]);
  assert.deepEqual(
    expired.mutations.deletes.map((k) => k.toString()),
    ['k'],
  );
});

test('expire sets now + ttl on a live key (a TTL update, no new version); persist clears it', () => {
  const e = plan(chain(op(OP_EXPIRE, 'k', { ttlMs: 300 })), rows({ k: LIVE(7) }));
  assert.deepEqual(e.out, [[200, NOW + 300]]);
  assert.deepEqual(valueWrites(e.mutations), []);
  assert.deepEqual(
    e.mutations.ttlUpdates.map(([k, at]) => [k.toString(), at]),
    [['k', NOW + 300]],
  );
  assert.deepEqual(
    e.expiries.map(([k, at]) => [k.toString(), at]),
    [['k', NOW + 300]],
  );

  const p = plan(chain(op(OP_PERSIST, 'k')), rows({ k: LIVE(7, NOW + 100) }));
  assert.deepEqual(p.out, [[200, 1]], '1: a TTL was removed');
  assert.deepEqual(
    p.mutations.ttlUpdates.map(([k, at]) => [k.toString(), at]),
    [['k', null]],
  );
  assert.deepEqual(p.expiries, []);
  const nothingToClear = plan(chain(op(OP_PERSIST, 'k')), rows({ k: LIVE(7) }));
  assert.deepEqual(nothingToClear.out, [[200, 0]], '0: there was none');
  assert.ok(isEmpty(nothingToClear.mutations));
  assert.deepEqual(plan(chain(op(OP_EXPIRE, 'k', { ttlMs: 1 }))).out, [[404]]);
  assert.deepEqual(plan(chain(op(OP_PERSIST, 'k'))).out, [[404]]);
});

test('a reap deletes only a row that is still expired now', () => {
  const reaped = planWrites([chain(op(OP_REAP, 'k'))], rows({ k: { version: 7, expiresAt: NOW - 50 } }), NOW, FIRST);
  assert.deepEqual(
    reaped.replies.map(([, r]) => r.slice(1)),
    [[200, 1]],
  );
  assert.deepEqual(
    reaped.mutations.deletes.map((k) => k.toString()),
    ['k'],
  );
  for (const row of [LIVE(7, NOW + 1), LIVE(7), undefined]) {
    const kept = planWrites([chain(op(OP_REAP, 'k'))], row ? rows({ k: row }) : rows({}), NOW, FIRST);
    assert.deepEqual(
      kept.replies.map(([, r]) => r.slice(1)),
      [[200, 0]],
      `row ${JSON.stringify(row)}`,
    );
    assert.ok(isEmpty(kept.mutations));
  }
  // A put earlier in the same chain revived the key: the reap keeps it.
  const revived = planWrites([chain(op(OP_PUT, 'k', { ttlMs: 1000 }), op(OP_REAP, 'k'))], rows({ k: EXPIRED(7) }), NOW, FIRST);
  assert.deepEqual(
    revived.replies.map(([, r]) => r.slice(1)),
    [
      [201, FIRST, NOW + 1000],
      [200, 0],
    ],
  );
  assert.equal(valueWrites(revived.mutations).length, 1);
});

test('a chain folds into one mutation for its key', () => {
  const cases: Array<[string, PendingOp[], LockedRow | undefined, string]> = [
    ['del only on absent', [op(OP_DEL, 'k')], undefined, 'none'],
    ['put, del on live', [op(OP_PUT, 'k'), op(OP_DEL, 'k')], LIVE(7), 'delete'],
    ['del, put on live', [op(OP_DEL, 'k'), op(OP_PUT, 'k', { value: 'again' })], LIVE(7), 'upsert'],
    ['put(ttl), persist', [op(OP_PUT, 'k', { ttlMs: 100 }), op(OP_PERSIST, 'k')], undefined, 'upsert'],
    ['expire, persist on live', [op(OP_EXPIRE, 'k', { ttlMs: 100 }), op(OP_PERSIST, 'k')], LIVE(7, NOW + 5), 'ttl'],
    ['expire, expire', [op(OP_EXPIRE, 'k', { ttlMs: 100 }), op(OP_EXPIRE, 'k', { ttlMs: 200 })], LIVE(7), 'ttl'],
    ['412 only', [op(OP_PUT, 'k', { flags: FLAG_IF_VERSION, ifVersion: 1 })], LIVE(7), 'none'],
  ];
  for (const [name, ops, row, want] of cases) {
    const m = planWrites([chain(...ops)], row ? rows({ k: row }) : rows({}), NOW, FIRST).mutations;
    const writes = valueWrites(m).length;
    const got = isEmpty(m) ? 'none' : m.deletes.length ? 'delete' : writes ? 'upsert' : 'ttl';
    assert.equal(got, want, name);
    assert.ok(writes + m.ttlUpdates.length + m.deletes.length <= 1, `${name}: more than one mutation`);
  }
  // Created and deleted again on a key with no row: INSERT then DELETE, so the incarnation (whose
  // puts were answered with versions) is ordered against other gateways' creates (a key's versions only grow).
  const transient = planWrites([chain(op(OP_PUT, 'k'), op(OP_PUT, 'k'), op(OP_DEL, 'k'))], rows({}), NOW, FIRST);
  assert.deepEqual(
    transient.replies.map(([, r]) => r.slice(1)),
    [[201, FIRST, null], [200, FIRST + 1, null], [204]],
  );
  assert.deepEqual(
    transient.mutations.inserts.map((u) => [u[0].toString(), u[2]]),
    [['k', FIRST + 1]],
  );
  assert.deepEqual(
    transient.mutations.deletes.map((k) => k.toString()),
    ['k'],
  );
  assert.deepEqual(transient.mutations.upserts, []);
  const p = planWrites([chain(op(OP_DEL, 'k'), op(OP_PUT, 'k', { value: 'again' }))], rows({ k: LIVE(7) }), NOW, FIRST);
  assert.deepEqual(
    p.replies.map(([, r]) => r.slice(1)),
    [[204], [201, FIRST, null]],
    'a put after a delete creates',
  );
  assert.equal(Buffer.from(valueWrites(p.mutations)[0][1]).toString(), 'again');
  const persisted = planWrites([chain(op(OP_PUT, 'k', { ttlMs: 100 }), op(OP_PERSIST, 'k'))], rows({}), NOW, FIRST);
  assert.equal(valueWrites(persisted.mutations)[0][3], null, 'the write carries the final expiry');
  assert.deepEqual(persisted.expiries, []);
  const last = planWrites([chain(op(OP_EXPIRE, 'k', { ttlMs: 100 }), op(OP_EXPIRE, 'k', { ttlMs: 200 }))], rows({ k: LIVE(7) }), NOW, FIRST);
  assert.deepEqual(
    last.mutations.ttlUpdates.map(([, at]) => at),
    [NOW + 200],
  );
});

test('versions: only successful puts take one, consecutively in op order across chains', () => {
  const chains = [
    chain(op(OP_PUT, 'a'), op(OP_PUT, 'a', { flags: FLAG_IF_ABSENT }), op(OP_PUT, 'a')),
    chain(op(OP_DEL, 'b'), op(OP_PUT, 'b')),
    chain(op(OP_EXPIRE, 'c', { ttlMs: 5 })),
  ];
  assert.equal(versionsNeeded(chains), 4, 'an upper bound: every put');
  assert.deepEqual(versionDemand(chains, rows({ b: LIVE(3), c: LIVE(4) })), { count: 4, above: 4, createsKey: true }, 'a may be created: kv_seq is checked');
  assert.deepEqual(versionDemand(chains.slice(1), rows({ b: LIVE(3), c: LIVE(4) })), { count: 1, above: 4, createsKey: false }, 'b and c have rows');
  const p = planWrites(chains, rows({ b: LIVE(3), c: LIVE(4) }), NOW, FIRST);
  assert.deepEqual(
    p.replies.map(([, r]) => r.slice(1)),
    [[201, FIRST, null], [412, FIRST], [200, FIRST + 1, null], [204], [201, FIRST + 2, null], [200, NOW + 5]],
  );
  assert.deepEqual(
    valueWrites(p.mutations)
      .map((u) => [u[0].toString(), u[2]])
      .sort(),
    [
      ['a', FIRST + 1],
      ['b', FIRST + 2],
    ],
  );
});

test('an op that is not a write is answered 400 KV_ERR_UNKNOWN_OP, not applied', () => {
  const p = plan(chain(op(OP_SCAN as OpCode, 'k')), rows({ k: LIVE(7) }));
  assert.equal(p.out[0][0], 400);
  assert.equal(p.out[0][1], 'KV_ERR_UNKNOWN_OP');
  assert.ok(isEmpty(p.mutations));
});

test('highestVersion and createsKey read the locked rows', () => {
  assert.equal(highestVersion(rows({})), 0);
  assert.equal(highestVersion(rows({ a: LIVE(3), b: LIVE(9), c: EXPIRED(5) })), 9);
  const locked = rows({ a: LIVE(3) });
  assert.equal(createsKey([chain(op(OP_PUT, 'a'))], locked), false, 'the row exists: its version bounds the new one');
  assert.equal(createsKey([chain(op(OP_PUT, 'a')), chain(op(OP_PUT, 'b'))], locked), true);
  assert.equal(createsKey([chain(op(OP_DEL, 'b')), chain(op(OP_EXPIRE, 'c', { ttlMs: 1 }))], locked), false, 'no put');
  assert.equal(createsKey([chain(op(OP_DEL, 'b'), op(OP_PUT, 'b'))], locked), true);
});

const WITH = (version: number, value: string, expiresAt: number | null = null): LockedRow => ({ version, expiresAt, value: Buffer.from(value) });
const text = (b: unknown): string => Buffer.from(b as Uint8Array).toString();

test('incr: folds over the chain from the locked value, a new version each, TTL kept; absent starts at 0', () => {
  const p = plan(chain(op(OP_INCR, 'c', { value: '5' }), op(OP_INCR, 'c', { value: '-2' })), rows({ c: WITH(7, '10', NOW + 5000) }));
  assert.deepEqual(
    p.out.map((r) => [r[0], text(r[1]), r[2], r[3]]),
    [
      [200, '15', FIRST, NOW + 5000],
      [200, '13', FIRST + 1, NOW + 5000],
    ],
  );
  assert.deepEqual(
    valueWrites(p.mutations).map((w) => [text(w[1]), w[2], w[3]]),
    [['13', FIRST + 1, NOW + 5000]],
  );
  const fresh = plan(chain(op(OP_INCR, 'n', { value: '3' })));
  assert.deepEqual([fresh.out[0][0], text(fresh.out[0][1])], [201, '3']);
  const expired = plan(chain(op(OP_INCR, 'e', { value: '3' })), rows({ e: { ...WITH(2, '100'), expiresAt: NOW - 1 } }));
  assert.deepEqual([expired.out[0][0], text(expired.out[0][1]), expired.out[0][3]], [201, '3', null], 'an expired value is absent: starts at 0, no TTL');
  assert.equal(versionsNeeded([chain(op(OP_INCR, 'c'), op(OP_APPEND, 'c'), op(OP_GETDEL, 'c'))]), 2);
});

test('incr errors answer the op and leave the chain as it was: the writes around it still apply', () => {
  const p = plan(chain(op(OP_PUT, 'c', { value: 'abc' }), op(OP_INCR, 'c'), op(OP_APPEND, 'c', { value: 'd' })), rows({ c: WITH(7, '1') }));
  assert.equal(p.out[1][1], 'KV_ERR_NOT_INTEGER');
  assert.deepEqual(
    valueWrites(p.mutations).map((w) => text(w[1])),
    ['abcd'],
  );
  const over = plan(chain(op(OP_INCR, 'c', { value: '1' })), rows({ c: WITH(7, '9223372036854775807') }));
  assert.equal(over.out[0][1], 'KV_ERR_OVERFLOW');
  assert.ok(isEmpty(over.mutations));
  const f = plan(chain(op(OP_INCR, 'f', { value: '0.2', flags: FLAG_FLOAT })), rows({ f: WITH(1, '0.1') }));
  assert.equal(text(f.out[0][1]), '0.3');
});

test('append, getdel, getex: values from the lock; getex sets, clears or keeps the TTL without a new version', () => {
  const a = plan(chain(op(OP_APPEND, 'a', { value: 'lo' })), rows({ a: WITH(3, 'hel', NOW + 100) }));
  assert.deepEqual(a.out[0], [200, FIRST, NOW + 100, 5]);
  const g = plan(chain(op(OP_GETDEL, 'g'), op(OP_GETDEL, 'g')), rows({ g: WITH(3, 'v') }));
  assert.deepEqual([g.out[0][0], text(g.out[0][1]), g.out[0][2]], [200, 'v', 3]);
  assert.deepEqual(g.out[1], [404]);
  assert.equal(g.mutations.deletes.length, 1);
  const ex = plan(chain(op(OP_GETEX, 'x', { ttlMs: 1000 })), rows({ x: WITH(3, 'v') }));
  assert.deepEqual([ex.out[0][0], text(ex.out[0][1]), ex.out[0][3]], [200, 'v', NOW + 1000]);
  assert.deepEqual(
    ex.mutations.ttlUpdates.map((u) => u[1]),
    [NOW + 1000],
  );
  const clear = plan(chain(op(OP_GETEX, 'x', { flags: FLAG_CLEAR_TTL })), rows({ x: WITH(3, 'v', NOW + 50) }));
  assert.equal(clear.out[0][3], null);
  assert.deepEqual(
    clear.mutations.ttlUpdates.map((u) => u[1]),
    [null],
  );
  assert.deepEqual(plan(chain(op(OP_GETEX, 'x')), rows({})).out[0], [404]);
});

test('setrange: overwrites in place, zero-pads past the end, keeps the TTL; an empty value writes nothing', () => {
  const inPlace = plan(chain(op(OP_SETRANGE, 's', { value: 'ip', ifVersion: 1 })), rows({ s: WITH(3, 'hello', NOW + 100) }));
  assert.deepEqual(inPlace.out[0], [200, FIRST, NOW + 100, 5]);
  assert.deepEqual(
    valueWrites(inPlace.mutations).map((w) => [text(w[1]), w[2], w[3]]),
    [['hiplo', FIRST, NOW + 100]],
  );
  const padded = plan(chain(op(OP_SETRANGE, 's', { value: 'ab', ifVersion: 7 })), rows({ s: WITH(3, 'hello') }));
  assert.deepEqual(padded.out[0], [200, FIRST, null, 9]);
  assert.deepEqual(Buffer.from(valueWrites(padded.mutations)[0][1]), Buffer.from('hello\0\0ab', 'latin1'));
  const fresh = plan(chain(op(OP_SETRANGE, 'n', { value: 'x', ifVersion: 2 })));
  assert.deepEqual(fresh.out[0], [201, FIRST, null, 3]);
  assert.deepEqual(Buffer.from(valueWrites(fresh.mutations)[0][1]), Buffer.from([0, 0, 0x78]));
  const expired = plan(chain(op(OP_SETRANGE, 'e', { value: 'x' })), rows({ e: { ...WITH(2, 'old'), expiresAt: NOW - 1 } }));
  assert.deepEqual(expired.out[0], [201, FIRST, null, 1], 'an expired value is absent: starts empty, no TTL');
  const emptyLive = plan(chain(op(OP_SETRANGE, 's', { value: '', ifVersion: 100 })), rows({ s: WITH(3, 'hello', NOW + 100) }));
  assert.deepEqual(emptyLive.out[0], [200, 3, NOW + 100, 5], 'the key as it is: same version');
  assert.ok(isEmpty(emptyLive.mutations));
  const emptyAbsent = plan(chain(op(OP_SETRANGE, 'n', { value: '' })));
  assert.deepEqual(emptyAbsent.out[0], [404]);
  assert.ok(isEmpty(emptyAbsent.mutations), 'nothing created');
});

test('expire NX/XX/GT/LT: decided on the locked TTL, 412 with the version when not met', () => {
  const noTtl = rows({ k: LIVE(4) });
  const ttl = rows({ k: LIVE(4, NOW + 1000) });
  const e = (flags: number, ttlMs: number, locked: Map<string, LockedRow>) => plan(chain(op(OP_EXPIRE, 'k', { ttlMs, flags })), locked).out[0][0];
  assert.equal(e(FLAG_TTL_NX, 500, noTtl), 200);
  assert.equal(e(FLAG_TTL_NX, 500, ttl), 412);
  assert.equal(e(FLAG_TTL_XX, 500, noTtl), 412);
  assert.equal(e(FLAG_TTL_XX, 500, ttl), 200);
  assert.equal(e(FLAG_TTL_GT, 5000, noTtl), 412, 'no TTL counts as infinite');
  assert.equal(e(FLAG_TTL_GT, 500, ttl), 412);
  assert.equal(e(FLAG_TTL_GT, 5000, ttl), 200);
  assert.equal(e(FLAG_TTL_LT, 5000, noTtl), 200);
  assert.equal(e(FLAG_TTL_LT, 5000, ttl), 412);
  assert.equal(e(FLAG_TTL_LT, 500, ttl), 200);
});

test('reads inside a chain (a transaction) see the chain’s state so far and change nothing', () => {
  const locked = rows({ k: { version: 7, expiresAt: NOW + 1000, value: Buffer.from('old') } });
  const p = plan(
    chain(op(OP_GET, 'k'), op(OP_TTL, 'k'), op(OP_PUT, 'k', { value: 'new' }), op(OP_GET, 'k'), op(OP_DEL, 'k'), op(OP_GET, 'k'), op(OP_TTL, 'k')),
    locked,
  );
  assert.deepEqual(
    p.out.map((r) => r.map((x) => (x instanceof Uint8Array ? Buffer.from(x).toString() : x))),
    [[200, 'old', 7, NOW + 1000], [200, NOW + 1000, NOW, 7], [200, FIRST, null], [200, 'new', FIRST, null], [204], [404], [404]],
  );
  const reads = plan(chain(op(OP_GET, 'k'), op(OP_TTL, 'k')), locked);
  assert.equal(valueWrites(reads.mutations).length + reads.mutations.deletes.length + reads.mutations.ttlUpdates.length, 0, 'reads alone write nothing');
});

test('an APPEND whose result would pass the value limit is refused, and the value stays as it was', () => {
  const c = chain(op(OP_APPEND, 'a', { value: 'defg' }), op(OP_APPEND, 'a', { value: 'd' }));
  const p = planWrites([c], rows({ a: WITH(3, 'abc') }), NOW, FIRST, false, 5);
  const out = p.replies.map(([, r]) => r.slice(1));
  assert.deepEqual(out[0].slice(0, 2), [413, 'KV_ERR_VALUE_TOO_LARGE'], '3 + 4 bytes > 5');
  assert.deepEqual(out[1], [200, FIRST, null, 4], 'the next append still fits: 3 + 1 bytes');
  assert.deepEqual(
    valueWrites(p.mutations).map(([, v]) => Buffer.from(v).toString()),
    ['abcd'],
  );
});
