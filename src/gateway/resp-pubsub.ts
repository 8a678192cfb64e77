/**
 * Owns pub/sub on the Redis door: SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UNSUBSCRIBEs,
 * PUBLISH, SPUBLISH, PUBSUB, RESET, the subscribed-mode rules of RESP2, RESP3 push frames, this
 * gateway's hub (channel -> subscribers, patterns), the pubsub output-buffer limit, keyspace
 * notifications (`CONFIG SET notify-keyspace-events`), and the two seams through which the change
 * feed will carry keyspace events and other gateways' PUBLISHes (KeyspaceSource, PublishBus).
 * Relies on resp-server's connections (PubsubCall: reply, push, the bytes not yet sent), its guard
 * (channel rights), protocol/resp (encoding), protocol/redis-keyspace (glob) and
 * protocol/redis-notify (flags, event names). Must not touch the shards: pub/sub stores nothing.
 *
 * The hub, one per gateway:
 *
 *   channels:      Map "chan" (bytes as latin1)  -> Set<Subscriber>     SUBSCRIBE
 *   shardChannels: Map "chan"                    -> Set<Subscriber>     SSUBSCRIBE (no patterns)
 *   patterns:      Map "pat"  -> { glob, bytes, subs: Set<Subscriber> } PSUBSCRIBE
 *   Subscriber (one per subscribed connection): its own channel, shard-channel and pattern sets
 *
 * A message is one frame per subscriber (built once per publish per protocol and shared), queued
 * on the connection's reply queue after everything already owed, so a subscriber never sees a
 * message before its SUBSCRIBE confirmation. Delivery is fire-and-forget, as in Redis: nothing is
 * stored, a subscriber that is not connected when a message is published never gets it.
 *
 * What must stay true:
 * - Memory per subscriber is bounded: the bytes queued for it plus the bytes its socket has not
 *   sent are checked at every delivery against Redis's `client-output-buffer-limit pubsub` rule
 *   (hard: over it, the connection is closed at once; soft: over it for longer than the soft
 *   seconds, closed). Defaults as Redis: 32 MiB hard, 8 MiB soft for 60 s (KVSQL_REDIS_PUBSUB_BUFFER_LIMIT).
 * - With auth on, a subscriber gets a PUBLISH only if its token may read the channel name as a
 *   key, and a keyspace notification only if its token may read the key (checked per delivery,
 *   so a token reload applies to open subscriptions). Subscribing is refused up front (NOPERM)
 *   when nothing it asks for could be delivered; PUBLISH needs the write right on the channel.
 * - Nothing here runs on a connection that never subscribed, and no tap is put on writes unless
 *   notifications are on and someone is subscribed.
 */
import { compileGlob, type Glob } from '../protocol/redis-keyspace';
import {
  BAD_NOTIFY_FLAGS,
  KEYEVENT_PREFIX,
  KEYSPACE_PREFIX,
  NOTIFY_KEYEVENT,
  NOTIFY_KEYSPACE,
  notifyFlagsOf,
  notifyFlagsText,
  notifying,
  redisEventsOf,
  startsWith,
  type KeyspaceEvent,
} from '../protocol/redis-notify';
import {
  FLAG_CLEAR_TTL,
  FLAG_FLOAT,
  isErrorReply,
  isReadOp,
  OP_APPEND,
  OP_DEL,
  OP_EXPIRE,
  OP_GET,
  OP_GETDEL,
  OP_GETEX,
  OP_INCR,
  OP_PERSIST,
  OP_PUT,
  type OpCode,
  type Reply,
} from '../protocol/ops';
import * as resp from '../protocol/resp';
import type { Proto } from '../protocol/resp';
import type { RespGuard, RespSession } from './resp-server';
import type { ReplyTarget } from './shard-pool';

export type { KeyspaceEvent } from '../protocol/redis-notify';

// ---------------------------------------------------------------------------------------------
// The seams (the change feed plugs in here)
// ---------------------------------------------------------------------------------------------

/**
 * Where keyspace notifications come from. The door subscribes once at start and publishes each
 * event on `__keyspace@0__:<key>` / `__keyevent@0__:<event>` as the notify flags say.
 *
 * Today: LocalKeyspaceSource (below), the INTERIM source: this gateway reports the writes its own
 * Redis connections made and the shards acknowledged. It sees no write of another gateway or of
 * the HTTP/WebSocket doors, and no expiry (no `expired`). The change feed replaces it: a source
 * whose subscribe() calls feedHub.subscribe('', 'now', ...) for every shard this gateway serves
 * and maps each feed event to a KeyspaceEvent ({type, key}, plus op/created/ttl when the feed
 * carries them: without op a put is `set`). Pass it as ServerOptions.keyspaceSource.
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

/** Redis's `client-output-buffer-limit pubsub <hard> <soft> <soft seconds>`; 0 turns a limit off. */
export interface PubsubLimit {
  hardBytes: number;
  softBytes: number;
  softSeconds: number;
}

/** Redis's default for the pubsub class: 32mb 8mb 60. */
export const DEFAULT_PUBSUB_LIMIT: PubsubLimit = Object.freeze({ hardBytes: 32 * 1024 * 1024, softBytes: 8 * 1024 * 1024, softSeconds: 60 });

/** What pub/sub needs of a connection (resp-server's Conn). */
export interface PubsubCall extends RespSession {
  /** null until the connection first subscribes. */
  sub: Subscriber | null;
  readonly pubsub: PubsubHub;
  /** Answer in request order. */
  reply(out: string | Buffer): void;
  /** Queue a push frame (a message) after everything owed. */
  push(frame: Buffer): void;
  /** Push bytes queued and not yet written, plus bytes written and not yet sent (the output buffer). */
  readonly outputBytes: number;
  /** Close at once (output buffer limit). */
  kill(reason: string): void;
}

/**
 * What feedKeyspaceSource needs of the change feed's hub: FeedHub.subscribe(opts, sink) of
 * gateway/feed-hub.ts (issue 21, built on its own branch), written structurally so this file
 * compiles without it.
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
 * The change feed as the keyspace source (what the lead connects when merging): one watcher on
 * every key from "now" while the hub wants events. Fire-and-forget, as Redis: when the feed ends
 * the watcher (an error, a slow-consumer cut), it watches again from "now" after `retryMs`, and
 * changes in between are not notified. A put is Redis's `set` (the feed does not say which command
 * wrote it: INCR shows as `set`, SET ... EX as `set` without `expire`, and `new` is not known),
 * until the feed carries the op.
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
  const op = e.event === 'incrby' || e.event === 'incrbyfloat' ? OP_INCR : e.event === 'append' ? OP_APPEND : undefined;
  return { type: 'put', key: e.key, op, flags: e.event === 'incrbyfloat' ? FLAG_FLOAT : 0, created: e.created === true, ttl: e.ttl === true };
}

// ---------------------------------------------------------------------------------------------
// The interim keyspace source
// ---------------------------------------------------------------------------------------------

/**
 * INTERIM, until the change feed lands: reports the writes this gateway's Redis connections made,
 * once the shard acknowledged them, by wrapping their ops' reply targets (resp-server's submit
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

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

const HEAD3 = ['', '', '*3\r\n', '>3\r\n'];
const HEAD4 = ['', '', '*4\r\n', '>4\r\n'];
const BULK = (s: string): string => `$${s.length}\r\n${s}\r\n`;

/** A frame: the head (ASCII) then each part as a bulk string (or a RESP nil for null), then a tail. */
function frame(head: string, parts: Array<Uint8Array | null>, proto: Proto, tail = ''): Buffer {
  let n = head.length + tail.length;
  const nil = resp.nil(proto);
  for (const p of parts) n += p === null ? nil.length : String(p.length).length + p.length + 5;
  const out = Buffer.allocUnsafe(n);
  let at = out.write(head, 0, 'latin1');
  for (const p of parts) {
    if (p === null) {
      at += out.write(nil, at, 'latin1');
      continue;
    }
    at += out.write(`$${p.length}\r\n`, at, 'latin1');
    out.set(p, at);
    at += p.length;
    out[at++] = 13;
    out[at++] = 10;
  }
  out.write(tail, at, 'latin1');
  return out;
}

const message = (proto: Proto, kind: string, channel: Uint8Array, msg: Uint8Array): Buffer => frame(HEAD3[proto] + BULK(kind), [channel, msg], proto);
const pmessage = (proto: Proto, pattern: Uint8Array, channel: Uint8Array, msg: Uint8Array): Buffer =>
  frame(HEAD4[proto] + BULK('pmessage'), [pattern, channel, msg], proto);
/** `subscribe ch n`, `unsubscribe ch n` (ch null: the reply to UNSUBSCRIBE when subscribed to nothing). */
const confirm = (proto: Proto, kind: string, channel: Uint8Array | null, count: number): Buffer =>
  frame(HEAD3[proto] + BULK(kind), [channel], proto, `:${count}\r\n`);

// ---------------------------------------------------------------------------------------------
// The hub
// ---------------------------------------------------------------------------------------------

/** One subscribed connection's subscriptions. */
export class Subscriber {
  readonly channels = new Set<string>();
  readonly shardChannels = new Set<string>();
  readonly patterns = new Set<string>();
  /** When the output buffer went over the soft limit (ms); 0 = under it. */
  softSince = 0;
  dead = false;
  constructor(readonly conn: PubsubCall) {}
  /** What SUBSCRIBE/PSUBSCRIBE replies count: channels and patterns (not shard channels). */
  get count(): number {
    return this.channels.size + this.patterns.size;
  }
  get total(): number {
    return this.channels.size + this.patterns.size + this.shardChannels.size;
  }
}

interface Pattern {
  readonly bytes: Buffer;
  readonly glob: Glob;
  readonly subs: Set<Subscriber>;
}

export interface HubOptions {
  guard: RespGuard;
  /** False with the allow-all guard (auth off): no per-delivery checks. */
  filtering: boolean;
  limit: PubsubLimit;
  /** The notify-keyspace-events flags at start (KVSQL_REDIS_NOTIFY_KEYSPACE_EVENTS). */
  notifyFlags: number;
  /** Null: the interim LocalKeyspaceSource. */
  keyspaceSource: KeyspaceSource | null;
  publishBus: PublishBus | null;
  log: { warn(obj: object, msg: string): void };
  /** The clock (ms) of the soft limit. */
  now?: () => number;
}

export class PubsubHub {
  readonly channels = new Map<string, Set<Subscriber>>();
  readonly shardChannels = new Map<string, Set<Subscriber>>();
  readonly patterns = new Map<string, Pattern>();
  readonly guard: RespGuard;
  readonly limit: PubsubLimit;
  private flags = 0;
  /** Some class and K or E are on: notifications go out. */
  private notifyOn = false;
  /** The interim source, when it is the one in use. */
  readonly local: LocalKeyspaceSource | null;
  /** Subscribers cut off by the output-buffer limit since start. */
  cutOff = 0;
  private readonly filtering: boolean;
  private readonly bus: PublishBus | null;
  private readonly log: HubOptions['log'];
  private readonly now: () => number;
  private readonly source: KeyspaceSource;
  /** Stops the source's subscription while one is open. */
  private stopSource: (() => void) | null = null;
  private stopBus: (() => void) | null = null;
  /** Pushes held back for the publishing connection: [subscriber, frame, subscriber, frame, ...]. */
  private readonly deferred: Array<Subscriber | Buffer> = [];

  constructor(o: HubOptions) {
    this.guard = o.guard;
    this.filtering = o.filtering;
    this.limit = o.limit;
    this.bus = o.publishBus;
    this.log = o.log;
    this.now = o.now ?? Date.now;
    this.source = o.keyspaceSource ?? new LocalKeyspaceSource();
    this.local = o.keyspaceSource === null ? (this.source as LocalKeyspaceSource) : null;
    this.notifyFlags = o.notifyFlags;
    if (this.bus !== null) this.stopBus = this.bus.subscribe((ch, msg, shard) => void this.deliver(ch, msg, shard, null));
  }

  /** Opens or closes the source's subscription: open exactly while notifications are on and someone listens. */
  private updateSource(): void {
    const want = this.notifyOn && (this.channels.size > 0 || this.patterns.size > 0) && !this.closed;
    if (want && this.stopSource === null) this.stopSource = this.source.subscribe(this.onKeyspaceEvent);
    else if (!want && this.stopSource !== null) {
      this.stopSource();
      this.stopSource = null;
    }
  }

  private readonly onKeyspaceEvent = (e: KeyspaceEvent): void => this.notify(e);
  private closed = false;

  /** notify-keyspace-events as Redis's bits (0: off, the default). */
  get notifyFlags(): number {
    return this.flags;
  }
  set notifyFlags(f: number) {
    this.flags = f;
    this.notifyOn = notifying(f);
    this.updateSource();
  }

  /**
   * The interim source to tap writes with, or null (notifications off, nobody subscribed, or the
   * feed is the source). Read on every write op: one field read when off.
   */
  get tap(): LocalKeyspaceSource | null {
    return this.stopSource !== null ? this.local : null;
  }

  close(): void {
    this.closed = true;
    this.updateSource();
    this.stopBus?.();
    this.stopBus = null;
  }

  // --- subscriptions ---------------------------------------------------------------------------

  addChannel(s: Subscriber, ch: Buffer, shard: boolean): void {
    const mine = shard ? s.shardChannels : s.channels;
    const k = ch.toString('latin1');
    if (mine.has(k)) return;
    mine.add(k);
    const all = shard ? this.shardChannels : this.channels;
    let set = all.get(k);
    if (set === undefined) {
      all.set(k, (set = new Set()));
      if (all.size === 1) this.updateSource();
    }
    set.add(s);
  }

  /** True when `s` was subscribed to `ch`. */
  removeChannel(s: Subscriber, k: string, shard: boolean): boolean {
    const mine = shard ? s.shardChannels : s.channels;
    if (!mine.delete(k)) return false;
    const all = shard ? this.shardChannels : this.channels;
    const set = all.get(k)!;
    set.delete(s);
    // Free the entry with its last subscriber (Redis does too: millions of short-lived channels cost nothing once gone).
    if (set.size === 0) {
      all.delete(k);
      if (all.size === 0) this.updateSource();
    }
    return true;
  }

  addPattern(s: Subscriber, pat: Buffer): void {
    const k = pat.toString('latin1');
    if (s.patterns.has(k)) return;
    s.patterns.add(k);
    let p = this.patterns.get(k);
    if (p === undefined) {
      this.patterns.set(k, (p = { bytes: Buffer.from(pat), glob: compileGlob(pat), subs: new Set() }));
      if (this.patterns.size === 1) this.updateSource();
    }
    p.subs.add(s);
  }

  removePattern(s: Subscriber, k: string): boolean {
    if (!s.patterns.delete(k)) return false;
    const p = this.patterns.get(k)!;
    p.subs.delete(s);
    if (p.subs.size === 0) {
      this.patterns.delete(k);
      if (this.patterns.size === 0) this.updateSource();
    }
    return true;
  }

  /** A connection closed or was RESET: every subscription goes, with no confirmation. */
  drop(s: Subscriber): void {
    s.dead = true;
    for (const k of [...s.channels]) this.removeChannel(s, k, false);
    for (const k of [...s.shardChannels]) this.removeChannel(s, k, true);
    for (const k of [...s.patterns]) this.removePattern(s, k);
  }

  // --- delivery --------------------------------------------------------------------------------

  /**
   * Delivers one message to this gateway's subscribers of `channel` (and, unless `shard`, of the
   * patterns matching it); the number of subscribers reached, as PUBLISH replies. `key` is the key
   * of a keyspace notification (its reader may see it), null for a PUBLISH (the channel's reader may).
   */
  deliver(channel: Buffer, msg: Buffer, shard: boolean, key: Uint8Array | null, self: PubsubCall | null = null): number {
    let n = 0;
    const allowed = key ?? channel;
    const subs = (shard ? this.shardChannels : this.channels).get(channel.toString('latin1'));
    if (subs !== undefined) {
      const kind = shard ? 'smessage' : 'message';
      let f2: Buffer | null = null;
      let f3: Buffer | null = null;
      for (const s of subs) {
        if (s.dead || (this.filtering && !this.guard.allows(s.conn, OP_GET, allowed))) continue;
        const f = s.conn.proto === 3 ? (f3 ??= message(3, kind, channel, msg)) : (f2 ??= message(2, kind, channel, msg));
        if (s.conn === self) this.deferred.push(s, f);
        else this.send(s, f);
        n++;
      }
    }
    if (shard || this.patterns.size === 0) return n;
    for (const p of this.patterns.values()) {
      if (!p.glob.matches(channel)) continue;
      let f2: Buffer | null = null;
      let f3: Buffer | null = null;
      for (const s of p.subs) {
        if (s.dead || (this.filtering && !this.guard.allows(s.conn, OP_GET, allowed))) continue;
        const f = s.conn.proto === 3 ? (f3 ??= pmessage(3, p.bytes, channel, msg)) : (f2 ??= pmessage(2, p.bytes, channel, msg));
        if (s.conn === self) this.deferred.push(s, f);
        else this.send(s, f);
        n++;
      }
    }
    return n;
  }

  /**
   * PUBLISH / SPUBLISH by `from`: here, then (fire-and-forget) to the other gateways. Messages to
   * `from` itself wait in `deferred` until its reply is queued (sendDeferred), as Redis 7.2 sends
   * a client's own pushes after the reply of the command that caused them.
   */
  publish(channel: Buffer, msg: Buffer, shard: boolean, from: PubsubCall): number {
    const n = this.deliver(channel, msg, shard, null, from);
    this.bus?.publish(channel, msg, shard);
    return n;
  }

  sendDeferred(): void {
    if (this.deferred.length === 0) return;
    const d = this.deferred.splice(0);
    for (let i = 0; i < d.length; i += 2) if (!(d[i] as Subscriber).dead) this.send(d[i] as Subscriber, d[i + 1] as Buffer);
  }

  /** Queue a frame, then apply Redis's pubsub output-buffer limit (checkClientOutputBufferLimits). */
  private send(s: Subscriber, f: Buffer): void {
    const c = s.conn;
    c.push(f);
    const { hardBytes, softBytes, softSeconds } = this.limit;
    const used = c.outputBytes;
    let cut = hardBytes > 0 && used >= hardBytes;
    if (!cut && softBytes > 0 && used >= softBytes) {
      const now = this.now();
      if (s.softSince === 0) s.softSince = now;
      else if (now - s.softSince > softSeconds * 1000) cut = true;
    } else if (!cut) {
      s.softSince = 0;
    }
    if (!cut) return;
    this.cutOff++;
    this.log.warn({ client: c.remoteAddress, id: c.id, outputBytes: used, limit: this.limit }, 'redis subscriber closed: its output buffer passed the pubsub limit (client-output-buffer-limit)');
    this.drop(s);
    c.kill('pubsub output buffer limit');
  }

  /** One change from the keyspace source: Redis's notifications for it, as the flags say. */
  notify(e: KeyspaceEvent): void {
    const flags = this.flags;
    if (!this.notifyOn || (this.channels.size === 0 && this.patterns.size === 0)) return;
    let key: Buffer | null = null;
    for (const [cls, name] of redisEventsOf(e)) {
      if ((flags & cls) === 0) continue;
      key ??= Buffer.from(e.key.buffer, e.key.byteOffset, e.key.byteLength);
      const event = Buffer.from(name, 'latin1');
      if ((flags & NOTIFY_KEYSPACE) !== 0) this.deliver(Buffer.concat([KEYSPACE_PREFIX, key]), event, false, key);
      if ((flags & NOTIFY_KEYEVENT) !== 0) this.deliver(Buffer.concat([KEYEVENT_PREFIX, event]), key, false, key);
    }
  }

  // --- rights ----------------------------------------------------------------------------------

  /**
   * Channels are named like keys and follow the key prefix rules: subscribing to a channel needs
   * the read right on its name, publishing the write right. `__keyspace@0__:<key>` needs the read
   * right on <key>; `__keyevent@0__:<event>` is open to every session (each message, a key name,
   * goes only to those who may read that key).
   */
  authorizeChannel(c: PubsubCall, ch: Buffer): void {
    if (!this.filtering) return;
    if (startsWith(ch, KEYSPACE_PREFIX)) this.guard.authorize(c, OP_GET, ch.subarray(KEYSPACE_PREFIX.length));
    else if (!startsWith(ch, KEYEVENT_PREFIX)) this.guard.authorize(c, OP_GET, ch);
  }

  /** PUBLISH needs the write right on the channel's name. */
  authorizePublish(c: PubsubCall, ch: Buffer): void {
    if (this.filtering) this.guard.authorize(c, OP_PUT, ch);
  }

  /** A pattern needs the read right on its literal prefix (as SCAN MATCH), read the same way. */
  authorizePattern(c: PubsubCall, pat: Buffer): void {
    if (!this.filtering) return;
    const prefix = compileGlob(pat).prefix;
    if (startsWith(prefix, KEYSPACE_PREFIX)) this.guard.authorize(c, OP_GET, prefix.subarray(KEYSPACE_PREFIX.length));
    else if (!startsWith(prefix, KEYEVENT_PREFIX)) this.guard.authorize(c, OP_GET, prefix);
  }

  // --- CONFIG ----------------------------------------------------------------------------------

  /** What CONFIG GET shows of pub/sub. */
  configValues(): Array<[string, string]> {
    const l = this.limit;
    return [
      ['notify-keyspace-events', notifyFlagsText(this.notifyFlags)],
      ['client-output-buffer-limit', `normal 0 0 0 slave 268435456 67108864 60 pubsub ${l.hardBytes} ${l.softBytes} ${l.softSeconds}`],
    ];
  }
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

export type PubsubHandler = (c: PubsubCall, args: Buffer[]) => void;

/** In RESP2 subscribed mode only these run (Redis's processCommand). */
export const SUBSCRIBED_MODE_COMMANDS: ReadonlySet<string> = new Set(['ping', 'subscribe', 'ssubscribe', 'unsubscribe', 'sunsubscribe', 'psubscribe', 'punsubscribe', 'quit', 'reset']);

/** Commands whose name in errors includes the subcommand (Redis's fullname, e.g. `config|get`). */
const CONTAINERS: ReadonlySet<string> = new Set(['client', 'command', 'config', 'pubsub']);

/** True when a RESP2 connection is in subscribed mode (any subscription). */
export function inSubscribedMode(c: { sub: Subscriber | null; proto: Proto }): boolean {
  return c.sub !== null && c.proto === 2 && c.sub.total > 0;
}

/** Redis's refusal of other commands in subscribed mode. */
export function subscribedModeError(name: string, args: Buffer[]): string {
  const full = CONTAINERS.has(name) && args.length > 1 ? `${name}|${args[1].toString('latin1').toLowerCase()}` : name;
  return resp.error(`ERR Can't execute '${full}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context`);
}

/** PING in RESP2 subscribed mode: ["pong", arg or ""]. */
export function subscribedPing(args: Buffer[]): Buffer {
  return frame('*2\r\n' + BULK('pong'), [args.length > 1 ? args[1] : Buffer.alloc(0)], 2);
}

const wrongArgs = (name: string): string => resp.error(`ERR wrong number of arguments for '${name}' command`);
const EMPTY = Buffer.alloc(0);

const concat = (parts: Buffer[]): Buffer => (parts.length === 1 ? parts[0] : Buffer.concat(parts));

const subscribe = (shard: boolean): PubsubHandler => (c, a) => {
  const hub = c.pubsub;
  for (let i = 1; i < a.length; i++) hub.authorizeChannel(c, a[i]); // all before any: refused whole
  const s = (c.sub ??= new Subscriber(c));
  const parts: Buffer[] = [];
  for (let i = 1; i < a.length; i++) {
    hub.addChannel(s, a[i], shard);
    parts.push(confirm(c.proto, shard ? 'ssubscribe' : 'subscribe', a[i], shard ? s.shardChannels.size : s.count));
  }
  c.reply(concat(parts));
};

const unsubscribe = (shard: boolean): PubsubHandler => (c, a) => {
  const hub = c.pubsub;
  const kind = shard ? 'sunsubscribe' : 'unsubscribe';
  const s = c.sub;
  const count = (): number => (s === null ? 0 : shard ? s.shardChannels.size : s.count);
  const parts: Buffer[] = [];
  if (a.length === 1) {
    const all = s === null ? [] : [...(shard ? s.shardChannels : s.channels)];
    for (const k of all) {
      hub.removeChannel(s!, k, shard);
      parts.push(confirm(c.proto, kind, Buffer.from(k, 'latin1'), count()));
    }
    if (all.length === 0) parts.push(confirm(c.proto, kind, null, count()));
  } else {
    for (let i = 1; i < a.length; i++) {
      if (s !== null) hub.removeChannel(s, a[i].toString('latin1'), shard);
      parts.push(confirm(c.proto, kind, a[i], count()));
    }
  }
  c.reply(concat(parts));
};

const psubscribe: PubsubHandler = (c, a) => {
  const hub = c.pubsub;
  for (let i = 1; i < a.length; i++) hub.authorizePattern(c, a[i]);
  const s = (c.sub ??= new Subscriber(c));
  const parts: Buffer[] = [];
  for (let i = 1; i < a.length; i++) {
    hub.addPattern(s, a[i]);
    parts.push(confirm(c.proto, 'psubscribe', a[i], s.count));
  }
  c.reply(concat(parts));
};

const punsubscribe: PubsubHandler = (c, a) => {
  const hub = c.pubsub;
  const s = c.sub;
  const count = (): number => (s === null ? 0 : s.count);
  const parts: Buffer[] = [];
  if (a.length === 1) {
    const all = s === null ? [] : [...s.patterns];
    for (const k of all) {
      hub.removePattern(s!, k);
      parts.push(confirm(c.proto, 'punsubscribe', Buffer.from(k, 'latin1'), count()));
    }
    if (all.length === 0) parts.push(confirm(c.proto, 'punsubscribe', null, count()));
  } else {
    for (let i = 1; i < a.length; i++) {
      if (s !== null) hub.removePattern(s, a[i].toString('latin1'));
      parts.push(confirm(c.proto, 'punsubscribe', a[i], count()));
    }
  }
  c.reply(concat(parts));
};

const publish = (shard: boolean): PubsubHandler => (c, a) => {
  c.pubsub.authorizePublish(c, a[1]);
  c.reply(resp.integer(c.pubsub.publish(a[1], a[2], shard, c)));
  c.pubsub.sendDeferred();
};

const PUBSUB_HELP = [
  'PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:',
  'CHANNELS [<pattern>]',
  "    Return the currently active channels matching a <pattern> (default: '*').",
  'NUMPAT',
  '    Return number of subscriptions to patterns.',
  'NUMSUB [<channel> ...]',
  '    Return the number of subscribers for the specified channels, excluding',
  '    pattern subscriptions(default: no channels).',
  'SHARDCHANNELS [<pattern>]',
  "    Return the currently active shard level channels matching a <pattern> (default: '*').",
  'SHARDNUMSUB [<shardchannel> ...]',
  '    Return the number of subscribers for the specified shard level channel(s)',
  'HELP',
  '    Print this help.',
];

/** PUBSUB CHANNELS/SHARDCHANNELS [pattern], NUMSUB/SHARDNUMSUB [channel...], NUMPAT, HELP. */
const pubsub: PubsubHandler = (c, a) => {
  const hub = c.pubsub;
  const sub = a[1].toString('latin1').toLowerCase();
  const syntax = (): void => c.reply(resp.error(`ERR unknown subcommand or wrong number of arguments for '${a[1].toString('utf8', 0, 128)}'. Try PUBSUB HELP.`));
  switch (sub) {
    case 'help':
      if (a.length !== 2) return syntax();
      return c.reply(Buffer.concat([Buffer.from(resp.arrayHeader(PUBSUB_HELP.length)), ...PUBSUB_HELP.map((l) => Buffer.from(resp.simple(l)))]));
    case 'channels':
    case 'shardchannels': {
      if (a.length > 3) return syntax();
      const pattern = a.length === 3 ? a[2] : null;
      // Listing channels is listing names: the read right on the pattern's literal prefix (or all).
      hub.authorizePattern(c, pattern ?? EMPTY);
      const glob = pattern === null ? null : compileGlob(pattern);
      const out: Buffer[] = [];
      for (const k of (sub === 'channels' ? hub.channels : hub.shardChannels).keys()) {
        const b = Buffer.from(k, 'latin1');
        if (glob === null || glob.matches(b)) out.push(resp.bulk(b));
      }
      return c.reply(Buffer.concat([Buffer.from(resp.arrayHeader(out.length)), ...out]));
    }
    case 'numsub':
    case 'shardnumsub': {
      for (let i = 2; i < a.length; i++) hub.authorizeChannel(c, a[i]);
      const map = sub === 'numsub' ? hub.channels : hub.shardChannels;
      const out: Buffer[] = [Buffer.from(resp.arrayHeader((a.length - 2) * 2))];
      for (let i = 2; i < a.length; i++) {
        out.push(resp.bulk(a[i]), Buffer.from(resp.integer(map.get(a[i].toString('latin1'))?.size ?? 0)));
      }
      return c.reply(Buffer.concat(out));
    }
    case 'numpat':
      if (a.length !== 2) return c.reply(wrongArgs('pubsub|numpat'));
      return c.reply(resp.integer(hub.patterns.size));
    default:
      return c.reply(resp.error(`ERR unknown subcommand '${a[1].toString('utf8', 0, 128)}'. Try PUBSUB HELP.`));
  }
};

/**
 * RESET (Redis 6.2): leave subscribed mode without confirmations, back to RESP2, no name, not
 * authenticated (with auth on; as Redis's default user with a password), then `+RESET`.
 */
const reset: PubsubHandler = (c) => {
  if (c.sub !== null) {
    c.pubsub.drop(c.sub);
    c.sub = null;
  }
  c.proto = 2;
  c.name = null;
  c.pubsub.guard.forget(c);
  c.reply(resp.simple('RESET'));
};

const arity = (name: string, n: number, h: PubsubHandler): PubsubHandler => (c, a) => {
  if (n >= 0 ? a.length !== n : a.length < -n) return c.reply(wrongArgs(name));
  h(c, a);
};

/** [name, handler, COMMAND info: arity, flags, first key, last key, step] (Redis 7's). */
export const PUBSUB_COMMANDS: Array<[string, PubsubHandler, number, string[], number, number, number]> = [
  ['subscribe', arity('subscribe', -2, subscribe(false)), -2, ['pubsub', 'noscript', 'loading', 'stale'], 0, 0, 0],
  ['unsubscribe', unsubscribe(false), -1, ['pubsub', 'noscript', 'loading', 'stale'], 0, 0, 0],
  ['psubscribe', arity('psubscribe', -2, psubscribe), -2, ['pubsub', 'noscript', 'loading', 'stale'], 0, 0, 0],
  ['punsubscribe', punsubscribe, -1, ['pubsub', 'noscript', 'loading', 'stale'], 0, 0, 0],
  ['ssubscribe', arity('ssubscribe', -2, subscribe(true)), -2, ['pubsub', 'noscript', 'loading', 'stale'], 1, -1, 1],
  ['sunsubscribe', unsubscribe(true), -1, ['pubsub', 'noscript', 'loading', 'stale'], 1, -1, 1],
  ['publish', arity('publish', 3, publish(false)), 3, ['pubsub', 'loading', 'stale', 'fast', 'may_replicate'], 0, 0, 0],
  ['spublish', arity('spublish', 3, publish(true)), 3, ['pubsub', 'loading', 'stale', 'fast', 'may_replicate'], 1, 1, 1],
  ['pubsub', arity('pubsub', -2, pubsub), -2, [], 0, 0, 0],
  ['reset', arity('reset', 1, reset), 1, ['noscript', 'loading', 'stale', 'fast', 'no_auth', 'allow_busy'], 0, 0, 0],
];

// ---------------------------------------------------------------------------------------------
// CONFIG SET notify-keyspace-events
// ---------------------------------------------------------------------------------------------

/**
 * CONFIG SET name value [name value ...]: only notify-keyspace-events can be set (this gateway's,
 * until restart; KVSQL_REDIS_NOTIFY_KEYSPACE_EVENTS sets it on every gateway at start). All or
 * nothing, as Redis. With auth on it needs the admin right, as CONFIG needs @admin in Redis's ACL.
 */
export function configSet(c: PubsubCall, args: Buffer[]): void {
  if (args.length < 4 || args.length % 2 !== 0) return c.reply(wrongArgs('config|set'));
  const hub = c.pubsub;
  let flags: number | null = null;
  const seen = new Set<string>();
  for (let i = 2; i < args.length; i += 2) {
    const name = args[i].toString('latin1').toLowerCase();
    if (seen.has(name)) return c.reply(resp.error(`ERR CONFIG SET failed (possibly related to argument '${name}') - duplicate parameter`));
    seen.add(name);
    if (name !== 'notify-keyspace-events') {
      return c.reply(resp.error(`ERR CONFIG SET ${args[i].toString('utf8', 0, 64)} is not supported by kvsql (only notify-keyspace-events is); configure it with KVSQL_* settings`));
    }
    flags = notifyFlagsOf(args[i + 1].toString('latin1'));
    if (flags === -1) return c.reply(resp.error(`ERR CONFIG SET failed (possibly related to argument '${name}') - ${BAD_NOTIFY_FLAGS}`));
  }
  if (!hub.guard.isAdmin(c)) return c.reply(resp.error('NOPERM KV_ERR_FORBIDDEN CONFIG SET needs a token with the admin right'));
  hub.notifyFlags = flags!;
  c.reply(resp.OK);
}
