/**
 * Owns Redis's SETRANGE on bytes: the checks of its offset and resulting length, with Redis 7's
 * own error texts, and the overwrite itself (zero-padding past the end). Relies on nothing. Pure:
 * no I/O. Both edges that accept SETRANGE (the Redis door, a script's redis.call) check with
 * setRangeError before an op exists; the actor's write plan (write-plan.ts) only applies setRange
 * to the value it locked.
 *
 *   current  | h e l l o |
 *   setRange(current, 7, "ab")  ->  | h e l l o \0 \0 a b |      (length max(5, 7 + 2) = 9)
 *   setRange(current, 1, "ip")  ->  | h i p l o |                (length kept)
 */

/** Redis's proto-max-bulk-len: no string may be longer (offset + value length). */
export const REDIS_MAX_STRING_BYTES = 512 * 1024 * 1024;

export const ERR_OFFSET_OUT_OF_RANGE = 'ERR offset is out of range';
export const ERR_STRING_TOO_LONG = 'ERR string exceeds maximum allowed size (proto-max-bulk-len)';

/** A refusal: Redis's own error text, or the store's value limit (a KvError code for the door's presenter). */
export type SetRangeRefusal = { redis: string } | { code: 'KV_ERR_VALUE_TOO_LARGE'; message: string };

/**
 * Why `SETRANGE key offset value` is refused before reading the key, or null. `offset` is the
 * parsed integer (the caller answered a non-integer already). An empty value writes nothing, so,
 * as Redis, it is never refused for its length. Past Redis's limit: Redis's error; past the
 * store's value limit (`maxValueBytes`): KV_ERR_VALUE_TOO_LARGE. The result's length is
 * max(current length, offset + value length), so checking offset + length bounds it whatever the
 * current value is.
 */
export function setRangeError(offset: bigint, valueLength: number, maxValueBytes: number): SetRangeRefusal | null {
  if (offset < 0n) return OUT_OF_RANGE;
  if (valueLength === 0) return null;
  const end = offset + BigInt(valueLength);
  if (end > BigInt(REDIS_MAX_STRING_BYTES)) return TOO_LONG;
  if (end > BigInt(maxValueBytes))
    return { code: 'KV_ERR_VALUE_TOO_LARGE', message: `SETRANGE would make a value of ${end} bytes, the limit is ${maxValueBytes}` };
  return null;
}

const OUT_OF_RANGE: SetRangeRefusal = { redis: ERR_OFFSET_OUT_OF_RANGE };
const TOO_LONG: SetRangeRefusal = { redis: ERR_STRING_TOO_LONG };

/** `current` (null: absent) with `bytes` written at `offset`, zero-padded: a new buffer. */
export function setRange(current: Uint8Array | null, offset: number, bytes: Uint8Array): Buffer {
  const had = current === null ? 0 : current.length;
  const out = Buffer.alloc(Math.max(had, offset + bytes.length)); // zero-filled: the padding
  if (current !== null) out.set(current, 0);
  out.set(bytes, offset);
  return out;
}
