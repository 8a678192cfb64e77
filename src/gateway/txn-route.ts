/**
 * Owns the one routing rule of a transaction, for every door: all its keys must be served by one
 * shard (by this gateway's map), and it is sent to that shard under its first key. Relies on
 * protocol/txn. Pure given `shardOf`.
 *
 * The map may be stale: the shard then refuses the transaction whole (KV_ERR_WRONG_SHARD, before
 * writing anything) and the pool re-routes it by its first key, as any op.
 */
import { KvError } from '../protocol/errors';
import { txnKeys, type TxnProgram } from '../protocol/txn';

/** The key to route `p` by; throws KV_ERR_CROSS_SHARD or KV_ERR_SHARD_UNAVAILABLE. Null: nothing to run. */
export function txnRoute(p: TxnProgram, shardOf: (key: Uint8Array) => number): Uint8Array | null {
  const keys = txnKeys(p);
  if (keys.length === 0) return null;
  const shards = new Set<number>();
  for (const k of keys) shards.add(shardOf(k));
  if (shards.has(-1)) throw new KvError('KV_ERR_SHARD_UNAVAILABLE', 'no reachable shard owns the slot of a key of this transaction');
  if (shards.size > 1) {
    throw new KvError(
      'KV_ERR_CROSS_SHARD',
      `the transaction's keys are served by shards ${[...shards].sort((a, b) => a - b).join(', ')}; kvsql runs a transaction atomically only within one shard`,
    );
  }
  return keys[0];
}
