/**
 * Owns deleting every key of the store (the Redis door's FLUSHDB and FLUSHALL): listing pages in
 * key order across every shard (key-lister.ts), each page's keys deleted by ordinary DEL ops
 * through the shard actors, one page at a time. Relies on ShardPool (submit) and key-lister. Must
 * not touch sockets or MySQL, nor decide who may flush (the door does).
 *
 *   cursor ──listPage(after cursor, FLUSH_PAGE keys)──> keys ──DEL each (pool.submit)──> all answered
 *     ^                                                                                    │
 *     └───────────────────── cursor = the page's last key ─────────────────────────────────┘
 *   until a page comes back with no next key; the first error stops it, and says how far it got
 *
 * Why ordinary DELs and not `DELETE FROM kv`: every rule a delete keeps holds without new code.
 * A key's version only grows (a re-created key takes its version above the shard's kv_seq,
 * version-allocator.ts); the change feed records a `del` per key in the delete's transaction;
 * a slot moving meanwhile is followed (redirects.ts); the expiry wheel's entries for deleted keys
 * find no expired row (a reap deletes only a row still expired, under its lock) and do nothing;
 * each delete is one op among the others in the actor's write batches (KVSQL_MAX_BATCH_OPS), so
 * no lock is held long and other keys keep being served. The price: one listing page and one
 * batch of deletes per FLUSH_PAGE keys, and it is not atomic (see flushAll).
 */
import { KvError, toErrorData } from '../protocol/errors';
import { isErrorReply, OP_DEL, type Reply } from '../protocol/ops';
import { listPage } from './key-lister';
import type { ShardPool } from './shard-pool';

/** Keys listed and deleted per round: one page's deletes are in flight at once, at most. */
export const FLUSH_PAGE = 500;

/**
 * Deletes every live key and answers how many it deleted. Not atomic across keys or shards: a
 * reader meanwhile sees some keys gone and others not yet; a key written meanwhile survives when
 * the flush has already passed its place in key order, and is deleted otherwise. Rejects with
 * a KvError at the first error (a shard down, overloaded, slots moving past the op deadline): its
 * code, what the shard said (which names it), and how many keys were deleted before it.
 */
export async function flushAll(pool: ShardPool): Promise<number> {
  let deleted = 0;
  let after: Uint8Array | null = null;
  try {
    do {
      const page = await listPage(pool, { prefix: EMPTY, after, limit: FLUSH_PAGE, values: false });
      const replies = await Promise.all(page.keys.map((key) => del(pool, key)));
      let failed: Reply | undefined;
      for (const r of replies) {
        if (r[1] === 204) deleted++;
        else if (isErrorReply(r)) failed ??= r;
      }
      if (failed !== undefined && isErrorReply(failed)) throw new KvError(failed[2], failed[3]);
      after = page.next;
    } while (after !== null);
  } catch (err) {
    const e = toErrorData(err);
    throw new KvError(e.code, `stopped after deleting ${deleted} keys (the others are still there; run it again): ${e.message}`);
  }
  return deleted;
}

const EMPTY = new Uint8Array(0);

function del(pool: ShardPool, key: Uint8Array): Promise<Reply> {
  return new Promise((resolve) => pool.submit({ op: OP_DEL, deliver: resolve }, OP_DEL, key, null, 0, 0, 0));
}
