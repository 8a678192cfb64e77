/**
 * Tests src/protocol/numbers.ts: which values count as Redis integers and floats, 64-bit bounds,
 * and how float results print.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatFloat, increment, parseFloatText, parseInt64 } from '../../src/protocol/numbers';

const b = (s: string) => Buffer.from(s);

test('parseInt64: canonical signed 64-bit integers only', () => {
  assert.equal(parseInt64(b('0')), 0n);
  assert.equal(parseInt64(b('-42')), -42n);
  assert.equal(parseInt64(b('9223372036854775807')), 2n ** 63n - 1n);
  assert.equal(parseInt64(b('-9223372036854775808')), -(2n ** 63n));
  for (const bad of ['', '+1', ' 1', '1 ', '01', '-0', '1.0', '1e3', '9223372036854775808', '-9223372036854775809', 'abc', '١']) {
    assert.equal(parseInt64(b(bad)), null, JSON.stringify(bad));
  }
});

test('parseFloatText: decimal text, exponents, inf; no spaces, no hex, not empty', () => {
  assert.equal(parseFloatText(b('10.50')), 10.5);
  assert.equal(parseFloatText(b('-.5')), -0.5);
  assert.equal(parseFloatText(b('5.0e3')), 5000);
  assert.equal(parseFloatText(b('inf')), Infinity);
  assert.equal(parseFloatText(b('-Infinity')), -Infinity);
  for (const bad of ['', ' 1', '1 ', '0x10', 'nan', '1e', '.', 'abc']) assert.equal(parseFloatText(b(bad)), null, JSON.stringify(bad));
});

test('formatFloat prints like Redis: trimmed, no exponent', () => {
  assert.equal(formatFloat(10.5 + 0.1), '10.6');
  assert.equal(formatFloat(0.1 + 0.2), '0.3');
  assert.equal(formatFloat(5200), '5200');
  assert.equal(formatFloat(-5.6), '-5.6');
  assert.equal(formatFloat(1e21), '1000000000000000000000');
  assert.equal(formatFloat(1.5e-7), '0.00000015');
});

test('increment: absent is 0, overflow and NaN refused with their codes', () => {
  assert.deepEqual(increment(null, b('5'), false), { ok: true, value: b('5') });
  assert.equal((increment(b('9223372036854775807'), b('1'), false) as { code: string }).code, 'KV_ERR_OVERFLOW');
  assert.equal((increment(b('x'), b('1'), false) as { code: string }).code, 'KV_ERR_NOT_INTEGER');
  assert.equal((increment(b('x'), b('1'), true) as { code: string }).code, 'KV_ERR_NOT_FLOAT');
  assert.equal((increment(b('inf'), b('1'), true) as { code: string }).code, 'KV_ERR_OVERFLOW');
  assert.equal((increment(null, b('1.5'), false) as { code: string }).code, 'KV_ERR_BAD_REQUEST');
});
