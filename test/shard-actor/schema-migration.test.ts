/**
 * A data dir written before the slot column and kv_slots existed: two gateways starting on it at
 * once migrate it (column, index, ownership seeded from the recorded ranges), serve its keys
 * throughout, and fill every old row's slot in pages; starting again changes nothing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import type { RowDataPacket } from 'mysql2/promise';
import { startTestServer, type TestServer } from '../helpers/mysql';
import { configFrom } from '../../src/config/config';
import { createLogger, startServer, type Server } from '../../src/gateway/server';
import { HttpClient } from '../helpers/http-client';
import { SlotMap, SLOT_COUNT, slotOf } from '../../src/protocol/slot-map';
import { waitFor } from '../helpers/wait';

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(() => server?.stop());

const OLD_SCHEMA = [
  `CREATE TABLE kv (k VARBINARY(1024) NOT NULL, v LONGBLOB NOT NULL, version BIGINT UNSIGNED NOT NULL, expires_at BIGINT NULL,
     PRIMARY KEY (k), KEY kv_expires_at (expires_at)) ENGINE=InnoDB`,
  'CREATE TABLE kv_seq (id TINYINT UNSIGNED NOT NULL PRIMARY KEY, next_version BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB',
  'INSERT INTO kv_seq VALUES (1, 5000)',
  `CREATE TABLE kv_shard (id TINYINT UNSIGNED NOT NULL PRIMARY KEY, shard_index INT NOT NULL, shard_count INT NOT NULL,
     slot_ranges MEDIUMTEXT NOT NULL, created_at BIGINT NOT NULL) ENGINE=InnoDB`,
];

test('an old data dir is migrated online at start by two gateways at once, and served meanwhile', async () => {
  const urls = [await server.createDatabase(), await server.createDatabase()];
  const map = SlotMap.even(2);
  const keys = Array.from({ length: 2500 }, (_, i) => `old-${i}`);
  for (let shard = 0; shard < 2; shard++) {
    const conn = await mysql.createConnection({ uri: urls[shard] });
    for (const sql of OLD_SCHEMA) await conn.query(sql);
    await conn.query('INSERT INTO kv_shard VALUES (1, ?, 2, ?, 0)', [shard, map.rangesOf(shard)]);
    const mine = keys.filter((k) => map.shardOf(Buffer.from(k)) === shard);
    await conn.query('INSERT INTO kv (k, v, version, expires_at) VALUES ?', [mine.map((k, i) => [Buffer.from(k), Buffer.from(`v-${k}`), i + 1, null])]);
    await conn.end();
  }
  const config = configFrom({ port: 0, redisPort: 0, logLevel: 'silent' });
  const log = createLogger('silent');
  const gateways: Server[] = await Promise.all([startServer(config, urls, log), startServer(config, urls, log)]);
  const client = new HttpClient(gateways[1].port);
  try {
    for (const k of keys.slice(0, 200)) assert.equal((await client.get(k)).text(), `v-${k}`);
    assert.equal((await client.put('old-1', 'new')).status, 200);
    for (const url of urls) {
      const conn = await mysql.createConnection({ uri: url });
      try {
        await waitFor(
          async () => {
            const [[r]] = await conn.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM kv WHERE slot = 65535');
            return Number(r.n) === 0;
          },
          { timeoutMs: 10_000, intervalMs: 100, message: 'every old row gets its slot' },
        );
        const [rows] = await conn.query<RowDataPacket[]>('SELECT k, slot FROM kv');
        for (const r of rows) assert.equal(r.slot, slotOf(r.k), `slot of ${r.k}`);
        const [idx] = await conn.query<RowDataPacket[]>("SHOW INDEX FROM kv WHERE Key_name = 'kv_slot'");
        assert.deepEqual(
          idx.map((r) => r.Column_name),
          ['slot', 'k'],
        );
        const [[owned]] = await conn.query<RowDataPacket[]>(
          'SELECT COUNT(*) AS n, MIN(slot) AS lo, MAX(slot) AS hi FROM kv_slots WHERE state = 1 AND epoch = 1',
        );
        assert.equal(Number(owned.n), SLOT_COUNT / 2);
      } finally {
        await conn.end();
      }
    }
    // Starting again on the migrated dir: nothing to do, same map.
    const again = await startServer(config, urls, log);
    gateways.push(again);
    const slots = (await client.request('GET', '/v1/slots')).json();
    assert.deepEqual(slots.ranges, [
      [0, 8191, 0],
      [8192, 16383, 1],
    ]);
    assert.equal(slots.epoch, 1);
  } finally {
    client.close();
    for (const g of gateways) await g.close();
  }
});

test('a store starts refusing an empty database listed beside existing shards, naming the command to run', async () => {
  const urls = [await server.createDatabase()];
  const config = configFrom({ port: 0, redisPort: 0, logLevel: 'silent' });
  const log = createLogger('silent');
  const first = await startServer(config, urls, log);
  await first.close();
  urls.push(await server.createDatabase());
  await assert.rejects(startServer(config, urls, log), /kvsql shards add/);
});
