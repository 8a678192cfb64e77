/**
 * Owns the client's request table: every op from issue to settlement, its deadline, the queue of
 * ops not yet sent, the ops on the wire by id, and cutting the queue into frames. Relies on the
 * wire codec's ClientRequest shape and on KvClientError. Never touches the socket (the client
 * sends the frames it takes) and never decodes a reply.
 *
 *   queue: | settled | waiting ... |      (unbounded, in issue order; no shift: a head index)
 *                      ^ head
 *   nextFrame: while inflight < maxInflight, take from head up to maxFrameBytes (or one op)
 *   inflight: Map id -> op   (<= maxInflight)
 *
 * What must stay true:
 * - An op is settled exactly once: by its reply, its timeout, a dropped connection or close().
 * - A timed-out op that was sent stays in `inflight` until its reply or the drop: the server still
 *   counts it, so the window must too.
 */
import { OP_NAMES, type OP_SCAN, type OpCode } from '../protocol/ops';
import type { ClientRequest } from '../protocol/ws-client-codec';
import type { DelOptions, IncrOptions, ListOptions, PutOptions } from '../protocol/ws-format';
import type { TxnWire } from './encode';
import { KvClientError } from './errors';
import type { Key, Value } from './types';

const QUEUED = 0;
const SENT = 1;
const SETTLED = 2;

/** One call from issue to settlement. Doubles as the wire request (ClientRequest). */
export class ClientCall implements ClientRequest {
  id = 0;
  state = QUEUED;
  timer: NodeJS.Timeout | null = null;
  constructor(
    readonly table: RequestTable,
    readonly op: OpCode | typeof OP_SCAN,
    readonly key: Key,
    readonly value: Value | null,
    readonly ttlMs: number,
    readonly opts: PutOptions | DelOptions | IncrOptions | ListOptions | TxnWire | undefined,
    /** Upper bound of its encoded size. */
    readonly size: number,
    readonly resolve: (v: unknown) => void,
    readonly reject: (e: KvClientError) => void,
  ) {}
}

function onOpTimeout(op: ClientCall): void {
  op.timer = null;
  if (op.state === SETTLED) return;
  const table = op.table;
  const sent = op.state === SENT;
  op.state = SETTLED;
  op.reject(
    new KvClientError(
      'KV_ERR_TIMEOUT',
      sent
        ? `${OP_NAMES[op.op]}: no reply within ${table.timeoutMs} ms; the operation may or may not have been applied`
        : `${OP_NAMES[op.op]}: not sent within ${table.timeoutMs} ms (${table.describe()})`,
    ),
  );
  table.dropSettledHead();
}

/** Marks `op` settled and stops its timer; false when it already was (settle exactly once). */
function settle(op: ClientCall): boolean {
  if (op.state === SETTLED) return false;
  op.state = SETTLED;
  if (op.timer) clearTimeout(op.timer);
  op.timer = null;
  return true;
}

export function resolveCall(op: ClientCall, result: unknown): void {
  if (settle(op)) op.resolve(result);
}

export function rejectCall(op: ClientCall, err: KvClientError): void {
  if (settle(op)) op.reject(err);
}

export class RequestTable {
  private readonly queue: Array<ClientCall | undefined> = [];
  private head = 0;
  private readonly inflightOps = new Map<number, ClientCall>();
  private nextId = 1;

  constructor(
    /** Per-op timeout, from the call until the reply (queued time included). */
    readonly timeoutMs: number,
    /** For timeout messages: why a queued op is still waiting. */
    readonly describe: () => string,
  ) {}

  /** Queues `op` and starts its deadline. */
  add(op: ClientCall): void {
    op.timer = setTimeout(onOpTimeout, this.timeoutMs, op);
    this.queue.push(op);
  }

  get inflight(): number {
    return this.inflightOps.size;
  }

  /** True while some op (maybe already settled) is behind the head. */
  get waiting(): boolean {
    return this.head < this.queue.length;
  }

  queuedCount(): number {
    let n = 0;
    for (let i = this.head; i < this.queue.length; i++) if (this.queue[i]!.state === QUEUED) n++;
    return n;
  }

  /**
   * Fills `batch` with the next ops to send, at most maxFrameBytes together (or one op), within
   * the window; marks them sent under fresh ids. Returns how many (0: nothing to send now).
   */
  nextFrame(batch: ClientCall[], maxInflight: number, maxFrameBytes: number): number {
    const q = this.queue;
    batch.length = 0;
    if (this.inflightOps.size >= maxInflight) return 0;
    let bytes = 0;
    while (this.head < q.length && this.inflightOps.size + batch.length < maxInflight) {
      const op = q[this.head]!;
      if (op.state === SETTLED) {
        q[this.head++] = undefined;
        continue;
      }
      if (batch.length > 0 && bytes + op.size > maxFrameBytes) break;
      q[this.head++] = undefined;
      op.id = this.takeId();
      op.state = SENT;
      batch.push(op);
      bytes += op.size;
    }
    for (let i = 0; i < batch.length; i++) this.inflightOps.set(batch[i].id, batch[i]);
    return batch.length;
  }

  /** After sending: gives the queue's consumed prefix back. */
  compact(): void {
    const q = this.queue;
    if (this.head === q.length) {
      q.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > q.length) {
      q.splice(0, this.head);
      this.head = 0;
    }
  }

  /** Ids run 1..2^32-1 and wrap, skipping any still in flight; 0 is the server's frame-error id. */
  private takeId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = id >= 0xffffffff ? 1 : id + 1;
      if (!this.inflightOps.has(id)) return id;
    }
  }

  /** The op a reply with this id answers, out of the window; undefined if unknown or timed out. */
  answered(id: number): ClientCall | undefined {
    const op = this.inflightOps.get(id);
    if (op === undefined) return undefined;
    this.inflightOps.delete(id);
    return op.state === SETTLED ? undefined : op; // timed out: the reply only frees its window slot
  }

  /** Rejects every op not yet sent. */
  failQueued(errorOf: (op: ClientCall) => KvClientError): void {
    const q = this.queue;
    for (let i = this.head; i < q.length; i++) {
      const op = q[i]!;
      if (op.state === QUEUED) rejectCall(op, errorOf(op));
    }
    this.dropSettledHead();
  }

  /** Rejects every op on the wire (never resent) and empties the window. */
  failInflight(errorOf: (op: ClientCall) => KvClientError): void {
    for (const op of this.inflightOps.values()) rejectCall(op, errorOf(op));
    this.inflightOps.clear();
  }

  /** Rejects everything not answered: queued first, then in flight. */
  failAll(errorOf: (op: ClientCall) => KvClientError): void {
    for (let i = this.head; i < this.queue.length; i++) rejectCall(this.queue[i]!, errorOf(this.queue[i]!));
    this.queue.length = 0;
    this.head = 0;
    this.failInflight(errorOf);
  }

  /** Timeouts fire in issue order: let the queue's head skip what they settled. */
  dropSettledHead(): void {
    const q = this.queue;
    while (this.head < q.length && q[this.head]!.state === SETTLED) q[this.head++] = undefined;
    if (this.head === q.length) {
      q.length = 0;
      this.head = 0;
    }
  }
}
