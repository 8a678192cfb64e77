/**
 * Owns the Redis door's one command table: every command kvsql answers, one row each (name,
 * handler, arity, flags, key positions, how it behaves in MULTI), gathered from the families'
 * lists, and COMMAND, which shows it. Dispatch (dispatch.ts) finds a command's row here and checks
 * its arity and MULTI rule from it; the auth guard reads the `no_auth` flag (NO_AUTH_COMMANDS);
 * COMMAND, COMMAND COUNT/INFO/LIST print it. A new command is one row in its family and one handler.
 * Relies on the command families. Must not hold a handler's logic, nor touch sockets or the pool.
 *
 *   family list (RowTuple)          ──> COMMANDS (rows, in COMMAND's order) ──> BY_NAME (dispatch)
 *   core, server, COMMAND, strings,                                       └──> COMMAND's replies
 *   transactions, scripts, keyspace, flush, WAIT, pub/sub                 └──> NO_AUTH_COMMANDS
 */
import * as resp from '../../protocol/resp';
import { RespMap, Simple, type RespValue } from '../../protocol/resp';
import { lc } from './args';
import type { CommandRow, RowTuple } from './command-api';
import type { Conn } from './connection';
import { CORE_COMMANDS } from './core-commands';
import { FLUSH_COMMANDS } from './flush-commands';
import { unknownSubcommand } from './errors';
import { KEYSPACE_COMMANDS } from './keyspace-commands';
import { PUBSUB_COMMANDS } from './pubsub-commands';
import { SCRIPT_COMMANDS } from './scripts';
import { SERVER_COMMANDS } from './server-commands';
import { STRING_COMMANDS } from './string-commands';
import { TXN_COMMANDS } from './transactions';
import { WAIT_COMMANDS } from './wait-command';

/** COMMAND [COUNT | INFO name... | DOCS | LIST]: the table as Redis 7 shows its own. */
const command = (c: Conn, args: Buffer[]): void => {
  if (args.length === 1) return c.reply(resp.encode(COMMANDS.map(commandInfo), c.proto));
  const sub = lc(args[1]);
  if (sub === 'count') return c.reply(resp.integer(COMMANDS.length));
  if (sub === 'info') {
    const names = args.length > 2 ? args.slice(2).map(lc) : COMMANDS.map((e) => e.name);
    return c.reply(
      resp.encode(
        names.map((n) => {
          const e = BY_NAME.get(n);
          return e ? commandInfo(e) : null;
        }),
        c.proto,
      ),
    );
  }
  // redis-cli asks for docs to show hints; kvsql has none to give (an empty map is valid).
  if (sub === 'docs') return c.reply(resp.encode(new RespMap([]), c.proto));
  if (sub === 'list')
    return c.reply(
      resp.encode(
        COMMANDS.map((e) => e.name),
        c.proto,
      ),
    );
  c.reply(unknownSubcommand(args[1], 'COMMAND'));
};

const COMMAND_ROW: RowTuple<Conn> = ['command', command, -1, ['loading', 'stale'], 0, 0, 0];

const toRow = ([name, handler, arity, flags, firstKey, lastKey, keyStep, multi]: RowTuple<Conn>): CommandRow<Conn> =>
  Object.freeze({ name, handler, arity, flags, firstKey, lastKey, keyStep, multi });

/** Every command, in the order COMMAND lists them. (Each family's handlers take the part of Conn they use.) */
export const COMMANDS: ReadonlyArray<CommandRow<Conn>> = [
  ...CORE_COMMANDS,
  ...SERVER_COMMANDS,
  COMMAND_ROW,
  ...STRING_COMMANDS,
  ...TXN_COMMANDS,
  ...SCRIPT_COMMANDS,
  ...KEYSPACE_COMMANDS,
  ...FLUSH_COMMANDS,
  ...WAIT_COMMANDS,
  ...PUBSUB_COMMANDS,
].map(toRow);

/** A command's row by its lower-case name. */
export const BY_NAME: ReadonlyMap<string, CommandRow<Conn>> = new Map(COMMANDS.map((r) => [r.name, r]));

/** Commands a connection may send before it authenticated: the rows flagged `no_auth` (AUTH, HELLO, QUIT, RESET). */
export const NO_AUTH_COMMANDS: ReadonlySet<string> = new Set(COMMANDS.filter((r) => r.flags.includes('no_auth')).map((r) => r.name));

/** Redis 7 COMMAND info: [name, arity, flags, first key, last key, step, acl categories, tips, key specs, subcommands]. */
const commandInfo = (e: CommandRow<Conn>): RespValue => [e.name, e.arity, e.flags.map((f) => new Simple(f)), e.firstKey, e.lastKey, e.keyStep, [], [], [], []];

/** Whether `args` (the name counts) fits a row's arity: n exactly, or -n at least. */
export const arityFits = (r: { readonly arity: number }, args: Buffer[]): boolean => (r.arity >= 0 ? args.length === r.arity : args.length >= -r.arity);
