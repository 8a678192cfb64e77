/**
 * Owns routing: key -> hash slot -> shard. Relies on nothing. Pure: no I/O.
 *
 * slot = CRC16/XMODEM(key bytes) mod 16384 — the same function and slot count as Redis Cluster
 * (without hash tags: kvsql has no multi-key operations, so co-location buys nothing), so any
 * client in any language can compute it. The slot map is an array of 16384 shard indexes:
 *
 *   slot:   0 ........ 8191 | 8192 ....... 16383
 *   shard:  0               | 1                      (default map for 2 shards: contiguous ranges)
 *
 * Moving a slot between shards changes one entry; the map is a value (`SlotMap`) so it can be
 * persisted, compared and versioned. Its fingerprint is stored in every shard at first start, so a
 * gateway started with a different map refuses to serve instead of reading keys from the wrong
 * shard.
 */

export const SLOT_COUNT = 16384;

const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let j = 0; j < 8; j++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

/** CRC16/XMODEM (poly 0x1021, init 0): crc16("123456789") === 0x31c3. */
export function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (let i = 0; i < bytes.length; i++) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ bytes[i]) & 0xff];
  return crc;
}

export function slotOf(key: Uint8Array): number {
  return crc16(key) & (SLOT_COUNT - 1);
}

export class SlotMap {
  readonly shardCount: number;
  private readonly slots: Uint16Array;

  private constructor(slots: Uint16Array, shardCount: number) {
    this.slots = slots;
    this.shardCount = shardCount;
  }

  /** Contiguous, near-equal slot ranges: shard i owns [floor(i*S/n), floor((i+1)*S/n)). */
  static even(shardCount: number): SlotMap {
    if (!Number.isInteger(shardCount) || shardCount < 1 || shardCount > SLOT_COUNT) {
      throw new RangeError(`shard count must be an integer in 1..${SLOT_COUNT}, got ${shardCount}`);
    }
    const slots = new Uint16Array(SLOT_COUNT);
    for (let s = 0; s < SLOT_COUNT; s++) slots[s] = Math.floor((s * shardCount) / SLOT_COUNT);
    return new SlotMap(slots, shardCount);
  }

  /** From `[[firstSlot, lastSlot, shard], ...]` covering every slot exactly once. */
  static fromRanges(ranges: ReadonlyArray<readonly [number, number, number]>, shardCount: number): SlotMap {
    const slots = new Uint16Array(SLOT_COUNT).fill(0xffff);
    for (const [first, last, shard] of ranges) {
      if (!(first >= 0 && last < SLOT_COUNT && first <= last && shard >= 0 && shard < shardCount)) {
        throw new RangeError(`bad slot range [${first}, ${last}] -> ${shard}`);
      }
      for (let s = first; s <= last; s++) {
        if (slots[s] !== 0xffff) throw new RangeError(`slot ${s} assigned twice`);
        slots[s] = shard;
      }
    }
    const missing = slots.indexOf(0xffff);
    if (missing !== -1) throw new RangeError(`slot ${missing} has no shard`);
    return new SlotMap(slots, shardCount);
  }

  shardOfSlot(slot: number): number {
    return this.slots[slot];
  }

  shardOf(key: Uint8Array): number {
    return this.slots[slotOf(key)];
  }

  /** The map as `[[firstSlot, lastSlot, shard], ...]`, the form served at /v1/slots and stored. */
  toRanges(): Array<[number, number, number]> {
    const out: Array<[number, number, number]> = [];
    let start = 0;
    for (let s = 1; s <= SLOT_COUNT; s++) {
      if (s === SLOT_COUNT || this.slots[s] !== this.slots[start]) {
        out.push([start, s - 1, this.slots[start]]);
        start = s;
      }
    }
    return out;
  }

  /** Slots owned by one shard, as ranges (stored in that shard to detect a changed map). */
  rangesOf(shard: number): string {
    return JSON.stringify(this.toRanges().filter((r) => r[2] === shard).map((r) => [r[0], r[1]]));
  }
}
