/**
 * Owns the TypeScript client for the WebSocket API (docs/websocket-protocol.md): pipelining with a
 * bounded window, per-op timeouts, and reconnecting. Relies on the `ws` package and the wire format
 * in protocol/ws-client-codec and ws-format (shared with the server, so validation messages
 * match). Must not import gateway code: the client runs in other processes.
 *
 *   put()/get()/... ─> queue: | settled | waiting ... |      (unbounded, in issue order)
 *                               ^ head
 *   flush (setImmediate, when connected): while inflight < maxInflight, take from head, cut into
 *   frames of <= maxFrameBytes, send;  inflight: Map id -> op   (<= maxInflight)
 *   reply frame ─> inflight.get(id) ─> resolve/reject ─> flush again if the queue waits
 *
 * What must stay true:
 * - An op is settled exactly once: by its reply, its timeout, a dropped connection or close().
 * - An op that was on the wire when the connection dropped is rejected KV_ERR_CONNECTION_LOST and
 *   never sent again; an op still in the queue waits for the next connection (or its timeout).
 * - A timed-out op that was sent stays in `inflight` until its reply or the drop: the server still
 *   counts it, so the window must too.
 */
import WebSocket from 'ws';
import { KvError } from '../protocol/errors';
import { OP_DEL, OP_EXPIRE, OP_GET, OP_GETDEL, OP_INCR, OP_NAMES, OP_PERSIST, OP_PUT, OP_SCAN, OP_TTL, OP_TXN, type OpCode } from '../protocol/ops';
import { checkListRequest } from '../protocol/listing';
import { checkTtlMs, checkValue } from '../protocol/validate';
import { decodeReplyFrame, encodeRequestFrame, replyError, type ClientRequest, type TxnRequestWire } from '../protocol/ws-client-codec';
import {
  FRAME_ERROR_ID,
  readDelOptions,
  readIncr,
  readListOptions,
  readPutOptions,
  wireReplyOf,
  type DelOptions,
  type IncrOptions,
  type ListOptions,
  type OpFields,
  type PutOptions,
  type WireListReply,
  type WireReply,
} from '../protocol/ws-format';
import { KvClientError, type KvClientErrorCode } from './errors';
import { openWatch, type Watch, type WatchOptions } from './watch';

export type { Watch, WatchEvent, WatchOptions } from './watch';

export type { PutOptions, DelOptions, ListOptions };

export type Key = string | Uint8Array;
export type Value = string | Uint8Array;

/** Who the client is and whom it trusts (not numbers: kept apart from the numeric options). */
export interface SecurityOptions {
  /** Access token, sent as `Authorization: Bearer <token>` at the upgrade. */
  token?: string;
  /** PEM CA certificate(s) a `wss://` server's certificate must chain to (default: Node's CAs). */
  ca?: string | Buffer | Array<string | Buffer>;
}

export interface ClientOptions extends SecurityOptions {
  /** Ops on the wire at once; more are queued locally. Default 1024. */
  maxInflight?: number;
  /** Per-op timeout in ms, from the call until the reply (queued time included). Default 10000. */
  timeoutMs?: number;
  /** Values above this are refused locally (set it to the server's KVSQL_MAX_VALUE_BYTES). Default 1 MiB. */
  maxValueBytes?: number;
  /** Keys above this are refused locally (the server's limit is 1024 and not configurable). */
  maxKeyBytes?: number;
  /**
   * A frame of several ops stays under this many bytes; a single op larger than it goes alone.
   * Default 60 KiB: below the 64 KiB a server always allows beyond its largest value.
   */
  maxFrameBytes?: number;
  /** First reconnect delay in ms; doubles per failed attempt (with jitter). Default 100. */
  reconnectMinDelayMs?: number;
  /** Largest reconnect delay in ms. Default 5000. */
  reconnectMaxDelayMs?: number;
}

export interface GetResult {
  /** The value's bytes. Never pins a larger received frame: a small value is copied out of it. */
  value: Buffer;
  version: number;
  /** Unix ms when the key expires, or null when it has no TTL. */
  expiresAt: number | null;
}

export interface PutResult {
  version: number;
  expiresAt: number | null;
  /** True when the key was absent (or expired) before this put. */
  created: boolean;
}

/** After incr: the new value (bigint: counters are signed 64-bit, past 2^53). */
export interface IncrResult {
  value: bigint;
  version: number;
  expiresAt: number | null;
  /** True when the key was absent (or expired) and the increment created it. */
  created: boolean;
}

/** After incrByFloat: the new value. */
export interface IncrFloatResult {
  value: number;
  version: number;
  expiresAt: number | null;
  created: boolean;
}

export interface TtlResult {
  /** Milliseconds left, or null when the key has no TTL. */
  ttlMs: number | null;
  expiresAt: number | null;
}

/** A compare of txn(): the key has exactly this version, or exists (any version), or is absent. */
export type TxnCompare = { key: Key; version: number } | { key: Key; exists: boolean };

/** An op of txn(), named as the method that does it alone. */
export type TxnOp =
  | { op: 'get'; key: Key }
  | { op: 'put'; key: Key; value: Value; opts?: PutOptions }
  | { op: 'del'; key: Key; opts?: DelOptions }
  | { op: 'pexpire'; key: Key; ttlMs: number }
  | { op: 'persist'; key: Key }
  | { op: 'pttl'; key: Key }
  | { op: 'incr'; key: Key; by?: number | bigint }
  | { op: 'incrByFloat'; key: Key; by: number }
  | { op: 'getdel'; key: Key };

/** What txn() takes: if every compare holds, the success ops run, else the failure ops. */
export interface TxnRequest {
  compare?: TxnCompare[];
  success?: TxnOp[];
  failure?: TxnOp[];
}

/**
 * What txn() resolves: which list ran, and each of its ops' results as that op's method
 * resolves it, or the KvClientError it would reject with (an INCR of text fails alone).
 */
export interface TxnResult {
  succeeded: boolean;
  results: unknown[];
}

type OpOptions = PutOptions | DelOptions | IncrOptions | undefined;

/** A transaction as sent: the wire's arrays, and each op's code and options to read its reply. */
interface TxnWire extends TxnRequestWire {
  success: Array<[OpCode, OpOptions]>;
  failure: Array<[OpCode, OpOptions]>;
}

/** What list() and listAll() take: keys with `prefix` (default: every key), in byte order. */
export interface ListRequest extends ListOptions {
  prefix?: Key;
}

export interface ListItem {
  key: Buffer;
  /** With `values: true`: the value and its expiry (unix ms, or null for no TTL). */
  value?: Buffer;
  expiresAt?: number | null;
}

export interface ListResult {
  items: ListItem[];
  /** Pass as `after` for the next page; null once the listing is complete. */
  next: Buffer | null;
}

const DEFAULTS = {
  maxInflight: 1024,
  timeoutMs: 10_000,
  maxValueBytes: 1024 * 1024,
  maxKeyBytes: 1024,
  maxFrameBytes: 60 * 1024,
  reconnectMinDelayMs: 100,
  reconnectMaxDelayMs: 5000,
} satisfies Required<Omit<ClientOptions, keyof SecurityOptions>>;

/** Encoded bytes of one request beyond its key and value (array, id, op, headers, options). */
const REQUEST_OVERHEAD_BYTES = 128;

const QUEUED = 0;
const SENT = 1;
const SETTLED = 2;

/** The code an op gets when the upgrade is answered with this status. */
const REFUSALS: Record<string, KvClientErrorCode> = {
  '401': 'KV_ERR_UNAUTHORIZED',
  '403': 'KV_ERR_FORBIDDEN',
  '404': 'KV_ERR_ROUTE_NOT_FOUND',
  '429': 'KV_ERR_TOO_MANY_AUTH_FAILURES',
};

/** One call from issue to settlement. Doubles as the wire request (ClientRequest). */
class ClientCall implements ClientRequest {
  id = 0;
  state = QUEUED;
  timer: NodeJS.Timeout | null = null;
  constructor(
    readonly client: KvClient,
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
  const client = op.client;
  const sent = op.state === SENT;
  op.state = SETTLED;
  op.reject(
    new KvClientError(
      'KV_ERR_TIMEOUT',
      sent
        ? `${OP_NAMES[op.op]}: no reply within ${client.timeoutMs} ms; the operation may or may not have been applied`
        : `${OP_NAMES[op.op]}: not sent within ${client.timeoutMs} ms (${client.connectionState()})`,
    ),
  );
  client.dropSettledHead();
}

/** Marks `op` settled and stops its timer; false when it already was (settle exactly once). */
function settle(op: ClientCall): boolean {
  if (op.state === SETTLED) return false;
  op.state = SETTLED;
  if (op.timer) clearTimeout(op.timer);
  op.timer = null;
  return true;
}

const scratch: OpFields = { ttlMs: 0, flags: 0, ifVersion: 0 };

function keyBytes(key: unknown): number {
  if (typeof key === 'string') return Buffer.byteLength(key, 'utf8');
  if (key instanceof Uint8Array) return key.length;
  return -1;
}

export class KvClient {
  readonly url: string;
  readonly maxInflight: number;
  readonly timeoutMs: number;
  private readonly maxValueBytes: number;
  private readonly maxKeyBytes: number;
  private readonly maxFrameBytes: number;
  private readonly reconnectMinDelayMs: number;
  private readonly reconnectMaxDelayMs: number;

  private socket: WebSocket | null = null;
  private open = false;
  private closed = false;
  private closing: Promise<void> | null = null;
  private readonly queue: Array<ClientCall | undefined> = [];
  private head = 0;
  private readonly inflightOps = new Map<number, ClientCall>();
  private nextId = 1;
  private flushScheduled = false;
  private readonly batch: ClientCall[] = [];
  private attempts = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private lastError = '';
  private readonly security: SecurityOptions;

  constructor(url: string, opts: ClientOptions = {}) {
    const { token, ca, ...numeric } = opts;
    for (const k of Object.keys(numeric)) {
      if (!(k in DEFAULTS)) throw new TypeError(`unknown client option "${k}" (known: ${Object.keys(DEFAULTS).join(', ')}, token, ca)`);
    }
    if (token !== undefined && (typeof token !== 'string' || !/^[\x21-\x7e]+$/.test(token))) {
      throw new TypeError('client option token must be a non-empty string of printable ASCII');
    }
    this.security = { token, ca };
    const o = { ...DEFAULTS, ...numeric };
    for (const [k, v] of Object.entries(o)) {
      if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`client option ${k} must be a positive integer, got ${String(v)}`);
    }
    this.url = url;
    this.maxInflight = o.maxInflight;
    this.timeoutMs = o.timeoutMs;
    this.maxValueBytes = o.maxValueBytes;
    this.maxKeyBytes = o.maxKeyBytes;
    this.maxFrameBytes = o.maxFrameBytes;
    this.reconnectMinDelayMs = o.reconnectMinDelayMs;
    this.reconnectMaxDelayMs = Math.max(o.reconnectMaxDelayMs, o.reconnectMinDelayMs);
    this.connect();
  }

  /**
   * Changes of keys under `prefix` (or of the key itself, with `exact`), from now or from a cursor,
   * as an async iterator, on a WebSocket of its own (watch.ts): `for await (const e of
   * client.watch('user:', { from: saved })) { ...; saved = e.cursor; }`. At least once across
   * resumes; nothing lost. close() (or breaking out of the loop) ends it.
   */
  watch(prefix: Key, opts: WatchOptions = {}): Watch {
    const bytes = typeof prefix === 'string' ? Buffer.from(prefix, 'utf8') : prefix;
    if (bytes.length > this.maxKeyBytes) throw new KvClientError('KV_ERR_KEY_TOO_LONG', `prefix is ${bytes.length} bytes, the limit is ${this.maxKeyBytes}`);
    return openWatch(this.url, bytes, opts, this.security);
  }

  /** True while a connection is open. */
  get connected(): boolean {
    return this.open;
  }

  /** Ops on the wire awaiting a reply (timed-out ones included until their reply arrives). */
  get inflight(): number {
    return this.inflightOps.size;
  }

  /** Ops waiting to be sent. */
  get queued(): number {
    let n = 0;
    for (let i = this.head; i < this.queue.length; i++) if (this.queue[i]!.state === QUEUED) n++;
    return n;
  }

  /** The value, version and expiry of `key`, or null when it is absent or expired. */
  get(key: Key): Promise<GetResult | null> {
    return this.issue(OP_GET, key, null, 0, undefined) as Promise<GetResult | null>;
  }

  /** Writes `value`. A failed ifAbsent/ifExists/ifVersion condition rejects with KV_ERR_PRECONDITION_FAILED. */
  put(key: Key, value: Value, opts?: PutOptions): Promise<PutResult> {
    return this.issue(OP_PUT, key, value, 0, opts) as Promise<PutResult>;
  }

  /** True when the key was deleted, false when it was absent. A failed ifVersion rejects (412). */
  del(key: Key, opts?: DelOptions): Promise<boolean> {
    return this.issue(OP_DEL, key, null, 0, opts) as Promise<boolean>;
  }

  /**
   * Sets the key's TTL to `ttlMs` milliseconds (Redis PEXPIRE; the `p` is for milliseconds, so
   * nobody passes seconds by mistake); resolves its new expiresAt, or null when absent.
   */
  pexpire(key: Key, ttlMs: number): Promise<number | null> {
    return this.issue(OP_EXPIRE, key, null, ttlMs, undefined) as Promise<number | null>;
  }

  /** Removes the key's TTL; true when the key exists, false when absent. */
  persist(key: Key): Promise<boolean> {
    return this.issue(OP_PERSIST, key, null, 0, undefined) as Promise<boolean>;
  }

  /** The key's remaining TTL in milliseconds (Redis PTTL) and its expiresAt, or null when absent. */
  pttl(key: Key): Promise<TtlResult | null> {
    return this.issue(OP_TTL, key, null, 0, undefined) as Promise<TtlResult | null>;
  }

  /**
   * Adds `by` (default 1) to the key's integer value, atomically on the shard (Redis INCRBY):
   * creates it at 0 when absent, keeps its TTL. A value that is not a signed 64-bit integer
   * rejects with KV_ERR_NOT_INTEGER, a result outside that range with KV_ERR_OVERFLOW.
   */
  incr(key: Key, by: number | bigint = 1): Promise<IncrResult> {
    return this.issue(OP_INCR, key, String(by), 0, undefined) as Promise<IncrResult>;
  }

  /** Adds `by` to the key's value as a float (Redis INCRBYFLOAT); KV_ERR_NOT_FLOAT when it is not one. */
  incrByFloat(key: Key, by: number): Promise<IncrFloatResult> {
    return this.issue(OP_INCR, key, String(by), 0, { float: true }) as Promise<IncrFloatResult>;
  }

  /** Deletes the key and resolves the value it had, or null when it was absent (Redis GETDEL). */
  getdel(key: Key): Promise<GetResult | null> {
    return this.issue(OP_GETDEL, key, null, 0, undefined) as Promise<GetResult | null>;
  }

  /**
   * One page of keys in byte order across all shards: those with `prefix` (default every key),
   * strictly after `after`, at most `limit` (1..1000, default 100), with values and expiries when
   * `values` is true. `next` continues the listing (on any gateway, across slot moves); null when
   * it is complete. A page may hold fewer than `limit` keys and still have a `next`.
   */
  list(req: ListRequest = {}): Promise<ListResult> {
    const { prefix = '', ...opts } = req;
    return this.issue(OP_SCAN, prefix, null, 0, opts) as Promise<ListResult>;
  }

  /**
   * A transaction on keys of one shard, atomic and isolated (as etcd's Txn): if every compare
   * holds, the success ops run in order, else the failure ops; see TxnResult. Keys on several
   * shards reject with KV_ERR_CROSS_SHARD and nothing runs.
   */
  txn(req: TxnRequest): Promise<TxnResult> {
    if (this.closed) return Promise.reject(new KvClientError('KV_ERR_CLIENT_CLOSED', 'txn: the client is closed'));
    const t: TxnWire = { compares: [], wire: [[], []], success: [], failure: [] };
    let size = REQUEST_OVERHEAD_BYTES;
    try {
      for (const c of req.compare ?? []) {
        size += this.check(OP_GET, c.key, null, 0, undefined);
        const version = 'version' in c ? c.version : c.exists ? -1 : 0;
        if (!Number.isSafeInteger(version) || version < -1 || ('version' in c && version < 1))
          throw new KvError('KV_ERR_BAD_REQUEST', 'a compare version must be a positive integer');
        t.compares.push([c.key, version]);
      }
      for (const [list, wire, decoded] of [
        [req.success ?? [], t.wire[0], t.success],
        [req.failure ?? [], t.wire[1], t.failure],
      ] as const) {
        for (const o of list) {
          const [code, value, ttlMs, opts] = txnOpFields(o);
          size += this.check(code, o.key, value, ttlMs, opts);
          const n: unknown[] = code === OP_PUT || code === OP_INCR ? [code, o.key, value] : code === OP_EXPIRE ? [code, o.key, ttlMs] : [code, o.key];
          if (opts !== undefined) n.push(opts);
          wire.push(n);
          decoded.push([code, opts]);
        }
      }
    } catch (err) {
      const e = err as KvError;
      return Promise.reject(new KvClientError(e.code, `txn: ${e.message}`, e.status));
    }
    return new Promise((resolve, reject) => {
      const p = new ClientCall(this, OP_TXN, '', null, 0, t, size, resolve as (v: unknown) => void, reject);
      p.timer = setTimeout(onOpTimeout, this.timeoutMs, p);
      this.queue.push(p);
      this.scheduleFlush();
    });
  }

  /** Every key with `prefix` (after `after`), page by page (`limit` per page): for await ... of. */
  async *listAll(req: ListRequest = {}): AsyncGenerator<ListItem> {
    let after: Key | null = req.after ?? null;
    do {
      const page = await this.list({ ...req, after });
      yield* page.items;
      after = page.next;
    } while (after !== null);
  }

  /**
   * Stops reconnecting and closes the connection. Every op not yet answered is rejected with
   * KV_ERR_CLIENT_CLOSED (await your ops first for a graceful close). Idempotent.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const why = (op: ClientCall) => new KvClientError('KV_ERR_CLIENT_CLOSED', `${OP_NAMES[op.op]}: the client was closed before a reply`);
    for (let i = this.head; i < this.queue.length; i++) this.settleError(this.queue[i]!, why(this.queue[i]!));
    this.queue.length = 0;
    this.head = 0;
    for (const op of this.inflightOps.values()) this.settleError(op, why(op));
    this.inflightOps.clear();
    const ws = this.socket;
    this.socket = null;
    this.open = false;
    this.closing =
      ws === null || ws.readyState === WebSocket.CLOSED
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            ws.once('close', () => resolve());
            ws.close(1000, 'client closed');
          });
    return this.closing;
  }

  /** For timeout messages: why a queued op is still waiting. */
  connectionState(): string {
    if (this.open) return `connected; ${this.inflightOps.size} ops in flight, window ${this.maxInflight}`;
    return `not connected to ${this.url}${this.lastError ? `: ${this.lastError}` : ''}`;
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

  private issue(
    op: OpCode | typeof OP_SCAN,
    key: Key,
    value: Value | null,
    ttlMs: number,
    opts: PutOptions | DelOptions | IncrOptions | ListOptions | undefined,
  ): Promise<unknown> {
    if (this.closed) return Promise.reject(new KvClientError('KV_ERR_CLIENT_CLOSED', `${OP_NAMES[op]}: the client is closed`));
    let size: number;
    try {
      size = this.check(op, key, value, ttlMs, opts);
    } catch (err) {
      const e = err as KvError;
      return Promise.reject(new KvClientError(e.code, `${OP_NAMES[op]}: ${e.message}`, e.status));
    }
    return new Promise((resolve, reject) => {
      const p = new ClientCall(this, op, key, value, ttlMs, opts, size, resolve, reject);
      p.timer = setTimeout(onOpTimeout, this.timeoutMs, p);
      this.queue.push(p);
      this.scheduleFlush();
    });
  }

  /** The same checks as the server, with its messages; returns the op's encoded size bound. */
  private check(
    op: OpCode | typeof OP_SCAN,
    key: Key,
    value: Value | null,
    ttlMs: number,
    opts: PutOptions | DelOptions | IncrOptions | ListOptions | undefined,
  ): number {
    const kb = keyBytes(key);
    if (op === OP_SCAN) {
      if (kb < 0) throw new KvError('KV_ERR_BAD_KEY', `prefix must be a string or Uint8Array, got ${typeof key}`);
      const o = readListOptions(opts);
      checkListRequest(Buffer.alloc(kb), o.after, o.limit, o.values, { maxKeyBytes: this.maxKeyBytes, maxValueBytes: this.maxValueBytes });
      return kb + (o.after?.length ?? 0) + REQUEST_OVERHEAD_BYTES;
    }
    if (kb < 0) throw new KvError('KV_ERR_BAD_KEY', `key must be a string or Uint8Array, got ${typeof key}`);
    if (kb === 0) throw new KvError('KV_ERR_BAD_KEY', 'key must not be empty');
    if (kb > this.maxKeyBytes) throw new KvError('KV_ERR_KEY_TOO_LONG', `key is ${kb} bytes, the limit is ${this.maxKeyBytes}`);
    let vb = 0;
    if (op === OP_PUT) {
      vb = keyBytes(value);
      if (vb < 0) throw new KvError('KV_ERR_BAD_REQUEST', `value must be a string or Uint8Array, got ${typeof value}`);
      checkValue(vb, { maxKeyBytes: this.maxKeyBytes, maxValueBytes: this.maxValueBytes });
      if (opts !== null && typeof opts === 'object') checkWholeMs((opts as PutOptions).ttl);
      readPutOptions(opts, scratch);
    } else if (op === OP_DEL) {
      readDelOptions(opts, scratch);
    } else if (op === OP_INCR) {
      vb = readIncr(value, opts, scratch).length;
    } else if (op === OP_EXPIRE) {
      checkWholeMs(ttlMs);
      checkTtlMs(ttlMs);
    }
    return kb + vb + REQUEST_OVERHEAD_BYTES;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || !this.open) return;
    this.flushScheduled = true;
    setImmediate(this.flush);
  }

  /** Sends what the window allows, in frames of at most maxFrameBytes (or one op). */
  private readonly flush = (): void => {
    this.flushScheduled = false;
    const ws = this.socket;
    if (!this.open || ws === null) return;
    const q = this.queue;
    const batch = this.batch;
    while (this.head < q.length && this.inflightOps.size < this.maxInflight) {
      batch.length = 0;
      let bytes = 0;
      while (this.head < q.length && this.inflightOps.size + batch.length < this.maxInflight) {
        const op = q[this.head]!;
        if (op.state === SETTLED) {
          q[this.head++] = undefined;
          continue;
        }
        if (batch.length > 0 && bytes + op.size > this.maxFrameBytes) break;
        q[this.head++] = undefined;
        op.id = this.takeId();
        op.state = SENT;
        batch.push(op);
        bytes += op.size;
      }
      if (batch.length === 0) break;
      for (let i = 0; i < batch.length; i++) this.inflightOps.set(batch[i].id, batch[i]);
      ws.send(encodeRequestFrame(batch, 0, batch.length));
    }
    batch.length = 0;
    if (this.head === q.length) {
      q.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > q.length) {
      q.splice(0, this.head);
      this.head = 0;
    }
  };

  /** Ids run 1..2^32-1 and wrap, skipping any still in flight; 0 is the server's frame-error id. */
  private takeId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = id >= 0xffffffff ? 1 : id + 1;
      if (!this.inflightOps.has(id)) return id;
    }
  }

  private connect(): void {
    this.reconnectTimer = null;
    if (this.closed) return;
    const { token, ca } = this.security;
    const ws = new WebSocket(this.url, {
      perMessageDeflate: false,
      handshakeTimeout: this.timeoutMs,
      headers: token === undefined ? undefined : { Authorization: `Bearer ${token}` },
      ca,
    });
    ws.binaryType = 'nodebuffer';
    this.socket = ws;
    ws.on('open', () => {
      if (ws !== this.socket) return;
      this.open = true;
      this.attempts = 0;
      this.lastError = '';
      this.scheduleFlush();
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (ws !== this.socket) return;
      if (!isBinary) return this.dropConnection('the server sent a text frame');
      this.onFrame(data);
    });
    ws.on('error', (err: Error) => {
      this.lastError = err.message;
      // Refused at the upgrade for the token, or no WebSocket API at this URL's path (404): waiting
      // ops would only time out; fail them now (reconnecting goes on: the server's token file may
      // be reloaded, a proxy's route fixed).
      const refused = /Unexpected server response: (401|403|404|429)/.exec(err.message);
      if (refused !== null)
        this.failQueued(
          REFUSALS[refused[1]],
          refused[1] === '404' ? `${err.message}: no WebSocket API at ${this.url} (kvsql serves it at /v1/ws)` : err.message,
        );
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (ws !== this.socket) return;
      const why = reason.length > 0 ? `${code} ${reason.toString()}` : `${code}`;
      this.detach(`the connection closed (${why}${this.lastError ? `; ${this.lastError}` : ''})`);
    });
  }

  private onFrame(data: Buffer): void {
    let replies: WireReply[];
    try {
      replies = decodeReplyFrame(data);
    } catch (err) {
      return this.dropConnection(`the server sent an unreadable frame: ${(err as Error).message}`);
    }
    for (let i = 0; i < replies.length; i++) {
      const r = replies[i];
      if (r[0] === FRAME_ERROR_ID) {
        // The server could not read one of our frames: some ops in it will never be answered,
        // and which ones cannot be known. Fail everything in flight now rather than at timeout.
        return this.dropConnection(`the server rejected a frame: ${replyError(r)?.message ?? 'no reason given'}`);
      }
      const op = this.inflightOps.get(r[0]);
      if (op === undefined) continue;
      this.inflightOps.delete(r[0]);
      if (op.state === SETTLED) continue; // timed out; the reply only frees its window slot
      this.complete(op, r, data.length);
    }
    if (this.head < this.queue.length) this.scheduleFlush();
  }

  private complete(op: ClientCall, r: WireReply, frameBytes: number): void {
    const status = r[1];
    const err = replyError(r);
    if (err !== null) return this.settleError(op, new KvClientError(err.code, `${OP_NAMES[op.op]}: ${err.message}`, status));
    if (status === 412) {
      return this.settleError(op, new KvClientError('KV_ERR_PRECONDITION_FAILED', `${OP_NAMES[op.op]}: precondition failed`, 412));
    }
    const result = op.op === OP_TXN ? decodeTxn(op.opts as TxnWire, r, frameBytes) : decodeResult(op.op, op.opts, r, frameBytes);
    if (result === undefined) {
      return this.settleError(op, new KvClientError('KV_ERR_BAD_FRAME', `${OP_NAMES[op.op]}: unexpected reply with status ${status}`, status));
    }
    if (settle(op)) op.resolve(result);
  }

  private settleError(op: ClientCall, err: KvClientError): void {
    if (settle(op)) op.reject(err);
  }

  /** Rejects every op not yet sent (the server refused the connection for its token). */
  private failQueued(code: KvClientErrorCode, why: string): void {
    const q = this.queue;
    for (let i = this.head; i < q.length; i++) {
      const op = q[i]!;
      if (op.state === QUEUED) this.settleError(op, new KvClientError(code, `${OP_NAMES[op.op]}: the server refused the connection (${why})`));
    }
    this.dropSettledHead();
  }

  /** Ends a connection we no longer trust, then reconnects. */
  private dropConnection(why: string): void {
    const ws = this.socket;
    this.detach(why);
    ws?.terminate();
  }

  /** The connection is gone: fail what was on the wire (never resend it), then reconnect. */
  private detach(why: string): void {
    this.socket = null;
    this.open = false;
    for (const op of this.inflightOps.values()) {
      this.settleError(
        op,
        new KvClientError('KV_ERR_CONNECTION_LOST', `${OP_NAMES[op.op]}: ${why} with the operation in flight; it may or may not have been applied`),
      );
    }
    this.inflightOps.clear();
    if (this.closed) return;
    const base = Math.min(this.reconnectMaxDelayMs, this.reconnectMinDelayMs * 2 ** Math.min(this.attempts, 20));
    this.attempts++;
    this.reconnectTimer = setTimeout(() => this.connect(), base * (0.5 + Math.random() / 2));
  }
}

/** An op's result from its wire reply (not an error, not 412), or undefined when it makes no sense. */
function decodeResult(op: OpCode | typeof OP_SCAN, opts: ClientCall['opts'], r: WireReply, frameBytes: number): unknown {
  const status = r[1];
  let result: unknown;
  switch (op) {
    case OP_INCR: {
      const n = wireReplyOf(OP_INCR, r);
      if ((n[1] === 200 || n[1] === 201) && n[2] instanceof Uint8Array) {
        const text = Buffer.from(n[2]).toString('latin1');
        const float = (opts as IncrOptions | undefined)?.float === true;
        const rest = { version: n[3], expiresAt: n[4] ?? null, created: n[1] === 201 };
        result = float ? ({ value: Number(text), ...rest } satisfies IncrFloatResult) : ({ value: BigInt(text), ...rest } satisfies IncrResult);
      }
      break;
    }
    case OP_GETDEL:
    case OP_GET: {
      const g = wireReplyOf(OP_GET, r);
      if (g[1] === 404) result = null;
      else if (g[1] === 200 && g[2] instanceof Uint8Array) {
        result = { value: ownBytes(g[2], frameBytes), version: g[3], expiresAt: g[4] ?? null } satisfies GetResult;
      }
      break;
    }
    case OP_PUT: {
      const p = wireReplyOf(OP_PUT, r);
      if (p[1] === 200 || p[1] === 201) result = { version: p[2], expiresAt: p[3] ?? null, created: p[1] === 201 } satisfies PutResult;
      break;
    }
    case OP_DEL:
      if (status === 204) result = true;
      else if (status === 404) result = false;
      break;
    case OP_EXPIRE: {
      const e = wireReplyOf(OP_EXPIRE, r);
      if (e[1] === 200) result = e[2];
      else if (e[1] === 404) result = null;
      break;
    }
    case OP_PERSIST:
      if (status === 200) result = true;
      else if (status === 404) result = false;
      break;
    case OP_SCAN: {
      const l = r as WireListReply;
      if (l[1] === 200 && Array.isArray(l[2])) {
        const items: ListItem[] = [];
        for (let i = 0; i < l[2].length; i++) {
          const item: ListItem = { key: ownBytes(l[2][i], frameBytes) };
          if (l[4] !== null && l[4] !== undefined) {
            item.value = ownBytes(l[4][i], frameBytes);
            item.expiresAt = l[5]?.[i] ?? null;
          }
          items.push(item);
        }
        result = { items, next: l[3] === null || l[3] === undefined ? null : ownBytes(l[3], frameBytes) } satisfies ListResult;
      }
      break;
    }
    case OP_TTL: {
      const t = wireReplyOf(OP_TTL, r);
      if (t[1] === 200) result = { ttlMs: t[2] ?? null, expiresAt: t[3] ?? null } satisfies TtlResult;
      else if (t[1] === 404) result = null;
      break;
    }
  }
  return result;
}

/**
 * A transaction's result: whether its compares held, and each op's result as its own method
 * resolves it, or the KvClientError it would reject with (one op failing fails only itself).
 */
function decodeTxn(t: TxnWire, r: WireReply, frameBytes: number): TxnResult | undefined {
  if (r[1] !== 200 || typeof r[2] !== 'boolean' || !Array.isArray(r[3])) return undefined;
  const ops = r[2] ? t.success : t.failure;
  const replies = r[3] as WireReply[];
  if (replies.length !== ops.length) return undefined;
  const results = replies.map((sub, i) => {
    const [code, opts] = ops[i];
    const err = replyError(sub);
    if (err !== null) return new KvClientError(err.code, `${OP_NAMES[code]}: ${err.message}`, sub[1]);
    if (sub[1] === 412) return new KvClientError('KV_ERR_PRECONDITION_FAILED', `${OP_NAMES[code]}: precondition failed`, 412);
    const result = decodeResult(code, opts, sub, frameBytes);
    return result !== undefined ? result : new KvClientError('KV_ERR_BAD_FRAME', `${OP_NAMES[code]}: unexpected reply with status ${sub[1]}`, sub[1]);
  });
  return { succeeded: r[2], results };
}

/**
 * TTLs are milliseconds in integers on the wire; a fraction (1.5) is most likely seconds or a
 * computed delay: say what is wanted. Kept in the "ttl must be positive" wording of the server's
 * message (protocol/validate), which says "got float 1.5".
 */
/** A txn() op as the wire's fields: [op code, value, ttlMs, options]. */
function txnOpFields(o: TxnOp): [OpCode, Value | null, number, OpOptions] {
  switch (o.op) {
    case 'get':
      return [OP_GET, null, 0, undefined];
    case 'put':
      return [OP_PUT, o.value, 0, o.opts];
    case 'del':
      return [OP_DEL, null, 0, o.opts];
    case 'pexpire':
      return [OP_EXPIRE, null, o.ttlMs, undefined];
    case 'persist':
      return [OP_PERSIST, null, 0, undefined];
    case 'pttl':
      return [OP_TTL, null, 0, undefined];
    case 'incr':
      return [OP_INCR, String(o.by ?? 1), 0, undefined];
    case 'incrByFloat':
      return [OP_INCR, String(o.by), 0, { float: true }];
    case 'getdel':
      return [OP_GETDEL, null, 0, undefined];
    default:
      throw new KvError(
        'KV_ERR_UNKNOWN_OP',
        `txn op must be one of get, put, del, pexpire, persist, pttl, incr, incrByFloat, getdel; got ${JSON.stringify((o as { op?: unknown }).op)}`,
      );
  }
}

function checkWholeMs(ttl: unknown): void {
  if (typeof ttl === 'number' && Number.isFinite(ttl) && !Number.isInteger(ttl)) {
    throw new KvError('KV_ERR_BAD_TTL', `ttl must be positive whole milliseconds, got ${String(ttl).slice(0, 40)} (e.g. Math.ceil(seconds * 1000))`);
  }
}

/**
 * A value decoded from a frame is a view of it; a small value kept by the caller would pin the
 * whole frame (up to about 1 MiB). Copy unless the value is most of the frame anyway.
 */
function ownBytes(v: Uint8Array, frameBytes: number): Buffer {
  if (v.length * 2 >= frameBytes) return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.length);
  return Buffer.from(v);
}

/**
 * Connects to a kvsql server's WebSocket API, e.g. createClient('ws://127.0.0.1:8080/v1/ws').
 * Returns at once; ops issued before the connection opens are queued (see ClientOptions). TTLs
 * are milliseconds throughout. Like any socket, the client (and its reconnect timer) keeps the
 * process alive until close().
 */
export function createClient(url: string, opts?: ClientOptions): KvClient {
  return new KvClient(url, opts);
}
