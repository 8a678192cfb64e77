/**
 * Owns how an error is written on the Redis door: every error reply a command sends is built here
 * or from a text made here (a kvsql error by its registry code, Redis's own texts for arity, syntax,
 * integers, unknown commands and subcommands, CROSSSLOT). Relies on protocol/errors (the registry:
 * a code's status, what an unknown throw becomes) and protocol/resp (framing). Must not decide
 * which error applies: callers pass the code, the error or the command's name.
 *
 * The first word of a reply is what Redis clients key on:
 *
 *   KV_ERR_OUTCOME_UNKNOWN        -> UNCERTAIN <code> <message>   (never retry blindly: read first)
 *   KV_ERR_FORBIDDEN / _UNAUTHORIZED -> NOPERM / NOAUTH <code> <message>
 *   counters (not integer, ...)   -> ERR <message>                (Redis's exact texts)
 *   any 503                       -> TRYAGAIN <code> <message>
 *   a 500                         -> ERR <code> internal error    (protocol/errors clientMessage)
 *   the rest                      -> ERR <code> <message>
 *
 * and Redis's own texts for auth (NOAUTH, WRONGPASS), which clients key on.
 */
import { clientMessage, statusOf, toErrorData } from '../../protocol/errors';
import type { ErrorReply } from '../../protocol/ops';
import { NOT_INTEGER_ERROR, SYNTAX_ERROR } from '../../protocol/redis-options';
import * as resp from '../../protocol/resp';

/** A kvsql error as a Redis error reply's text (see the table above). */
export function errorText(code: string, message: string): string {
  if (code === 'KV_ERR_OUTCOME_UNKNOWN') return `UNCERTAIN ${code} ${message}`;
  // Redis's own words for ACL refusals, which clients recognise.
  if (code === 'KV_ERR_FORBIDDEN') return `NOPERM ${code} ${message}`;
  if (code === 'KV_ERR_UNAUTHORIZED') return `NOAUTH ${code} ${message}`;
  // Counters: Redis's exact texts (clients and tests match them), which the actor's messages are.
  if (code === 'KV_ERR_NOT_INTEGER' || code === 'KV_ERR_NOT_FLOAT' || code === 'KV_ERR_OVERFLOW') return `ERR ${message}`;
  const status = statusOf(code);
  if (status === 503) return `TRYAGAIN ${code} ${message}`;
  return `ERR ${code} ${clientMessage(code, message)}`;
}

/** Redis's reply to a command before AUTH (auth on). */
export const NOAUTH = 'NOAUTH Authentication required.';
/** Redis's reply to a bad password: here a token that is missing, malformed, unknown or revoked. */
export const WRONGPASS = 'WRONGPASS invalid username-password pair or user is disabled.';

/** A kvsql error by code as an error reply. */
export const codeError = (code: string, message: string): string => resp.error(errorText(code, message));

/** Anything thrown (a KvError, error data, or a bug: internal error) as an error reply. */
export function thrownError(err: unknown): string {
  const e = toErrorData(err);
  return codeError(e.code, e.message);
}

/** An op's error reply from the shards as an error reply. */
export const replyError = (r: ErrorReply): string => codeError(r[2], r[3]);

/** Anything thrown while routing keys to one shard: CROSSSLOT (Redis Cluster's word) when they span shards. */
export function routeError(err: unknown): string {
  const e = toErrorData(err);
  if (e.code === 'KV_ERR_CROSS_SHARD') return resp.error(`CROSSSLOT Keys in request don't hash to the same shard: ${e.message}`);
  return codeError(e.code, e.message);
}

export const SHUTTING_DOWN = codeError('KV_ERR_SHUTTING_DOWN', 'server is shutting down');

export const ERR_SYNTAX = resp.error(SYNTAX_ERROR.error);
export const ERR_NOT_INTEGER = resp.error(NOT_INTEGER_ERROR.error);
export const ERR_NOT_FLOAT = resp.error('ERR value is not a valid float');

/** Redis's arity error; `name` is the command's (or `command|subcommand`'s) lower-case name. */
export const wrongArgs = (name: string): string => resp.error(`ERR wrong number of arguments for '${name}' command`);

/** MULTI queues a command unless its reply is this (EXEC then aborts). */
export const isWrongArgs = (out: string | Buffer): boolean => typeof out === 'string' && out.startsWith('-ERR wrong number of arguments');

/** Redis's reply to a command it does not know: the name and the first arguments, quoted. */
export function unknownCommand(args: Buffer[]): string {
  const show = (b: Buffer) => `'${b.toString('utf8', 0, 128).replace(/[\r\n]/g, ' ')}'`;
  return resp.error(`ERR unknown command ${show(args[0])}, with args beginning with: ${args.slice(1, 8).map(show).join(' ')}${args.length > 1 ? ' ' : ''}`);
}

/** Redis's reply to an unknown subcommand of CLIENT, COMMAND, CONFIG, SCRIPT, PUBSUB (`upper` as in "Try CLIENT HELP"). */
export const unknownSubcommand = (sub: Buffer, upper: string, showBytes = 40): string =>
  resp.error(`ERR unknown subcommand '${sub.toString('utf8', 0, showBytes)}'. Try ${upper} HELP.`);
