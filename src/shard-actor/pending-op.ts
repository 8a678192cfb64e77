/**
 * Owns the actor's in-memory form of one operation, and of the batch running it. Relies on
 * protocol/ops and the store's transaction control. Pure.
 */
import type { OpCode } from '../protocol/ops';
import type { TxControl } from './shard-store';

export interface PendingOp {
  /** The gateway's request id (or the expirer's own id for a reap). */
  id: number;
  op: OpCode;
  key: Buffer;
  /** The key bytes as a latin1 string: a 1:1, binary-safe map key. */
  keyStr: string;
  /** slotOf(key): ownership is checked per slot in the same statement as the rows. */
  slot: number;
  value: Uint8Array | null;
  ttlMs: number;
  flags: number;
  ifVersion: number;
  /** For a reap: the expires_at the expirer saw, for the lag metric. */
  dueAt: number;
  /** Actor clock (ms) by which the op gets an answer, whatever MySQL does (user ops only). */
  deadline?: number;
  /** A reply was sent (at completion, or at the deadline): never answer again, never apply. */
  answered?: boolean;
  /** The batch running it, while one does (the deadline sweep abandons that batch). */
  batch?: Batch | null;
  /** OP_TXN only: what it does and which keys it holds (txn-plan.ts, key-scheduler.ts). */
  txn?: TxnGroup;
}

/** A transaction as the actor runs it: its compares, its two lists of ops, its keys. */
export interface TxnGroup {
  /** [keyStr, version]: see protocol/txn.ts for the meaning of the version. */
  compares: Array<[keyStr: string, version: number]>;
  /** The ops, as PendingOps whose id is their index in their list. */
  success: PendingOp[];
  failure: PendingOp[];
  /** Every key it names, once each, in ascending byte order (the lock order). */
  keys: Array<{ key: Buffer; keyStr: string; slot: number }>;
  /** The locking read must fetch values: an op answers with or decides from a value. */
  withValues: boolean;
  /** OP_EVAL: the script, run on the locked rows of `keys` (script-session.ts). */
  script?: { body: Buffer; keys: Buffer[]; argv: Buffer[]; mayWrite: boolean };
  /** Scheduler: keys not yet held for it, and the keys held (they wait for nothing else). */
  waiting: number;
  held: string[];
}

/** One read batch or write transaction in flight, as the actor's deadline sweep sees it. */
export interface Batch {
  kind: 'read' | 'write';
  /** The user ops it answers. */
  ops: PendingOp[];
  ctl: TxControl;
  startedAt: number;
  finished: boolean;
  /** Resolves (to null) when the batch is abandoned; raced against the batch's work. */
  gaveUp: Promise<null>;
  giveUp: () => void;
}
