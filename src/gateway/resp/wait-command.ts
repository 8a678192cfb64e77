/**
 * Owns the Redis door's WAIT: how many replicas have this connection's last write. Relies on the
 * connection (its last write's slot, `promised`) and the pool (which shard serves the slot, and
 * waitReplicas: 0 at once on a single server, a Galera group's count from its actor,
 * shard-actor/replica-wait.ts). Must not touch sockets or MySQL.
 *
 * Redis's master is the node written through; its replicas are the other nodes of the shard's
 * Galera group. The count covers the shard of the connection's last write (with every earlier
 * write of the connection on that shard), not writes it made on other shards before. A timeout of
 * 0 (Redis: block until reached) waits at most KVSQL_OP_DEADLINE_MS, then answers the count so far.
 */
import * as resp from '../../protocol/resp';
import { parseInt64 } from '../../protocol/numbers';
import type { RowTuple } from './command-api';
import type { Conn } from './connection';
import { ERR_NOT_INTEGER } from './errors';
import { Kind } from './pending-command';

const wait = (c: Conn, args: Buffer[]): void => {
  const want = parseInt64(args[1]);
  if (want === null) return c.reply(ERR_NOT_INTEGER);
  const timeout = parseInt64(args[2]);
  if (timeout === null) return c.reply(resp.error('ERR timeout is not an integer or out of range'));
  if (timeout < 0n) return c.reply(resp.error('ERR timeout is negative'));
  // No write yet: nothing to wait for, and no shard to ask.
  if (c.lastWriteSlot < 0) return c.reply(resp.integer(0));
  const pool = c.srv.ctx.pool;
  const shard = pool.shardOfSlot(c.lastWriteSlot);
  if (shard < 0) return c.reply(resp.error('ERR KV_ERR_SHARD_UNAVAILABLE no shard serves the slot of the last write'));
  const timeoutMs = timeout === 0n || timeout > BigInt(pool.opDeadlineMs) ? pool.opDeadlineMs : Number(timeout);
  const replicas = want > 1000n ? 1000 : want < 0n ? 0 : Number(want);
  c.promised(Kind.Custom, async () => resp.integer(await pool.waitReplicas(shard, replicas, timeoutMs)), 'wait');
};

/** [name, handler, arity, flags, first key, last key, step, in MULTI] as COMMAND shows them (Redis 7's). */
export const WAIT_COMMANDS: ReadonlyArray<RowTuple<Conn>> = [['wait', wait, 3, ['noscript'], 0, 0, 0, 'refused']];
