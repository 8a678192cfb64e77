/**
 * Tests src/protocol/slot-map.ts: CRC16/XMODEM against its check value and an independent
 * bit-by-bit implementation, slots that match Redis Cluster's for the same key bytes, hash tags
 * included (Redis's documented examples, and redis-server's CLUSTER KEYSLOT on random keys), stability of slots and of the even map, and validation of maps built from ranges.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { crc16, slotOf, SlotMap, SLOT_COUNT, tagChangesSlot } from '../../src/protocol/slot-map';
import { waitFor } from '../helpers/wait';

/** CRC16/XMODEM the slow way: poly 0x1021, init 0, no reflection, no final xor. */
function crc16Reference(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

test('crc16("123456789") is the CRC16/XMODEM check value 0x31c3', () => {
  assert.equal(crc16(Buffer.from('123456789')), 0x31c3);
  assert.equal(crc16(new Uint8Array(0)), 0);
});

test('crc16 matches a bit-by-bit reference on every single byte and on random inputs', () => {
  for (let b = 0; b < 256; b++) assert.equal(crc16(Uint8Array.of(b)), crc16Reference(Uint8Array.of(b)), `byte ${b}`);
  for (let i = 0; i < 500; i++) {
    const bytes = crypto.randomBytes(i % 70);
    assert.equal(crc16(bytes), crc16Reference(bytes));
  }
});

test('slots are the same as Redis Cluster computes for the same bytes (whole keys)', () => {
  // Values from Redis `CLUSTER KEYSLOT`.
  assert.equal(slotOf(Buffer.from('foo')), 12182);
  assert.equal(slotOf(Buffer.from('bar')), 5061);
  assert.equal(slotOf(Buffer.from('hello')), 866);
  assert.equal(slotOf(Buffer.from('123456789')), 0x31c3 % SLOT_COUNT);
});

test("hash tags: Redis Cluster's documented examples", () => {
  const slot = (k: string, tags = true) => slotOf(Buffer.from(k), tags);
  const crc = (k: string) => crc16Reference(Buffer.from(k)) % SLOT_COUNT;
  assert.equal(slot('{user1000}.following'), slot('{user1000}.followers'));
  assert.equal(slot('{user1000}.following'), crc('user1000'));
  assert.equal(slot('foo{}{bar}'), crc('foo{}{bar}'), 'an empty tag: the whole key');
  assert.equal(slot('foo{{bar}}zap'), crc('{bar'), 'the first { and the first } after it');
  assert.equal(slot('foo{bar}{zap}'), crc('bar'), 'only the first tag');
  assert.equal(slot('no{brace'), crc('no{brace'));
  assert.equal(slot('no}brace{'), crc('no}brace{'));
  assert.equal(slot('}{x}'), crc('x'));
  assert.equal(slot('{}'), crc('{}'));
  assert.equal(slot('{'), crc('{'));
  // The whole-key rule (stores created before hash tags) hashes braces as ordinary bytes.
  assert.equal(slot('{user1000}.following', false), crc('{user1000}.following'));
  assert.equal(tagChangesSlot(Buffer.from('{user1000}.following')), true);
  assert.equal(tagChangesSlot(Buffer.from('foo{}{bar}')), false);
  assert.equal(tagChangesSlot(Buffer.from('plain')), false);
  // A view into a larger buffer: the tag is found in its own bytes only.
  const padded = Buffer.from('{a}x{user1000}.following}');
  assert.equal(slotOf(padded.subarray(4, 24)), crc('user1000'));
});

/** A throwaway `redis-server --cluster-enabled yes` on a unix socket, or null when none is installed. */
async function startClusterRedis(): Promise<{ keyslots(keys: Buffer[]): Promise<number[]>; stop(): void } | null> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-keyslot-'));
  const sock = path.join(dir, 'redis.sock');
  const proc = spawn('redis-server', ['--port', '0', '--unixsocket', sock, '--cluster-enabled', 'yes', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  });
  const spawned = await new Promise<boolean>((resolve) => {
    proc.once('error', () => resolve(false));
    proc.once('spawn', () => resolve(true));
  });
  const stop = () => {
    proc.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  if (!spawned) {
    stop();
    return null;
  }
  await waitFor(() => fs.existsSync(sock), { timeoutMs: 10_000 });
  return {
    stop,
    keyslots: (keys) =>
      new Promise((resolve, reject) => {
        const conn = net.createConnection(sock);
        const out: number[] = [];
        let buf = '';
        conn.on('error', reject);
        conn.on('data', (d) => {
          buf += d.toString('latin1');
          let nl: number;
          while ((nl = buf.indexOf('\r\n')) !== -1) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 2);
            if (line[0] !== ':') return reject(new Error(`unexpected reply ${line}`));
            out.push(Number(line.slice(1)));
          }
          if (out.length === keys.length) {
            conn.end();
            resolve(out);
          }
        });
        const frames = keys.map((k) => Buffer.concat([Buffer.from(`*3\r\n$7\r\nCLUSTER\r\n$7\r\nKEYSLOT\r\n$${k.length}\r\n`), k, Buffer.from('\r\n')]));
        conn.write(Buffer.concat(frames));
      }),
  };
}

test('hash tags: the same slots as redis-server 7 CLUSTER KEYSLOT, on keys with braces anywhere', async (t) => {
  const redis = await startClusterRedis();
  if (redis === null) return t.skip('redis-server is not installed');
  t.after(() => redis.stop());
  const parts = ['{', '}', '{}', 'a', 'user1000', '.', crypto.randomBytes(3).toString('latin1')];
  const keys: Buffer[] = [Buffer.from('{user1000}.following'), Buffer.from('foo{}{bar}'), Buffer.from('foo{{bar}}zap'), Buffer.from('foo{bar}{zap}')];
  for (let i = 0; i < 3000; i++) {
    const n = 1 + (i % 6);
    const bits: Buffer[] = [];
    for (let j = 0; j < n; j++) bits.push(i % 5 === 0 ? crypto.randomBytes(1 + (j % 3)) : Buffer.from(parts[crypto.randomInt(parts.length)], 'latin1'));
    keys.push(Buffer.concat(bits));
  }
  const theirs = await redis.keyslots(keys);
  for (let i = 0; i < keys.length; i++) assert.equal(slotOf(keys[i]), theirs[i], `key ${keys[i].toString('hex')}`);
});

test('a slot depends only on the key bytes: stable across calls, buffers and copies, always in range', () => {
  for (let i = 0; i < 1000; i++) {
    const key = crypto.randomBytes(1 + (i % 40));
    const slot = slotOf(key);
    assert.ok(Number.isInteger(slot) && slot >= 0 && slot < SLOT_COUNT);
    assert.equal(slotOf(Buffer.from(key)), slot);
    assert.equal(slotOf(new Uint8Array(key)), slot);
    // A view into a larger buffer hashes only its own bytes.
    const padded = Buffer.concat([Buffer.from('xx'), key, Buffer.from('yy')]);
    assert.equal(slotOf(padded.subarray(2, 2 + key.length)), slot);
  }
});

test('the even map gives each shard one contiguous, near-equal range', () => {
  assert.deepEqual(SlotMap.even(1).toRanges(), [[0, 16383, 0]]);
  assert.deepEqual(SlotMap.even(2).toRanges(), [
    [0, 8191, 0],
    [8192, 16383, 1],
  ]);
  assert.deepEqual(SlotMap.even(3).toRanges(), [
    [0, 5461, 0],
    [5462, 10922, 1],
    [10923, 16383, 2],
  ]);
  for (const n of [1, 2, 3, 4, 7, 16, 64]) {
    const ranges = SlotMap.even(n).toRanges();
    assert.equal(ranges.length, n);
    let next = 0;
    for (const [i, [first, last, shard]] of ranges.entries()) {
      assert.equal(shard, i);
      assert.equal(first, next);
      next = last + 1;
      const size = last - first + 1;
      assert.ok(Math.abs(size - SLOT_COUNT / n) <= 1, `shard ${i} of ${n} has ${size} slots`);
    }
    assert.equal(next, SLOT_COUNT);
  }
});

test('shardOf routes by slot and is the same for two maps built the same way', () => {
  const a = SlotMap.even(4);
  const b = SlotMap.even(4);
  for (let i = 0; i < 500; i++) {
    const key = Buffer.from(`key-${i}`);
    const shard = a.shardOf(key);
    assert.equal(b.shardOf(key), shard);
    assert.equal(a.shardOfSlot(slotOf(key)), shard);
    assert.equal(shard, Math.floor((slotOf(key) * 4) / SLOT_COUNT));
  }
  // Known routing for 2 shards: "foo" (12182) on shard 1, "bar" (5061) on shard 0.
  assert.equal(SlotMap.even(2).shardOf(Buffer.from('foo')), 1);
  assert.equal(SlotMap.even(2).shardOf(Buffer.from('bar')), 0);
});

test("fromRanges round-trips toRanges, and rangesOf lists one shard's slots", () => {
  const ranges: Array<[number, number, number]> = [
    [0, 99, 1],
    [100, 8000, 0],
    [8001, 16383, 1],
  ];
  const map = SlotMap.fromRanges(ranges, 2);
  assert.deepEqual(map.toRanges(), ranges);
  assert.equal(map.shardOfSlot(50), 1);
  assert.equal(map.shardOfSlot(100), 0);
  assert.equal(
    map.rangesOf(1),
    JSON.stringify([
      [0, 99],
      [8001, 16383],
    ]),
  );
  assert.equal(map.rangesOf(0), JSON.stringify([[100, 8000]]));
  assert.equal(SlotMap.fromRanges(SlotMap.even(5).toRanges(), 5).rangesOf(3), SlotMap.even(5).rangesOf(3));
});

test('maps that leave a slot without a shard, assign one twice, or name a bad shard are refused', () => {
  assert.throws(() => SlotMap.fromRanges([[0, 16382, 0]], 1), /slot 16383 has no shard/);
  assert.throws(
    () =>
      SlotMap.fromRanges(
        [
          [0, 9000, 0],
          [9000, 16383, 1],
        ],
        2,
      ),
    /slot 9000 assigned twice/,
  );
  assert.throws(() => SlotMap.fromRanges([[0, 16383, 2]], 2), RangeError);
  assert.throws(() => SlotMap.fromRanges([[0, 16384, 0]], 1), RangeError);
  assert.throws(() => SlotMap.fromRanges([[10, 5, 0]], 1), RangeError);
  assert.throws(() => SlotMap.fromRanges([[-1, 16383, 0]], 1), RangeError);
  for (const n of [0, -1, 1.5, NaN, SLOT_COUNT + 1]) assert.throws(() => SlotMap.even(n), RangeError, `even(${n})`);
});
