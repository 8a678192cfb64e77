/**
 * Owns the WebSocket API (GET /v1/ws): per-connection flow control, turning frames into shard
 * requests, and gathering replies into frames. Relies on uWebSockets.js, ShardPool, the wire
 * format in protocol/ws-requests and ws-replies (docs/websocket-protocol.md), http-errors and
 * http-framing (the upgrade is an HTTP request) and Metrics. Must not touch MySQL or the actors'
 * internals: every op goes through ShardPool.submit and comes back as a Reply.
 *
 *   message(frame) ─ copy ─ decodeFrame ─┬─ request ─ flow control ─ pool.submit(WsOp) ···> deliver
 *                                        └─ reject / frameError ─────────────┐                │
 *                                                                            v                v
 *                       conn.outbox: | reply | reply | ... |  <── push ──────┴────────────────┘
 *                       setImmediate: every dirty conn ─ cork ─ send (frames of about 1 MiB)
 *
 * What must stay true:
 * - `ctx.inflight.n` counts replies owed to open sockets (op submitted, or reply waiting in an
 *   outbox); it returns to 0 only when every one was written or its socket closed (graceful
 *   shutdown waits on it).
 * - After `close` fires nothing touches the uWS socket again: `conn.ws` is nulled, late replies
 *   are counted and dropped.
 * - Memory per connection is bounded: at most ctx.maxInflight ops at the shards; new ops are
 *   answered KV_ERR_BUSY while more than BUSY_BUFFERED_BYTES wait to be sent; and uWS closes a
 *   socket whose send buffer passes MAX_BACKPRESSURE_BYTES (a peer that never reads).
 * uWS has no way to pause reading a WebSocket in this version, hence answers instead of pauses.
 */
import type { HttpRequest, HttpResponse, TemplatedApp, us_socket_context_t, WebSocket } from 'uWebSockets.js';
import { wsProtocols, type TokenEntry } from '../protocol/access';
import { listingRefusal, opRefusal, txnRefusal, watchRefusal } from './door-policy';
import type { ScanRequest } from '../protocol/listing';
import { ERRORS, statusOf, toErrorData, type ErrorData } from '../protocol/errors';
import { isErrorReply, OP_NAMES, OP_SCAN, OP_TXN, OP_UNWATCH, OP_WATCH, type OpCode, type Reply, type TxnDone } from '../protocol/ops';
import type { FeedError, FeedEvent, Subscription } from './feed-hub';
import type { Limits } from '../protocol/validate';
import type { WireListReply, WireReply } from '../protocol/ws-format';
import { frameErrorReply, ReplyFrameEncoder, toWireReply, toWireTxnReply, wireErrorReply } from '../protocol/ws-replies';
import { packTxn, type TxnProgram } from '../protocol/txn';
import { txnRoute } from './txn-route';
import { decodeFrame, type RequestSink } from '../protocol/ws-requests';
import { remoteAddress } from './auth';
import type { HttpContext } from './http-api';
import { listPage } from './key-lister';
import { writeError } from './http-errors';
import { refusedFraming } from './http-framing';
import type { ReplyTarget } from './shard-pool';

/** What the HTTP API gets, plus the open sockets (closed at shutdown) and the per-socket limit. */
export interface WsContext extends HttpContext {
  sockets: Set<WebSocket<unknown>>;
  maxInflight: number;
  /** KVSQL_FEED_WATCHER_BUFFER_BYTES: a watch with more unsent than this is cut off. */
  feedWatcherBufferBytes: number;
}

export const WS_PATH = '/v1/ws';
/** Over this many bytes waiting to be sent, new ops get KV_ERR_BUSY. */
export const BUSY_BUFFERED_BYTES = 4 * 1024 * 1024;
/** uWS drops sends and closes the socket past this much buffered (a peer that does not read). */
export const MAX_BACKPRESSURE_BYTES = 64 * 1024 * 1024;
/** Replies are cut into frames of about this size (one reply may be larger). */
export const OUT_FRAME_BYTES = 1024 * 1024;
/** A frame may carry one maximal value plus this much for keys, options and other requests. */
export const FRAME_OVERHEAD_BYTES = 64 * 1024;
/**
 * uWS's own maxPayloadLength is this many times the frame limit. Checked on uWS 20.30: a frame
 * over maxPayloadLength is answered by dropping the TCP connection, no close frame (the peer sees
 * 1006). So the frame limit is enforced here, with a 1009 close and a reason, and uWS's larger
 * limit only bounds what a connection can make the server buffer.
 */
const UWS_PAYLOAD_FACTOR = 2;
/** WebSocket close code: message too big. */
const CLOSE_TOO_BIG = 1009;
/** WebSocket close code: policy violation (its token was revoked). */
const CLOSE_POLICY = 1008;
/** Stands for a revoked token: no rights at all. */
const REVOKED: TokenEntry = Object.freeze({ id: 'revoked', name: 'revoked', sha256: new Uint8Array(32), admin: false, read: [], write: [] });

/** uWS send(): the message was dropped because the socket is over maxBackpressure. */
const SEND_DROPPED = 2;

/**
 * uWS copies the user data's own properties onto its WebSocket object (the prototype is lost), so
 * the connection travels as a property.
 */
interface WsData {
  conn: WsConn;
}

/** One WebSocket connection. */
class WsConn implements RequestSink {
  ws: WebSocket<WsData> | null = null;
  closed = false;
  /** Ops submitted to the pool and not yet answered. */
  inflight = 0;
  /** Replies waiting for the next flush, in arrival order. */
  readonly outbox: WireReply[] = [];
  dirty = false;
  /** Sampled once per frame: the send buffer is over BUSY_BUFFERED_BYTES. */
  overBuffered = false;
  /** The reply past ctx.maxInflight (one object per connection, shared by its BUSY replies). */
  private readonly busyInflight: ErrorData;
  /** Open watches (op 15), by the watch request's id. */
  watches: Map<number, Subscription> | null = null;
  constructor(
    readonly ctx: WsContext,
    /** The token checked at the upgrade (null: auth off); replaced or revoked on reload. */
    public who: TokenEntry | null,
  ) {
    this.busyInflight = { code: 'KV_ERR_BUSY', message: `${ctx.maxInflight} operations are in flight on this connection (the limit); wait for replies` };
  }

  request(id: number, op: OpCode, key: Uint8Array, value: Uint8Array | null, ttlMs: number, flags: number, ifVersion: number): void {
    const ctx = this.ctx;
    if (ctx.closing()) return this.refuse(id, op, SHUTTING_DOWN);
    if (this.inflight >= ctx.maxInflight) return this.refuse(id, op, this.busyInflight);
    if (this.overBuffered) return this.refuse(id, op, BUSY_BUFFERED);
    // Rights per op: a token may read a prefix it may not write.
    const refused = opRefusal(ctx.auth, 'ws', this.who, op, key, flags);
    if (refused !== null) return this.refuse(id, op, refused.toData());
    this.inflight++;
    ctx.inflight.n++;
    ctx.pool.submit(new WsOp(this, id, op), op, key, value, ttlMs, flags, ifVersion);
  }

  /**
   * A transaction (op 13): every key authorized for what its op does (a compare needs the read
   * right), all on one shard (txn-route.ts), then one op to that shard.
   */
  txn(id: number, program: TxnProgram): void {
    const ctx = this.ctx;
    if (ctx.closing()) return this.refuse(id, OP_TXN, SHUTTING_DOWN);
    if (this.inflight >= ctx.maxInflight) return this.refuse(id, OP_TXN, this.busyInflight);
    if (this.overBuffered) return this.refuse(id, OP_TXN, BUSY_BUFFERED);
    const refused = txnRefusal(ctx.auth, 'ws', this.who, program);
    if (refused !== null) return this.refuse(id, OP_TXN, refused.toData());
    let first: Uint8Array | null;
    try {
      first = txnRoute(program, (k) => ctx.pool.shardOf(k));
    } catch (err) {
      return this.refuse(id, OP_TXN, toErrorData(err));
    }
    this.inflight++;
    ctx.inflight.n++;
    const call = new WsOp(this, id, OP_TXN, program);
    if (first === null) call.deliver([0, 200, 1, []]);
    else ctx.pool.submit(call, OP_TXN, first, Buffer.from(packTxn(program)), 0, 0, 0);
  }

  /** A page of keys (op 12): gateway work across the shards, one op in flight meanwhile. */
  list(id: number, q: ScanRequest): void {
    const ctx = this.ctx;
    if (ctx.closing()) return this.refuse(id, OP_SCAN, SHUTTING_DOWN);
    if (this.inflight >= ctx.maxInflight) return this.refuse(id, OP_SCAN, this.busyInflight);
    if (this.overBuffered) return this.refuse(id, OP_SCAN, BUSY_BUFFERED);
    const refused = listingRefusal(ctx.auth, 'ws', this.who, q.prefix);
    if (refused !== null) return this.refuse(id, OP_SCAN, refused.toData());
    this.inflight++;
    ctx.inflight.n++;
    const started = performance.now();
    listPage(ctx.pool, q).then(
      (p) => this.listed(started, [id, 200, p.keys, p.next, p.values, p.expiresAt] satisfies WireListReply),
      (err) => this.listed(started, wireErrorReply(id, toErrorData(err))),
    );
  }

  private listed(started: number, reply: WireReply): void {
    const ctx = this.ctx;
    this.inflight--;
    ctx.metrics.observe('ws', OP_NAMES[OP_SCAN], reply[1], (performance.now() - started) / 1000);
    if (this.closed) {
      ctx.inflight.n--; // the socket is gone: nowhere to send the page
      return;
    }
    this.push(reply);
  }

  /**
   * A watch (op 15): `[id, 200, cursor]` once it runs, then `[id, 206, type, key, version, at,
   * expiresAt, cursor, shard, seq]` per change, until unwatch, or an error `[id, status, {code, message,
   * cursor}]` that ends it (a watcher whose unsent events pass KVSQL_FEED_WATCHER_BUFFER_BYTES is
   * cut off with KV_ERR_WATCH_TOO_SLOW).
   */
  watch(id: number, prefix: Uint8Array, exact: boolean, from: string): void {
    const ctx = this.ctx;
    if (ctx.closing()) return this.refuse(id, OP_WATCH, SHUTTING_DOWN);
    if (ctx.feed === null) return this.refuse(id, OP_WATCH, { code: 'KV_ERR_BAD_REQUEST', message: 'the change feed is off on this gateway (KVSQL_FEED=off)' });
    if (this.watches?.has(id)) return this.refuse(id, OP_WATCH, { code: 'KV_ERR_BAD_REQUEST', message: `a watch with id ${id} is open on this connection` });
    const refused = watchRefusal(ctx.auth, 'ws', this.who, prefix);
    if (refused !== null) return this.refuse(id, OP_WATCH, refused.toData());
    const limit = ctx.feedWatcherBufferBytes;
    // The sink's methods are called with the sink as `this`; they reach the connection through `conn`.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const conn = this;
    let sub: Subscription | null = null;
    const sink = {
      onEvent(e: FeedEvent, cursor: string): void {
        if (conn.closed) return;
        if (conn.ws!.getBufferedAmount() > limit) {
          sub?.unsubscribe();
          conn.watches?.delete(id);
          conn.pushCounted([
            id,
            statusOf('KV_ERR_WATCH_TOO_SLOW'),
            { code: 'KV_ERR_WATCH_TOO_SLOW', message: `more than ${limit} bytes of events were waiting to be sent; resume from the cursor`, cursor },
          ]);
          return;
        }
        conn.pushCounted([id, 206, e.type, e.key, e.version, e.at, e.expiresAt, cursor, e.shard, e.id] as unknown as WireReply);
      },
      onError(err: FeedError): void {
        conn.watches?.delete(id);
        if (!conn.closed) conn.pushCounted([id, statusOf(err.code), { code: err.code, message: err.message, cursor: err.cursor }] as WireReply);
      },
      backlogged(): boolean {
        return conn.closed || conn.ws!.getBufferedAmount() > limit / 2;
      },
    };
    try {
      sub = ctx.feed.subscribe({ prefix: Uint8Array.from(prefix), exact, from }, sink);
    } catch (err) {
      return this.refuse(id, OP_WATCH, toErrorData(err));
    }
    (this.watches ??= new Map()).set(id, sub);
    ctx.metrics.observe('ws', 'watch', 200, 0);
    void ctx.feed.ready(sub).then((cursor) => {
      if (!this.closed && this.watches?.get(id) === sub) this.pushCounted([id, 200, cursor]);
    });
  }

  unwatch(id: number, watchId: number): void {
    const sub = this.watches?.get(watchId);
    if (sub === undefined) return this.refuse(id, OP_UNWATCH, { code: 'KV_ERR_NOT_FOUND', message: `no watch with id ${watchId} is open on this connection` });
    this.watches!.delete(watchId);
    const cursor = sub.cursor();
    sub.unsubscribe();
    this.pushCounted([id, 200, cursor]);
  }

  /** Ends every watch of a closed connection. */
  closeWatches(): void {
    if (this.watches === null) return;
    for (const sub of this.watches.values()) sub.unsubscribe();
    this.watches.clear();
  }

  /** Queues a reply the gateway makes by itself (counted in ctx.inflight.n here). */
  pushCounted(reply: WireReply): void {
    this.ctx.inflight.n++;
    this.push(reply);
  }

  reject(id: number, op: number, err: ErrorData): void {
    this.refuse(id, op, err);
  }

  frameError(message: string): void {
    this.ctx.metrics.observe('ws', 'frame', ERRORS.KV_ERR_BAD_FRAME, 0);
    this.ctx.inflight.n++;
    this.push(frameErrorReply(message));
  }

  /** Answers a request that never reaches a shard. */
  private refuse(id: number, op: number, err: ErrorData): void {
    this.ctx.metrics.observe('ws', OP_NAMES[op] ?? 'unknown', statusOf(err.code), 0);
    this.ctx.inflight.n++;
    this.push(wireErrorReply(id, err));
  }

  /** Queues a reply already counted in ctx.inflight.n. */
  push(reply: WireReply): void {
    this.outbox.push(reply);
    if (!this.dirty) {
      this.dirty = true;
      dirtyConns.push(this);
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flushAll);
      }
    }
  }
}

const SHUTTING_DOWN: ErrorData = { code: 'KV_ERR_SHUTTING_DOWN', message: 'server is shutting down' };
const BUSY_BUFFERED: ErrorData = {
  code: 'KV_ERR_BUSY',
  message: `more than ${BUSY_BUFFERED_BYTES} bytes of replies wait to be sent on this connection; read them before sending more`,
};

/** One op waiting for its shard: the only object allocated per op. */
class WsOp implements ReplyTarget {
  readonly started = performance.now();
  constructor(
    readonly conn: WsConn,
    readonly id: number,
    readonly op: OpCode,
    /** OP_TXN: the program sent, to shape each op's reply. */
    readonly program: TxnProgram | null = null,
  ) {}

  deliver(reply: Reply): void {
    const conn = this.conn;
    const ctx = conn.ctx;
    conn.inflight--;
    ctx.metrics.observe('ws', OP_NAMES[this.op], reply[1], (performance.now() - this.started) / 1000);
    if (conn.closed) {
      ctx.inflight.n--; // the socket is gone: the write happened, the reply has nowhere to go
      return;
    }
    if (this.program !== null && !isErrorReply(reply)) {
      const done = reply as TxnDone;
      conn.push(toWireTxnReply(done, this.id, done[2] === 1 ? this.program[1] : this.program[2]));
    } else conn.push(toWireReply(reply, this.id, this.op));
  }
}

// Flushing: module-level so no closure is made per flush.
let dirtyConns: WsConn[] = [];
let spareConns: WsConn[] = [];
let flushScheduled = false;
let flushing: WsConn | null = null;
const encoder = new ReplyFrameEncoder();

function flushAll(): void {
  flushScheduled = false;
  const list = dirtyConns;
  dirtyConns = spareConns;
  spareConns = list;
  for (let i = 0; i < list.length; i++) {
    const conn = list[i];
    conn.dirty = false;
    if (conn.closed || conn.outbox.length === 0) continue;
    flushing = conn;
    conn.ws!.cork(writeOutbox);
  }
  flushing = null;
  list.length = 0;
}

/** Runs corked: sends the flushing connection's outbox as frames of about OUT_FRAME_BYTES. */
function writeOutbox(): void {
  const conn = flushing!;
  const out = conn.outbox;
  let i = 0;
  while (i < out.length && !conn.closed) {
    // The encoder's bytes are reused by the next encode; uWS copies them during send().
    const bytes = encoder.encode(out, i, OUT_FRAME_BYTES);
    i = encoder.next;
    if (conn.ws!.send(bytes, true, false) === SEND_DROPPED && !conn.closed) {
      // Over MAX_BACKPRESSURE_BYTES: the peer is not reading. What was dropped can never be
      // answered, so the connection goes (uWS should already be closing it; make sure).
      conn.ws!.close();
    }
  }
  if (!conn.closed) {
    conn.ctx.inflight.n -= out.length;
    out.length = 0;
  }
}

/** The largest frame a client may send. */
export const frameLimit = (limits: Limits): number => limits.maxValueBytes + FRAME_OVERHEAD_BYTES;

export function mountWsApi(app: TemplatedApp, ctx: WsContext): void {
  const maxFrame = frameLimit(ctx.limits);
  app.ws<WsData>(WS_PATH, {
    maxPayloadLength: UWS_PAYLOAD_FACTOR * maxFrame,
    maxBackpressure: MAX_BACKPRESSURE_BYTES,
    closeOnBackpressureLimit: 1,
    idleTimeout: 120,
    sendPingsAutomatically: true,

    upgrade: (res: HttpResponse, req: HttpRequest, context: us_socket_context_t) => {
      if (refusedFraming(res, req)) return;
      if (ctx.closing()) {
        writeError(res, 'KV_ERR_SHUTTING_DOWN', 'server is shutting down');
        return;
      }
      // The token: Authorization: Bearer, or (browsers) the subprotocol kvsql.bearer.<token>.
      const protocols = wsProtocols(req.getHeader('sec-websocket-protocol'));
      let who: TokenEntry | null = null;
      if (ctx.auth !== null) {
        try {
          who = ctx.auth.authenticateBearer(req.getHeader('authorization'), () => remoteAddress(res), protocols.token);
        } catch (err) {
          const e = toErrorData(err);
          ctx.metrics.observe('ws', 'upgrade', statusOf(e.code), 0);
          writeError(res, e.code, e.message);
          return;
        }
      }
      res.upgrade<WsData>(
        { conn: new WsConn(ctx, who) },
        req.getHeader('sec-websocket-key'),
        protocols.echo,
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },

    open: (ws) => {
      const conn = ws.getUserData().conn;
      conn.ws = ws;
      ctx.sockets.add(ws as WebSocket<unknown>);
      ctx.metrics.wsOpened();
    },

    message: (ws, message, isBinary) => {
      const conn = ws.getUserData().conn;
      if (message.byteLength > maxFrame) {
        ctx.metrics.observe('ws', 'frame', ERRORS.KV_ERR_VALUE_TOO_LARGE, 0);
        ws.end(CLOSE_TOO_BIG, `frame is ${message.byteLength} bytes, the limit is ${maxFrame}`);
        return;
      }
      if (!isBinary) {
        conn.frameError('frames must be binary (msgpack); got a text frame');
        return;
      }
      conn.overBuffered = ws.getBufferedAmount() > BUSY_BUFFERED_BYTES;
      // Copy: uWS neuters `message` when this returns, and keys/values decoded from it stay in
      // use until the pool's flush on the next turn.
      const frame = Buffer.allocUnsafe(message.byteLength);
      frame.set(new Uint8Array(message));
      decodeFrame(frame, ctx.limits, conn);
    },

    close: (ws) => {
      const conn = ws.getUserData().conn;
      conn.closed = true;
      conn.ws = null;
      conn.closeWatches();
      ctx.sockets.delete(ws as WebSocket<unknown>);
      ctx.inflight.n -= conn.outbox.length;
      conn.outbox.length = 0;
      ctx.metrics.wsClosed();
    },
  });
}

/**
 * After a token reload: each open socket's token is replaced by its new entry (rights may have
 * changed), and a socket whose token was revoked is closed (1008). Others stay open.
 */
export function refreshTokens(ctx: WsContext): number {
  const auth = ctx.auth;
  if (auth === null) return 0;
  let closed = 0;
  for (const ws of ctx.sockets) {
    const conn = (ws as WebSocket<WsData>).getUserData().conn;
    if (conn.who === null) continue;
    const now = auth.current(conn.who);
    if (now !== null) {
      conn.who = now;
    } else {
      conn.who = REVOKED; // until the close lands, every op is refused
      closed++;
      ws.end(CLOSE_POLICY, 'token revoked');
    }
  }
  return closed;
}
