/**
 * Tests per-key ordering under concurrency, through HTTP on a real store (src/gateway +
 * src/shard-actor's key scheduler and batched transactions): 64 connections writing one key end
 * with the value of the last acknowledged write, versions strictly increasing in acknowledgement
 * order; mixed puts and deletes end in the state of the last acknowledged operation; and 16
 * clients doing read-modify-write with If-Match (retrying on 412) lose no increment.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestStore, type TestStore } from '../helpers/store';
import { HttpClient, etagVersion } from '../helpers/http-client';

let store: TestStore;
before(async () => {
  store = await startTestStore({ shards: 2 });
});
after(() => store?.close());

/** `n` clients with one keep-alive connection each, all opened before the test starts. */
async function connections(n: number): Promise<HttpClient[]> {
  const clients = Array.from({ length: n }, () => new HttpClient(store.port, 1));
  await Promise.all(clients.map(async (c) => assert.equal((await c.request('GET', '/healthz')).status, 200)));
  for (const c of clients) {
    const open = Object.values(c.agent.freeSockets).flat().length + Object.values(c.agent.sockets).flat().length;
    assert.equal(open, 1, 'each client holds its own connection');
  }
  return clients;
}

interface Ack {
  client: number;
  value: string;
  version: number;
  status: number;
}

test('64 connections writing one key: versions strictly increase in ack order and the last ack is the final value', async (t) => {
  const clients = await connections(64);
  t.after(() => clients.forEach((c) => c.close()));
  const ROUNDS = 8;
  const acks: Ack[] = [];
  await Promise.all(
    clients.map(async (c, client) => {
      for (let i = 0; i < ROUNDS; i++) {
        const value = `client ${client} write ${i}`;
        const r = await c.put('hot', value);
        assert.ok(r.status === 200 || r.status === 201, `${r.status} ${r.text()}`);
        // Recorded as the reply is delivered: this is the acknowledgement order.
        acks.push({ client, value, version: etagVersion(r), status: r.status });
      }
    }),
  );
  assert.equal(acks.length, 64 * ROUNDS);
  for (let i = 1; i < acks.length; i++) {
    assert.ok(acks[i].version > acks[i - 1].version, `ack ${i} has version ${acks[i].version} after ${acks[i - 1].version}`);
  }
  const last = acks[acks.length - 1];
  const got = await clients[0].get('hot');
  assert.equal(got.status, 200);
  assert.equal(got.text(), last.value);
  assert.equal(etagVersion(got), last.version);
  // Exactly one write created the key (201), and it was the first acknowledged; every other replaced it (200).
  const created = acks.filter((a) => a.status === 201);
  assert.equal(created.length, 1, `${created.length} writes answered 201 Created`);
  assert.equal(acks[0].status, 201, 'the first acknowledged write is the one that created the key');
  assert.equal(acks.filter((a) => a.status === 200).length, acks.length - 1);
});

test('32 connections mixing puts and deletes on one key: the final state is that of the last acknowledged operation', async (t) => {
  const clients = await connections(32);
  t.after(() => clients.forEach((c) => c.close()));
  type Op = { kind: 'put'; value: string; version: number; status: number } | { kind: 'del'; status: number };
  const acks: Op[] = [];
  await Promise.all(
    clients.map(async (c, client) => {
      for (let i = 0; i < 10; i++) {
        if ((client + i) % 3 === 0) {
          const r = await c.del('mixed');
          assert.ok(r.status === 204 || r.status === 404, `${r.status}`);
          acks.push({ kind: 'del', status: r.status });
        } else {
          const value = `${client}/${i}`;
          const r = await c.put('mixed', value);
          assert.ok(r.status === 200 || r.status === 201);
          acks.push({ kind: 'put', value, version: etagVersion(r), status: r.status });
        }
      }
    }),
  );
  // Replaying the acks in order explains every reply: a put creates (201) only after a delete,
  // a delete finds the key (204) only after a put.
  let exists = false;
  let previous = 0;
  for (const [i, a] of acks.entries()) {
    if (a.kind === 'put') {
      assert.equal(a.status, exists ? 200 : 201, `ack ${i}: put answered ${a.status} with the key ${exists ? 'present' : 'absent'}`);
      assert.ok(a.version > previous, 'put versions must increase in ack order');
      previous = a.version;
      exists = true;
    } else {
      assert.equal(a.status, exists ? 204 : 404, `ack ${i}: delete answered ${a.status} with the key ${exists ? 'present' : 'absent'}`);
      exists = false;
    }
  }
  const last = acks[acks.length - 1];
  const got = await clients[0].get('mixed');
  if (last.kind === 'put') {
    assert.equal(got.status, 200);
    assert.equal(got.text(), last.value);
    assert.equal(etagVersion(got), last.version);
  } else {
    assert.equal(got.status, 404, 'the last acknowledged operation was a delete');
  }
});

test('16 clients incrementing one counter with If-Match and retry on 412 lose no increment', async (t) => {
  const clients = await connections(16);
  t.after(() => clients.forEach((c) => c.close()));
  assert.equal((await clients[0].put('counter', '0')).status, 201);
  const EACH = 6;
  let successes = 0;
  let conflicts = 0;
  const versions = new Set<number>();
  await Promise.all(
    clients.map(async (c) => {
      for (let done = 0; done < EACH;) {
        const got = await c.get('counter');
        assert.equal(got.status, 200);
        const n = Number(got.text());
        const r = await c.put('counter', String(n + 1), '', { 'if-match': String(got.headers.etag) });
        if (r.status === 200) {
          successes++;
          done++;
          const v = etagVersion(r);
          assert.ok(!versions.has(v), `version ${v} issued twice`);
          versions.add(v);
        } else {
          assert.equal(r.status, 412, `${r.status} ${r.text()}`);
          conflicts++;
        }
      }
    }),
  );
  assert.equal(successes, 16 * EACH);
  const final = await clients[0].get('counter');
  assert.equal(Number(final.text()), successes, `counter is ${final.text()} after ${successes} successful increments (${conflicts} conflicts)`);
  assert.equal(etagVersion(final), Math.max(...versions));
  assert.ok(conflicts > 0, 'the clients never conflicted: the test did not exercise If-Match');
});

test('/metrics counts the hand-offs to the actors: every op in a frame, several ops per frame when 64 clients send at once', async (t) => {
  const clients = await connections(64);
  t.after(() => clients.forEach((c) => c.close()));
  const read = async () => {
    const text = (await clients[0].request('GET', '/metrics')).text();
    const sum = (re: RegExp) => [...text.matchAll(re)].reduce((n, m) => n + Number(m[1]), 0);
    return {
      ops: sum(/^kvsql_port_ops_total\{shard="\d+"\} (\d+)$/gm),
      to: sum(/^kvsql_port_frames_total\{shard="\d+",direction="to_actor"\} (\d+)$/gm),
      from: sum(/^kvsql_port_frames_total\{shard="\d+",direction="from_actor"\} (\d+)$/gm),
    };
  };
  const before = await read();
  await Promise.all(clients.map(async (c, i) => assert.ok([200, 201].includes((await c.put(`handoff-${i}`, 'v')).status))));
  await Promise.all(clients.map(async (c, i) => assert.equal((await c.get(`handoff-${i}`)).text(), 'v')));
  const after = await read();
  assert.equal(after.ops - before.ops, 128, 'every PUT and GET was handed over once (/metrics itself is not an op)');
  assert.ok(after.to - before.to >= 2 && after.to - before.to < 64, `frames to the actors: ${after.to - before.to} for 128 ops`);
  assert.ok(after.from - before.from >= 2, 'replies came back in frames');
});
