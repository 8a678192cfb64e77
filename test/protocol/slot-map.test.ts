/**
 * Tests src/protocol/slot-map.ts: CRC16/XMODEM against its check value and an independent
 * bit-by-bit implementation, slots that match Redis Cluster's for the same key bytes (so any client
 * can route), stability of slots and of the even map, and validation of maps built from ranges.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { crc16, slotOf, SlotMap, SLOT_COUNT } from '../../src/protocol/slot-map';

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

test('slots are the same as Redis Cluster computes for the same bytes (no hash tags)', () => {
  // Values from Redis `CLUSTER KEYSLOT`.
  assert.equal(slotOf(Buffer.from('foo')), 12182);
  assert.equal(slotOf(Buffer.from('bar')), 5061);
  assert.equal(slotOf(Buffer.from('hello')), 866);
  assert.equal(slotOf(Buffer.from('123456789')), 0x31c3 % SLOT_COUNT);
  // kvsql has no hash tags: braces are ordinary key bytes.
  assert.equal(slotOf(Buffer.from('{user1000}.following')), crc16Reference(Buffer.from('{user1000}.following')) % SLOT_COUNT);
  assert.notEqual(slotOf(Buffer.from('{user1000}.following')), slotOf(Buffer.from('user1000')));
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
