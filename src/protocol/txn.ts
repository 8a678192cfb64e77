/**
 * Owns the transaction: several ops on keys of one shard, applied atomically and in isolation, in
 * the style of etcd's Txn. Every door builds one (Redis MULTI/EXEC/WATCH, MSET, MSETNX; HTTP
 * POST /v1/txn; the WebSocket txn op) and the shard actor runs it as one MySQL transaction.
 * Relies on ops.ts and msgpackr. Pure: no I/O.
 *
 *   program  = [compares, success, failure]
 *   compare  = [key, version]   version > 0: the key is live with exactly this version
 *                               0: the key is absent (or expired)
 *                               -1: the key is live, any version
 *   op       = [op, key, value | null, ttlMs, flags, ifVersion]   any of TXN_OPS, as on its own
 *
 * Every compare holds -> the success ops run, in order; else the failure ops. Each op answers as
 * it would alone (a failed INCR is an error reply in its place; the others still apply, as Redis
 * EXEC does). The whole transaction is one port Request: op OP_TXN, key = its first key (the
 * gateway routes on it after checking every key is on that shard), value = the packed program.
 * Its reply is TxnDone: [id, 200, succeeded 1|0, replies of the ops that ran, in order].
 */
import { Packr } from 'msgpackr';
import { OP_APPEND, OP_DEL, OP_EXPIRE, OP_GET, OP_GETDEL, OP_GETEX, OP_INCR, OP_PERSIST, OP_PUT, OP_SETRANGE, OP_TTL, type OpCode } from './ops';

export { OP_TXN, txnDone, type TxnDone } from './ops';

export type TxnCompare = [key: Uint8Array, version: number];
export type TxnOp = [op: OpCode, key: Uint8Array, value: Uint8Array | null, ttlMs: number, flags: number, ifVersion: number];
export type TxnProgram = [compares: TxnCompare[], success: TxnOp[], failure: TxnOp[]];

/** The compare of a key that must be absent, and of one that must exist (any version). */
export const ABSENT = 0;
export const EXISTS = -1;

/** Ops a transaction may hold. */
export const TXN_OPS: ReadonlySet<number> = new Set([
  OP_GET,
  OP_PUT,
  OP_DEL,
  OP_EXPIRE,
  OP_PERSIST,
  OP_TTL,
  OP_INCR,
  OP_APPEND,
  OP_SETRANGE,
  OP_GETDEL,
  OP_GETEX,
]);

/**
 * Most ops and compares in one transaction. Its rows are locked together for its whole run, and
 * its replies travel in one frame: bounded like any batch (KVSQL_MAX_BATCH_OPS is per batch).
 */
export const MAX_TXN_OPS = 10_000;

const packr = new Packr({ useRecords: false, moreTypes: false });

export function packTxn(p: TxnProgram): Uint8Array {
  return packr.pack(p);
}

/** The program in `bytes`, or a message saying what is wrong with it (never throws). */
export function unpackTxn(bytes: Uint8Array): TxnProgram | string {
  let p: unknown;
  try {
    p = packr.unpack(bytes);
  } catch (err) {
    return `transaction is not valid msgpack: ${(err as Error).message}`;
  }
  if (!Array.isArray(p) || p.length !== 3 || !p.every(Array.isArray)) return 'transaction must be [compares, success, failure]';
  const [compares, success, failure] = p as unknown[][];
  if (compares.length + success.length + failure.length > MAX_TXN_OPS) return `transaction has more than ${MAX_TXN_OPS} compares and ops`;
  for (const c of compares) {
    if (!Array.isArray(c) || c.length !== 2 || !isBytes(c[0]) || !Number.isSafeInteger(c[1]) || (c[1] as number) < EXISTS)
      return 'a compare must be [key, version]';
  }
  for (const o of [...success, ...failure]) {
    if (!Array.isArray(o) || o.length !== 6 || !TXN_OPS.has(o[0] as number) || !isBytes(o[1]) || !(o[2] === null || isBytes(o[2])))
      return 'an op must be [op, key, value|null, ttlMs, flags, ifVersion] with a transaction op';
    if (!Number.isSafeInteger(o[3]) || !Number.isSafeInteger(o[4]) || !Number.isSafeInteger(o[5])) return "an op's ttlMs, flags and ifVersion must be integers";
  }
  return p as TxnProgram;
}

const isBytes = (b: unknown): b is Uint8Array => b instanceof Uint8Array;

/**
 * A script (OP_EVAL's value): its body, its declared KEYS and ARGV, and whether it may write
 * (EVAL_RO, EVALSHA_RO: 0). The shard runs it on the rows of KEYS, locked, in one transaction.
 */
export type EvalProgram = [body: Uint8Array, keys: Uint8Array[], argv: Uint8Array[], mayWrite: 0 | 1];

export function packEval(p: EvalProgram): Uint8Array {
  return packr.pack(p);
}

export function unpackEval(bytes: Uint8Array): EvalProgram | string {
  let p: unknown;
  try {
    p = packr.unpack(bytes);
  } catch (err) {
    return `script is not valid msgpack: ${(err as Error).message}`;
  }
  if (
    !Array.isArray(p) ||
    p.length !== 4 ||
    !isBytes(p[0]) ||
    !Array.isArray(p[1]) ||
    !Array.isArray(p[2]) ||
    !p[1].every(isBytes) ||
    !p[2].every(isBytes) ||
    (p[3] !== 0 && p[3] !== 1)
  ) {
    return 'script must be [body, keys, argv, mayWrite]';
  }
  if (p[1].length > MAX_TXN_OPS) return `a script declares at most ${MAX_TXN_OPS} keys`;
  return p as EvalProgram;
}

/** Every key a program names, compares first, in order of first appearance (duplicates kept out). */
export function txnKeys(p: TxnProgram): Uint8Array[] {
  const seen = new Set<string>();
  const out: Uint8Array[] = [];
  const add = (k: Uint8Array): void => {
    const s = Buffer.from(k.buffer, k.byteOffset, k.byteLength).toString('latin1');
    if (seen.has(s)) return;
    seen.add(s);
    out.push(k);
  };
  for (const c of p[0]) add(c[0]);
  for (const o of p[1]) add(o[1]);
  for (const o of p[2]) add(o[1]);
  return out;
}
