/**
 * Tests src/shard-actor/node-selector.ts without a Galera cluster (the HA tests run one): the
 * state read from wsrep status variables, and that a list of plain servers (not one Galera
 * cluster) or of dead ones yields no writer, so the shard is reported down rather than writes
 * going to independent servers.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { NodeSelector, stateOf } from '../../src/shard-actor/node-selector';
import { pickFreePort } from '../../src/embedded/local-mysqld';
import { startTestServer, type TestServer } from '../helpers/mysql';

let server: TestServer;
before(async () => {
  server = await startTestServer();
});
after(() => server.stop());

const vars = (o: Record<string, string>) => new Map(Object.entries(o));

test('stateOf: Synced, ready and Primary is the only healthy state', () => {
  const synced = { wsrep_cluster_status: 'Primary', wsrep_ready: 'ON', wsrep_local_state: '4' };
  assert.equal(stateOf(vars(synced)), 'synced');
  assert.equal(stateOf(vars({ ...synced, wsrep_local_state: '2' })), 'donor');
  assert.equal(stateOf(vars({ ...synced, wsrep_local_state: '1' })), 'joining');
  assert.equal(stateOf(vars({ ...synced, wsrep_local_state: '3' })), 'joined');
  assert.equal(stateOf(vars({ ...synced, wsrep_ready: 'OFF' })), 'not-ready');
  assert.equal(stateOf(vars({ ...synced, wsrep_cluster_status: 'non-Primary' })), 'non-primary');
  assert.equal(stateOf(vars({})), 'not-galera');
});

test('a list of plain servers or dead ones has no writer: nothing is written to independent servers', async (t) => {
  const dead = `mysql://root@127.0.0.1:${await pickFreePort()}/x`;
  const urls = [await server.createDatabase(), await server.createDatabase(), dead];
  const switches: Array<[number, number, string]> = [];
  const selector = new NodeSelector(
    urls,
    { probeIntervalMs: 100, probeTimeoutMs: 1000, failbackMs: 1000 },
    (from, to, why) => switches.push([from, to, why]),
    () => undefined,
  );
  t.after(() => selector.stop());
  await selector.refresh();
  const stats = selector.stats();
  assert.equal(stats.writer, -1);
  // MariaDB without wsrep still reports wsrep_cluster_status = 'Disconnected'; MySQL has no wsrep_*.
  const states = stats.nodes.map((n) => n.state);
  for (const st of states.slice(0, 2)) assert.ok(st === 'non-primary' || st === 'not-galera', `plain server: ${st}`);
  assert.equal(states[2], 'down');
  assert.deepEqual(switches, [], 'no writer was ever chosen');
});
