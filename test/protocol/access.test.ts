/**
 * Tests src/protocol/access.ts, the pure rules of access tokens: token shape, Authorization and
 * WebSocket-subprotocol parsing, the token file's format and its errors, byte-prefix rights per op,
 * and the failure limiter (time passed in; bounded memory).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bearerToken,
  FailureLimiter,
  formatToken,
  mayAccess,
  rightFor,
  parseTokenFile,
  TOKEN_CHARS,
  tokenId,
  TokenFileError,
  underPrefix,
  wsProtocols,
} from '../../src/protocol/access';
import { OP_DEL, OP_EXPIRE, OP_GET, OP_GETDEL, OP_INCR, OP_PERSIST, OP_PUT, OP_TTL } from '../../src/protocol/ops';

const HASH = 'ab'.repeat(32);
const line = (o: object): string => JSON.stringify({ id: '0a0b0c0d', name: 'n', sha256: HASH, ...o });

test('token shape: exact length and alphabet, the id is the 8 hex after the tag', () => {
  const t = formatToken(Buffer.from([1, 2, 3, 4]), Buffer.alloc(32, 0xff));
  assert.equal(t.length, TOKEN_CHARS);
  assert.equal(tokenId(t), '01020304');
  for (const bad of [
    '',
    t + 'a',
    t.slice(0, -1),
    t.replace('kvsql_', 'kvsqL_'),
    t.replace('01020304', '0102030G'),
    t.slice(0, -1) + '=',
    t.slice(0, -1) + '\u0000',
  ]) {
    assert.equal(tokenId(bad), null, JSON.stringify(bad));
  }
});

test('Authorization: Bearer only, case-insensitive scheme, bounded', () => {
  assert.equal(bearerToken(''), '');
  assert.equal(bearerToken('Bearer abc'), 'abc');
  assert.equal(bearerToken('bearer   abc  '), 'abc');
  assert.equal(bearerToken('Basic abc'), null);
  assert.equal(bearerToken('Bearer'), null);
  assert.equal(bearerToken('Bearer\u0000abc'), null);
  assert.equal(bearerToken('BEARER abc'), 'abc');
  assert.equal(bearerToken('Bearer ' + 'x'.repeat(10_000)), null);
});

test('WebSocket subprotocols: the token is taken, never echoed', () => {
  assert.deepEqual(wsProtocols('kvsql, kvsql.bearer.TOKEN'), { token: 'TOKEN', echo: 'kvsql' });
  assert.deepEqual(wsProtocols('kvsql.bearer.TOKEN'), { token: 'TOKEN', echo: '' });
  assert.deepEqual(wsProtocols(''), { token: '', echo: '' });
  assert.deepEqual(wsProtocols('chat'), { token: '', echo: 'chat' });
});

test('token file: grants become byte prefixes per right; admin is separate', () => {
  const [t] = parseTokenFile(
    `# comment\n\n${line({ grants: [{ rights: ['read'], prefixes: ['a/'] }, { rights: ['read', 'write'], prefixes: ['b/', { hex: '00ff' }] }, { rights: ['admin'] }] })}\n`,
  );
  assert.equal(t.admin, true);
  assert.deepEqual(
    t.read.map((p) => Buffer.from(p).toString('hex')),
    ['612f', '622f', '00ff'],
  );
  assert.deepEqual(
    t.write.map((p) => Buffer.from(p).toString('hex')),
    ['622f', '00ff'],
  );
  assert.equal(Buffer.from(t.sha256).toString('hex'), HASH);
  const key = (s: string | number[]) => (typeof s === 'string' ? Buffer.from(s) : Buffer.from(s));
  assert.ok(mayAccess(t, OP_GET, key('a/x')));
  assert.ok(mayAccess(t, OP_TTL, key('a/x')));
  for (const op of [OP_PUT, OP_DEL, OP_EXPIRE, OP_PERSIST] as const) assert.ok(!mayAccess(t, op, key('a/x')));
  assert.ok(mayAccess(t, OP_PUT, key('b/')));
  assert.ok(!mayAccess(t, OP_GET, key('a')), 'a/ does not cover a');
  assert.ok(!mayAccess(t, OP_GET, key('A/x')));
  assert.ok(mayAccess(t, OP_PUT, key([0x00, 0xff, 0x01])));
  assert.ok(!mayAccess(t, OP_PUT, key([0x00])));
  // incr and getdel answer the value: they need read and write.
  const w = parseTokenFile(
    `${line({
      grants: [
        { rights: ['write'], prefixes: ['w/'] },
        { rights: ['read', 'write'], prefixes: ['rw/'] },
      ],
    })}\n`,
  )[0];
  for (const op of [OP_INCR, OP_GETDEL] as const) {
    assert.ok(!mayAccess(w, op, key('w/x')), `${op} with write only`);
    assert.ok(mayAccess(w, op, key('rw/x')), `${op} with read and write`);
    assert.ok(!mayAccess(t, op, key('a/x')), `${op} with read only`);
  }
  assert.equal(rightFor(OP_INCR), 'read and write');
});

test('underPrefix: the empty prefix matches every key; a longer prefix never matches a shorter key', () => {
  assert.ok(underPrefix([new Uint8Array(0)], Buffer.from('anything')));
  assert.ok(!underPrefix([], Buffer.from('a')));
  assert.ok(!underPrefix([Buffer.from('abc')], Buffer.from('ab')));
  assert.ok(underPrefix([Buffer.from('x'), Buffer.from('ab')], Buffer.from('abc')));
});

test('token file errors name the line; nothing half-loaded', () => {
  const cases: Array<[string, RegExp]> = [
    ['{', /line 1: not a JSON object/],
    ['null', /line 1: not a JSON object/],
    [line({ id: 'XYZ', grants: [{ rights: ['read'], prefixes: [''] }] }), /"id"/],
    [line({ sha256: 'short', grants: [{ rights: ['read'], prefixes: [''] }] }), /"sha256"/],
    [line({ name: 'has space', grants: [{ rights: ['read'], prefixes: [''] }] }), /"name"/],
    [line({ grants: [] }), /"grants"/],
    [line({ grants: [{ rights: ['fly'], prefixes: [''] }] }), /unknown right "fly"/],
    [line({ grants: [{ rights: ['read'], prefixes: [] }] }), /at least one prefix/],
    [line({ grants: [{ rights: ['read'], prefixes: [{ hex: 'abc' }] }] }), /hex/],
    [line({ grants: [{ rights: ['read'], prefixes: [7] }] }), /a prefix is a string/],
    [
      `${line({ grants: [{ rights: ['read'], prefixes: [''] }] })}\n${line({ grants: [{ rights: ['read'], prefixes: [''] }] })}`,
      /line 2: id 0a0b0c0d appears twice/,
    ],
  ];
  for (const [text, re] of cases)
    assert.throws(
      () => parseTokenFile(text),
      (e: Error) => e instanceof TokenFileError && re.test(e.message),
      text,
    );
});

test('FailureLimiter: burst, block with a wait, refill, other addresses unaffected', () => {
  const l = new FailureLimiter(3);
  assert.equal(l.anyBlocked, false);
  assert.equal(l.fail('a', 0), 0);
  assert.equal(l.fail('a', 0), 0);
  assert.equal(l.fail('a', 0), 0);
  const wait = l.fail('a', 0);
  assert.ok(wait > 0 && wait <= 20_000, String(wait)); // one failure refills in 60 s / 3
  assert.equal(l.anyBlocked, true);
  assert.ok(l.blockedFor('a', 1000) > 0);
  assert.equal(l.blockedFor('b', 1000), 0);
  assert.equal(l.blockedFor('a', wait), 0);
  assert.equal(l.anyBlocked, false, 'an expired block is dropped when looked at');
  assert.equal(l.fail('a', 60_000 + wait), 0, 'refilled after a minute');
});

test('FailureLimiter: memory stays bounded under many addresses', () => {
  const l = new FailureLimiter(2, 100);
  for (let i = 0; i < 10_000; i++) {
    l.fail(`10.0.${i >> 8}.${i & 255}`, i);
    l.fail(`10.0.${i >> 8}.${i & 255}`, i);
    l.fail(`10.0.${i >> 8}.${i & 255}`, i);
  }
  assert.ok(l.size <= 100, String(l.size));
  assert.ok(l.blockedFor('10.0.39.15', 10_000) > 0, 'a recent address is still blocked');
});
