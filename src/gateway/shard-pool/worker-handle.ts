/**
 * Owns the gateway's record of one shard: its worker thread, the requests sent to it and not yet
 * answered, their value bytes, its submit order, its health as last reported, and the counters the
 * admission bound and /metrics read. Relies on protocol (ops, port messages) and the Fifo. Must
 * not decide anything: the pool, admission, backstop and redirects read and update it.
 *
 *   pending:   Map<id, Pending>        one entry per request in flight on this shard
 *   submitted: Fifo of signed ids      submit order (a write's id negated), consumed from the head;
 *                                      ids no longer in `pending` are skipped when they reach it
 */
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import type { ErrorData } from '../../protocol/errors';
import { Fifo } from '../../protocol/fifo';
import type { Reply, Request } from '../../protocol/ops';
import type { ActorConfig } from '../../protocol/port-messages';

export interface ReplyTarget {
  /** The op it waits for: a crashed actor's reads are safely retryable, its writes are not. */
  readonly op: number;
  deliver(reply: Reply): void;
}

const ACTOR_MAIN = join(__dirname, '..', '..', 'shard-actor', 'main.js');

/**
 * A request sent to a shard and not yet answered: who gets the reply, the request itself and when
 * it was first submitted (to re-route one the shard refuses: its slot moved). One object per op,
 * one map entry: the main thread's bookkeeping per op is a set and a delete.
 */
export class Pending {
  constructor(
    readonly target: ReplyTarget,
    readonly req: Request,
    readonly at: number,
  ) {}
}

/** Value bytes a request holds in its shard's queue (the byte bound counts these). */
export const bytesOf = (req: Request): number => (req[3] === null ? 0 : req[3].length);

export class ShardHandle {
  worker: Worker;
  /** Requests sent to this shard and not yet answered, by id. */
  readonly pending = new Map<number, Pending>();
  /** kv_shard.shard_index of this database; null until known (down at start, or not a member). */
  shardIndex: number | null = null;
  /** Value bytes of the pending requests. */
  bytes = 0;
  up = true;
  lastError: ErrorData | undefined;
  frame: Request[] = [];
  /** Frames and ops handed to the actor, and reply frames back (metrics: ops per hand-off). */
  framesSent = 0;
  opsSent = 0;
  replyFrames = 0;
  /** Scans and counts sent to this shard and not yet answered. */
  scans = 0;
  /** Set once stop() began: an exit is then expected, not a crash. */
  stopping = false;
  /** The current worker has exited (crashed, or failed to start) and no new one runs yet. */
  exited = false;
  /** Submit order of this shard's requests: ids, a write's negated (see the header). */
  readonly submitted = new Fifo<number>();
  /** Replies received since the last tick, and the service rate (ops/s) measured from them. */
  completed = 0;
  rate = 0;
  /** The current rate window: when it began, and for how many ms of it the shard had work. */
  windowStart = Date.now();
  busyMs = 0;
  /** Since when the shard has had work outstanding (meaningful while pending.size > 0). */
  busySince = 0;
  constructor(
    readonly index: number,
    readonly cfg: ActorConfig,
    readonly url: string,
  ) {
    this.worker = this.spawn();
  }
  spawn(): Worker {
    return new Worker(ACTOR_MAIN, { workerData: this.cfg, name: `shard-${this.index}` });
  }
}
