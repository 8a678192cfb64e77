/**
 * Owns the shard pool's public face: what the rest of the gateway imports. Relies on the files of
 * this folder. Must not hold code: each name lives in the file that owns it.
 */
export { ShardPool, type FeedListener, type PoolLogger } from './pool';
export type { ReplyTarget } from './worker-handle';
export { actorDeadlineMs } from './actor-config';
