/**
 * Owns the public API of the TypeScript client for the WebSocket API (docs/websocket-protocol.md):
 * `createClient`, `KvClient`'s methods, and wiring its parts together: issuing a call (checked and
 * encoded by encode.ts, tracked with its deadline by requests.ts), sending frames as the window
 * allows, and settling each call from its reply (decode.ts). Relies on connection.ts for the
 * socket and reconnects, options.ts for the options, watch.ts for watches. Must not import gateway
 * code: the client runs in other processes.
 *
 *   put()/get()/... ─> requests.add (queue, deadline)
 *   flush (setImmediate, when connected): while requests.nextFrame(batch) > 0, send the frame
 *   reply frame ─> requests.answered(id) ─> replyResult ─> resolve/reject ─> flush again if waiting
 *
 * What must stay true:
 * - An op is settled exactly once: by its reply, its timeout, a dropped connection or close().
 * - An op that was on the wire when the connection dropped is rejected KV_ERR_CONNECTION_LOST and
 *   never sent again; an op still in the queue waits for the next connection (or its timeout).
 */
import { KvError } from '../protocol/errors';
import { OP_DEL, OP_EXPIRE, OP_GET, OP_GETDEL, OP_INCR, OP_NAMES, OP_PERSIST, OP_PUT, OP_SCAN, OP_TTL, OP_TXN, type OpCode } from '../protocol/ops';
import type { Limits } from '../protocol/validate';
import { decodeReplyFrame, encodeRequestFrame, replyError } from '../protocol/ws-client-codec';
import { FRAME_ERROR_ID, type DelOptions, type IncrOptions, type ListOptions, type PutOptions, type WireReply } from '../protocol/ws-format';
import { Connection } from './connection';
import { replyResult } from './decode';
import { checkOp, encodeTxn, type TxnWire } from './encode';
import { KvClientError } from './errors';
import { resolveOptions } from './options';
import { ClientCall, rejectCall, RequestTable, resolveCall } from './requests';
import type {
  ClientOptions,
  SecurityOptions,
  GetResult,
  IncrFloatResult,
  IncrResult,
  Key,
  ListItem,
  ListRequest,
  ListResult,
  PutResult,
  TtlResult,
  TxnRequest,
  TxnResult,
  Value,
} from './types';
import { openWatch, type Watch, type WatchOptions } from './watch';

export type * from './types';
export type { Watch, WatchEvent, WatchOptions } from './watch';

export class KvClient {
  readonly url: string;
  readonly maxInflight: number;
  readonly timeoutMs: number;
  private readonly limits: Limits;
  private readonly maxFrameBytes: number;
  private readonly security: SecurityOptions;
  private readonly requests: RequestTable;
  private readonly connection: Connection;
  private closed = false;
  private closing: Promise<void> | null = null;
  private flushScheduled = false;
  private readonly batch: ClientCall[] = [];

  constructor(url: string, opts: ClientOptions = {}) {
    const o = resolveOptions(opts);
    this.url = url;
    this.maxInflight = o.maxInflight;
    this.timeoutMs = o.timeoutMs;
    this.limits = { maxKeyBytes: o.maxKeyBytes, maxValueBytes: o.maxValueBytes };
    this.maxFrameBytes = o.maxFrameBytes;
    this.security = o.security;
    this.requests = new RequestTable(o.timeoutMs, () => this.connectionState());
    this.connection = new Connection(
      url,
      { handshakeTimeoutMs: o.timeoutMs, reconnectMinDelayMs: o.reconnectMinDelayMs, reconnectMaxDelayMs: o.reconnectMaxDelayMs, security: o.security },
      {
        onOpen: () => this.scheduleFlush(),
        onFrame: (data) => this.onFrame(data),
        onRefused: (code, why) => this.requests.failQueued((op) => new KvClientError(code, `${OP_NAMES[op.op]}: the server refused the connection (${why})`)),
        onLost: (why) =>
          this.requests.failInflight(
            (op) => new KvClientError('KV_ERR_CONNECTION_LOST', `${OP_NAMES[op.op]}: ${why} with the operation in flight; it may or may not have been applied`),
          ),
      },
    );
  }

  /**
   * Changes of keys under `prefix` (or of the key itself, with `exact`), from now or from a cursor,
   * as an async iterator, on a WebSocket of its own (watch.ts): `for await (const e of
   * client.watch('user:', { from: saved })) { ...; saved = e.cursor; }`. At least once across
   * resumes; nothing lost. close() (or breaking out of the loop) ends it.
   */
  watch(prefix: Key, opts: WatchOptions = {}): Watch {
    const bytes = typeof prefix === 'string' ? Buffer.from(prefix, 'utf8') : prefix;
    const max = this.limits.maxKeyBytes;
    if (bytes.length > max) throw new KvClientError('KV_ERR_KEY_TOO_LONG', `prefix is ${bytes.length} bytes, the limit is ${max}`);
    return openWatch(this.url, bytes, opts, this.security);
  }

  /** True while a connection is open. */
  get connected(): boolean {
    return this.connection.isOpen;
  }

  /** Ops on the wire awaiting a reply (timed-out ones included until their reply arrives). */
  get inflight(): number {
    return this.requests.inflight;
  }

  /** Ops waiting to be sent. */
  get queued(): number {
    return this.requests.queuedCount();
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
    let encoded: { t: TxnWire; size: number };
    try {
      encoded = encodeTxn(req, this.limits);
    } catch (err) {
      const e = err as KvError;
      return Promise.reject(new KvClientError(e.code, `txn: ${e.message}`, e.status));
    }
    return new Promise((resolve, reject) => {
      this.requests.add(new ClientCall(this.requests, OP_TXN, '', null, 0, encoded.t, encoded.size, resolve as (v: unknown) => void, reject));
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
    this.requests.failAll((op) => new KvClientError('KV_ERR_CLIENT_CLOSED', `${OP_NAMES[op.op]}: the client was closed before a reply`));
    this.closing = this.connection.close();
    return this.closing;
  }

  /** For timeout messages: why a queued op is still waiting. */
  connectionState(): string {
    if (this.connection.isOpen) return `connected; ${this.requests.inflight} ops in flight, window ${this.maxInflight}`;
    const lastError = this.connection.lastError;
    return `not connected to ${this.url}${lastError ? `: ${lastError}` : ''}`;
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
      size = checkOp(op, key, value, ttlMs, opts, this.limits);
    } catch (err) {
      const e = err as KvError;
      return Promise.reject(new KvClientError(e.code, `${OP_NAMES[op]}: ${e.message}`, e.status));
    }
    return new Promise((resolve, reject) => {
      this.requests.add(new ClientCall(this.requests, op, key, value, ttlMs, opts, size, resolve, reject));
      this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || !this.connection.isOpen) return;
    this.flushScheduled = true;
    setImmediate(this.flush);
  }

  /** Sends what the window allows, in frames of at most maxFrameBytes (or one op). */
  private readonly flush = (): void => {
    this.flushScheduled = false;
    const ws = this.connection.ws;
    if (ws === null) return;
    const batch = this.batch;
    while (this.requests.nextFrame(batch, this.maxInflight, this.maxFrameBytes) > 0) ws.send(encodeRequestFrame(batch, 0, batch.length));
    batch.length = 0;
    this.requests.compact();
  };

  private onFrame(data: Buffer): void {
    let replies: WireReply[];
    try {
      replies = decodeReplyFrame(data);
    } catch (err) {
      return this.connection.drop(`the server sent an unreadable frame: ${(err as Error).message}`);
    }
    for (let i = 0; i < replies.length; i++) {
      const r = replies[i];
      if (r[0] === FRAME_ERROR_ID) {
        // The server could not read one of our frames: some ops in it will never be answered,
        // and which ones cannot be known. Fail everything in flight now rather than at timeout.
        return this.connection.drop(`the server rejected a frame: ${replyError(r)?.message ?? 'no reason given'}`);
      }
      const op = this.requests.answered(r[0]);
      if (op === undefined) continue;
      const result = replyResult(op.op, op.opts, r, data.length);
      if (result instanceof KvClientError) rejectCall(op, result);
      else resolveCall(op, result);
    }
    if (this.requests.waiting) this.scheduleFlush();
  }
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
