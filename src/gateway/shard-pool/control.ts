/**
 * Owns the gateway's control calls to the shard actors, everything but ops: ownership and
 * bootstrap requests, stats, key-range scans and counts, change-feed catch-up reads, Redis WAIT's
 * replica counts; each answered
 * once, by the actor's message with the same id, by its timeout, or by the actor's crash. Relies
 * on ShardHandle and protocol/port-messages. Must not route or admit ops.
 *
 *   call ─> id = nextControlId++ ─> waiters[id] ─> postMessage ─┬─> actor's reply (onMessage)
 *                                                               ├─> timeout
 *                                                               └─> failShard (the actor crashed)
 */
import { KvError, type ErrorData } from '../../protocol/errors';
import type { FeedRow } from '../../protocol/feed';
import type { ScanRequest, ShardPage } from '../../protocol/listing';
import type { FromActor, ShardStats, ToActor } from '../../protocol/port-messages';
import type { ShardOwnership } from '../../protocol/slot-map';
import type { ShardHandle } from './worker-handle';

export type ControlReply = Extract<FromActor, { type: 'ownership' | 'bootstrapped' }>;
type ScanReply = Extract<FromActor, { type: 'scanned' | 'counted' }>;
type FeedRangeReply = Extract<FromActor, { type: 'feedRange' }>;
type WaitedReply = Extract<FromActor, { type: 'waited' }>;
/** The actor messages that settle a control call. */
export type ControlMessage = ControlReply | ScanReply | FeedRangeReply | WaitedReply | Extract<FromActor, { type: 'stats' }>;

/** How long the gateway waits for a shard's ownership rows or a new shard's actor. */
const CONTROL_TIMEOUT_MS = 5000;

/**
 * Scans (listing pages, counts) waiting per shard in this gateway; more are answered 503 at once.
 * Each holds at most a page: MAX_LIST_LIMIT keys of up to 1 KiB, or MAX_PAGE_VALUE_BYTES of
 * values plus one value (protocol/listing), so the bytes they pin are bounded with the count.
 */
const SCAN_QUEUE_LIMIT = 16;

export class ControlCalls {
  private readonly controlWaiters = new Map<number, (m: ControlReply) => void>();
  private readonly statsWaiters = new Map<number, (s: ShardStats) => void>();
  /** Scans and counts in flight, by id: settled by the shard's answer, its deadline, or its crash. */
  private readonly scanWaiters = new Map<number, { shard: ShardHandle; settle: (m: ScanReply | null, error?: ErrorData) => void }>();
  /** Catch-up reads of the change feed in flight, by id. */
  private readonly feedRangeWaiters = new Map<number, { shard: ShardHandle; settle: (m: FeedRangeReply) => void }>();
  /** WAITs in flight, by id. */
  private readonly waitWaiters = new Map<number, { shard: ShardHandle; settle: (m: WaitedReply) => void }>();
  /** Ids of control requests to the actors (stats, scans, counts, feed reads): one sequence for all. */
  private nextControlId = 1;
  /** Scans and counts answered 503 here without reaching an actor (the pool's `rejected` adds them). */
  rejected = 0;

  constructor(
    private readonly shards: ShardHandle[],
    /** KVSQL_OP_DEADLINE_MS: every listing page and feed read is answered within it. */
    private readonly opDeadlineMs: number,
    /** Whether some slot routes to the shard at this position (a down shard that serves none is skipped). */
    private readonly routesTo: (position: number) => boolean,
  ) {}

  /** An actor's answer to a control call. */
  onMessage(m: ControlMessage): void {
    switch (m.type) {
      case 'ownership':
      case 'bootstrapped':
        this.controlWaiters.get(m.id)?.(m);
        this.controlWaiters.delete(m.id);
        break;
      case 'scanned':
      case 'counted':
        this.scanWaiters.get(m.id)?.settle(m, m.error);
        break;
      case 'feedRange': {
        const w = this.feedRangeWaiters.get(m.id);
        this.feedRangeWaiters.delete(m.id);
        w?.settle(m);
        break;
      }
      case 'waited':
        this.waitWaiters.get(m.id)?.settle(m);
        break;
      case 'stats':
        this.statsWaiters.get(m.id)?.(m.stats);
        this.statsWaiters.delete(m.id);
        break;
    }
  }

  /** One control request to an actor, answered by a message with the same id (or a timeout). */
  control(s: ShardHandle, build: (id: number) => ToActor): Promise<ControlReply> {
    return new Promise((resolve, reject) => {
      const id = this.nextControlId++;
      const timer = setTimeout(() => {
        this.controlWaiters.delete(id);
        reject(new Error(`shard ${s.index} did not answer within ${CONTROL_TIMEOUT_MS} ms`));
      }, CONTROL_TIMEOUT_MS);
      this.controlWaiters.set(id, (m) => {
        clearTimeout(timer);
        resolve(m as ControlReply);
      });
      s.worker.postMessage(build(id));
    });
  }

  /**
   * A shard's kv_slots and kv_peers, or why it could not say (timeout, its store's error): the
   * one way the router and the first start ask, so both report the same reason.
   */
  async ownership(s: ShardHandle): Promise<{ ownership: ShardOwnership } | { why: string }> {
    const m = await this.control(s, (id) => ({ type: 'ownership', id })).catch((err: Error) => err);
    if (m instanceof Error) return { why: m.message };
    if (m.type === 'ownership' && m.ownership !== undefined) return { ownership: m.ownership };
    return { why: m.type === 'ownership' && m.error ? m.error.message : 'no ownership in its answer' };
  }

  async stats(timeoutMs: number): Promise<Array<ShardStats | null>> {
    return Promise.all(
      this.shards.map(
        (s) =>
          new Promise<ShardStats | null>((resolve) => {
            const id = this.nextControlId++;
            const timer = setTimeout(() => {
              this.statsWaiters.delete(id);
              resolve(null);
            }, timeoutMs);
            this.statsWaiters.set(id, (st) => {
              clearTimeout(timer);
              resolve(st);
            });
            s.worker.postMessage({ type: 'stats', id } satisfies ToActor);
          }),
      ),
    );
  }

  /**
   * One page of one key range from every member shard, in shard order (listing, SCAN, KEYS:
   * gateway/key-lister.ts merges them). Rejects with a KvError at once when a shard is down or
   * has SCAN_QUEUE_LIMIT scans waiting, and with 503 KV_ERR_SHARD_UNAVAILABLE when a shard has
   * not answered by `deadlineAt` (epoch ms).
   */
  async scanShards(request: ScanRequest, deadlineAt: number): Promise<ShardPage[]> {
    // Own copies: a view of a larger buffer (a WebSocket frame, Node's pool slab) would be
    // structured-cloned whole, once per shard.
    const q: ScanRequest = { ...request, prefix: Uint8Array.from(request.prefix), after: request.after === null ? null : Uint8Array.from(request.after) };
    const replies = await this.askShards(deadlineAt, (id) => ({ type: 'scan', id, request: q }));
    return replies.map((m) => (m as Extract<ScanReply, { type: 'scanned' }>).page!);
  }

  /** Every member shard's count of the keys of the slots it serves, with its served bitmap (DBSIZE). */
  async countShards(deadlineAt: number): Promise<Array<{ count: number; served: Uint8Array }>> {
    const replies = await this.askShards(deadlineAt, (id) => ({ type: 'count', id }));
    return replies.map((m) => {
      const c = m as Extract<ScanReply, { type: 'counted' }>;
      return { count: c.count!, served: c.served! };
    });
  }

  private askShards(deadlineAt: number, build: (id: number) => ToActor): Promise<ScanReply[]> {
    // A shard that is down is skipped only when no slot routes to it (drained, or never given
    // any): if the map is stale and it does serve some, the caller's coverage check sees the gap.
    const members = this.shards.filter((s) => s.shardIndex !== null && (s.up && !s.exited ? true : this.routesTo(s.index)));
    if (members.length === 0) return Promise.reject(new KvError('KV_ERR_SHARD_UNAVAILABLE', 'no shard is reachable'));
    for (const s of members) {
      if (!s.up || s.exited) {
        this.rejected++;
        return Promise.reject(new KvError('KV_ERR_SHARD_UNAVAILABLE', `shard ${s.index} is unavailable`));
      }
      if (s.scans >= SCAN_QUEUE_LIMIT) {
        this.rejected++;
        return Promise.reject(new KvError('KV_ERR_OVERLOADED', `shard ${s.index} has ${s.scans} scans queued`));
      }
    }
    return Promise.all(
      members.map(
        (s) =>
          new Promise<ScanReply>((resolve, reject) => {
            const id = this.nextControlId++;
            s.scans++;
            const settle = (m: ScanReply | null, error?: ErrorData): void => {
              if (!this.scanWaiters.delete(id)) return;
              clearTimeout(timer);
              s.scans--;
              if (error !== undefined) reject(new KvError(error.code, error.message));
              else resolve(m!);
            };
            const timer = setTimeout(
              () =>
                settle(null, { code: 'KV_ERR_SHARD_UNAVAILABLE', message: `shard ${s.index} gave no answer within the op deadline (${this.opDeadlineMs} ms)` }),
              Math.max(0, deadlineAt - Date.now()),
            );
            this.scanWaiters.set(id, { shard: s, settle });
            s.worker.postMessage(build(id));
          }),
      ),
    );
  }

  /** kv_feed rows of one shard in (after, upto], at most `limit`, with its retention horizon. */
  feedRange(shard: number, after: number, upto: number, limit: number): Promise<{ rows: FeedRow[]; trimmed: number }> {
    const s = this.shards[shard];
    if (s === undefined || !s.up || s.exited) return Promise.reject(new KvError('KV_ERR_SHARD_UNAVAILABLE', `shard ${shard} is unavailable`));
    return new Promise((resolve, reject) => {
      const id = this.nextControlId++;
      const timer = setTimeout(() => {
        if (this.feedRangeWaiters.delete(id))
          reject(new KvError('KV_ERR_SHARD_UNAVAILABLE', `shard ${shard} gave no answer within the op deadline (${this.opDeadlineMs} ms)`));
      }, this.opDeadlineMs);
      this.feedRangeWaiters.set(id, {
        shard: s,
        settle: (m) => {
          clearTimeout(timer);
          if (m.error !== undefined) reject(new KvError(m.error.code, m.error.message));
          else resolve({ rows: m.rows!, trimmed: m.trimmed! });
        },
      });
      s.worker.postMessage({ type: 'feedRange', id, after, upto, limit } satisfies ToActor);
    });
  }

  /**
   * Redis WAIT on shard `shard` (its position): how many nodes of its Galera group, besides the one
   * written through, have committed what the group had committed (shard-actor/replica-wait.ts),
   * once that reaches `replicas` or after `timeoutMs`. A single server has none: 0 at once.
   */
  waitReplicas(shard: number, replicas: number, timeoutMs: number): Promise<number> {
    const s = this.shards[shard];
    if (s === undefined || !s.up || s.exited) return Promise.reject(new KvError('KV_ERR_SHARD_UNAVAILABLE', `shard ${shard} is unavailable`));
    if (s.cfg.nodes.length === 1) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      const id = this.nextControlId++;
      const settle = (m: WaitedReply): void => {
        if (!this.waitWaiters.delete(id)) return;
        clearTimeout(timer);
        if (m.error !== undefined) reject(new KvError(m.error.code, m.error.message));
        else resolve(m.count!);
      };
      // The actor answers by timeoutMs (plus a status query); this only covers an actor that never does.
      const timer = setTimeout(
        () => settle({ type: 'waited', id, error: { code: 'KV_ERR_SHARD_UNAVAILABLE', message: `shard ${shard} did not answer WAIT in time` } }),
        timeoutMs + CONTROL_TIMEOUT_MS,
      );
      this.waitWaiters.set(id, { shard: s, settle });
      s.worker.postMessage({ type: 'wait', id, replicas, timeoutMs } satisfies ToActor);
    });
  }

  /** The shard's actor is gone: its scans, feed reads and WAITs are answered 503 with `why`. */
  failShard(s: ShardHandle, why: string): void {
    for (const [id, w] of [...this.waitWaiters]) if (w.shard === s) w.settle({ type: 'waited', id, error: { code: 'KV_ERR_SHARD_UNAVAILABLE', message: why } });
    for (const w of [...this.scanWaiters.values()]) if (w.shard === s) w.settle(null, { code: 'KV_ERR_SHARD_UNAVAILABLE', message: why });
    for (const [id, w] of [...this.feedRangeWaiters]) {
      if (w.shard !== s) continue;
      this.feedRangeWaiters.delete(id);
      w.settle({ type: 'feedRange', id, error: { code: 'KV_ERR_SHARD_UNAVAILABLE', message: why } });
    }
  }
}
