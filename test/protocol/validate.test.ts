/**
 * Tests src/protocol/validate.ts, the edge checks every decoder relies on: key and value sizes,
 * TTLs as decimal seconds (exact to the millisecond, rounded up, never 0, at most 10 years) and
 * as integer milliseconds, and If-Match version tags. Every refusal is a KvError with a stable
 * code and HTTP status, and a message that quotes (a bounded prefix of) the bad input.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvError } from '../../src/protocol/errors';
import { MAX_TTL_MS } from '../../src/protocol/ops';
import { checkKey, checkTtlMs, checkValue, parseTtlSeconds, parseVersionTag, type Limits } from '../../src/protocol/validate';

const LIMITS: Limits = { maxKeyBytes: 1024, maxValueBytes: 1024 * 1024 };

function refuses(fn: () => unknown, code: string, status: number): KvError {
  let caught: unknown;
  assert.throws(fn, (err: unknown) => {
    caught = err;
    return true;
  });
  assert.ok(caught instanceof KvError, `expected KvError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  assert.equal(caught.status, status);
  assert.ok(caught.message.length > 0 && caught.message.length < 300, caught.message);
  return caught;
}

test('checkKey: 1 to 1024 bytes; empty is 400 KV_ERR_BAD_KEY, longer is 414 KV_ERR_KEY_TOO_LONG', () => {
  checkKey(Buffer.alloc(1), LIMITS);
  checkKey(Buffer.alloc(1024), LIMITS);
  refuses(() => checkKey(Buffer.alloc(0), LIMITS), 'KV_ERR_BAD_KEY', 400);
  const e = refuses(() => checkKey(Buffer.alloc(1025), LIMITS), 'KV_ERR_KEY_TOO_LONG', 414);
  assert.match(e.message, /1025/);
  assert.match(e.message, /1024/);
  refuses(() => checkKey(Buffer.alloc(11), { maxKeyBytes: 10, maxValueBytes: 1 }), 'KV_ERR_KEY_TOO_LONG', 414);
});

test('checkValue: up to the limit; above is 413 KV_ERR_VALUE_TOO_LARGE', () => {
  checkValue(0, LIMITS);
  checkValue(LIMITS.maxValueBytes, LIMITS);
  const e = refuses(() => checkValue(LIMITS.maxValueBytes + 1, LIMITS), 'KV_ERR_VALUE_TOO_LARGE', 413);
  assert.match(e.message, /1048577/);
  checkValue(16 * 1024 * 1024, { maxKeyBytes: 1024, maxValueBytes: 16 * 1024 * 1024 });
  refuses(() => checkValue(16 * 1024 * 1024 + 1, { maxKeyBytes: 1024, maxValueBytes: 16 * 1024 * 1024 }), 'KV_ERR_VALUE_TOO_LARGE', 413);
});

test('parseTtlSeconds: decimal seconds to whole milliseconds, rounded up', () => {
  const cases: Array<[string, number]> = [
    ['1', 1000],
    ['0.5', 500],
    ['.5', 500],
    ['5.', 5000],
    ['1.2345', 1235],
    ['1.2340', 1234],
    ['0.001', 1],
    ['0.0001', 1],
    ['0.000000000001', 1], // positive is never 0
    ['2.007', 2007], // 2.007 * 1000 is 2007.0000000000002 in binary
    ['1.005', 1005], // and 1.005 * 1000 is 1004.9999999999999
    ['007', 7000],
    ['315360000', MAX_TTL_MS],
  ];
  for (const [text, ms] of cases) assert.equal(parseTtlSeconds(text), ms, text);
});

test('parseTtlSeconds is exact for every millisecond written with three decimals', () => {
  for (const base of [0, 86_400, 315_000_000]) {
    for (let ms = 1; ms <= 10_000; ms++) {
      const total = base * 1000 + ms;
      const text = `${Math.floor(total / 1000)}.${String(total % 1000).padStart(3, '0')}`;
      assert.equal(parseTtlSeconds(text), total, text);
    }
  }
});

test('parseTtlSeconds refuses what is not a positive decimal up to 10 years: 400 KV_ERR_BAD_TTL', () => {
  const bad = [
    '',
    '0',
    '0.0',
    '000',
    '0.',
    '.0',
    '-1',
    '-0',
    '+1',
    ' 1',
    '1 ',
    '1e3',
    '1E-3',
    '0x10',
    '1,5',
    '1.2.3',
    '.',
    'NaN',
    'Infinity',
    '-Infinity',
    'abc',
    '1s',
    '315360000.001',
    '315360001',
    '9'.repeat(30),
    '1'.padEnd(400, '0'),
  ];
  for (const text of bad) refuses(() => parseTtlSeconds(text), 'KV_ERR_BAD_TTL', 400);
  // A long bad input is quoted, but only a bounded prefix of it.
  const e = refuses(() => parseTtlSeconds('x'.repeat(10_000)), 'KV_ERR_BAD_TTL', 400);
  assert.ok(e.message.length < 200);
});

test('checkTtlMs: a positive integer of milliseconds up to 10 years', () => {
  assert.equal(checkTtlMs(1), 1);
  assert.equal(checkTtlMs(MAX_TTL_MS), MAX_TTL_MS);
  for (const bad of [0, -1, -0, 1.5, NaN, Infinity, MAX_TTL_MS + 1, '5', null, undefined, 10n, {}]) {
    refuses(() => checkTtlMs(bad), 'KV_ERR_BAD_TTL', 400);
  }
  assert.equal(MAX_TTL_MS, 10 * 365 * 24 * 3600 * 1000);
});

test('parseVersionTag: one strong tag, quoted or bare; anything else is 400 KV_ERR_BAD_REQUEST', () => {
  assert.equal(parseVersionTag('"42"'), 42);
  assert.equal(parseVersionTag('42'), 42);
  assert.equal(parseVersionTag(' "42" '), 42);
  assert.equal(parseVersionTag('"0"'), 0);
  assert.equal(parseVersionTag(`"${Number.MAX_SAFE_INTEGER}"`), Number.MAX_SAFE_INTEGER);
  for (const bad of ['', '""', '"', '*', 'W/"42"', '"42', '42"', '"4 2"', '"-1"', '"abc"', '"1.5"', '"1", "2"', '"12345678901234567"', '"9999999999999999"']) {
    refuses(() => parseVersionTag(bad), 'KV_ERR_BAD_REQUEST', 400);
  }
});
