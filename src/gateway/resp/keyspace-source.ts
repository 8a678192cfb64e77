/**
 * Owns where keyspace notifications come from and how PUBLISH reaches other gateways: the two
 * seams (KeyspaceSource, PublishBus), the change feed as a KeyspaceSource (feedKeyspaceSource), and
 * the interim LocalKeyspaceSource that reports this gateway's own Redis writes. Relies on
 * protocol/ops and protocol/redis-notify (KeyspaceEvent), and on ShardPool's ReplyTarget (what a
 * tap wraps). Must not publish: the hub (pubsub-hub.ts) turns events into messages.
 */
import type { KeyspaceEvent } from '../../protocol/redis-notify';
import {
  FLAG_CLEAR_TTL,
  FLAG_FLOAT,
  isErrorReply,
  isReadOp,
  OP_APPEND,
  OP_DEL,
  OP_EXPIRE,
  OP_GETDEL,
  OP_GETEX,
  OP_INCR,
  OP_PERSIST,
  OP_PUT,
  OP_SETRANGE,
  type OpCode,
  type Reply,
} from '../../protocol/ops';
import type { ReplyTarget } from '../shard-pool';

export type { KeyspaceEvent } from '../../protocol/redis-notify';

/**
 * Where keyspace notifications come from. The door subscribes once at start and publishes each
 * event on `__keyspace@0__:<key>` / `__keyevent@0__:<event>` as the notify flags say.
 *
 * With the change feed on, the source is feedKeyspaceSource (below): one watch on every key from
 * "now", each feed event mapped to a KeyspaceEvent ({type, key}, plus op/created/ttl when the feed
 * carries them: without op a put is `set`), so every gateway's and door's writes and the expirer's
 * `expired` are seen. With the feed off it is LocalKeyspaceSource (below), the INTERIM source:
 * this gateway reports the writes its own Redis connections made and the shards acknowledged; it
 * sees no write of another gateway or of the HTTP/WebSocket doors, and no expiry (no `expired`).
 * server.ts chooses; ServerOptions.keyspaceSource overrides.
 */
export interface KeyspaceSource {
  /**
   * Calls onEvent for each change from now on, until the returned function is called. The hub
   * subscribes only while notifications are on and someone is subscribed to a channel or pattern,
   * and stops when either ends, so an idle door costs the feed nothing.
   */
  subscribe(onEvent: (e: KeyspaceEvent) => void): () => void;
}

/**
 * How a PUBLISH reaches the subscribers of other gateways. Today none is connected: PUBLISH
 * delivers within this gateway only. With the change feed, publish() can write the message as a
 * feed record (e.g. on a reserved per-shard channel row, the shard chosen by the channel's slot)
 * and subscribe() deliver the records written by other gateways (not this one's: it delivered
 * them already, and its reply counts them). Pass it as ServerOptions.publishBus.
 */
export interface PublishBus {
  /** Carries one PUBLISH (or SPUBLISH when `shard`) to the other gateways; fire-and-forget. */
  publish(channel: Buffer, message: Buffer, shard: boolean): void;
  /** Calls onMessage for each message published on another gateway, until the returned function is called. */
  subscribe(onMessage: (channel: Buffer, message: Buffer, shard: boolean) => void): () => void;
}

/**
 * What feedKeyspaceSource needs of the change feed's hub: FeedHub.subscribe(opts, sink) of
 * gateway/feed-hub.ts, written structurally so this file and its tests need only this much of it.
 */
export interface FeedLike {
  subscribe(
    opts: { prefix: Uint8Array; from: string },
    sink: {
      onEvent(e: { type: KeyspaceEvent['type']; key: Buffer; event?: string; created?: boolean; ttl?: boolean }, cursor: string): void;
      /** The feed ended the subscription (it is already unsubscribed). */
      onError(err: { code: string; message: string }): void;
    },
  ): { unsubscribe(): void };
}

/**
 * The change feed as the keyspace source: one watcher on every key from "now" while the hub wants
 * events. Fire-and-forget, as Redis: when the feed ends the watcher (an error, a slow-consumer
 * cut), it watches again from "now" after `retryMs`, and changes in between are not notified. A
 * put is Redis's `set` unless the feed names its event (incrby, incrbyfloat, append, setrange), with `new`
 * and SET ... EX's `expire` from the feed's `created` and `ttl` (keyspaceEventOf).
 */
export function feedKeyspaceSource(feed: FeedLike, log: { warn(obj: object, msg: string): void }, retryMs = 1000): KeyspaceSource {
  return {
    subscribe(onEvent) {
      let sub: { unsubscribe(): void } | null = null;
      let timer: NodeJS.Timeout | null = null;
      let stopped = false;
      const retry = (err: unknown): void => {
        sub = null;
        log.warn({ err }, 'redis keyspace notifications: the change feed ended the watch; watching again from now');
        if (!stopped) (timer = setTimeout(open, retryMs)).unref();
      };
      const open = (): void => {
        timer = null;
        if (stopped) return;
        try {
          sub = feed.subscribe({ prefix: EMPTY_KEY, from: 'now' }, { onEvent: (e) => onEvent(keyspaceEventOf(e)), onError: retry });
        } catch (err) {
          retry(err);
        }
      };
      open();
      return () => {
        stopped = true;
        if (timer !== null) clearTimeout(timer);
        sub?.unsubscribe();
        sub = null;
      };
    },
  };
}

const EMPTY_KEY = new Uint8Array(0);

/** A feed event (feed-hub.ts FeedEvent: its Redis event name, created, ttl) as a KeyspaceEvent. */
function keyspaceEventOf(e: { type: KeyspaceEvent['type']; key: Buffer; event?: string; created?: boolean; ttl?: boolean }): KeyspaceEvent {
  if (e.type !== 'put' || e.event === undefined) return { type: e.type, key: e.key };
  const op = e.event === 'incrby' || e.event === 'incrbyfloat' ? OP_INCR : e.event === 'append' ? OP_APPEND : e.event === 'setrange' ? OP_SETRANGE : undefined;
  return { type: 'put', key: e.key, op, flags: e.event === 'incrbyfloat' ? FLAG_FLOAT : 0, created: e.created === true, ttl: e.ttl === true };
}

// ---------------------------------------------------------------------------------------------
// The interim keyspace source
// ---------------------------------------------------------------------------------------------

/**
 * INTERIM, until the change feed lands: reports the writes this gateway's Redis connections made,
 * once the shard acknowledged them, by wrapping their ops' reply targets (the connection's submit
 * calls tap() only while notifications are on and someone is subscribed).
 */
export class LocalKeyspaceSource implements KeyspaceSource {
  private readonly listeners = new Set<(e: KeyspaceEvent) => void>();

  subscribe(onEvent: (e: KeyspaceEvent) => void): () => void {
    this.listeners.add(onEvent);
    return () => void this.listeners.delete(onEvent);
  }

  /** `target` wrapped so that its op's successful write is reported first. */
  tap(target: ReplyTarget, op: OpCode, key: Buffer, flags: number, ttlMs: number): ReplyTarget {
    return isReadOp(op) ? target : new Tap(this, target, op, key, flags, ttlMs);
  }

  /** A write's reply, as the change it made (nothing for a miss, a failed condition or an error). */
  observe(op: OpCode, key: Buffer, flags: number, ttlMs: number, r: Reply): void {
    if (isErrorReply(r)) return;
    const s = r[1];
    let e: KeyspaceEvent | null = null;
    switch (op) {
      case OP_PUT:
      case OP_INCR:
      case OP_APPEND:
      case OP_SETRANGE: // the door sends no empty setrange (a read): 200 and 201 wrote
        if (s === 200 || s === 201) e = { type: 'put', key, op, flags, created: s === 201, ttl: op === OP_PUT && ttlMs > 0 };
        break;
      case OP_DEL:
        if (s === 204) e = { type: 'del', key };
        break;
      case OP_GETDEL:
        if (s === 200) e = { type: 'del', key };
        break;
      case OP_EXPIRE:
        if (s === 200) e = { type: 'expire', key };
        break;
      case OP_PERSIST:
        if (s === 200 && r[2] === 1) e = { type: 'persist', key };
        break;
      case OP_GETEX:
        // The reply does not say whether a TTL was there to clear: PERSIST is reported either way.
        if (s === 200 && ttlMs > 0) e = { type: 'expire', key };
        else if (s === 200 && (flags & FLAG_CLEAR_TTL) !== 0) e = { type: 'persist', key };
        break;
    }
    if (e !== null) for (const l of this.listeners) l(e);
  }
}

class Tap implements ReplyTarget {
  constructor(
    private readonly src: LocalKeyspaceSource,
    private readonly inner: ReplyTarget,
    readonly op: OpCode,
    private readonly key: Buffer,
    private readonly flags: number,
    private readonly ttlMs: number,
  ) {}
  deliver(r: Reply): void {
    this.src.observe(this.op, this.key, this.flags, this.ttlMs, r);
    this.inner.deliver(r);
  }
}
