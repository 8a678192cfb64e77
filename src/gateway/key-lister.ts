/**
 * Owns listing keys across the shards for every door (HTTP GET /v1/kv, the WebSocket list op, the
 * Redis door's SCAN, KEYS, DBSIZE and RANDOMKEY): one page from every shard, checked to cover
 * every slot, merged in byte order (protocol/listing mergePages). Relies on ShardPool
 * (scanShards, countShards, refreshMap) and protocol/listing. Must not touch sockets: the doors
 * encode the page.
 *
 *   page(q) ─> pool.scanShards(q) ─┬─ every slot served by some shard ─> mergePages ─> ListPage
 *                                  └─ a slot served by none (a move's flip between its two
 *                                     transactions, or a shard this gateway has not met yet)
 *                                     or KV_ERR_SLOT_MOVING ─> refresh the map, wait 5..160 ms,
 *                                     ask again, until the op deadline (then 503 SLOT_MOVING);
 *                                     at once 503 SHARD_UNAVAILABLE while some shard is down
 *
 * Every page is answered within KVSQL_OP_DEADLINE_MS of its request, retries included: each ask
 * carries the one deadline.
 */
import { KvError } from '../protocol/errors';
import { covers, mergePages, type ListPage, type ScanRequest } from '../protocol/listing';
import { SLOT_COUNT } from '../protocol/slot-map';
import type { ShardPool } from './shard-pool';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs `attempt` until it gives an answer, retrying slot-move refusals until the deadline. */
async function untilCovered<T>(pool: ShardPool, deadlineMs: number, attempt: (deadlineAt: number) => Promise<T | null>): Promise<T> {
  const deadlineAt = Date.now() + deadlineMs;
  for (let n = 0; ; n++) {
    try {
      const r = await attempt(deadlineAt);
      if (r !== null) return r;
    } catch (err) {
      if ((err as { code?: unknown })?.code !== 'KV_ERR_SLOT_MOVING') throw err;
    }
    // A gap while some shard is down (e.g. one that was down when this gateway started, whose
    // slots it never learned) will not close by waiting: say so now.
    if (pool.health().some((h) => !h.up)) {
      throw new KvError('KV_ERR_SHARD_UNAVAILABLE', 'some slots are served by no reachable shard (a shard is down)');
    }
    const wait = Math.min(160, 5 * 2 ** n);
    if (Date.now() + wait >= deadlineAt) {
      throw new KvError('KV_ERR_SLOT_MOVING', `slots are moving and no shard served some of them within the op deadline (${deadlineMs} ms); retry`);
    }
    void pool.refreshMap(); // a slot served by nobody may belong to a shard added elsewhere
    await sleep(wait);
  }
}

/** One page of the listing `q` (see protocol/listing for the cursor's meaning). */
export function listPage(pool: ShardPool, q: ScanRequest): Promise<ListPage> {
  return untilCovered(pool, pool.opDeadlineMs, async (deadlineAt) => {
    const pages = await pool.scanShards(q, deadlineAt);
    return covers(pages.map((p) => p.served)) ? mergePages(pages, q.limit, q.values) : null;
  });
}

/**
 * The live keys of the whole store (DBSIZE): each shard counts the slots it serves; the answer is
 * used only when those sets are an exact partition of the slots (no slot counted twice or never).
 */
export function countKeys(pool: ShardPool): Promise<number> {
  return untilCovered(pool, pool.opDeadlineMs, async (deadlineAt) => {
    const counts = await pool.countShards(deadlineAt);
    const seen = new Uint8Array(SLOT_COUNT / 8);
    let total = 0;
    for (const c of counts) {
      for (let i = 0; i < seen.length; i++) {
        if ((seen[i] & c.served[i]) !== 0) return null; // served twice: a flip between the two reads
        seen[i] |= c.served[i];
      }
      total += c.count;
    }
    return covers([seen]) ? total : null;
  });
}
