/**
 * Owns per-key ordering inside one shard actor: which operations may run now and which must wait.
 * Relies on nothing but PendingOp. Never talks to MySQL and never reads the clock.
 *
 * The rule: on one key, operations take effect in arrival order. A read may run beside other
 * reads of that key; a write waits until every earlier operation on its key is done, and while it
 * runs, later operations on its key wait. Consecutive waiting writes on one key start together as
 * a chain (applied in order inside one transaction), so a hot key costs one transaction per batch,
 * not one per write. Keys are never shared by two transactions in flight, which is half of the
 * deadlock argument (the other half: rows are locked in key order; see mysql-store/writes.ts).
 *
 *   keys: Map<keyStr, KeyState>          (an entry exists while the key has work scheduled)
 *   KeyState { reads: n scheduled, writing: bool, queue: Fifo of ops waiting }
 *
 *   arrival ──> queue empty and allowed? ──yes──> readyReads / readyWrites / readyReaps (a chain)
 *                       │no
 *                       └──> key's queue ── released when the key's running work completes
 *
 * The expirer's reaps (OP_REAP) are writes here, so they are ordered with user writes on their
 * key. A chain of reaps only goes to readyReaps (the actor's reap lane: one conditional DELETE,
 * store.reap). A chain is gathered from whatever waits on the key when it is released, so a reap
 * queued behind a key's running read or write shares its chain with user writes queued around it
 * (e.g. a read of k runs, the wheel's reap of k and then a PUT of k arrive: [reap, put]); such a
 * mixed chain goes to readyWrites and its reap is decided in the transaction by planWrites.
 * Splitting it instead would make the user write wait behind the one-at-a-time, lower-priority
 * reap lane.
 *
 * A transaction (OP_TXN, several keys) is one PendingOp queued on every key it names, all in the
 * same call, so it has the same place in arrival order on each of them. Each key is held for it
 * (as by a running write) when it reaches that key's head; once all are held it is ready
 * (readyTxns) and runs alone in its transaction. No cycle can form: everything waits only for
 * what arrived before it, on every key.
 */
import { isReadOp, OP_REAP, OP_TXN } from '../protocol/ops';
import { Fifo } from '../protocol/fifo';
import type { PendingOp } from './pending-op';

export interface Chain {
  keyStr: string;
  key: Buffer;
  slot: number;
  ops: PendingOp[];
}

interface KeyState {
  reads: number;
  writing: boolean;
  /** Ops waiting behind this key's running work, in arrival order. */
  queue: Fifo<PendingOp>;
}

export class KeyScheduler {
  private readonly keys = new Map<string, KeyState>();
  /** Reads allowed to run, in arrival order. */
  private readonly readyReads = new Fifo<PendingOp>();
  /** User write chains, in arrival order. */
  private readonly readyWrites = new Fifo<Chain>();
  /** Chains of the expirer's reaps only: a separate, lower-priority lane (see the actor). */
  private readonly readyReaps = new Fifo<Chain>();
  /** Transactions holding every key they name, in the order they became ready. */
  private readonly readyTxns = new Fifo<PendingOp>();
  /** Operations accepted and not yet completed (queued, ready or running). */
  size = 0;

  constructor(private readonly maxChain: number) {}

  get readyReadCount(): number {
    return this.readyReads.count;
  }

  get readyWriteCount(): number {
    return this.readyWrites.count;
  }

  get readyReapCount(): number {
    return this.readyReaps.count;
  }

  get readyTxnCount(): number {
    return this.readyTxns.count;
  }

  get keyCount(): number {
    return this.keys.size;
  }

  submit(op: PendingOp): void {
    this.size++;
    if (op.txn !== undefined) {
      op.txn.waiting = op.txn.keys.length;
      for (const k of op.txn.keys) this.place(k.keyStr, op);
      return;
    }
    this.place(op.keyStr, op);
  }

  private place(keyStr: string, op: PendingOp): void {
    let st = this.keys.get(keyStr);
    if (st === undefined) {
      st = { reads: 0, writing: false, queue: new Fifo<PendingOp>() };
      this.keys.set(keyStr, st);
    }
    if (st.queue.count === 0 && this.allowed(st, op)) this.start(keyStr, st, op);
    else st.queue.push(op);
  }

  /**
   * Ready transactions (each holding all its keys, so no two share a key), oldest first, until
   * `maxOps` keys and ops (at least one).
   */
  takeTxns(maxOps: number): PendingOp[] {
    const out: PendingOp[] = [];
    let n = 0;
    for (let t = this.readyTxns.peek(); t !== undefined; t = this.readyTxns.peek()) {
      const size = t.txn!.keys.length + t.txn!.success.length + t.txn!.failure.length;
      if (out.length > 0 && n + size > maxOps) break;
      out.push(this.readyTxns.shift());
      n += size;
    }
    return out;
  }

  /** A transaction finished (committed or failed, answered): its keys are free. */
  txnDone(op: PendingOp): void {
    this.size--;
    for (const keyStr of op.txn!.held) {
      const st = this.keys.get(keyStr)!;
      st.writing = false;
      this.release(keyStr, st);
    }
  }

  /** Up to `maxOps` ready reads (ops, not keys), oldest first. */
  takeReads(maxOps: number): PendingOp[] {
    return this.readyReads.take(maxOps);
  }

  /** Ready user chains, oldest first, until `maxOps` ops or `maxBytes` of values (at least one chain). */
  takeWrites(maxOps: number, maxBytes: number): Chain[] {
    return takeChains(this.readyWrites, maxOps, maxBytes);
  }

  /** Ready reap-only chains, oldest first, up to `maxOps` ops. */
  takeReaps(maxOps: number): Chain[] {
    return takeChains(this.readyReaps, maxOps, Infinity);
  }

  /** A read finished (replied). Releases what waited behind it. */
  readDone(op: PendingOp): void {
    this.size--;
    const st = this.keys.get(op.keyStr)!;
    st.reads--;
    this.release(op.keyStr, st);
  }

  /** A chain finished (committed or failed, every op replied). */
  chainDone(chain: Chain): void {
    this.size -= chain.ops.length;
    const st = this.keys.get(chain.keyStr)!;
    st.writing = false;
    this.release(chain.keyStr, st);
  }

  /**
   * Drops the ops of a ready chain that were answered while they waited (deadline, shard down):
   * they must never be applied. Returns false, after completing the chain, when none is left.
   */
  prune(chain: Chain, keep: (op: PendingOp) => boolean): boolean {
    let n = 0;
    for (const op of chain.ops) if (keep(op)) n++;
    if (n === chain.ops.length) return true;
    const dropped = chain.ops.length - n;
    chain.ops = chain.ops.filter(keep);
    this.size -= dropped;
    if (n > 0) return true;
    this.chainDone(chain);
    return false;
  }

  /** Everything not yet started, removed (for shutdown or a shard that went down). */
  drainWaiting(): PendingOp[] {
    const reads = this.readyReads.drain();
    const chains = [...this.readyWrites.drain(), ...this.readyReaps.drain()];
    const txns = new Set<PendingOp>(this.readyTxns.drain());
    const out: PendingOp[] = [...reads];
    for (const c of chains) out.push(...c.ops);
    for (const st of this.keys.values()) {
      for (const op of st.queue.drain()) {
        if (op.txn === undefined) out.push(op);
        else txns.add(op); // queued on several keys: once
      }
    }
    out.push(...txns);
    // Ready items count as scheduled on their key; undo that so completions stay balanced.
    for (const op of reads) this.keys.get(op.keyStr)!.reads--;
    for (const c of chains) this.keys.get(c.keyStr)!.writing = false;
    for (const t of txns) for (const k of t.txn!.held) this.keys.get(k)!.writing = false;
    for (const [k, st] of this.keys) if (st.reads === 0 && !st.writing) this.keys.delete(k);
    this.size -= out.length;
    return out;
  }

  private allowed(st: KeyState, op: PendingOp): boolean {
    return isReadOp(op.op) ? !st.writing : !st.writing && st.reads === 0;
  }

  private start(keyStr: string, st: KeyState, op: PendingOp): void {
    if (op.txn !== undefined) {
      // Held for the transaction; it is ready once every one of its keys is.
      st.writing = true;
      op.txn.held.push(keyStr);
      if (--op.txn.waiting === 0) this.readyTxns.push(op);
      return;
    }
    if (isReadOp(op.op)) {
      st.reads++;
      this.readyReads.push(op);
      return;
    }
    st.writing = true;
    const ops = [op];
    for (let next = st.queue.peek(); next !== undefined && ops.length < this.maxChain && !isReadOp(next.op) && next.op !== OP_TXN; next = st.queue.peek()) {
      ops.push(st.queue.shift());
    }
    let reapsOnly = true;
    for (const o of ops) if (o.op !== OP_REAP) reapsOnly = false;
    (reapsOnly ? this.readyReaps : this.readyWrites).push({ keyStr: op.keyStr, key: op.key, slot: op.slot, ops });
  }

  private release(keyStr: string, st: KeyState): void {
    for (let next = st.queue.peek(); next !== undefined && this.allowed(st, next); next = st.queue.peek()) {
      st.queue.shift();
      this.start(keyStr, st, next);
      if (st.writing) break;
    }
    if (st.reads === 0 && !st.writing && st.queue.count === 0) this.keys.delete(keyStr);
  }
}

/** Ready chains, oldest first, until `maxOps` ops or `maxBytes` of values; always at least one. */
function takeChains(queue: Fifo<Chain>, maxOps: number, maxBytes: number): Chain[] {
  const batch: Chain[] = [];
  let ops = 0;
  let bytes = 0;
  for (let chain = queue.peek(); chain !== undefined; chain = queue.peek()) {
    let chainBytes = 0;
    for (const op of chain.ops) chainBytes += op.value === null ? 0 : op.value.length;
    if (batch.length > 0 && (ops + chain.ops.length > maxOps || bytes + chainBytes > maxBytes)) break;
    batch.push(queue.shift());
    ops += chain.ops.length;
    bytes += chainBytes;
  }
  return batch;
}
