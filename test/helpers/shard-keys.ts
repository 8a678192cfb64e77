/**
 * Keys that a two-shard test store (the even slot map: shard 0 serves the first half of the
 * slots) puts on a chosen shard, for tests of what must or must not span shards.
 */
import { slotOf, SLOT_COUNT } from '../../src/protocol/slot-map';

/** `n` keys `${prefix}${i}` that shard 0 of two serves. */
export function onShard0(prefix: string, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) if (slotOf(Buffer.from(`${prefix}${i}`)) < SLOT_COUNT / 2) out.push(`${prefix}${i}`);
  return out;
}

/** One key `${prefix}${i}` that shard 1 of two serves. */
export function onShard1(prefix: string): string {
  for (let i = 0; ; i++) if (slotOf(Buffer.from(`${prefix}${i}`)) >= SLOT_COUNT / 2) return `${prefix}${i}`;
}
