/**
 * Owns per-key ordering inside one shard actor: which operations may run now and which must wait.
 * Relies on nothing but PendingOp. Never talks to MySQL and never reads the clock.
 *
 * The rule: on one key, operations take effect in arrival order. A read may run beside other
 * reads of that key; a write waits until every earlier operation on its key is done, and while it
 * runs, later operations on its key wait. Consecutive waiting writes on one key start together as
 * a chain (applied in order inside one transaction), so a hot key costs one transaction per batch,
 * not one per write. Keys are never shared by two transactions in flight, which is half of the
 * deadlock argument (the other half: rows are locked in key order; see shard-store).
 *
 *   keys: Map<keyStr, KeyState>          (an entry exists while the key has work scheduled)
 *   KeyState { reads: n scheduled, writing: bool, queue: [op, op, ...] waiting, head index }
 *
 *   arrival ──> queue empty and allowed? ──yes──> readyReads / readyWrites / readyReaps (a chain)
 *                       │no
 *                       └──> key's queue ── released when the key's running work completes
 */
import { isReadOp, OP_REAP } from '../protocol/ops';
import type { PendingOp } from './pending-op';

export interface Chain {
  keyStr: string;
  key: Buffer;
  ops: PendingOp[];
}

interface KeyState {
  reads: number;
  writing: boolean;
  queue: PendingOp[];
  head: number;
}

export class KeyScheduler {
  private readonly keys = new Map<string, KeyState>();
  /** Reads allowed to run, in arrival order. Consumed from `readHead`. */
  private readyReads: PendingOp[] = [];
  private readHead = 0;
  /** User write chains, in arrival order. */
  private readonly readyWrites = new ChainQueue();
  /** Chains of the expirer's reaps only: a separate, lower-priority lane (see the actor). */
  private readonly readyReaps = new ChainQueue();
  /** Operations accepted and not yet completed (queued, ready or running). */
  size = 0;

  constructor(private readonly maxChain: number) {}

  get readyReadCount(): number {
    return this.readyReads.length - this.readHead;
  }

  get readyWriteCount(): number {
    return this.readyWrites.count;
  }

  get readyReapCount(): number {
    return this.readyReaps.count;
  }

  get keyCount(): number {
    return this.keys.size;
  }

  submit(op: PendingOp): void {
    this.size++;
    let st = this.keys.get(op.keyStr);
    if (st === undefined) {
      st = { reads: 0, writing: false, queue: [], head: 0 };
      this.keys.set(op.keyStr, st);
    }
    if (st.head === st.queue.length && this.allowed(st, op)) this.start(st, op);
    else st.queue.push(op);
  }

  /** Up to `maxOps` ready reads (ops, not keys), oldest first. */
  takeReads(maxOps: number): PendingOp[] {
    const end = Math.min(this.readyReads.length, this.readHead + maxOps);
    const batch = this.readyReads.slice(this.readHead, end);
    this.readHead = end;
    if (this.readHead === this.readyReads.length) {
      this.readyReads = [];
      this.readHead = 0;
    }
    return batch;
  }

  /** Ready user chains, oldest first, until `maxOps` ops or `maxBytes` of values (at least one chain). */
  takeWrites(maxOps: number, maxBytes: number): Chain[] {
    return this.readyWrites.take(maxOps, maxBytes);
  }

  /** Ready reap-only chains, oldest first, up to `maxOps` ops. */
  takeReaps(maxOps: number): Chain[] {
    return this.readyReaps.take(maxOps, Infinity);
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

  /** Everything not yet started, removed (for shutdown or a shard that went down). */
  drainWaiting(): PendingOp[] {
    const out: PendingOp[] = [];
    for (let i = this.readHead; i < this.readyReads.length; i++) out.push(this.readyReads[i]);
    const chains = [...this.readyWrites.drain(), ...this.readyReaps.drain()];
    for (const c of chains) out.push(...c.ops);
    for (const st of this.keys.values()) for (let i = st.head; i < st.queue.length; i++) out.push(st.queue[i]);
    // Ready items count as scheduled on their key; undo that so completions stay balanced.
    for (let i = this.readHead; i < this.readyReads.length; i++) this.keys.get(this.readyReads[i].keyStr)!.reads--;
    for (const c of chains) this.keys.get(c.keyStr)!.writing = false;
    this.readyReads = [];
    this.readHead = 0;
    for (const [k, st] of this.keys) {
      st.queue = [];
      st.head = 0;
      if (st.reads === 0 && !st.writing) this.keys.delete(k);
    }
    this.size -= out.length;
    return out;
  }

  private allowed(st: KeyState, op: PendingOp): boolean {
    return isReadOp(op.op) ? !st.writing : !st.writing && st.reads === 0;
  }

  private start(st: KeyState, op: PendingOp): void {
    if (isReadOp(op.op)) {
      st.reads++;
      this.readyReads.push(op);
      return;
    }
    st.writing = true;
    const ops = [op];
    while (st.head < st.queue.length && ops.length < this.maxChain && !isReadOp(st.queue[st.head].op)) {
      ops.push(st.queue[st.head++]);
    }
    this.compact(st);
    let reapsOnly = true;
    for (const o of ops) if (o.op !== OP_REAP) reapsOnly = false;
    (reapsOnly ? this.readyReaps : this.readyWrites).push({ keyStr: op.keyStr, key: op.key, ops });
  }

  private release(keyStr: string, st: KeyState): void {
    while (st.head < st.queue.length) {
      const next = st.queue[st.head];
      if (!this.allowed(st, next)) break;
      st.head++;
      this.start(st, next);
      if (st.writing) break;
    }
    this.compact(st);
    if (st.reads === 0 && !st.writing && st.head === st.queue.length) this.keys.delete(keyStr);
  }

  private compact(st: KeyState): void {
    if (st.head === st.queue.length) {
      st.queue = [];
      st.head = 0;
    } else if (st.head > 32 && st.head * 2 > st.queue.length) {
      st.queue = st.queue.slice(st.head);
      st.head = 0;
    }
  }
}

/** A FIFO of chains consumed from a head index (no Array.shift on a hot queue). */
class ChainQueue {
  private items: Chain[] = [];
  private head = 0;

  get count(): number {
    return this.items.length - this.head;
  }

  push(c: Chain): void {
    this.items.push(c);
  }

  /** Oldest first, until `maxOps` ops or `maxBytes` of values; always at least one chain. */
  take(maxOps: number, maxBytes: number): Chain[] {
    const batch: Chain[] = [];
    let ops = 0;
    let bytes = 0;
    while (this.head < this.items.length) {
      const chain = this.items[this.head];
      let chainBytes = 0;
      for (const op of chain.ops) chainBytes += op.value === null ? 0 : op.value.length;
      if (batch.length > 0 && (ops + chain.ops.length > maxOps || bytes + chainBytes > maxBytes)) break;
      batch.push(chain);
      ops += chain.ops.length;
      bytes += chainBytes;
      this.head++;
    }
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    }
    return batch;
  }

  drain(): Chain[] {
    const out = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return out;
  }
}
