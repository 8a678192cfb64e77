/**
 * Tests src/admin/commands through the real `kvsql` command: `kvsql slot <key>` prints the key's
 * slot (Redis Cluster's CRC16, checked against CLUSTER KEYSLOT's known answer) and the shard the
 * store's map gives it, as the gateway's /v1/slots says; and an admin command that cannot reach
 * the shards says what it tried (which shard, which host:port) and what to check.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestStore, type TestStore } from '../helpers/store';
import { cliEnv, runCli } from '../helpers/cli';
import { pickFreePort } from '../../src/embedded/local-mysqld';
import { slotOf } from '../../src/protocol/slot-map';

let store: TestStore;
before(async () => {
  store = await startTestStore({ shards: 2 });
});
after(() => store?.close());

/** The shard the gateway routes `slot` to, from GET /v1/slots. */
async function gatewayShard(slot: number): Promise<number> {
  const map = (await (await fetch(`${store.base}/v1/slots`)).json()) as { ranges: Array<[number, number, number]> };
  const range = map.ranges.find(([lo, hi]) => lo <= slot && slot <= hi);
  assert.ok(range, `slot ${slot} is in a range`);
  return range[2];
}

test('kvsql slot <key> prints its slot and the shard that serves it, as the gateways route it', async () => {
  const env = cliEnv({ KVSQL_SHARDS: store.urls.join(',') });
  // CLUSTER KEYSLOT 123456789 is 12739 in Redis; kvsql uses the same function.
  const known = await runCli(['slot', '123456789'], env);
  assert.equal(known.code, 0, known.out);
  assert.match(known.out, /^slot 12739\n/);
  // Keys on both shards (the default map gives shard 0 the low half, shard 1 the high half).
  const seen = new Set<number>();
  for (const key of ['user:42', 'a', 'b', 'c', 'd']) {
    const slot = slotOf(Buffer.from(key));
    const shard = await gatewayShard(slot);
    seen.add(shard);
    const r = await runCli(['slot', key], env);
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out, `slot ${slot}\nshard ${shard}  ${store.urls[shard]}\n`);
  }
  assert.equal(seen.size, 2, 'the keys cover both shards');
  const hex = await runCli(['slot', '--hex', '00ff'], env);
  assert.equal(hex.code, 0, hex.out);
  const slot = slotOf(Buffer.from([0x00, 0xff]));
  assert.equal(hex.out, `slot ${slot}\nshard ${await gatewayShard(slot)}  ${store.urls[await gatewayShard(slot)]}\n`);
});

test('kvsql slot: a missing, empty or bad key is a usage error; the slot is printed even with the store unreachable', async () => {
  const env = cliEnv({ KVSQL_SHARDS: store.urls.join(',') });
  for (const [args, message] of [
    [['slot'], /expected a key\nusage:/],
    [['slot', ''], /a key is 1 to 1024 bytes; this one is empty/],
    [['slot', 'k'.repeat(1025)], /this one is 1025/],
    [['slot', '--hex', 'xyz'], /--hex: "xyz" is not hex bytes/],
  ] as Array<[string[], RegExp]>) {
    const r = await runCli(args, env);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.out}`);
    assert.match(r.out, message);
  }
  const port = await pickFreePort();
  const down = await runCli(['slot', '123456789'], cliEnv({ KVSQL_EMBEDDED_BASE_PORT: String(port) }));
  assert.equal(down.code, 1, down.out);
  assert.match(down.out, /^slot 12739\n/m);
  assert.match(down.out, new RegExp(`cannot read shard mysql://root@127\\.0\\.0\\.1:${port}/kvsql at 127\\.0\\.0\\.1:${port}: connect ECONNREFUSED`));
});

test('kvsql slots status with the embedded store stopped says which ports it tried and to start kvsql', async () => {
  const port = await pickFreePort();
  const r = await runCli(['slots', 'status', `--embedded-base-port=${port}`], cliEnv({ KVSQL_EMBEDDED_SHARDS: '3' }));
  assert.equal(r.code, 1, r.out);
  assert.match(
    r.out,
    new RegExp(
      `^kvsql: cannot read shard mysql://root@127\\.0\\.0\\.1:${port}/kvsql at 127\\.0\\.0\\.1:${port}: connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\n`,
    ),
  );
  assert.ok(r.out.includes(`looked for the embedded shards on 127.0.0.1:${port}-${port + 2}`), r.out);
  assert.match(r.out, /They run only while `kvsql` \(npm start\) runs: start it first/);
});

test('kvsql slots status with an external shard down names the URL (no password) and what to check', async () => {
  const port = await pickFreePort();
  const r = await runCli(['slots', 'status'], cliEnv({ KVSQL_SHARDS: `mysql://kv:s3cret@127.0.0.1:${port}/kv` }));
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, new RegExp(`^kvsql: cannot read shard mysql://kv:\\*\\*\\*@127\\.0\\.0\\.1:${port}/kv at 127\\.0\\.0\\.1:${port}: connect ECONNREFUSED`));
  assert.match(
    r.out,
    /Check that this MySQL server is up and reachable from here .* and that KVSQL_SHARDS \(or --shards=\.\.\.\) lists the same shard URLs as the gateways\./,
  );
  assert.doesNotMatch(r.out, /s3cret/);
});
