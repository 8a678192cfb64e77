/**
 * Tests src/protocol/redis-options.ts: SET's, GETEX's and EXPIRE's option grammar, shared by the Redis door
 * and scripts, with Redis's error texts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FLAG_CLEAR_TTL,
  FLAG_IF_ABSENT,
  FLAG_IF_EXISTS,
  FLAG_KEEP_TTL,
  FLAG_TTL_GT,
  FLAG_TTL_LT,
  FLAG_TTL_NX,
  FLAG_TTL_XX,
  MAX_TTL_MS,
} from '../../src/protocol/ops';
import {
  isOptionError,
  NOT_INTEGER_ERROR,
  parseExpireOptions,
  parseGetexOptions,
  parseSetOptions,
  SYNTAX_ERROR,
  timeArgMs,
  TTL_TOO_LONG_ERROR,
  type ExpiryUnit,
} from '../../src/protocol/redis-options';

const args = (...s: string[]) => s.map((x) => Buffer.from(x));
/** A time parser that records what it was asked: seconds for EX/EXAT, ms otherwise. */
const times: Array<[ExpiryUnit, string]> = [];
const expiryOf = (unit: ExpiryUnit, arg: Buffer): number => {
  times.push([unit, arg.toString()]);
  return Number(arg.toString()) * (unit === 'ex' || unit === 'exat' ? 1000 : 1);
};

test('parseSetOptions: flags, GET, one time option', () => {
  assert.deepEqual(parseSetOptions(args('set', 'k', 'v'), expiryOf), { flags: 0, get: false, ttlMs: 0, expiry: false });
  assert.deepEqual(parseSetOptions(args('set', 'k', 'v', 'nx', 'GET', 'EX', '10'), expiryOf), {
    flags: FLAG_IF_ABSENT,
    get: true,
    ttlMs: 10_000,
    expiry: true,
  });
  assert.deepEqual(parseSetOptions(args('set', 'k', 'v', 'XX', 'keepttl'), expiryOf), {
    flags: FLAG_IF_EXISTS | FLAG_KEEP_TTL,
    get: false,
    ttlMs: 0,
    expiry: true,
  });
  assert.deepEqual(parseSetOptions(args('set', 'k', 'v', 'pxat', '5', 'get', 'get'), expiryOf), { flags: 0, get: true, ttlMs: 5, expiry: true });
  assert.deepEqual(times.at(-1), ['pxat', '5']);
});

test('parseSetOptions: a syntax error for conflicting, repeated, unknown or incomplete options', () => {
  for (const bad of [
    ['nx', 'xx'],
    ['xx', 'nx'],
    ['ex', '1', 'px', '5'],
    ['keepttl', 'ex', '1'],
    ['ex', '1', 'keepttl'],
    ['ex'],
    ['bogus'],
    ['nx', 'nx', 'xx'],
  ]) {
    assert.equal(parseSetOptions(args('set', 'k', 'v', ...bad), expiryOf), SYNTAX_ERROR, bad.join(' '));
  }
});

test('parseSetOptions: the time parser refuses as it meets the option, before a later bad word', () => {
  const refuse = () => ({ error: 'ERR value is not an integer or out of range' });
  const r = parseSetOptions(args('set', 'k', 'v', 'ex', 'ten', 'bogus'), refuse);
  assert.ok(isOptionError(r));
  assert.equal(r.error, 'ERR value is not an integer or out of range');
});

test('parseExpireOptions: NX|XX|GT|LT and the combinations Redis refuses', () => {
  assert.equal(parseExpireOptions(args('expire', 'k', '10'), 3), 0);
  assert.equal(parseExpireOptions(args('expire', 'k', '10', 'nx'), 3), FLAG_TTL_NX);
  assert.equal(parseExpireOptions(args('expire', 'k', '10', 'XX', 'gt'), 3), FLAG_TTL_XX | FLAG_TTL_GT);
  assert.equal(parseExpireOptions(args('expire', 'k', '10', 'lt'), 3), FLAG_TTL_LT);
  assert.deepEqual(parseExpireOptions(args('expire', 'k', '10', 'nx', 'xx'), 3), {
    error: 'ERR NX and XX, GT or LT options at the same time are not compatible',
  });
  assert.deepEqual(parseExpireOptions(args('expire', 'k', '10', 'gt', 'lt'), 3), { error: 'ERR GT and LT options at the same time are not compatible' });
  assert.deepEqual(parseExpireOptions(args('expire', 'k', '10', 'soon'), 3), { error: 'ERR Unsupported option soon' });
  // Not a prototype lookup: an inherited property name is an unknown option too.
  assert.deepEqual(parseExpireOptions(args('expire', 'k', '10', 'constructor'), 3), { error: 'ERR Unsupported option constructor' });
});

test('timeArgMs: a time argument read as Redis 7 reads it, with kvsql’s 10-year limit', () => {
  const now = 1_700_000_000_000;
  const t = (arg: string, unit: 1 | 1000, absolute: boolean, positive: boolean) => timeArgMs(Buffer.from(arg), unit, absolute, now, 'cmd', positive);
  const invalid = { error: "ERR invalid expire time in 'cmd' command" };
  // SET EX/PX, SETEX: relative, positive.
  assert.equal(t('10', 1000, false, true), 10_000);
  assert.equal(t('1', 1, false, true), 1);
  assert.deepEqual(t('0', 1000, false, true), invalid);
  assert.deepEqual(t('-1', 1, false, true), invalid);
  for (const bad of ['', '1.5', '+1', '01', ' 1', '1e3', '9223372036854775808', 'x']) assert.equal(t(bad, 1000, false, true), NOT_INTEGER_ERROR, bad);
  assert.equal(t(String(MAX_TTL_MS), 1, false, true), MAX_TTL_MS);
  assert.equal(t(String(MAX_TTL_MS + 1), 1, false, true), TTL_TOO_LONG_ERROR);
  assert.deepEqual(t('9223372036854775', 1000, false, true), invalid, 'seconds past 64-bit milliseconds once now is added');
  assert.deepEqual(t('9223372036854775807', 1, false, true), invalid);
  assert.equal(t('9007199254740993', 1, true, true), TTL_TOO_LONG_ERROR, 'past 2^53 but inside 64 bits: too long');
  // EXAT/PXAT: absolute, positive; already past is <= 0 (the caller decides).
  assert.equal(t(String(now + 5000), 1, true, true), 5000);
  assert.equal(t(String(now / 1000 - 1), 1000, true, true), -1000);
  assert.deepEqual(t('0', 1000, true, true), invalid);
  // EXPIRE family: a negative or past time is allowed (it deletes the key), overflow is not.
  assert.equal(t('-5', 1000, false, false), -5000);
  assert.equal(t('-9223372036854775', 1000, false, false), -1, 'far past, inside 64 bits');
  assert.deepEqual(t('-9223372036854775807', 1000, false, false), invalid);
  assert.deepEqual(t('9223372036854775807', 1, false, false), invalid, 'relative: ms + now overflows');
  assert.equal(t('9223372036854775807', 1, true, false), TTL_TOO_LONG_ERROR, 'absolute ms: inside 64 bits, too long');
});

test('parseGetexOptions: none, PERSIST, one time option; anything more is a syntax error', () => {
  assert.deepEqual(parseGetexOptions(args('getex', 'k'), expiryOf), { kind: 'get', ttlMs: 0, flags: 0 });
  assert.deepEqual(parseGetexOptions(args('getex', 'k', 'Persist'), expiryOf), { kind: 'persist', ttlMs: 0, flags: FLAG_CLEAR_TTL });
  assert.deepEqual(parseGetexOptions(args('getex', 'k', 'ex', '10'), expiryOf), { kind: 'ttl', ttlMs: 10_000, flags: 0 });
  assert.deepEqual(parseGetexOptions(args('getex', 'k', 'PXAT', '5'), expiryOf), { kind: 'ttl', ttlMs: 5, flags: 0 });
  for (const bad of [['ex'], ['ex', '1', 'persist'], ['persist', 'persist'], ['keepttl'], ['px', '1', 'px', '2']]) {
    assert.equal(parseGetexOptions(args('getex', 'k', ...bad), expiryOf), SYNTAX_ERROR, bad.join(' '));
  }
  const refused = { error: "ERR invalid expire time in 'getex' command" };
  assert.equal(
    parseGetexOptions(args('getex', 'k', 'ex', '0'), () => refused),
    refused,
    "the caller's refusal of a time is the answer",
  );
});
