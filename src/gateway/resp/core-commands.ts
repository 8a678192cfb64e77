/**
 * Owns the Redis door's first key commands: GET, SET, DEL, UNLINK, EXISTS, MGET, TTL, PTTL,
 * PERSIST, each one op per key through the connection (its `one` and `many`), their replies made
 * by Kind (pending-command.ts). Relies on the connection's API, protocol/ops and
 * protocol/redis-options (SET's options, shared with scripts). Must not touch sockets, the pool or
 * the guard directly: the connection checks and authorizes every key before anything is submitted.
 */
import { FLAG_KEEP_TTL, OP_DEL, OP_GET, OP_PERSIST, OP_PUT, OP_TTL } from '../../protocol/ops';
import { isOptionError, parseSetOptions, SET_PAST_WITH_CONDITION } from '../../protocol/redis-options';
import * as resp from '../../protocol/resp';
import type { RowTuple } from './command-api';
import type { Conn } from './connection';
import { Kind } from './pending-command';
import { expiryOption } from './string-commands';

type Handler = (c: Conn, args: Buffer[]) => void;

/** SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT t|KEEPTTL] (options: protocol/redis-options). */
/** EXAT/PXAT made relative with this gateway's clock (string-commands.ts expiryOption); hoisted: SET is the hot command. */
const setExpiry = (unit: Parameters<typeof expiryOption>[0], arg: Buffer) => expiryOption(unit, arg, 'set');

const set: Handler = (c, args) => {
  const o = parseSetOptions(args, setExpiry);
  if (isOptionError(o)) return c.reply(resp.error(o.error));
  const { flags, get, ttlMs } = o;
  if (o.expiry && ttlMs <= 0 && (flags & FLAG_KEEP_TTL) === 0) {
    // An absolute time already past: the key would be set and expire at once, so it is deleted.
    if (get || flags !== 0) return c.reply(resp.error(SET_PAST_WITH_CONDITION.error));
    return c.ops('set', [{ op: OP_DEL, key: args[1] }], () => resp.OK);
  }
  if (get) return c.setGet(args[1], args[2], ttlMs, flags);
  c.one(Kind.Set, OP_PUT, args[1], args[2], ttlMs, flags);
};

/** [name, handler, arity, flags, first key, last key, step] as COMMAND shows them (Redis 7's). */
export const CORE_COMMANDS: ReadonlyArray<RowTuple<Conn>> = [
  ['get', (c, a) => c.one(Kind.Get, OP_GET, a[1], null, 0, 0), 2, ['readonly', 'fast'], 1, 1, 1],
  ['set', set, -3, ['write', 'denyoom'], 1, 1, 1],
  ['del', (c, a) => c.many(Kind.Del, OP_DEL, a), -2, ['write'], 1, -1, 1],
  ['unlink', (c, a) => c.many(Kind.Del, OP_DEL, a), -2, ['write', 'fast'], 1, -1, 1],
  ['exists', (c, a) => c.many(Kind.Exists, OP_TTL, a), -2, ['readonly', 'fast'], 1, -1, 1],
  ['mget', (c, a) => c.many(Kind.Mget, OP_GET, a), -2, ['readonly', 'fast'], 1, -1, 1],
  ['ttl', (c, a) => c.one(Kind.Ttl, OP_TTL, a[1], null, 0, 0), 2, ['readonly', 'fast'], 1, 1, 1],
  ['pttl', (c, a) => c.one(Kind.Pttl, OP_TTL, a[1], null, 0, 0), 2, ['readonly', 'fast'], 1, 1, 1],
  ['persist', (c, a) => c.one(Kind.Persist, OP_PERSIST, a[1], null, 0, 0), 2, ['write', 'fast'], 1, 1, 1],
];
