/**
 * Tests WAIT on a shard that is a real 3-node MariaDB Galera group (src/gateway/resp/wait-command.ts,
 * src/shard-actor/replica-wait.ts), with ioredis: both other nodes counted once they committed the
 * write; a node held back (desynced, its appliers blocked by FLUSH TABLES WITH READ LOCK) is not
 * counted, so WAIT for 2 times out with 1; once released it catches up and is counted again.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Redis from 'ioredis';
import mysql from 'mysql2/promise';
import { configFrom } from '../../src/config/config';
import { createLogger, startServer, type Server } from '../../src/gateway/server';
import { nodeName } from '../../src/shard-actor/node-selector';
import { startTestGalera, type TestGalera } from '../helpers/galera';
import type { Readyz } from '../helpers/ha-load';
import { waitFor } from '../helpers/wait';

let galera: TestGalera;
let gw: Server;
let redis: Redis;
before(async () => {
  galera = await startTestGalera(3);
  const config = configFrom({ port: 0, redisPort: 0, logLevel: process.env.KVSQL_TEST_LOG_LEVEL ?? 'silent' });
  gw = await startServer(config, [galera.url], createLogger(config.logLevel));
  redis = new Redis({ port: gw.redisPort!, host: '127.0.0.1', maxRetriesPerRequest: 0 });
});
after(async () => {
  redis?.disconnect();
  await gw?.close();
  await galera?.dispose();
});

/** Index of the node the gateway writes through (-1: none yet). */
async function writer(): Promise<number> {
  const body = (await (await fetch(`http://127.0.0.1:${gw.port}/readyz`)).json()) as Readyz;
  const w = body.groups?.[0]?.writer;
  return galera.shard.nodes.findIndex((n) => nodeName(n.url) === w);
}

test('WAIT counts the other nodes that committed the write; a node held back is not counted until it catches up', async () => {
  const nodes = galera.shard.nodes;
  await Promise.all(
    nodes.map((n) =>
      n.waitSynced(
        90_000,
        nodes.filter((p) => p !== n),
      ),
    ),
  );
  await waitFor(async () => (await writer()) >= 0, { timeoutMs: 20_000, message: 'a writer node', ignoreErrors: true });
  await redis.set('gw:a', '1');
  assert.equal(await redis.wait(2, 5000), 2, 'both other nodes committed it');
  assert.equal(await redis.wait(0, 0), 2, 'numreplicas 0: the count at once');

  // Hold back a node the gateway does not write through.
  const held = (await writer()) === 0 ? 1 : 0;
  const conn = await mysql.createConnection({ uri: nodes[held].url });
  try {
    await conn.query('SET GLOBAL wsrep_desync = ON');
    await conn.query('FLUSH TABLES WITH READ LOCK');
    await redis.set('gw:b', '2');
    const started = Date.now();
    assert.equal(await redis.wait(2, 400), 1, 'the held node has not committed it: 1 after the timeout');
    assert.ok(Date.now() - started >= 380, `waited the timeout (${Date.now() - started} ms)`);
    assert.equal(await redis.wait(1, 5000), 1, 'one is enough: answered as soon as reached');
  } finally {
    await conn.query('UNLOCK TABLES').catch(() => undefined);
    await conn.query('SET GLOBAL wsrep_desync = OFF').catch(() => undefined);
    await conn.end().catch(() => conn.destroy());
  }
  assert.equal(await redis.wait(2, 10_000), 2, 'released, it catches up and counts again');
});
