/**
 * The embedded Galera shard (src/embedded/galera-cluster.ts) from where a new user runs it: a
 * checkout under a mode-700 directory (/root is one). The nodes must start there whenever a
 * single server would, a node with no data must join by a real rsync state transfer (SST), and a
 * node that dies at start must leave its reason (its stderr) in the error.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureGalera, ensureMysqlBinary } from '../../src/embedded/mysql-binary';
import { startGaleraShard, readGrastate, type GaleraShard } from '../../src/embedded/galera-cluster';
import { EMBEDDED_DATABASE } from '../../src/embedded/embedded-cluster';
import { onNode } from '../helpers/galera';

const logs: string[] = [];
const log = (m: string): void => {
  logs.push(m);
  if (process.env.KVSQL_TEST_LOG_LEVEL === 'debug') console.log(`galera: ${m}`);
};
const started: GaleraShard[] = [];
const dirs: string[] = [];
after(async () => {
  for (const s of started) await s.stop();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A fresh dir like /root: mode 700, owned by us (mkdtemp makes it so). */
function privateDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-private-'));
  dirs.push(dir);
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
  return dir;
}

async function start(dir: string): Promise<GaleraShard> {
  const binary = await ensureMysqlBinary(log);
  const { provider } = await ensureGalera(log);
  const shard = await startGaleraShard({ shard: 0, replicas: 3, dir, sqlBase: 0, galeraBase: 0, database: EMBEDDED_DATABASE, binary, provider, log });
  started.push(shard);
  return shard;
}

async function stop(shard: GaleraShard): Promise<void> {
  await shard.stop();
  started.splice(started.indexOf(shard), 1);
}

test('a Galera shard under a mode-700 directory starts, and a node with no data joins by rsync SST', async () => {
  const dir = path.join(privateDir(), 'checkout', 'data', 'shard-0');
  let shard = await start(dir);
  await onNode(shard.nodes[0].url, 'CREATE TABLE t (k INT PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, "before the SST")');
  await stop(shard);

  // node-2 loses its data: it is initialised afresh and must get the whole state by SST.
  const node2 = path.join(dir, 'node-2');
  fs.rmSync(node2, { recursive: true, force: true });
  shard = await start(dir);
  const rows = await onNode(shard.nodes[2].url, 'SELECT v FROM t WHERE k = 1');
  assert.deepEqual(
    rows.map((r) => r.v),
    ['before the SST'],
    'node-2 has the rows written before it lost its data',
  );
  assert.match(fs.readFileSync(path.join(node2, 'error.log'), 'utf8'), /SST.*(complete|received)/i, 'node-2 joined by a state transfer');
  assert.equal(readGrastate(node2)?.uuid, readGrastate(path.join(dir, 'node-0'))?.uuid);
  await stop(shard);
});

test('a node that dies at start leaves its reason in the error: what it printed before its error.log opened', async () => {
  const dir = path.join(privateDir(), 'shard-0');
  await stop(await start(dir));
  // The bootstrap node (the last to stop: node-0) can neither open its error.log (so it logs to
  // stderr) nor create its pid file (so it exits).
  for (const name of ['error.log', 'mysqld.pid']) {
    fs.rmSync(path.join(dir, 'node-0', name), { force: true });
    fs.mkdirSync(path.join(dir, 'node-0', name));
  }
  await assert.rejects(start(dir), (err: Error) => {
    assert.match(err.message, /galera node-0 .* did not start: exited/);
    assert.match(err.message, /error\.log \(tail\) ---\n\(empty\)/);
    assert.match(err.message, /Can't start server: can't create PID file: Is a directory/, 'why it exited, as printed on stderr');
    return true;
  });
});
