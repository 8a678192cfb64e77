/**
 * Owns the Redis door's scripts: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT LOAD/EXISTS/FLUSH/KILL.
 * Relies on the connection's ScriptCall (command-api.ts: authorize, request, shardOf), protocol/txn,
 * txn-route and resp.ts. Must not run a script: it runs in the shard actor (lua-sandbox,
 * script-session), never here.
 *
 *   EVAL body n k1..kn a1..        -> registry[sha1(body)] = body
 *                                   -> every key on one shard (else CROSSSLOT), authorized
 *                                   -> one OP_EVAL to that shard: its KEYS locked, the script run
 *                                      against them in one MySQL transaction, its reply (RESP2)
 *   EVALSHA sha n ...               -> the body from this gateway's registry, else NOSCRIPT (clients
 *                                      such as ioredis then send EVAL, as with Redis)
 *
 * The registry is this gateway's, bounded (least recently used dropped): like one Redis node's
 * script cache, which clients already expect to lose scripts (NOSCRIPT, then EVAL).
 */
import { createHash } from 'node:crypto';
import { isErrorReply, OP_EVAL, OP_GET, OP_PUT, type EvalDone } from '../../protocol/ops';
import { packEval } from '../../protocol/txn';
import * as resp from '../../protocol/resp';
import { txnRoute } from '../txn-route';
import { intArg } from './args';
import type { RowTuple, ScriptCall } from './command-api';
import { ERR_NOT_INTEGER, replyError, routeError, unknownSubcommand, wrongArgs } from './errors';

/** Scripts a gateway remembers for EVALSHA. */
export const MAX_SCRIPTS = 10_000;

export class ScriptRegistry {
  private readonly bodies = new Map<string, Buffer>();

  add(body: Buffer): string {
    const sha = createHash('sha1').update(body).digest('hex');
    this.bodies.delete(sha);
    this.bodies.set(sha, body);
    if (this.bodies.size > MAX_SCRIPTS) this.bodies.delete(this.bodies.keys().next().value!);
    return sha;
  }

  get(sha: string): Buffer | undefined {
    const body = this.bodies.get(sha);
    if (body !== undefined) {
      this.bodies.delete(sha);
      this.bodies.set(sha, body);
    }
    return body;
  }

  has(sha: string): boolean {
    return this.bodies.has(sha);
  }

  flush(): void {
    this.bodies.clear();
  }
}

type ScriptHandler = (c: ScriptCall, args: Buffer[]) => void;

const NOSCRIPT = resp.error('NOSCRIPT No matching script. Please use EVAL.');

/** EVAL-like: args[1] is the body (or its sha: `bySha`), args[2] numkeys, then keys and argv. */
function evaluate(name: string, bySha: boolean, mayWrite: boolean): ScriptHandler {
  return (c, a) => {
    const n = intArg(a[2]);
    if (n === null) return c.reply(ERR_NOT_INTEGER);
    if (n < 0) return c.reply(resp.error("ERR Number of keys can't be negative"));
    if (n > a.length - 3) return c.reply(resp.error("ERR Number of keys can't be greater than number of args"));
    const body = bySha ? c.scripts.get(a[1].toString('latin1').toLowerCase()) : a[1];
    if (body === undefined) return c.reply(NOSCRIPT);
    if (!bySha) c.scripts.add(body);
    const keys = a.slice(3, 3 + n);
    const argv = a.slice(3 + n);
    // A script may read and (unless read-only) write each of its keys.
    for (const k of keys) {
      c.authorize(OP_GET, k);
      if (mayWrite) c.authorize(OP_PUT, k);
    }
    let first: Uint8Array | null;
    try {
      first = txnRoute([keys.map((k): [Uint8Array, number] => [k, 0]), [], []], (k) => c.shardOf(k));
    } catch (err) {
      return c.reply(routeError(err)); // keys on several shards: CROSSSLOT
    }
    c.answerLater(name, async () => {
      // No key: the script runs on the shard of slot 0, touching no row.
      const r = await c.request(OP_EVAL, Buffer.from(first ?? Buffer.alloc(0)), Buffer.from(packEval([body, keys, argv, mayWrite ? 1 : 0])), 0);
      if (isErrorReply(r)) return replyError(r);
      return Buffer.from((r as EvalDone)[2]);
    });
  };
}

const script: ScriptHandler = (c, a) => {
  const sub = a[1].toString('latin1').toLowerCase();
  switch (sub) {
    case 'load':
      if (a.length !== 3) return c.reply(wrongArgs('script|load'));
      return c.reply(resp.bulkText(c.scripts.add(a[2])));
    case 'exists':
      if (a.length < 3) return c.reply(wrongArgs('script|exists'));
      return c.reply(
        resp.arrayHeader(a.length - 2) +
          a
            .slice(2)
            .map((s) => resp.integer(c.scripts.has(s.toString('latin1').toLowerCase()) ? 1 : 0))
            .join(''),
      );
    case 'flush':
      if (a.length > 3) return c.reply(wrongArgs('script|flush'));
      c.scripts.flush();
      return c.reply(resp.OK);
    case 'kill':
      // A script over its budget is stopped and rolled back by its shard; none waits to be killed.
      return c.reply(resp.error('NOTBUSY No scripts in execution right now.'));
    default:
      return c.reply(unknownSubcommand(a[1], 'SCRIPT'));
  }
};

/** [name, handler, arity, flags, first key, last key, step, in MULTI] as COMMAND shows them (Redis 7's). */
export const SCRIPT_COMMANDS: ReadonlyArray<RowTuple<ScriptCall>> = [
  ['eval', evaluate('eval', false, true), -3, ['noscript', 'stale', 'skip_monitor', 'may_replicate', 'no_mandatory_keys'], 0, 0, 0, 'refused'],
  ['evalsha', evaluate('evalsha', true, true), -3, ['noscript', 'stale', 'skip_monitor', 'may_replicate', 'no_mandatory_keys'], 0, 0, 0, 'refused'],
  ['eval_ro', evaluate('eval_ro', false, false), -3, ['readonly', 'noscript', 'stale', 'skip_monitor', 'no_mandatory_keys'], 0, 0, 0, 'refused'],
  ['evalsha_ro', evaluate('evalsha_ro', true, false), -3, ['readonly', 'noscript', 'stale', 'skip_monitor', 'no_mandatory_keys'], 0, 0, 0, 'refused'],
  ['script', script, -2, ['noscript'], 0, 0, 0],
];
