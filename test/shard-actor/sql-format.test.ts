/**
 * Tests the hot path's SQL formatter (src/shard-actor/sql-format.ts): the text it builds is the
 * text mysql2 would have sent for the same statements and values (its own `format`), every kind
 * of value the store sends, each STATEMENTS template at a few batch sizes; and on a real shard,
 * binary keys and values round-trip byte for byte.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql2 from 'mysql2/promise';
import { format as mysql2Format } from 'mysql2';
import { formatSql, literal } from '../../src/shard-actor/sql-format';
import { STATEMENTS } from '../../src/shard-actor/mysql-store/statements';
import { startTestServer, type TestServer } from '../helpers/mysql';

/** mysql2's own formatter (what conn.query(sql, params) would have sent). */
const format = (sql: string, params: unknown[]): string => mysql2Format(sql, params as Parameters<typeof mysql2Format>[1]);

const VALUES: unknown[] = [
  Buffer.from('k:1'),
  Buffer.alloc(0),
  Buffer.from([0, 1, 2, 0x27, 0x5c, 0xff]),
  new Uint8Array(Buffer.from('abc').buffer.slice(0)).subarray(1),
  0,
  -1,
  2 ** 53 - 1,
  1.5,
  null,
  'it\'s \\ \0 \n \r \t \b \x1a " done',
  'plain',
  true,
  false,
];

test('each value is the literal mysql2 would send', () => {
  for (const v of VALUES) {
    const ours = literal(v);
    const theirs = format('?', [v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v) : v]);
    assert.equal(ours, theirs, `value ${String(v)}`);
  }
});

test('whole statements match mysql2, at several batch sizes', () => {
  for (const n of [1, 2, 7, 64]) {
    const keys = Array.from({ length: n }, (_, i) => Buffer.from(`key-${i}-\u0000'`));
    const slots = Array.from({ length: Math.ceil(n / 2) }, (_, i) => i * 3);
    const rows = keys.flatMap((k, i) => [k, Buffer.from(`value ${i}`), i + 1, i % 2 === 0 ? null : 1_700_000_000_000 + i, i]);
    const cases: Array<[string, unknown[]]> = [
      [STATEMENTS.readLive.sql(n, slots.length), [...slots, ...keys]],
      [STATEMENTS.readLiveEpoch.sql(n), keys],
      [STATEMENTS.lockBatch.sql(n, slots.length), [...slots, ...keys]],
      [STATEMENTS.upsertBatch.sql(n), rows],
      [STATEMENTS.insertBatch.sql(n), rows],
      [STATEMENTS.deleteBatch.sql(n), keys],
      [STATEMENTS.reapBatch.sql(n), keys],
    ];
    for (const [sql, params] of cases) assert.equal(formatSql(sql, params), format(sql, params));
  }
});

test('a count of parameters that does not match the placeholders is refused', () => {
  assert.throws(() => formatSql('SELECT ?, ?', [1]), RangeError);
  assert.throws(() => formatSql('SELECT ?', [1, 2]), RangeError);
  assert.throws(() => literal(NaN), TypeError);
  assert.throws(() => literal({}), TypeError);
});

let mysql: TestServer;
before(async () => {
  mysql = await startTestServer();
});
after(() => mysql?.stop());

test('binary keys and values round-trip through a real server byte for byte', async () => {
  const url = await mysql.createDatabase();
  const conn = await mysql2.createConnection({ uri: url, multipleStatements: true });
  after(() => conn.end());
  await conn.query('CREATE TABLE t (k VARBINARY(64) PRIMARY KEY, v LONGBLOB, n BIGINT NULL)');
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const rows: unknown[] = [Buffer.from([0]), all, 1, Buffer.from("'\\"), Buffer.alloc(0), null];
  await conn.query(formatSql('INSERT INTO t (k, v, n) VALUES (?,?,?),(?,?,?)', rows));
  const [got] = await conn.query<mysql2.RowDataPacket[]>(
    formatSql('SELECT k, v, n FROM t WHERE k IN (?,?) ORDER BY k', [Buffer.from([0]), Buffer.from("'\\")]),
  );
  assert.deepEqual(
    got.map((r) => [r.k, r.v, r.n]),
    [
      [Buffer.from([0]), all, 1],
      [Buffer.from("'\\"), Buffer.alloc(0), null],
    ],
  );
});
