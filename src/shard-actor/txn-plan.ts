/**
 * Owns a transaction's meaning inside the actor: its PendingOp (keys in lock order), which of its
 * two op lists runs given the rows it locked, and its reply. Relies on protocol/txn and
 * write-plan (each op is decided exactly as it would be alone, by planWrites, over a chain per
 * key in program order). Pure: no I/O, no clock.
 *
 *   locked rows ─> every compare holds? ─> success ops : failure ops
 *               ─> chains per key (program order kept within each key) ─> planWrites
 *               ─> replies back in program order ─> TxnDone
 *
 * Ops on different keys never see each other's effects, so regrouping them per key changes no
 * answer; ops on one key keep their order. Atomicity comes from the one MySQL transaction,
 * isolation from the locks on every key named (compares too) and from the scheduler holding them.
 */
import { needsValue, OP_EVAL, OP_GET, OP_TXN, type Reply } from '../protocol/ops';
import { txnDone, type EvalProgram, type TxnDone, type TxnOp, type TxnProgram, EXISTS, ABSENT } from '../protocol/txn';
import { slotOf } from '../protocol/slot-map';
import type { Chain } from './key-scheduler';
import type { PendingOp, TxnGroup } from './pending-op';
import type { LockedRow } from './shard-store';

/** The transaction's PendingOp: `id` and `deadline` as for any op; its key is its first key. */
export function txnOp(id: number, program: TxnProgram, deadline: number, hashTags: boolean): PendingOp {
  const byStr = new Map<string, { key: Buffer; keyStr: string; slot: number }>();
  const keyOf = (k: Uint8Array): { key: Buffer; keyStr: string; slot: number } => {
    const key = asBuffer(k);
    const keyStr = key.toString('latin1');
    let e = byStr.get(keyStr);
    if (e === undefined) byStr.set(keyStr, (e = { key, keyStr, slot: slotOf(key, hashTags) }));
    return e;
  };
  const compares: Array<[string, number]> = program[0].map((c) => [keyOf(c[0]).keyStr, c[1]]);
  let withValues = false;
  const sub = (list: TxnOp[]): PendingOp[] =>
    list.map((o, i) => {
      const k = keyOf(o[1]);
      if (o[0] === OP_GET || needsValue(o[0], o[4])) withValues = true;
      return {
        id: i,
        op: o[0],
        key: k.key,
        keyStr: k.keyStr,
        slot: k.slot,
        value: o[2] === null ? null : asBuffer(o[2]),
        ttlMs: o[3],
        flags: o[4],
        ifVersion: o[5],
        dueAt: 0,
      };
    });
  const success = sub(program[1]);
  const failure = sub(program[2]);
  const keys = [...byStr.values()].sort((a, b) => Buffer.compare(a.key, b.key));
  // A script with no key names none: it is never scheduled (the actor runs it at once).
  const first = keys[0] ?? { key: Buffer.alloc(0), keyStr: '', slot: 0 };
  const txn: TxnGroup = { compares, success, failure, keys, withValues, waiting: 0, held: [] };
  return {
    id,
    op: OP_TXN,
    key: first.key,
    keyStr: first.keyStr,
    slot: first.slot,
    value: null,
    ttlMs: 0,
    flags: 0,
    ifVersion: 0,
    dueAt: 0,
    deadline,
    answered: false,
    batch: null,
    txn,
  };
}

/** A script's PendingOp (OP_EVAL): a transaction holding its declared keys, with values. */
export function scriptOp(id: number, program: EvalProgram, deadline: number, hashTags: boolean): PendingOp {
  const [body, keys, argv, mayWrite] = program;
  const op = txnOp(id, [keys.map((k): [Uint8Array, number] => [k, EXISTS]), [], []], deadline, hashTags);
  const t = op.txn!;
  t.compares = []; // the keys only: nothing is compared
  t.withValues = true;
  t.script = { body: asBuffer(body), keys: keys.map(asBuffer), argv: argv.map(asBuffer), mayWrite: mayWrite === 1 };
  op.op = OP_EVAL;
  return op;
}

/** One chain per key the transaction names, in lock order, without ops: filled by `choose`. */
export function txnChains(t: TxnGroup): Chain[] {
  return t.keys.map((k) => ({ keyStr: k.keyStr, key: k.key, slot: k.slot, ops: [] }));
}

/** True when every compare holds against the locked rows at `now` (an expired row is absent). */
export function comparesHold(t: TxnGroup, locked: Map<string, LockedRow>, now: number): boolean {
  for (const [keyStr, want] of t.compares) {
    const row = locked.get(keyStr);
    const live = row !== undefined && (row.expiresAt === null || row.expiresAt > now);
    if (want === ABSENT ? live : want === EXISTS ? !live : !live || row!.version !== want) return false;
  }
  return true;
}

/** The chains to plan: the chosen list's ops on each key, in program order. */
export function choose(t: TxnGroup, succeeded: boolean): Chain[] {
  const chains = txnChains(t);
  const byKey = new Map(chains.map((c) => [c.keyStr, c]));
  for (const op of succeeded ? t.success : t.failure) byKey.get(op.keyStr)!.ops.push(op);
  return chains.filter((c) => c.ops.length > 0);
}

/** The transaction's reply from the planned replies of the list that ran. */
export function txnReply(op: PendingOp, succeeded: boolean, planned: Array<[PendingOp, Reply]>): TxnDone {
  const ran = succeeded ? op.txn!.success : op.txn!.failure;
  const replies = new Array<Reply>(ran.length);
  for (const [sub, r] of planned) replies[sub.id] = r;
  return txnDone(op.id, succeeded, replies);
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
