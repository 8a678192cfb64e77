/**
 * Owns this gateway's pub/sub hub: channel -> subscribers, patterns, delivery of messages and
 * keyspace notifications, channel rights, and the pubsub output-buffer limit. Relies on the
 * connections' PubsubCall (command-api.ts: push, the bytes not yet sent, kill), the guard (channel
 * rights), keyspace-source.ts (where events and other gateways' PUBLISHes come from),
 * pubsub-frames.ts, protocol/redis-keyspace (glob) and protocol/redis-notify (flags, event names).
 * Must not touch the shards (pub/sub stores nothing) or parse commands (pubsub-commands.ts does).
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
import { compileGlob, type Glob } from '../../protocol/redis-keyspace';
import {
  KEYEVENT_PREFIX,
  KEYSPACE_PREFIX,
  NOTIFY_KEYEVENT,
  NOTIFY_KEYSPACE,
  notifyFlagsText,
  notifying,
  redisEventsOf,
  startsWith,
  type KeyspaceEvent,
} from '../../protocol/redis-notify';
import { OP_GET, OP_PUT } from '../../protocol/ops';
import type { PubsubCall } from './command-api';
import type { RespGuard } from './guard';
import { LocalKeyspaceSource, type KeyspaceSource, type PublishBus } from './keyspace-source';
import { message, pmessage } from './pubsub-frames';

/** Redis's `client-output-buffer-limit pubsub <hard> <soft> <soft seconds>`; 0 turns a limit off. */
export interface PubsubLimit {
  hardBytes: number;
  softBytes: number;
  softSeconds: number;
}

/** Redis's default for the pubsub class: 32mb 8mb 60. */
export const DEFAULT_PUBSUB_LIMIT: PubsubLimit = Object.freeze({ hardBytes: 32 * 1024 * 1024, softBytes: 8 * 1024 * 1024, softSeconds: 60 });

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
    this.log.warn(
      { client: c.remoteAddress, id: c.id, outputBytes: used, limit: this.limit },
      'redis subscriber closed: its output buffer passed the pubsub limit (client-output-buffer-limit)',
    );
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
