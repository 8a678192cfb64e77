/**
 * Owns the Redis door's transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH, and the multi-key
 * writes built on them, MSET and MSETNX, and a connection's transaction state (TxnState). Relies on
 * the connection's TxnCall (command-api.ts), protocol/txn, txn-route and resp.ts. Must not touch
 * sockets or the pool's internals.
 *
 * MULTI queues commands: each is checked and authorized as it arrives (as Redis: a command that
 * fails then, e.g. unknown or of the wrong arity, makes EXEC answer EXECABORT), and what it would
 * submit is recorded instead of submitted (the connection records it). EXEC sends every recorded op
 * as ONE transaction (protocol/txn.ts) to the shard of its keys, which runs it as one MySQL
 * transaction: all of it or nothing is applied, and nothing else sees it half done.
 *
 *   WATCH k      -> read k's version now (a TTL op: the version rides on its reply)
 *   EXEC         -> compares = [k, version seen] (0: was absent); success = the queued ops
 *                   a compare fails (k written, deleted or expired since) -> nil, nothing applied
 *
 * Every key of one EXEC (watched keys too) must be served by one shard, else EXEC answers
 * CROSSSLOT and applies nothing. An error of one command inside EXEC (INCR of a non-integer)
 * is that command's reply; the others still apply, as in Redis. Commands with no keys (PING,
 * ECHO, TIME) are answered when queued and their replies placed in EXEC's array.
 */
import { isErrorReply, OP_PUT, OP_TTL, OP_TXN, replyOf, type ErrorReply, type Reply, type TtlHit } from '../../protocol/ops';
import { ABSENT, packTxn, type TxnCompare, type TxnDone, type TxnOp, type TxnProgram } from '../../protocol/txn';
import * as resp from '../../protocol/resp';
import type { Proto } from '../../protocol/resp';
import { txnRoute } from '../txn-route';
import type { OpSpec, RowTuple, TxnCall } from './command-api';
import { replyError, routeError, wrongArgs } from './errors';

/** One queued command: the ops it would submit, and how its reply is made from theirs. */
export interface Queued {
  /** Ops in order; empty for a command answered at once (`local`). */
  ops: TxnOp[];
  /** The reply of a command answered when queued. */
  local: string | Buffer | null;
  /** Builds the command's reply from its ops' replies (pending-command.ts queuedReply). */
  reply: ((replies: Reply[], proto: Proto) => string | Buffer) | null;
}

/** A connection's transaction state. */
export class TxnState {
  /** Commands queued since MULTI; null outside MULTI. */
  queued: Queued[] | null = null;
  /** A command failed while queued: EXEC answers EXECABORT. */
  dirty = false;
  /** WATCHed keys and the version each had (0: absent); `broken` when one could not be read. */
  watches = new Map<string, TxnCompare>();
  broken = false;
  /** Settles when every WATCH sent so far has its versions; `reading` counts those still out. */
  watching: Promise<void> = Promise.resolve();
  reading = 0;
  /** Bumped by UNWATCH, EXEC and DISCARD: a WATCH answered after them records nothing. */
  generation = 0;

  /** Forget the watched keys (UNWATCH, EXEC, DISCARD). */
  unwatch(): void {
    this.watches = new Map();
    this.broken = false;
    this.generation++;
  }
}

type TxnHandler = (c: TxnCall, args: Buffer[]) => void;

const EXECABORT = resp.error('EXECABORT Transaction discarded because of previous errors.');

const multi: TxnHandler = (c) => {
  if (c.txn.queued !== null) return c.reply(resp.error('ERR MULTI calls can not be nested'));
  c.txn.queued = [];
  c.txn.dirty = false;
  c.reply(resp.OK);
};

const discard: TxnHandler = (c) => {
  if (c.txn.queued === null) return c.reply(resp.error('ERR DISCARD without MULTI'));
  c.txn.queued = null;
  c.txn.unwatch();
  c.reply(resp.OK);
};

const watch: TxnHandler = (c, a) => {
  if (c.txn.queued !== null) return c.reply(resp.error('ERR WATCH inside MULTI is not allowed'));
  const keys = a.slice(1);
  for (const k of keys) c.authorize(OP_TTL, k);
  const st = c.txn;
  const generation = st.generation;
  st.reading++;
  const read = Promise.all(keys.map((k) => c.request(OP_TTL, k, null, 0))).finally(() => st.reading--);
  st.watching = Promise.all([st.watching, read]).then(() => undefined);
  c.answerLater('watch', async () => {
    const replies = await read;
    // The first key that could not be read answers WATCH as the registry says (a 503 is TRYAGAIN).
    let error: ErrorReply | null = null;
    for (let i = 0; i < keys.length; i++) {
      const r = replies[i];
      if (isErrorReply(r)) {
        error ??= r;
        if (generation === st.generation) st.broken = true; // EXEC then answers nil: nothing can be vouched for
        continue;
      }
      if (generation !== st.generation) continue;
      const keyStr = keys[i].toString('latin1');
      // A key watched twice keeps its first version: a write between the two WATCHes still counts.
      if (!st.watches.has(keyStr)) st.watches.set(keyStr, [keys[i], r[1] === 200 ? (replyOf(OP_TTL, r) as TtlHit)[4] : ABSENT]);
    }
    return error === null ? resp.OK : replyError(error);
  });
};

const unwatch: TxnHandler = (c) => {
  // Queued in MULTI it does nothing (EXEC checks the watches and then forgets them anyway).
  if (c.txn.queued === null) c.txn.unwatch();
  c.reply(resp.OK);
};

const exec: TxnHandler = (c) => {
  const st = c.txn;
  const queued = st.queued;
  if (queued === null) return c.reply(resp.error('ERR EXEC without MULTI'));
  st.queued = null;
  if (st.dirty) {
    st.unwatch();
    return c.reply(EXECABORT);
  }
  // Submitted synchronously when every WATCH has its versions (the usual case: the client read
  // them before MULTI), so commands pipelined after EXEC are submitted after it. Otherwise the
  // connection reads nothing more until EXEC is submitted.
  const go = async (): Promise<string | Buffer> => {
    const compares = [...st.watches.values()];
    const broken = st.broken;
    st.unwatch();
    if (broken) return resp.nilArray(c.proto);
    const ops: TxnOp[] = [];
    for (const q of queued) ops.push(...q.ops);
    const done = await run(c, compares, ops);
    if (typeof done === 'string') return done;
    if (done[2] === 0) return resp.nilArray(c.proto);
    const parts: Array<string | Buffer> = [resp.arrayHeader(queued.length)];
    let at = 0;
    for (const q of queued) {
      if (q.local !== null) parts.push(q.local);
      else {
        parts.push(q.reply!(done[3].slice(at, at + q.ops.length), c.proto));
        at += q.ops.length;
      }
    }
    return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
  };
  if (st.reading === 0) return c.answerLater('exec', go);
  const submitted = st.watching.then(go);
  c.holdUntil(submitted);
  c.answerLater('exec', () => submitted);
};

/**
 * Run one transaction on the shard of its keys: its TxnDone, or the RESP error to answer (keys
 * on several shards, a shard unavailable, an outcome unknown...). Nothing to run: success.
 */
async function run(c: TxnCall, compares: TxnCompare[], ops: TxnOp[]): Promise<TxnDone | string> {
  const program: TxnProgram = [compares, ops, []];
  let first: Uint8Array | null;
  try {
    first = txnRoute(program, (k) => c.shardOf(k));
  } catch (err) {
    return routeError(err); // keys on several shards: CROSSSLOT
  }
  if (first === null) return [0, 200, 1, []];
  const r = await c.request(OP_TXN, Buffer.from(first), Buffer.from(packTxn(program)), 0);
  if (isErrorReply(r)) return replyError(r);
  return r as TxnDone;
}

/** MSET k v [k v ...]: every key set, atomically (one shard's transaction). */
const mset: TxnHandler = (c, a) => {
  if (a.length % 2 === 0) return c.reply(wrongArgs('mset')); // a key without its value
  // Queued in MULTI: its puts join EXEC's transaction.
  if (c.txn.queued !== null) {
    const specs: OpSpec[] = [];
    for (let i = 1; i < a.length; i += 2) specs.push({ op: OP_PUT, key: a[i], value: a[i + 1] });
    return c.ops('mset', specs, () => resp.OK);
  }
  const ops = puts(c, a);
  c.answerLater('mset', async () => {
    const done = await run(c, [], ops);
    return typeof done === 'string' ? done : resp.OK;
  });
};

/** MSETNX k v [k v ...]: every key set if none exists (1), else none (0), atomically. */
const msetnx: TxnHandler = (c, a) => {
  if (a.length % 2 === 0) return c.reply(wrongArgs('msetnx'));
  const ops = puts(c, a);
  const compares: TxnCompare[] = ops.map((o) => [o[1], ABSENT]);
  c.answerLater('msetnx', async () => {
    const done = await run(c, compares, ops);
    return typeof done === 'string' ? done : resp.integer(done[2]);
  });
};

function puts(c: TxnCall, a: Buffer[]): TxnOp[] {
  const ops: TxnOp[] = [];
  for (let i = 1; i < a.length; i += 2) {
    c.authorize(OP_PUT, a[i]);
    ops.push([OP_PUT, a[i], a[i + 1], 0, 0, 0]);
  }
  return ops;
}

/**
 * [name, handler, arity, flags, first key, last key, step, in MULTI] as COMMAND shows them (Redis
 * 7's). MULTI, EXEC, DISCARD and WATCH are 'control' (run at once even inside MULTI); MSETNX answers
 * through async work and cannot be queued.
 */
export const TXN_COMMANDS: ReadonlyArray<RowTuple<TxnCall>> = [
  ['multi', multi, 1, ['noscript', 'loading', 'stale', 'fast', 'allow_busy'], 0, 0, 0, 'control'],
  ['exec', exec, 1, ['noscript', 'loading', 'stale', 'skip_slowlog'], 0, 0, 0, 'control'],
  ['discard', discard, 1, ['noscript', 'loading', 'stale', 'fast', 'allow_busy'], 0, 0, 0, 'control'],
  ['watch', watch, -2, ['noscript', 'loading', 'stale', 'fast', 'allow_busy'], 1, -1, 1, 'control'],
  ['unwatch', unwatch, 1, ['noscript', 'loading', 'stale', 'fast', 'allow_busy'], 0, 0, 0],
  ['mset', mset, -3, ['write', 'denyoom'], 1, -1, 2],
  ['msetnx', msetnx, -3, ['write', 'denyoom'], 1, -1, 2, 'refused'],
];
