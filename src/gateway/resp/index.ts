/**
 * Owns the Redis door's public face: what the rest of the gateway (server.ts) and tests import.
 * Relies on the files of this folder. Must not hold code: each name lives in the file that owns it.
 */
export { startRespServer, type RespContext, type RespServer } from './listener';
export { ALLOW_ALL, type RespGuard, type RespSession } from './guard';
export { respAuthGuard } from './auth-guard';
export { feedKeyspaceSource, type FeedLike, type KeyspaceEvent, type KeyspaceSource, type PublishBus } from './keyspace-source';
export { DEFAULT_PUBSUB_LIMIT, type PubsubLimit } from './pubsub-hub';
