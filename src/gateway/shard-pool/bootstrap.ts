/**
 * Owns a store's first start as the gateway sees it: when the shard databases are all empty (or
 * some were just bootstrapped by another gateway starting at the same moment), each empty one
 * becomes shard i with the i-th share of an even slot map; anything else with an empty database
 * is refused as a database added by hand. Relies on ControlCalls (ownership, bootstrap) and
 * protocol/slot-map. Must not start or stop actors: the pool has started them all.
 */
import { SlotMap, SLOT_OWNED } from '../../protocol/slot-map';
import type { ControlCalls } from './control';
import type { ShardHandle } from './worker-handle';

/** Bootstraps the empty databases of a new store; throws if an empty one cannot join this way. */
export async function bootstrapIfNew(shards: ShardHandle[], control: ControlCalls): Promise<void> {
  const members = shards.filter((s) => s.shardIndex !== null);
  const fresh = shards.filter((s) => s.shardIndex === null && s.up);
  if (fresh.length === 0) return;
  if ((members.length === 0 && fresh.length === shards.length) || (members.length > 0 && (await concurrentFirstStart(shards, members, control)))) {
    const map = SlotMap.even(shards.length);
    await Promise.all(
      fresh.map(async (s) => {
        const m = await control.control(s, (id) => ({
          type: 'bootstrap',
          id,
          shard: s.index,
          shardCount: shards.length,
          slotRanges: map.rangesOf(s.index),
        }));
        if (m.type === 'bootstrapped' && m.error) {
          const err = new Error(m.error.message);
          (err as { code?: string }).code = m.error.code;
          throw err;
        }
        s.shardIndex = s.index;
      }),
    );
    return;
  }
  if (members.length === 0) {
    const down = shards.filter((s) => !s.up).map((s) => `#${s.index}`);
    throw new Error(`cannot create the store while shard URL(s) ${down.join(', ')} are unreachable: every shard must be up at a store's first start`);
  }
  // Some databases hold a store and these do not: they were added to the list by hand.
  throw new Error(
    `shard URL(s) ${fresh.map((s) => `#${s.index}`).join(', ')} name empty databases, but the others hold a store. ` +
      'Refusing to start: a new shard must join with `kvsql shards add <url>` (it then gets slots with `kvsql rebalance`).',
  );
}

/**
 * Some databases are members and the rest are empty. That is a store's first start by several
 * gateways at once (another gateway bootstrapped these members a moment ago, or died half way)
 * exactly when every member is shard i of this list with the i-th even share, at epoch 1:
 * nothing was ever moved, so the empty ones may get their even share too (the bootstrap's
 * identity check refuses a different list). Anything else is a database added by hand.
 */
async function concurrentFirstStart(shards: ShardHandle[], members: ShardHandle[], control: ControlCalls): Promise<boolean> {
  const map = SlotMap.even(shards.length);
  for (const s of members) {
    if (s.shardIndex !== s.index) return false;
    // A member that cannot say what it owns leaves the question open: say so, not "added by hand".
    const m = await control.ownership(s);
    if ('why' in m) throw new Error(`shard URL #${s.index} holds a store but did not say which slots it owns (${m.why}); start again once it answers`);
    const rows = m.ownership.slots; // flattened [slot, state, epoch, peer]
    if (rows.length === 0) continue; // identity written, slots not yet seeded: mid-bootstrap
    const mine = new Set<number>();
    for (let i = 0; i < rows.length; i += 4) {
      if (rows[i + 1] !== SLOT_OWNED || rows[i + 2] !== 1) return false;
      mine.add(rows[i]);
    }
    for (const [first, last] of JSON.parse(map.rangesOf(s.index)) as Array<[number, number]>) {
      for (let slot = first; slot <= last; slot++) if (!mine.delete(slot)) return false;
    }
    if (mine.size > 0) return false;
  }
  return true;
}
