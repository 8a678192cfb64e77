/**
 * Owns what the change feed's parts share: event types, the row shape that crosses the
 * MessagePort, and the resume cursor's encoding. Relies on errors.ts. Pure: no I/O, no timers.
 *
 * A cursor is a position in every shard's kv_feed: shard index (kv_shard, permanent) -> an id
 * such that every event of that shard with id <= it was delivered (or is dead). On the wire it is
 * base64url of a list of unsigned LEB128 varints:
 *
 *   [version=1] [n] [shardIndex, position] x n
 *
 * It never names a gateway, a worker or a node, so it outlives gateway restarts, Galera writer
 * switches (ids replicate with the rows) and slot moves (a moved key's later events are in its new
 * shard's feed, which the cursor covers too).
 */
import { KvError } from './errors';

export const FEED_FILLER = 0;
export const FEED_PUT = 1;
export const FEED_DEL = 2;
export const FEED_EXPIRE = 3;
export const FEED_PERSIST = 4;
export const FEED_EXPIRED = 5;
/** Puts made by an increment, a float increment, an append, a setrange (for Redis's event names). */
export const FEED_INCR = 6;
export const FEED_INCR_FLOAT = 7;
export const FEED_APPEND = 8;
export const FEED_SETRANGE = 9;

/** Bits on a put's type: the key did not exist (Redis's `new`); the op set a TTL (SET ... EX: `expire` too). */
export const FEED_CREATED = 0x10;
export const FEED_WITH_TTL = 0x20;
/** The kind of change in a type code, without those bits. */
export const FEED_KIND = 0x0f;

export type FeedType = 'put' | 'del' | 'expire' | 'persist' | 'expired';
/** kv_feed.type & FEED_KIND -> the event's type. */
export const FEED_TYPE_NAMES: readonly FeedType[] = ['put', 'put', 'del', 'expire', 'persist', 'expired', 'put', 'put', 'put', 'put'];
/** kv_feed.type & FEED_KIND -> Redis's keyspace-notification event name of the command that made it. */
export const FEED_REDIS_EVENTS: readonly string[] = ['', 'set', 'del', 'expire', 'persist', 'expired', 'incrby', 'incrbyfloat', 'append', 'setrange'];

/** One kv_feed row across the MessagePort: [id, key, version, at, type, expiresAt]. */
export type FeedRow = [id: number, key: Uint8Array, version: number, at: number, type: number, expiresAt: number | null];

/** shard index -> position (every id <= position delivered or dead). */
export type CursorPositions = Map<number, number>;

const CURSOR_VERSION = 1;

function pushVarint(out: number[], n: number): void {
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
}

export function encodeCursor(pos: CursorPositions): string {
  const out: number[] = [];
  pushVarint(out, CURSOR_VERSION);
  pushVarint(out, pos.size);
  // In the map's order (decode keeps it): no sort per event.
  for (const [s, p] of pos) {
    pushVarint(out, s);
    pushVarint(out, p);
  }
  return Buffer.from(out).toString('base64url');
}

const badCursor = (why: string): KvError => new KvError('KV_ERR_BAD_CURSOR', `cursor is not one this store issued: ${why}`);

export function decodeCursor(text: string): CursorPositions {
  if (text.length === 0 || text.length > 4096 || !/^[A-Za-z0-9_-]+$/.test(text)) throw badCursor('expected base64url text of at most 4096 characters');
  const bytes = Buffer.from(text, 'base64url');
  let i = 0;
  const next = (): number => {
    let n = 0;
    let mul = 1;
    for (;;) {
      if (i >= bytes.length) throw badCursor('truncated');
      const b = bytes[i++];
      n += (b & 0x7f) * mul;
      if (n > Number.MAX_SAFE_INTEGER) throw badCursor('number out of range');
      if ((b & 0x80) === 0) return n;
      mul *= 0x80;
    }
  };
  if (next() !== CURSOR_VERSION) throw badCursor('unknown version');
  const n = next();
  if (n > 1024) throw badCursor('too many shards');
  const pos: CursorPositions = new Map();
  for (let k = 0; k < n; k++) {
    const shard = next();
    pos.set(shard, next());
  }
  if (i !== bytes.length) throw badCursor('trailing bytes');
  return pos;
}
