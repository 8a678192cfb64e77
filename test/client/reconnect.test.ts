/**
 * Tests the client across a gateway restart on a real store: an op on the wire when the server
 * goes away fails with KV_ERR_CONNECTION_LOST and is never resent; ops issued while the server is
 * down wait in the client and succeed once a new gateway listens on the same port.
 *
 * To hold an op in flight deterministically, a MySQL transaction in the test locks the key's row
 * (SELECT ... FOR UPDATE), so the actor's write waits on it; the gateway's short shutdown timeout
 * then closes the socket with the op still unanswered.
 *
 * The store listens on a fixed free port, not port 0: uWS sets SO_REUSEADDR only for an explicit
 * port, and without it the new gateway could not bind while the old connections sit in TIME_WAIT
 * (checked: 60 s of EADDRINUSE after a close with sockets open).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import mysql from 'mysql2/promise';
import { createClient, type KvClient, type KvClientError } from '../../src/client';
import { createLogger, startServer, type Server } from '../../src/gateway/server';
import { startTestStore, type TestStore } from '../helpers/store';
import { sleep } from '../helpers/wait';

let store!: TestStore;
before(async () => {
  store = await startTestStore({ config: { port: await freePort(), shutdownTimeoutMs: 300 } });
});

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
after(() => store?.close());

/** Locks `key`'s row in every shard (only one holds it) until release(). */
async function lockRow(urls: string[], key: string): Promise<() => Promise<void>> {
  const conns = await Promise.all(urls.map((uri) => mysql.createConnection({ uri })));
  for (const c of conns) {
    await c.query('START TRANSACTION');
    await c.query('SELECT k FROM kv WHERE k = ? FOR UPDATE', [Buffer.from(key)]);
  }
  return async () => {
    for (const c of conns) {
      await c.query('ROLLBACK');
      await c.end();
    }
  };
}

test('an op in flight at a restart fails with KV_ERR_CONNECTION_LOST; queued and later ops succeed', async () => {
  const client: KvClient = createClient(`ws://127.0.0.1:${store.port}/v1/ws`, { reconnectMinDelayMs: 20, reconnectMaxDelayMs: 100 });
  after(() => client.close());
  await client.put('r-locked', 'before');
  await client.put('r-other', 'before');

  const release = await lockRow(store.urls, 'r-locked');
  let released = false;
  after(async () => {
    if (!released) await release();
  });
  const stuck = client.put('r-locked', 'during').then(
    () => null,
    (e: KvClientError) => e,
  );
  await sleep(100); // the put is waiting on the row lock
  assert.equal(client.inflight, 1);

  const stopping = store.server.close();
  const err = await stuck;
  assert.ok(err, 'the put did not succeed');
  assert.equal(err.code, 'KV_ERR_CONNECTION_LOST');
  assert.equal(err.status, 500, 'maybe applied: not a retry-me 503');
  assert.match(err.message, /^put: the connection closed \(1001 server shutting down\) with the operation in flight; it may or may not have been applied$/);
  assert.equal(client.connected, false);

  // The actor still holds the write: once the lock goes, it commits (the gateway's socket is
  // gone, so its reply is dropped). That is why the client must never resend it by itself.
  await release();
  released = true;
  await stopping;

  // Issued while no server listens: queued, not failed.
  const queued = client.get('r-other');
  await sleep(150);
  assert.equal(client.queued, 1);

  const log = createLogger(store.config.logLevel);
  const second: Server = await startServer({ ...store.config, port: store.port }, store.urls, log);
  after(() => second.close());
  assert.equal((await queued)?.value.toString(), 'before');
  assert.equal(client.connected, true);
  assert.equal((await client.get('r-locked'))?.value.toString(), 'during', 'the put in flight at the drop was applied');
  const put = await client.put('r-locked', 'after');
  assert.equal(put.created, false);
  assert.equal((await client.get('r-locked'))?.value.toString(), 'after');
});
