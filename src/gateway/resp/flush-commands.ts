/**
 * Owns the Redis door's FLUSHDB and FLUSHALL: who may run them and how they answer; the deleting
 * itself is key-flusher.ts. Relies on the connection's API (promised), the guard's admin right
 * and the door's context (flushEnabled). Must not touch sockets or MySQL.
 *
 * Both need two things: the setting (KVSQL_REDIS_FLUSH, off by default: one command that empties
 * a durable store is not something to have on by accident), and, with auth on, a token with the
 * admin right (as FLUSHALL is @dangerous in Redis's ACL); with auth off the setting alone decides.
 * kvsql has database 0 only, so FLUSHALL is FLUSHDB. ASYNC and SYNC are accepted and do the same:
 * the reply comes once every key is deleted (Redis answers ASYNC at once and frees in background).
 */
import * as resp from '../../protocol/resp';
import { flushAll } from '../key-flusher';
import { lc } from './args';
import type { RowTuple } from './command-api';
import type { Conn } from './connection';
import { codeError, ERR_SYNTAX } from './errors';
import { Kind } from './pending-command';

const flush =
  (name: string) =>
  (c: Conn, args: Buffer[]): void => {
    if (args.length > 2) return c.reply(ERR_SYNTAX);
    if (args.length === 2) {
      const mode = lc(args[1]);
      if (mode !== 'async' && mode !== 'sync') return c.reply(ERR_SYNTAX);
    }
    const upper = name.toUpperCase();
    if (c.srv.ctx.flushEnabled !== true) {
      return c.reply(resp.error(`ERR ${upper} is turned off on this store (KVSQL_REDIS_FLUSH=true turns it on, for admin tokens when auth is on)`));
    }
    if (!c.srv.guard.isAdmin(c)) return c.reply(codeError('KV_ERR_FORBIDDEN', `${upper} needs a token with the admin right`));
    const pool = c.srv.ctx.pool;
    c.promised(
      Kind.Custom,
      async () => {
        await flushAll(pool);
        return resp.OK;
      },
      name,
    );
  };

/** [name, handler, arity, flags, first key, last key, step, in MULTI] as COMMAND shows them (Redis 7's). */
export const FLUSH_COMMANDS: ReadonlyArray<RowTuple<Conn>> = [
  ['flushdb', flush('flushdb'), -1, ['write'], 0, 0, 0, 'refused'],
  ['flushall', flush('flushall'), -1, ['write'], 0, 0, 0, 'refused'],
];
