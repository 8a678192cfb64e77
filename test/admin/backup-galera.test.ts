/**
 * Tests src/admin/backup.ts and restore.ts with a Galera shard group: the snapshot is read from
 * the group's last Synced node (not the writer the gateways use), after wsrep_sync_wait, while a
 * gateway writes through the first; the backup, restored into a single server, holds every write
 * acknowledged before it with its version. Galera nodes keep no binlog: the manifest says so and
 * PITR from it is refused.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startTestGalera, type TestGalera } from '../helpers/galera';
import { startTestServer, type TestServer } from '../helpers/mysql';
import { HttpClient, etagVersion } from '../helpers/http-client';
import { configFrom, shardNodes } from '../../src/config/config';
import { createLogger, startServer } from '../../src/gateway/server';
import { takeBackup } from '../../src/admin/backup';
import { restoreBackup } from '../../src/admin/restore';

let galera: TestGalera;
let single: TestServer;
let work: string;

before(async () => {
  [galera, single] = await Promise.all([startTestGalera(), startTestServer()]);
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-backup-galera-'));
});
after(async () => {
  await galera?.dispose();
  await single?.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

test('a Galera shard is backed up from a non-writer node under load and restores into a single server', async () => {
  const urls = [galera.url, await single.createDatabase()];
  const config = configFrom({ port: 0, redisPort: null, logLevel: 'silent' });
  const gw = await startServer(config, urls, createLogger('silent'));
  const c = new HttpClient(gw.port);
  const acked = new Map<string, number>();
  try {
    for (let i = 0; i < 300; i++) acked.set(`g:${i}`, Number((await c.put(`g:${i}`, `v${i}`)).json().version));
    let running = true;
    const load = (async () => {
      for (let n = 0; running; n++) await c.put(`busy:${n % 20}`, `n${n}`);
    })();
    const { dir, manifest } = await takeBackup(urls, work);
    running = false;
    await load;
    const nodes = shardNodes(galera.url);
    const g = manifest.shards.find((s) => s.url.includes('|'))!;
    const last = new URL(nodes[nodes.length - 1]);
    assert.equal(g.node, `${last.hostname}:${last.port}`, 'read from the last Synced node, not the writer');
    assert.equal(g.binlog, null, 'Galera nodes keep no binlog');
    await assert.rejects(
      restoreBackup(dir, [await single.createDatabase(), await single.createDatabase()], { at: Date.now(), binlogs: work }),
      /kept no binlog/,
    );

    const targets = [await single.createDatabase(), await single.createDatabase()];
    await restoreBackup(dir, targets);
    const gw2 = await startServer(config, targets, createLogger('silent'));
    const c2 = new HttpClient(gw2.port);
    try {
      for (const [key, version] of acked) {
        const r = await c2.get(key);
        assert.equal(r.status, 200, key);
        assert.equal(etagVersion(r), version, `${key} version`);
      }
    } finally {
      c2.close();
      await gw2.close();
    }
  } finally {
    c.close();
    await gw.close();
  }
});
