/**
 * Owns the seam between the Redis door's connection and its command handlers: what a handler may
 * ask of its connection (RespCall and the narrower-or-wider views each family uses), the shape of
 * a command-table row, and a handler's type. Relies on protocol/ops and protocol/resp (types
 * only). Must not hold behaviour: the connection (connection.ts) implements every view, checked by
 * `implements` at compile time; handlers live in the *-commands.ts, transactions.ts and scripts.ts
 * files and are listed in command-table.ts.
 *
 *   RespCall  (reply, ops, setGet)          string-commands.ts
 *     └ TxnCall   (+ txn, authorize, request, shardOf, holdUntil, answerLater)   transactions.ts
 *         └ ScriptCall (+ scripts)                                              scripts.ts
 *   RespSession (guard.ts)
 *     └ PubsubCall (+ sub, pubsub, push, outputBytes, kill)                     pubsub-commands.ts
 */
import type { OpCode, Reply } from '../../protocol/ops';
import type { Proto } from '../../protocol/resp';
import type { RespSession } from './guard';
import type { PubsubHub, Subscriber } from './pubsub-hub';
import type { ScriptRegistry } from './scripts';
import type { TxnState } from './transactions';

/** One op of a command. */
export interface OpSpec {
  op: OpCode;
  key: Buffer;
  value?: Buffer | null;
  ttlMs?: number;
  flags?: number;
  /** The Request's number slot: OP_SETRANGE's offset (no door op here has a version condition). */
  ifVersion?: number;
}

/** Builds a command's reply from its ops' replies (in spec order; none is an error). */
export type Combine = (replies: Reply[], proto: Proto) => string | Buffer;

/** What a command handler may do with its connection. */
export interface RespCall {
  readonly proto: Proto;
  /** KVSQL_MAX_VALUE_BYTES: a value an op would make longer is refused at the door. */
  readonly maxValueBytes: number;
  /** Answer without the shards. */
  reply(out: string | Buffer): void;
  /** Submit `specs` (each key checked and authorized first: refused whole), answer with `combine`; the first error wins. */
  ops(name: string, specs: readonly OpSpec[], combine: Combine): void;
  /** SET ... GET, GETSET: one put that also answers the value it replaced. */
  setGet(key: Buffer, value: Buffer, ttlMs: number, flags: number): void;
}

/** What transactions need of their connection. */
export interface TxnCall extends Pick<RespCall, 'ops'> {
  readonly proto: Proto;
  readonly txn: TxnState;
  reply(out: string | Buffer): void;
  /** A command answered by async work, in the reply queue like any other. */
  answerLater(name: string, work: () => Promise<string | Buffer>): void;
  /** Checks the key and the token's right for `op` on it; throws a KvError when refused. */
  authorize(op: OpCode, key: Buffer, flags?: number): void;
  /** Read no more requests until `p` settles. */
  holdUntil(p: Promise<unknown>): void;
  /** One op to the shards, answered with its reply. */
  request(op: OpCode, key: Buffer, value: Buffer | null, flags: number): Promise<Reply>;
  /** The shard serving a key by the gateway's map (-1: none reachable). */
  shardOf(key: Uint8Array): number;
}

/** What scripts need: a transaction's view plus this gateway's script registry. */
export interface ScriptCall extends TxnCall {
  readonly scripts: ScriptRegistry;
}

/** What pub/sub needs of a connection. */
export interface PubsubCall extends RespSession {
  /** null until the connection first subscribes. */
  sub: Subscriber | null;
  readonly pubsub: PubsubHub;
  /** Answer in request order. */
  reply(out: string | Buffer): void;
  /** Queue a push frame (a message) after everything owed. */
  push(frame: Buffer): void;
  /** Push bytes queued and not yet written, plus bytes written and not yet sent (the output buffer). */
  readonly outputBytes: number;
  /** Close at once (output buffer limit). */
  kill(reason: string): void;
}

/** A command's handler: called with arity already checked against its row. */
export type Handler<C> = (c: C, args: Buffer[]) => void;

/**
 * One row of the command table (Redis 7's COMMAND info: arity, flags, first key, last key, step),
 * its handler, and how it behaves inside MULTI.
 */
export interface CommandRow<C> {
  readonly name: string;
  readonly handler: Handler<C>;
  /** Redis's arity: n = exactly n arguments (the name counts), -n = at least n. */
  readonly arity: number;
  /** Redis's command flags as COMMAND shows them; `no_auth` runs before AUTH (auth-guard.ts). */
  readonly flags: readonly string[];
  readonly firstKey: number;
  readonly lastKey: number;
  readonly keyStep: number;
  /**
   * Inside MULTI: 'control' runs at once (MULTI, EXEC, DISCARD, WATCH, QUIT, RESET); 'refused'
   * cannot be queued in kvsql (its reply comes from async work, or it acts when queued) and makes
   * EXEC abort; absent: queued, its ops recorded for EXEC.
   */
  readonly multi?: 'control' | 'refused';
}

/** A row as the families list theirs: [name, handler, arity, flags, first key, last key, step, multi?]. */
export type RowTuple<C> = readonly [string, Handler<C>, number, readonly string[], number, number, number, ('control' | 'refused')?];
