/**
 * Two gateways on the same shards: conditional writes are decided from rows locked inside the
 * transaction, so If-None-Match: * creates a key exactly once even when both gateways race to
 * create it (the loser's INSERT hits the winner's row, is retried, and then sees it).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestStore, type TestStore } from '../helpers/store';

let store: TestStore;
let secondBase: string;
before(async () => {
  store = await startTestStore({ shards: 1 });
  const second = await store.startAnotherGateway();
  secondBase = `http://127.0.0.1:${second.port}`;
});
after(() => store.close());

test('If-None-Match: * racing through two gateways creates each key exactly once', async () => {
  const keys = Array.from({ length: 40 }, (_, i) => `race-${i}`);
  const attempts: Array<Promise<{ key: string; status: number; body: string }>> = [];
  for (const key of keys) {
    for (let i = 0; i < 6; i++) {
      const base = i % 2 === 0 ? store.base : secondBase;
      const body = `${base}#${i}`;
      attempts.push(
        fetch(`${base}/v1/kv/${key}`, { method: 'PUT', body, headers: { 'if-none-match': '*' } }).then(async (r) => {
          await r.arrayBuffer();
          return { key, status: r.status, body };
        }),
      );
    }
  }
  const results = await Promise.all(attempts);
  for (const key of keys) {
    const mine = results.filter((r) => r.key === key);
    const created = mine.filter((r) => r.status === 201);
    assert.equal(created.length, 1, `${key}: exactly one create, got ${mine.map((r) => r.status).join(',')}`);
    assert.ok(
      mine.every((r) => r.status === 201 || r.status === 412),
      `${key}: only 201 or 412`,
    );
    const stored = await (await fetch(`${store.base}/v1/kv/${key}`)).text();
    assert.equal(stored, created[0].body, `${key}: the stored value is the one whose create was acknowledged`);
  }
});

test('plain PUTs racing through two gateways: one 201, the rest 200, versions all distinct', async () => {
  const puts = [];
  for (let i = 0; i < 20; i++) {
    const base = i % 2 === 0 ? store.base : secondBase;
    puts.push(
      fetch(`${base}/v1/kv/plain-race`, { method: 'PUT', body: String(i) }).then(async (r) => ({
        status: r.status,
        etag: r.headers.get('etag'),
        _: await r.text(),
      })),
    );
  }
  const res = await Promise.all(puts);
  assert.equal(res.filter((r) => r.status === 201).length, 1);
  assert.equal(res.filter((r) => r.status === 200).length, 19);
  assert.equal(new Set(res.map((r) => r.etag)).size, 20);
});
