/**
 * Owns routing: key -> hash slot -> shard. Relies on nothing. Pure: no I/O.
 *
 * slot = CRC16/XMODEM(hashed bytes) mod 16384: the same function, slot count and hash tags as
 * Redis Cluster, so any client in any language can compute it. Which bytes are hashed is a
 * property of the store, recorded in every shard (kv_shard.hash_rule, DESIGN.md §4):
 *
 *   HASH_TAGS (stores created since hash tags):  if the key has a '{' and a '}' after it with at
 *     least one byte between, only the bytes between the first '{' and the first '}' after it:
 *       {user1000}.following -> "user1000"   foo{}{bar} -> whole key   foo{{bar}}zap -> "{bar"
 *   HASH_WHOLE_KEY (stores created before):      the whole key. `kvsql hashtags enable` switches.
 *
 * So keys with one tag share a slot, hence a shard, and a transaction or script may name them
 * all. The slot map is an array of 16384 shard indexes:
 *
 *   slot:   0 ........ 8191 | 8192 ....... 16383
 *   shard:  0               | 1                      (default map for 2 shards: contiguous ranges)
 *
 * Moving a slot between shards changes one entry; the map is a value (`SlotMap`) so it can be
 * persisted, compared and versioned. No gateway owns it: each shard records the slots it owns
 * (kv_slots, an epoch per slot), gateways build their routes from those answers (resolveOwners),
 * and an actor refuses an op on a slot its shard does not own (WRONG_SHARD), so a gateway with an
 * old route is corrected, never served from the wrong shard.
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

/** CRC16/XMODEM (poly 0x1021, init 0) of bytes[start, end): crc16("123456789") === 0x31c3. */
export function crc16(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = 0;
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ bytes[i]) & 0xff];
  return crc;
}

/** The hashing rule of a store, as kv_shard.hash_rule records it in every shard. */
export const HASH_WHOLE_KEY = 0;
export const HASH_TAGS = 1;
/** `kvsql hashtags enable` is moving rows (or was interrupted): no gateway serves the store. */
export const HASH_SWITCHING = 2;
export const HASH_RULE_NAMES: Record<number, string> = { 0: 'whole key', 1: 'hash tags', 2: 'switching to hash tags' };

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/**
 * The key's slot. `hashTags`: the store's rule is HASH_TAGS (the default: new stores), else the
 * whole key is hashed. Allocates nothing (no subarray) and reads a key without '{' once: it runs
 * once per op in the gateway and in the actor.
 *
 *   key:  b0 b1 ... b(i-1) '{' t ... t '}' ...
 *         └ CRC while no '{' ┘   └─ tag ─┘      a tag (>= 1 byte): CRC of the tag alone
 *                                               no tag: the CRC goes on from '{' to the end
 */
export function slotOf(key: Uint8Array, hashTags = true): number {
  const n = key.length;
  let crc = 0;
  let i = 0;
  if (hashTags) {
    for (; i < n; i++) {
      const b = key[i];
      if (b === OPEN_BRACE) break;
      crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ b) & 0xff];
    }
    if (i < n) {
      let close = i + 1;
      while (close < n && key[close] !== CLOSE_BRACE) close++;
      if (close < n && close > i + 1) return crc16(key, i + 1, close) & (SLOT_COUNT - 1);
    }
  }
  for (; i < n; i++) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ key[i]) & 0xff];
  return crc & (SLOT_COUNT - 1);
}

/** True when the key's slot differs between the two rules (the rows `kvsql hashtags enable` moves). */
export function tagChangesSlot(key: Uint8Array): boolean {
  return slotOf(key, true) !== slotOf(key, false);
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

  shardOf(key: Uint8Array, hashTags = true): number {
    return this.slots[slotOf(key, hashTags)];
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
    return JSON.stringify(
      this.toRanges()
        .filter((r) => r[2] === shard)
        .map((r) => [r[0], r[1]]),
    );
  }
}

/*
 * Slot ownership as stored in each shard's kv_slots (DESIGN.md §10). Per slot and shard:
 *
 *   (no row) ──move in──> IMPORTING ──flip──> OWNED ──start──> COPYING ──fence──> FENCED ──flip──> MOVED
 *                          (not served)        (r/w)           (r/w, log)        (r, w held)      (redirect)
 *
 * A move of slot s from A to B at epoch e: B IMPORTING(e+1); A COPYING; copy + catch-up;
 * A FENCED; final catch-up; A MOVED(e+1, peer B); B OWNED(e+1). At most one shard serves s at
 * any moment, and the rows always name one owner: the serving shard, or when none serves (between
 * A MOVED and B OWNED), the MOVED row's peer at the highest epoch.
 */
export const SLOT_OWNED = 1;
export const SLOT_COPYING = 2;
export const SLOT_FENCED = 3;
export const SLOT_MOVED = 4;
export const SLOT_IMPORTING = 5;
/** States in which a shard answers reads of the slot. */
export const SERVED_STATES = [SLOT_OWNED, SLOT_COPYING, SLOT_FENCED];
export const STATE_NAMES: Record<number, string> = { 1: 'owned', 2: 'copying', 3: 'fenced', 4: 'moved', 5: 'importing' };

/** One shard's kv_slots and kv_peers, as its actor reports them. */
export interface ShardOwnership {
  /** kv_shard.shard_index, or null for a database not (yet) part of a store. */
  shardIndex: number | null;
  /** kv_shard.hash_rule (HASH_*), or null for a database not (yet) part of a store. */
  hashRule: number | null;
  /** Flattened [slot, state, epoch, peer (-1 none)] rows. */
  slots: number[];
  /** [shardIndex, url] of other shards this one has heard of. */
  peers: Array<[number, string]>;
  /** The mover's last progress report stored on this shard, if any. */
  progress: MoveProgress | null;
}

/** A mover's progress, as it stores it in kv_move_progress on every shard it uses. */
export interface MoveProgress {
  state: 'running' | 'done' | 'failed';
  slotsTotal: number;
  slotsDone: number;
  rowsCopied: number;
  startedAt: number;
  updatedAt: number;
  pauseP99Ms: number;
}

/** Where each slot is routed: a shard index per slot (-1: nobody known), and the highest epoch. */
export interface ResolvedMap {
  owner: Int32Array;
  epoch: number;
  /** Slots in the middle of a move (copying/fenced/importing anywhere). */
  moving: number;
}

/**
 * The routing table from every reachable shard's rows. A slot goes to the shard that serves it
 * (owned/copying/fenced) with the highest epoch; if none serves it (a flip in progress), to the
 * peer named by the highest-epoch MOVED row, which is the importing target: it redirects until
 * the flip completes, and the gateway retries.
 */
export function resolveOwners(shards: ShardOwnership[]): ResolvedMap {
  const owner = new Int32Array(SLOT_COUNT).fill(-1);
  const bestServe = new Float64Array(SLOT_COUNT).fill(-1);
  const bestMoved = new Float64Array(SLOT_COUNT).fill(-1);
  const movedTo = new Int32Array(SLOT_COUNT).fill(-1);
  const movingSet = new Uint8Array(SLOT_COUNT);
  let epoch = 0;
  for (const sh of shards) {
    if (sh.shardIndex === null) continue;
    const r = sh.slots;
    for (let i = 0; i < r.length; i += 4) {
      const slot = r[i],
        state = r[i + 1],
        e = r[i + 2],
        peer = r[i + 3];
      if (e > epoch) epoch = e;
      if (state === SLOT_COPYING || state === SLOT_FENCED || state === SLOT_IMPORTING) movingSet[slot] = 1;
      if (SERVED_STATES.includes(state)) {
        if (e > bestServe[slot]) {
          bestServe[slot] = e;
          owner[slot] = sh.shardIndex;
        }
      } else if (state === SLOT_MOVED && e > bestMoved[slot]) {
        bestMoved[slot] = e;
        movedTo[slot] = peer;
      }
    }
  }
  let moving = 0;
  for (let s = 0; s < SLOT_COUNT; s++) {
    if (owner[s] === -1 || bestMoved[s] > bestServe[s]) owner[s] = movedTo[s];
    moving += movingSet[s];
  }
  return { owner, epoch, moving };
}
