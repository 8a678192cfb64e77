/**
 * Owns the listing model shared by every door and the gateway/actor port: what one shard is asked
 * for (a key range page), what it answers, and how the pages of all shards merge into one page of
 * keys in byte order with a stateless cursor. Relies on slot-map (slot count). Pure: no I/O.
 *
 * One page of a listing, `limit` keys with `prefix`, strictly after `after`:
 *
 *   gateway ──ScanRequest──> every shard: keys in [prefix, prefixEnd), > after, live, in slots it
 *                                         serves, byte order, at most `limit` rows examined
 *   shard   ──ShardPage────> keys (served only), `upTo`: the last key it examined when it stopped
 *                            early (more may follow), null when its range is exhausted;
 *                            `served`: a bitmap of the slots it served in that read view
 *   merge: bound = min(upTo of every shard that stopped early); every key <= bound is known from
 *          every shard, so the page is the keys <= bound (duplicates dropped), first `limit` of
 *          them; cursor = the last key returned (or `bound` when fewer than `limit` fit under it),
 *          null when every shard is exhausted and everything was returned.
 *
 *   shard A keys:  a1 a2 a3 [upTo a3]          merged: a1 b1 a2 b2 a3 | b3 b4 wait for the next page
 *   shard B keys:  b1 b2 b3 b4 [exhausted]             ^ bound = a3
 *
 * What must stay true: the cursor is only a key, so it is valid on every gateway, after a restart
 * and across slot moves; every key returned is greater than the cursor it was asked after, so no
 * key is returned twice across pages; a slot that no shard served in its read view (a move's flip
 * in progress) fails `covers`, and the gateway asks again rather than miss its keys.
 */
import { KvError } from './errors';
import { SLOT_COUNT } from './slot-map';
import type { Limits } from './validate';

/** Most keys in one page, on every door (SCAN COUNT is capped to it). */
export const MAX_LIST_LIMIT = 1000;
/** Keys in a page when the caller does not say. */
export const DEFAULT_LIST_LIMIT = 100;
/**
 * Value bytes one shard puts in one page (values requested): past it the shard stops early at a
 * row boundary (at least one row), so a page of large values stays a few MiB per shard.
 */
export const MAX_PAGE_VALUE_BYTES = 4 * 1024 * 1024;

/** What the gateway asks one shard: a page of one key range. */
export interface ScanRequest {
  prefix: Uint8Array;
  /** Only keys strictly greater than this; null: from the start of the prefix. */
  after: Uint8Array | null;
  /** Examine at most this many live rows (1..MAX_LIST_LIMIT). */
  limit: number;
  /** Return values and expiries too. */
  values: boolean;
}

/** One shard's answer to a ScanRequest. */
export interface ShardPage {
  /** Keys of slots the shard served, ascending. */
  keys: Uint8Array[];
  /** With values: one per key. */
  values: Uint8Array[] | null;
  expiresAt: Array<number | null> | null;
  /** The last key examined when the shard stopped early (more may follow); null: range exhausted. */
  upTo: Uint8Array | null;
  /** Bitmap of the slots the shard served in the read view of its rows (SLOT_COUNT bits). */
  served: Uint8Array;
}

/** A page of the whole store. */
export interface ListPage {
  keys: Uint8Array[];
  values: Uint8Array[] | null;
  expiresAt: Array<number | null> | null;
  /** Pass as `after` for the next page; null: the listing is complete. */
  next: Uint8Array | null;
}

/**
 * A listing request as a door decoded it, checked with the same messages on every door: prefix
 * and after at most maxKeyBytes (after may be empty: from the start), limit an integer in
 * 1..MAX_LIST_LIMIT (undefined: DEFAULT_LIST_LIMIT).
 */
export function checkListRequest(prefix: Uint8Array, after: Uint8Array | null, limit: unknown, values: boolean, limits: Limits): ScanRequest {
  if (prefix.length > limits.maxKeyBytes) throw new KvError('KV_ERR_KEY_TOO_LONG', `prefix is ${prefix.length} bytes, the limit is ${limits.maxKeyBytes}`);
  if (after !== null && after.length > limits.maxKeyBytes)
    throw new KvError('KV_ERR_KEY_TOO_LONG', `after is ${after.length} bytes, the limit is ${limits.maxKeyBytes}`);
  const n = limit === undefined ? DEFAULT_LIST_LIMIT : limit;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_LIST_LIMIT) {
    throw new KvError('KV_ERR_BAD_REQUEST', `limit must be an integer in 1..${MAX_LIST_LIMIT}, got ${String(limit).slice(0, 40)}`);
  }
  return { prefix, after: after !== null && after.length > 0 ? after : null, limit: n, values };
}

/** The bitmap of a served set. */
export function servedBitmap(slots: Iterable<number>): Uint8Array {
  const bits = new Uint8Array(SLOT_COUNT / 8);
  for (const s of slots) bits[s >> 3] |= 1 << (s & 7);
  return bits;
}

/** True when every slot is served in at least one of the bitmaps. */
export function covers(bitmaps: readonly Uint8Array[]): boolean {
  for (let i = 0; i < SLOT_COUNT / 8; i++) {
    let b = 0;
    for (const m of bitmaps) b |= m[i];
    if (b !== 0xff) return false;
  }
  return true;
}

/**
 * The smallest key greater than every key with `prefix`: the prefix with trailing 0xff bytes
 * dropped and its last byte incremented; null when there is none (empty, or all 0xff).
 */
export function prefixEnd(prefix: Uint8Array): Buffer | null {
  let n = prefix.length;
  while (n > 0 && prefix[n - 1] === 0xff) n--;
  if (n === 0) return null;
  const end = Buffer.from(prefix.subarray(0, n));
  end[n - 1]++;
  return end;
}

/** Byte order, as MySQL's VARBINARY compares (memcmp, then length). */
export const compareBytes = (a: Uint8Array, b: Uint8Array): number => Buffer.compare(a, b);

/**
 * Merges one page from every shard (see the module comment). `limit` is the page size asked of
 * each shard. Pure; the pages are not modified.
 */
export function mergePages(pages: readonly ShardPage[], limit: number, values: boolean): ListPage {
  let bound: Uint8Array | null = null;
  for (const p of pages) if (p.upTo !== null && (bound === null || compareBytes(p.upTo, bound) < 0)) bound = p.upTo;
  const all: Array<{ k: Uint8Array; p: ShardPage; i: number }> = [];
  for (const p of pages) {
    for (let i = 0; i < p.keys.length; i++) {
      if (bound !== null && compareBytes(p.keys[i], bound) > 0) break;
      all.push({ k: p.keys[i], p, i });
    }
  }
  all.sort((x, y) => compareBytes(x.k, y.k));
  const out: ListPage = { keys: [], values: values ? [] : null, expiresAt: values ? [] : null, next: null };
  let last: Uint8Array | null = null;
  let more = false;
  for (const e of all) {
    // The same key from two shards: both served its slot in their read views (a flip between them).
    if (last !== null && compareBytes(last, e.k) === 0) continue;
    if (out.keys.length === limit) {
      more = true;
      break;
    }
    out.keys.push(e.k);
    if (values) {
      out.values!.push(e.p.values![e.i]);
      out.expiresAt!.push(e.p.expiresAt![e.i]);
    }
    last = e.k;
  }
  if (more) out.next = last;
  else if (bound !== null) out.next = out.keys.length === limit ? last : bound;
  return out;
}
