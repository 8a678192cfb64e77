/**
 * The embedded store changes shape in one documented step each way (README, "Adding and removing
 * shards"): the real CLI on a data dir of 2 local shards, restarted with --embedded-shards=3
 * (the new local database joins and the slots rebalance in the background while it serves),
 * then `kvsql shards drain 2` and a restart with --embedded-shards=2. Every key written before
 * stays readable with its TTL through both changes.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HttpClient } from '../helpers/http-client';
import { pickFreePort } from '../../src/embedded/local-mysqld';
import { CLI, cliEnv, runCli } from '../helpers/cli';
import { waitFor } from '../helpers/wait';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-resize-'));
after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

interface Running {
  child: ChildProcess;
  client: HttpClient;
  output: () => string;
  stop(): Promise<number | null>;
}

async function startStore(settings: Record<string, string>): Promise<Running> {
  const port = await pickFreePort();
  const child = spawn(process.execPath, [CLI], {
    env: cliEnv({ ...settings, KVSQL_PORT: String(port), KVSQL_REDIS_PORT: 'off', KVSQL_LOG_LEVEL: 'info' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const client = new HttpClient(port);
  await waitFor(async () => (await client.request('GET', '/readyz').catch(() => null))?.status === 200, {
    timeoutMs: 120_000,
    intervalMs: 200,
    message: () => `the store did not become ready: ${out.slice(-3000)}`,
  }).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  return {
    child,
    client,
    output: () => out,
    async stop() {
      client.close();
      child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Shards owning slots, from /v1/slots. */
async function owners(client: HttpClient): Promise<Map<number, number>> {
  const ranges = (await client.request('GET', '/v1/slots')).json().ranges as Array<[number, number, number]>;
  const n = new Map<number, number>();
  for (const [lo, hi, shard] of ranges) n.set(shard, (n.get(shard) ?? 0) + hi - lo + 1);
  return n;
}

test('embedded: 2 -> 3 shards by restarting with --embedded-shards=3, and back to 2 after a drain; every key kept', async () => {
  const base = String(20000 + Math.floor(Math.random() * 20000));
  const settings = (shards: number) => ({ KVSQL_DATA_DIR: dataDir, KVSQL_EMBEDDED_BASE_PORT: base, KVSQL_EMBEDDED_SHARDS: String(shards) });
  const keys = Array.from({ length: 300 }, (_, i) => `resize-${i}`);

  let store = await startStore(settings(2));
  try {
    for (let i = 0; i < keys.length; i += 50) {
      const replies = await Promise.all(keys.slice(i, i + 50).map((k, j) => store.client.put(k, `v-${k}`, (i + j) % 3 === 0 ? 'ttl=3600' : '')));
      for (const r of replies) assert.equal(r.status, 201, r.text());
    }
  } finally {
    assert.equal(await store.stop(), 0, store.output().slice(-2000));
  }

  store = await startStore(settings(3));
  try {
    // The slots move in the background while it serves: reads are answered meanwhile.
    assert.equal((await store.client.get('resize-1')).text(), 'v-resize-1');
    await waitFor(async () => (await owners(store.client)).get(2) === 5461, {
      timeoutMs: 120_000,
      intervalMs: 500,
      message: async () =>
        `the new shard did not get its share: ${JSON.stringify([...(await owners(store.client)).entries()])}\n${store.output().slice(-3000)}`,
    });
    for (const [i, k] of keys.entries()) {
      const r = await store.client.get(k);
      assert.equal(r.text(), `v-${k}`);
      assert.equal(r.headers['x-expires-at'] !== undefined, i % 3 === 0, `${k}: its TTL moved with it`);
    }
    const drained = await runCli(['shards', 'drain', '2'], cliEnv(settings(3)));
    assert.equal(drained.code, 0, drained.out);
    // Served meanwhile, from the shards the keys moved back to (a redirect refreshes the map).
    for (const k of keys) assert.equal((await store.client.get(k)).text(), `v-${k}`);
    await waitFor(async () => ((await owners(store.client)).get(2) ?? 0) === 0, {
      timeoutMs: 40_000,
      intervalMs: 500,
      message: 'the map shows the drained shard owning nothing',
    });
  } finally {
    assert.equal(await store.stop(), 0, store.output().slice(-2000));
  }

  store = await startStore(settings(2));
  try {
    const shares = await owners(store.client);
    assert.deepEqual([...shares.keys()].sort(), [0, 1], JSON.stringify([...shares.entries()]));
    for (const k of keys) assert.equal((await store.client.get(k)).text(), `v-${k}`);
  } finally {
    assert.equal(await store.stop(), 0, store.output().slice(-2000));
  }
});
