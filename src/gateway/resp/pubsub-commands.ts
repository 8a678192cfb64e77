/**
 * Owns pub/sub's commands on the Redis door: SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their
 * UNSUBSCRIBEs, PUBLISH, SPUBLISH, PUBSUB, RESET, the subscribed-mode rules of RESP2, and CONFIG SET
 * (only notify-keyspace-events can be set). Relies on the connection's PubsubCall (command-api.ts),
 * the hub (pubsub-hub.ts), pubsub-frames.ts, errors.ts and protocol/redis-notify (flags). Must not
 * deliver messages itself (the hub does) or touch the shards.
 */
import { compileGlob } from '../../protocol/redis-keyspace';
import { BAD_NOTIFY_FLAGS, notifyFlagsOf } from '../../protocol/redis-notify';
import * as resp from '../../protocol/resp';
import type { Proto } from '../../protocol/resp';
import type { PubsubCall, RowTuple } from './command-api';
import { codeError, unknownSubcommand, wrongArgs } from './errors';
import { BULK, confirm, frame } from './pubsub-frames';
import { Subscriber } from './pubsub-hub';

export type PubsubHandler = (c: PubsubCall, args: Buffer[]) => void;

/** In RESP2 subscribed mode only these run (Redis's processCommand). */
export const SUBSCRIBED_MODE_COMMANDS: ReadonlySet<string> = new Set([
  'ping',
  'subscribe',
  'ssubscribe',
  'unsubscribe',
  'sunsubscribe',
  'psubscribe',
  'punsubscribe',
  'quit',
  'reset',
]);

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

const EMPTY = Buffer.alloc(0);

const concat = (parts: Buffer[]): Buffer => (parts.length === 1 ? parts[0] : Buffer.concat(parts));

const subscribe =
  (shard: boolean): PubsubHandler =>
  (c, a) => {
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

const unsubscribe =
  (shard: boolean): PubsubHandler =>
  (c, a) => {
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

const publish =
  (shard: boolean): PubsubHandler =>
  (c, a) => {
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
  const syntax = (): void =>
    c.reply(resp.error(`ERR unknown subcommand or wrong number of arguments for '${a[1].toString('utf8', 0, 128)}'. Try PUBSUB HELP.`));
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
      return c.reply(unknownSubcommand(a[1], 'PUBSUB', 128));
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

/**
 * [name, handler, arity, flags, first key, last key, step, in MULTI] as COMMAND shows them (Redis
 * 7's). Pub/sub acts when queued, not at EXEC, so inside MULTI it is refused rather than out of
 * order; RESET is 'control' (it also discards MULTI).
 */
export const PUBSUB_COMMANDS: ReadonlyArray<RowTuple<PubsubCall>> = [
  ['subscribe', subscribe(false), -2, ['pubsub', 'noscript', 'loading', 'stale'], 0, 0, 0, 'refused'],
  ['unsubscribe', unsubscribe(false), -1, ['pubsub', 'noscript', 'loading', 'stale'], 0, 0, 0, 'refused'],
  ['psubscribe', psubscribe, -2, ['pubsub', 'noscript', 'loading', 'stale'], 0, 0, 0, 'refused'],
  ['punsubscribe', punsubscribe, -1, ['pubsub', 'noscript', 'loading', 'stale'], 0, 0, 0, 'refused'],
  ['ssubscribe', subscribe(true), -2, ['pubsub', 'noscript', 'loading', 'stale'], 1, -1, 1, 'refused'],
  ['sunsubscribe', unsubscribe(true), -1, ['pubsub', 'noscript', 'loading', 'stale'], 1, -1, 1, 'refused'],
  ['publish', publish(false), 3, ['pubsub', 'loading', 'stale', 'fast', 'may_replicate'], 0, 0, 0, 'refused'],
  ['spublish', publish(true), 3, ['pubsub', 'loading', 'stale', 'fast', 'may_replicate'], 1, 1, 1, 'refused'],
  ['pubsub', pubsub, -2, [], 0, 0, 0],
  ['reset', reset, 1, ['noscript', 'loading', 'stale', 'fast', 'no_auth', 'allow_busy'], 0, 0, 0, 'control'],
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
      return c.reply(
        resp.error(
          `ERR CONFIG SET ${args[i].toString('utf8', 0, 64)} is not supported by kvsql (only notify-keyspace-events is); configure it with KVSQL_* settings`,
        ),
      );
    }
    flags = notifyFlagsOf(args[i + 1].toString('latin1'));
    if (flags === -1) return c.reply(resp.error(`ERR CONFIG SET failed (possibly related to argument '${name}') - ${BAD_NOTIFY_FLAGS}`));
  }
  if (!hub.guard.isAdmin(c)) return c.reply(codeError('KV_ERR_FORBIDDEN', 'CONFIG SET needs a token with the admin right'));
  hub.notifyFlags = flags!;
  c.reply(resp.OK);
}
