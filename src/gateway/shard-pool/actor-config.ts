/**
 * Owns what a shard actor is told at spawn: its slice of the gateway's Config (workers get it in
 * workerData and never read process.env), and its own op deadline. Relies on config and tls. Must
 * not be read by the actor any other way.
 */
import type { ActorConfig } from '../../protocol/port-messages';
import { shardNodes, type Config } from '../../config/config';
import { mysqlTls } from '../tls';

/** The actor's own deadline: a little under the gateway's, so its precise answer comes first. */
export function actorDeadlineMs(opDeadlineMs: number): number {
  return opDeadlineMs - Math.min(500, Math.floor(opDeadlineMs / 4));
}

/** Everything an actor needs, derived from the gateway's Config in this one place. */
export function actorConfig(config: Readonly<Config>, i: number, url: string): ActorConfig {
  return {
    shard: i,
    url,
    nodes: shardNodes(url),
    slotHoldMs: config.slotHoldMs,
    batching: config.batching,
    maxBatchOps: config.maxBatchOps,
    maxBatchBytes: config.maxBatchBytes,
    readsInFlight: config.readsInFlight,
    writesInFlight: config.writesInFlight,
    queryTimeoutMs: config.queryTimeoutMs,
    opDeadlineMs: actorDeadlineMs(config.opDeadlineMs),
    maxRetries: config.maxRetries,
    maxValueBytes: config.maxValueBytes,
    tls: mysqlTls(config),
    feed: config.feed
      ? { enabled: true, pollMs: config.feedPollMs, retentionMs: config.feedRetentionMs, maxRows: config.feedMaxRows, maxBytes: config.feedMaxBytes }
      : undefined,
    expiry: {
      enabled: config.expiry,
      tickMs: config.expiryTickMs,
      horizonMs: config.expiryHorizonMs,
      reapBatch: config.reapBatch,
      reapsInFlight: config.reapsInFlight,
      maxWheelKeys: config.maxWheelKeys,
      lockRetryMs: config.expiryLockRetryMs,
    },
  };
}
