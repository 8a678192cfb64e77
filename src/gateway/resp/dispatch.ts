/**
 * Owns what happens between a parsed request and its handler, in this order: the guard's check,
 * the command's row (command-table.ts; unknown -> error), RESP2 subscribed mode, an oversized
 * argument, RESET's discarding of MULTI, the MULTI rule of the row, the row's arity, then the
 * handler, whose throw (a KvError, or a bug) becomes its error reply. Inside MULTI a command's ops
 * are recorded, not submitted, and it answers QUEUED. Relies on the command table, errors.ts and
 * the connection's state (txn, recording, parser). Must not write to the socket: every answer goes
 * through Conn.reply, in request order.
 *
 *   args ─> guard.check ─> row ─> subscribed mode ─> oversized ─> MULTI rule ─> arity ─> handler
 *              │ refused      │ unknown                 │             │ refused    │ wrong
 *              └──────────────┴─── error reply (inside MULTI: EXEC will answer EXECABORT) ───┘
 */
import * as resp from '../../protocol/resp';
import { arityFits, BY_NAME } from './command-table';
import type { Conn } from './connection';
import { codeError, thrownError, unknownCommand, wrongArgs } from './errors';
import { inSubscribedMode, SUBSCRIBED_MODE_COMMANDS, subscribedModeError } from './pubsub-commands';

/** Run one request on `c`: its reply (or QUEUED) is queued on `c` before this returns, or later by the shards. */
export function dispatch(c: Conn, args: Buffer[]): void {
  const name = args[0].toString('latin1').toLowerCase();
  const srv = c.srv;
  const row = BY_NAME.get(name);
  const queueing = c.txn.queued !== null && row?.multi !== 'control';
  // Inside MULTI a command refused now makes EXEC abort (EXECABORT), as in Redis.
  const refuse = (out: string): void => {
    if (queueing) c.txn.dirty = true;
    c.reply(out);
  };
  const denied = srv.guard.check(c, name);
  if (denied !== null) return refuse(resp.error(denied));
  if (row === undefined) return refuse(unknownCommand(args));
  if (c.sub !== null && inSubscribedMode(c) && !SUBSCRIBED_MODE_COMMANDS.has(name)) return c.reply(subscribedModeError(name, args));
  if (c.parser.oversized > 0) {
    const code = name === 'set' ? 'KV_ERR_VALUE_TOO_LARGE' : 'KV_ERR_BAD_REQUEST';
    return refuse(codeError(code, `an argument of ${c.parser.oversized} bytes exceeds the limit of ${srv.limits.maxValueBytes} bytes`));
  }
  if (name === 'reset') {
    c.txn.queued = null; // RESET also discards MULTI and forgets the watches
    c.txn.unwatch();
  }
  if (queueing && row.multi === 'refused') return refuse(resp.error(`ERR ${name.toUpperCase()} cannot be queued in MULTI in kvsql`));
  if (queueing) c.recording = { ops: [], local: null, reply: null, failed: false };
  try {
    // A wrong arity inside MULTI is noticed by Conn.reply (the command fails, EXEC aborts).
    if (!arityFits(row, args)) c.reply(wrongArgs(name));
    else row.handler(c, args);
  } catch (err) {
    c.recording = null;
    refuse(thrownError(err));
    return;
  }
  const rec = c.recording;
  if (rec === null) return;
  c.recording = null;
  if (rec.failed) return;
  c.txn.queued!.push(rec);
  c.reply(resp.QUEUED);
}
