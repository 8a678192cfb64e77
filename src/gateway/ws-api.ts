/**
 * Owns the WebSocket API (GET /v1/ws). Placeholder until the pipelined protocol lands.
 */
import type { TemplatedApp, WebSocket } from 'uWebSockets.js';
import type { Limits } from '../protocol/validate';
import type { Metrics } from './metrics';
import type { ShardPool } from './shard-pool';

export interface WsContext {
  pool: ShardPool;
  metrics: Metrics;
  limits: Limits;
  closing: () => boolean;
  inflight: { n: number };
  sockets: Set<WebSocket<unknown>>;
  maxInflight: number;
}

export function mountWsApi(_app: TemplatedApp, _ctx: WsContext): void {}
