/**
 * Tests the pure parts of listing keys: protocol/listing.ts (prefix ranges, merging shard pages
 * with the cursor rule, slot coverage, request checks) and protocol/redis-keyspace.ts (the SCAN
 * cursor's text form, Redis glob patterns and their literal prefix).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkListRequest, covers, mergePages, prefixEnd, servedBitmap, type ShardPage } from '../../src/protocol/listing';
import { compileGlob, decodeCursor, encodeCursor } from '../../src/protocol/redis-keyspace';
import { SLOT_COUNT } from '../../src/protocol/slot-map';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const all = servedBitmap(Array.from({ length: SLOT_COUNT }, (_, i) => i));
const page = (keys: string[], upTo: string | null): ShardPage => ({
  keys: keys.map(b),
  values: null,
  expiresAt: null,
  upTo: upTo === null ? null : b(upTo),
  served: all,
});
const text = (ks: Uint8Array[]): string[] => ks.map((k) => Buffer.from(k).toString('latin1'));

test('prefixEnd: the least key above every key with the prefix; none for an empty or all-0xff prefix', () => {
  assert.deepEqual(prefixEnd(b('ab')), b('ac'));
  assert.deepEqual(prefixEnd(Buffer.from([0x61, 0xff, 0xff])), Buffer.from([0x62]));
  assert.equal(prefixEnd(Buffer.alloc(0)), null);
  assert.equal(prefixEnd(Buffer.from([0xff, 0xff])), null);
});

test('mergePages: byte order, duplicates dropped, only keys every shard has examined, cursor rule', () => {
  // Shard A stopped early at a3; B is exhausted: b4 waits for the next page (it may follow a3 on A).
  const p = mergePages([page(['a1', 'a2', 'a3'], 'a3'), page(['a0', 'a2', 'a4', 'b4'], null)], 3, false);
  assert.deepEqual(text(p.keys), ['a0', 'a1', 'a2']);
  assert.equal(Buffer.from(p.next!).toString(), 'a2');
  // Fewer than `limit` under the bound: the cursor is the bound itself.
  const q = mergePages([page(['x1'], 'x9'), page([], null)], 5, false);
  assert.deepEqual(text(q.keys), ['x1']);
  assert.equal(Buffer.from(q.next!).toString(), 'x9');
  // Everything exhausted and returned: complete.
  const r = mergePages([page(['k1'], null), page(['k2'], null)], 2, false);
  assert.deepEqual(text(r.keys), ['k1', 'k2']);
  assert.equal(r.next, null);
  // Exactly `limit` with more left: the cursor is the last key returned.
  const s = mergePages([page(['k1', 'k3'], null), page(['k2'], null)], 2, false);
  assert.deepEqual(text(s.keys), ['k1', 'k2']);
  assert.equal(Buffer.from(s.next!).toString(), 'k2');
  // Byte order, not string order: 0xff sorts after 'z', a shorter key before its extensions.
  const t = mergePages([page(['a', '\xff'], null), page(['a\x00', 'z'], null)], 10, false);
  assert.deepEqual(text(t.keys), ['a', 'a\x00', 'z', '\xff']);
});

test('covers: every slot served by at least one bitmap', () => {
  const low = servedBitmap(Array.from({ length: 8192 }, (_, i) => i));
  const high = servedBitmap(Array.from({ length: 8192 }, (_, i) => i + 8192));
  assert.equal(covers([low, high]), true);
  assert.equal(covers([low]), false);
  const gap = servedBitmap(Array.from({ length: 8191 }, (_, i) => i + 8193));
  assert.equal(covers([low, gap]), false, 'slot 8192 served by nobody');
});

test('checkListRequest: limit in 1..1000, default 100; prefix and after at most the key limit; an empty after is none', () => {
  const limits = { maxKeyBytes: 1024, maxValueBytes: 1024 };
  assert.equal(checkListRequest(b(''), null, undefined, false, limits).limit, 100);
  assert.equal(checkListRequest(b(''), b(''), 5, false, limits).after, null);
  for (const bad of [0, 1001, 1.5, '7', -1]) {
    assert.throws(() => checkListRequest(b(''), null, bad, false, limits), { code: 'KV_ERR_BAD_REQUEST' });
  }
  assert.throws(() => checkListRequest(Buffer.alloc(1025), null, 1, false, limits), { code: 'KV_ERR_KEY_TOO_LONG' });
  assert.throws(() => checkListRequest(b(''), Buffer.alloc(1025), 1, false, limits), { code: 'KV_ERR_KEY_TOO_LONG' });
});

test('SCAN cursor: "0" is the start; a key round-trips through its decimal form, leading zero bytes included', () => {
  assert.equal(encodeCursor(null), '0');
  assert.equal(decodeCursor('0', 1024), null);
  for (const k of [b('a'), Buffer.from([0, 0, 1]), Buffer.from([0xff]), Buffer.alloc(1024, 0xff)]) {
    const c = encodeCursor(k);
    assert.match(c, /^[1-9]\d*$/);
    assert.deepEqual(Buffer.from(decodeCursor(c, 1024)!), k);
  }
  assert.equal(encodeCursor(b('a')), String(0x0161));
  for (const bad of ['', '-1', '01', 'abc', '1.5', '2', '16', String(0x02ff)]) assert.equal(decodeCursor(bad, 1024), undefined, bad);
  assert.equal(decodeCursor(encodeCursor(Buffer.alloc(11)), 10), undefined, 'longer than a key');
});

test('glob: Redis patterns on bytes, and the literal prefix that narrows the range', () => {
  const cases: Array<[string, string, boolean]> = [
    ['*', '', true],
    ['a*', 'abc', true],
    ['a*', 'bac', false],
    ['h?llo', 'hello', true],
    ['h?llo', 'hllo', false],
    ['h*llo', 'heeeello', true],
    ['h[ae]llo', 'hallo', true],
    ['h[ae]llo', 'hillo', false],
    ['h[^e]llo', 'hallo', true],
    ['h[^e]llo', 'hello', false],
    ['h[a-b]llo', 'hbllo', true],
    ['h[b-a]llo', 'hallo', true],
    ['a\\*b', 'a*b', true],
    ['a\\*b', 'axb', false],
    ['*:*:end', 'x:y:z:end', true],
    ['*a*b*c*', 'aXbYc', true],
    ['*a*b*c*', 'aXcYb', false],
  ];
  for (const [pattern, key, want] of cases) assert.equal(compileGlob(b(pattern)).matches(b(key)), want, `${pattern} ~ ${key}`);
  assert.equal(compileGlob(b('user:*:x')).prefix.toString(), 'user:');
  assert.equal(compileGlob(b('a\\*b*')).prefix.toString(), 'a*b');
  assert.equal(compileGlob(b('*')).prefix.length, 0);
  assert.equal(compileGlob(b('exact')).literal, true);
  assert.equal(compileGlob(b('exact?')).literal, false);
  // No exponential backtracking: a long key against many stars answers at once.
  const t0 = performance.now();
  assert.equal(compileGlob(b('*a*a*a*a*a*a*a*b')).matches(Buffer.alloc(1024, 0x61)), false);
  assert.ok(performance.now() - t0 < 200);
});
