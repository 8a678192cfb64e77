/**
 * Owns the Redis-protocol door (RESP2, and RESP3 after `HELLO 3`): a node:net listener on the main
 * thread, per-connection ordering and flow control, and the mapping of Redis commands onto kvsql
 * operations. Relies on ShardPool (the same submit the HTTP and WebSocket APIs use), protocol/resp
 * (parsing, encoding), ops, errors, validate and Metrics. Must not touch MySQL or the actors'
 * internals: every key operation goes through ShardPool.submit and comes back as a Reply.
 * uWebSockets.js has no raw TCP server, hence node:net.
 *
 * One connection:
 *
 *   socket 'data' ─> parser.feed ─> pump(): while ops in flight < max and writes not blocked:
 *        parser.next() ─> dispatch ─> Command appended to the reply queue ─> pool.submit (0..n ops)
 *   pool deliver ─> Command.out set ─> connection marked dirty
 *   setImmediate: for each dirty connection, cork, write every finished Command at the queue's head
 *
 *   reply queue (request order):  head -> | done | waiting | done | waiting | <- tail
 *                                          ^ written         ^ written only once everything before it is
 *
 * What must stay true:
 * - Replies leave in request order (pipelining), whatever order the shards answer in.
 * - A write's reply is sent only after the actor answered it, i.e. after its commit.
 * - Back-pressure, not buffering: past `maxInflight` key ops in flight, or when socket.write() says
 *   the peer is not reading, the socket is paused (TCP pushes back) and nothing more is parsed.
 *   Memory per connection: one socket read plus one partial request, and the replies of at most
 *   maxInflight ops (a single command with more keys than that is admitted when nothing else is in
 *   flight, as a lone large PUT is).
 * - Per-key order holds because ops are submitted in request order and the actor keeps per-key
 *   order. Commands on different keys in one pipeline run concurrently; only their replies are
 *   ordered. Every command is one op per key (SET ... GET too: the actor answers the value it
 *   replaced), so none needs a second step that a later command could slip before.
 * - Malformed RESP: `-ERR Protocol error: ...` after the replies already owed, then close. Never a
 *   throw out of a socket callback.
 * - `ctx.inflight.n` counts commands submitted and not yet answered (graceful shutdown waits on it).
 */
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, Server as TlsServer } from 'node:tls';
import { hostname } from 'node:os';
import { KvError, statusOf, toErrorData } from '../protocol/errors';
import {
  FLAG_GET_OLD,
  isErrorReply,
  FLAG_KEEP_TTL,
  OP_DEL,
  OP_GET,
  OP_PERSIST,
  OP_PUT,
  OP_TTL,
  replyOf,
  ttlLeftMs,
  type ErrorReply,
  type OpCode,
  type PreconditionFailed,
  type PutDone,
  type Reply,
} from '../protocol/ops';
import * as resp from '../protocol/resp';
import { RespMap, RespProtocolError, RespRequestParser, Simple, type Proto, type RespValue } from '../protocol/resp';
import { checkKey, type Limits } from '../protocol/validate';
import { MAX_LIST_LIMIT } from '../protocol/listing';
import { compileGlob, decodeCursor, encodeCursor } from '../protocol/redis-keyspace';
import { isOptionError, parseSetOptions } from '../protocol/redis-options';
import type { HttpContext } from './http-api';
import { countKeys, listPage } from './key-lister';
import type { ReplyTarget } from './shard-pool';
import { SCRIPT_COMMANDS, ScriptRegistry, type ScriptCall } from './resp-scripts';
import { NOT_IN_MULTI, TXN_COMMANDS, TXN_CONTROL, TxnState, type Queued, type TxnCall } from './resp-transactions';
import type { TxnOp } from '../protocol/txn';
import { ERR_NOT_INTEGER, ERR_SYNTAX, errorText, expiryOption, intArg, STRING_COMMANDS, wrongArgs, type Combine, type OpSpec, type RespCall } from './resp-strings';
import {
  configSet,
  DEFAULT_PUBSUB_LIMIT,
  inSubscribedMode,
  PUBSUB_COMMANDS,
  PubsubHub,
  SUBSCRIBED_MODE_COMMANDS,
  subscribedModeError,
  subscribedPing,
  type KeyspaceSource,
  type PublishBus,
  type PubsubCall,
  type PubsubLimit,
  type Subscriber,
} from './resp-pubsub';

/** The Redis version kvsql answers as (HELLO, INFO): the command syntax it follows is Redis 7.2's. */
export const REDIS_COMPAT_VERSION = '7.2.0';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const KVSQL_VERSION: string = require('../../../package.json').version;

/** Most arguments in one request (Redis: 1024*1024). */
const MAX_ARGS = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The auth seam
// ---------------------------------------------------------------------------------------------

/** What the guard knows of a connection. */
export interface RespSession {
  readonly id: number;
  readonly remoteAddress: string;
  name: string | null;
  proto: Proto;
  /** Set by the guard when credentials were accepted (AUTH, HELLO ... AUTH). */
  user: string | null;
}

/**
 * The seam where authentication and authorisation go. Called once per connection (`accept`) and
 * before every command (`check`); AUTH and HELLO's AUTH option call `authenticate`. Today's
 * guard, ALLOW_ALL, allows everything and, like Redis without a password, refuses AUTH.
 */
export interface RespGuard {
  /** A new connection: false closes it at once. */
  accept(session: RespSession): boolean;
  /** Before each command (lower-case name): null allows it, else an error reply's text (e.g. `NOAUTH Authentication required.`). */
  check(session: RespSession, command: string): string | null;
  /** Credentials from AUTH or HELLO: null accepts them (and may set session.user), else an error reply's text. */
  authenticate(session: RespSession, user: string, password: Buffer): string | null;
  /** Before a command's ops are submitted, per key: throws a KvError (e.g. KV_ERR_FORBIDDEN) to refuse the command. */
  authorize(session: RespSession, op: OpCode, key: Uint8Array): void;
  /** The same question without throwing or counting a refusal: may this session see a pub/sub message about `key` now? */
  allows(session: RespSession, op: OpCode, key: Uint8Array): boolean;
  /** May the session change the gateway's settings (CONFIG SET)? The admin right. */
  isAdmin(session: RespSession): boolean;
  /** RESET: forget the session's credentials (with auth on it must AUTH again). */
  forget(session: RespSession): void;
}

export const ALLOW_ALL: RespGuard = {
  accept: () => true,
  check: () => null,
  authenticate: () => 'ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?',
  authorize: () => undefined,
  allows: () => true,
  isAdmin: () => true,
  forget: () => undefined,
};

export interface RespContext extends HttpContext {
  host: string;
  port: number;
  maxInflight: number;
  guard?: RespGuard;
  /** Serve TLS (tls.createServer) with this PEM certificate and key; null/undefined = clear text. */
  tls?: { cert: string; key: string } | null;
  log: { warn(obj: object, msg: string): void; debug(obj: object, msg: string): void };
  /** notify-keyspace-events at start, as Redis's flag bits (KVSQL_REDIS_NOTIFY_KEYSPACE_EVENTS); 0 = off. */
  notifyFlags?: number;
  /** client-output-buffer-limit pubsub (KVSQL_REDIS_PUBSUB_BUFFER_LIMIT); Redis's 32mb 8mb 60 when absent. */
  pubsubLimit?: PubsubLimit;
  /** Where keyspace notifications come from (the change feed); absent: the interim local source (resp-pubsub.ts). */
  keyspaceSource?: KeyspaceSource | null;
  /** How PUBLISH reaches other gateways; absent: this gateway only. */
  publishBus?: PublishBus | null;
}

export interface RespServer {
  port: number;
  /** Stop accepting connections (existing ones keep being served). */
  stopListening(): void;
  /** Write what is finished, close every connection; resolves when all are closed (at most `timeoutMs`, then they are destroyed). */
  closeConnections(timeoutMs: number): Promise<void>;
  readonly connections: number;
  /** TLS only: new connections get this certificate and key (SIGHUP); open ones keep theirs. */
  setTls(tls: { cert: string; key: string }): void;
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------


const replyError = (r: ErrorReply): string => resp.error(errorText(r[2], r[3]));

const SHUTTING_DOWN = resp.error(errorText('KV_ERR_SHUTTING_DOWN', 'server is shutting down'));

/** A strict integer argument (Redis's string2ll: optional '-', digits, no '+', no spaces). */

// ---------------------------------------------------------------------------------------------
// Commands waiting for their reply
// ---------------------------------------------------------------------------------------------

/** What a command does with its ops' replies. */
const enum Kind {
  Get,
  Set,
  Del,
  Exists,
  Mget,
  Expire,
  DelAsExpire,
  Ttl,
  Pttl,
  Persist,
  /** Any command built on RespCall.ops (resp-strings.ts): its `combine` makes the reply. */
  Custom,
  Scan,
  Keys,
  Dbsize,
  Randomkey,
}

const KIND_NAMES = ['get', 'set', 'del', 'exists', 'mget', 'expire', 'expire', 'ttl', 'pttl', 'persist', 'custom', 'scan', 'keys', 'dbsize', 'randomkey'];

/** One request in a connection's reply queue. `out` is its encoded reply once known. */
class Command implements ReplyTarget {
  /** The op in flight for it (set at submit): what a crashed actor's answer depends on. */
  op: OpCode = OP_GET;
  out: string | Buffer | null = null;
  next: Command | null = null;
  /** Close the connection after writing this reply (QUIT, protocol error). */
  closeAfter = false;
  /** Ops submitted and not yet answered. */
  pending = 0;
  count = 0;
  values: Array<Uint8Array | null> | null = null;
  firstError: string | null = null;
  readonly started = performance.now();
  status = 200;
  /** A pub/sub push frame: its bytes, counted in the connection's output buffer until written. */
  pushed = 0;
  // Custom only: the command's name (metrics), its ops' replies by index, and how to answer.
  name: string | null = null;
  parts: Reply[] | null = null;
  combine: Combine | null = null;

  constructor(
    readonly conn: Conn | null,
    readonly kind: Kind,
    readonly proto: Proto,
  ) {}

  /** One op's reply (MGET's come through MgetPart, with their index). */
  deliver(r: Reply): void {
    this.conn?.opDone();
    this.pending--;
    if (isErrorReply(r)) {
      this.noteError(r);
    } else {
      switch (this.kind) {
        case Kind.Get: {
          const g = replyOf(OP_GET, r);
          this.out = g[1] === 200 ? resp.bulk(g[2]) : resp.nil(this.proto);
          if (g[1] !== 200) this.status = g[1];
          break;
        }
        case Kind.Set:
          // NX/XX not met: nil, as Redis.
          this.out = r[1] === 412 ? resp.nil(this.proto) : resp.OK;
          this.status = r[1];
          break;
        case Kind.Del:
        case Kind.DelAsExpire:
          if (r[1] === 204) this.count++;
          break;
        case Kind.Exists:
          if (r[1] === 200) this.count++;
          break;
        case Kind.Expire:
          this.out = resp.integer(r[1] === 200 ? 1 : 0);
          break;
        case Kind.Ttl:
        case Kind.Pttl: {
          const t = replyOf(OP_TTL, r);
          if (t[1] !== 200) {
            this.out = resp.integer(-2);
          } else {
            const ms = ttlLeftMs(t);
            // Redis rounds TTL to the nearest second: (ttl + 500) / 1000.
            this.out = resp.integer(ms === null ? -1 : this.kind === Kind.Pttl ? ms : Math.floor((ms + 500) / 1000));
          }
          break;
        }
        case Kind.Persist: {
          const p = replyOf(OP_PERSIST, r);
          this.out = resp.integer(p[1] === 200 && p[2] === 1 ? 1 : 0);
          break;
        }
      }
    }
    if (this.pending === 0) this.complete();
  }

  /** One op's reply of a Custom command. */
  part(i: number, r: Reply): void {
    this.conn?.opDone();
    this.pending--;
    if (isErrorReply(r)) this.noteError(r);
    else this.parts![i] = r;
    if (this.pending === 0) this.complete();
  }

  mgetPart(i: number, r: Reply): void {
    this.conn?.opDone();
    this.pending--;
    if (isErrorReply(r)) {
      this.noteError(r);
    } else {
      const g = replyOf(OP_GET, r);
      if (g[1] === 200) this.values![i] = g[2];
    }
    if (this.pending === 0) this.complete();
  }

  /** A command of several ops answers with its first error. */
  private noteError(r: ErrorReply): void {
    if (this.firstError !== null) return;
    this.firstError = replyError(r);
    this.status = r[1];
  }

  /** All ops answered: encode the reply. */
  complete(): void {
    if (this.firstError !== null) this.out = this.firstError;
    else if (this.kind === Kind.Custom) this.out = this.combine!(this.parts!, this.proto);
    else if (this.kind === Kind.Del || this.kind === Kind.Exists || this.kind === Kind.DelAsExpire) this.out = resp.integer(this.count);
    else if (this.kind === Kind.Mget) {
      const parts: Array<string | Buffer> = [resp.arrayHeader(this.values!.length)];
      for (const v of this.values!) parts.push(v === null ? resp.nil(this.proto) : resp.bulk(v));
      this.out = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
    }
    this.conn?.commandDone(this);
  }
}

/**
 * The reply of a command queued in MULTI, from its ops' replies inside EXEC's: a Command with no
 * connection, fed exactly as a live one is, so a command answers the same inside EXEC and alone.
 */
function queuedReply(kind: Kind, combine: Combine | null, replies: Reply[], proto: Proto): string | Buffer {
  const cmd = new Command(null, kind, proto);
  cmd.pending = replies.length;
  if (kind === Kind.Custom) {
    cmd.combine = combine;
    cmd.parts = new Array<Reply>(replies.length);
    replies.forEach((r, i) => cmd.part(i, r));
  } else if (kind === Kind.Mget) {
    cmd.values = new Array<Uint8Array | null>(replies.length).fill(null);
    replies.forEach((r, i) => cmd.mgetPart(i, r));
  } else for (const r of replies) cmd.deliver(r);
  return cmd.out!;
}

/** A Custom command's target per op. */
class Part implements ReplyTarget {
  constructor(
    readonly cmd: Command,
    readonly i: number,
    readonly op: OpCode,
  ) {}
  deliver(r: Reply): void {
    this.cmd.part(this.i, r);
  }
}

/** MGET's target per key: the index says where its value goes. */
class MgetPart implements ReplyTarget {
  readonly op = OP_GET;
  constructor(
    readonly cmd: Command,
    readonly i: number,
  ) {}
  deliver(r: Reply): void {
    this.cmd.mgetPart(this.i, r);
  }
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

let nextSessionId = 1;
const dirty = new Set<Conn>();
let flushScheduled = false;
const flushDirty = (): void => {
  flushScheduled = false;
  // Taken out first: a flush parses more requests, and their replies mark the connection dirty
  // again for the next turn.
  const conns = [...dirty];
  dirty.clear();
  for (const c of conns) c.flush();
};

class Conn implements RespSession, RespCall, TxnCall, PubsubCall, ScriptCall {
  readonly id = nextSessionId++;
  readonly txn = new TxnState();
  /** While a command is queued in MULTI: what it would submit (resp-transactions.ts). */
  private recording: (Queued & { failed: boolean }) | null = null;
  /** Reading is held until this settles (an EXEC waiting for its WATCHes). */
  private holding: Promise<unknown> | null = null;
  readonly remoteAddress: string;
  name: string | null = null;
  proto: Proto = 2;
  user: string | null = null;
  readonly parser: RespRequestParser;
  private head: Command | null = null;
  private tail: Command | null = null;
  /** Key ops submitted to the pool and not yet answered. */
  opsInFlight = 0;
  private paused = false;
  private writeBlocked = false;
  /** No more requests are read: QUIT, a protocol error, the peer's end of stream, or close. */
  private ending = false;
  private peerEnded = false;
  closed = false;
  /** Pub/sub: null until the connection first subscribes (resp-pubsub.ts). */
  sub: Subscriber | null = null;
  /** Bytes of push frames queued and not yet written. */
  private pushQueued = 0;

  constructor(
    readonly socket: Socket,
    readonly srv: RespDoor,
  ) {
    this.remoteAddress = `${socket.remoteAddress}:${socket.remotePort}`;
    this.parser = new RespRequestParser(srv.parserLimits);
  }

  onData(chunk: Buffer): void {
    if (this.ending) return;
    this.parser.feed(chunk);
    this.pump();
  }

  onEnd(): void {
    // allowHalfOpen: the peer finished sending; answer what it sent, then close our side.
    this.peerEnded = true;
    this.pump();
    this.maybeEnd();
  }

  onClose(): void {
    this.closed = true;
    this.ending = true;
    this.head = this.tail = null;
    this.srv.conns.delete(this);
    dirty.delete(this);
    if (this.sub !== null) this.srv.pubsub.drop(this.sub);
  }

  get pubsub(): PubsubHub {
    return this.srv.pubsub;
  }

  /** A pub/sub message: after everything owed, like a reply that is already finished. */
  push(frame: Buffer): void {
    if (this.closed) return;
    const cmd = this.enqueue(new Command(this, Kind.Get, this.proto));
    cmd.out = frame;
    cmd.pushed = frame.length;
    this.pushQueued += frame.length;
    this.markDirty();
  }

  get outputBytes(): number {
    return this.pushQueued + this.socket.writableLength;
  }

  kill(reason: string): void {
    this.srv.ctx.log.debug({ client: this.remoteAddress, reason }, 'redis connection closed');
    this.ending = true;
    this.socket.destroy();
  }

  /** Parse and dispatch as far as flow control allows; pause or resume the socket to match. */
  pump(): void {
    const max = this.srv.ctx.maxInflight;
    while (!this.ending && !this.writeBlocked && this.holding === null && this.opsInFlight < max) {
      let args: Buffer[] | null;
      try {
        args = this.parser.next();
      } catch (err) {
        if (!(err instanceof RespProtocolError)) throw err;
        this.fatal(`Protocol error: ${err.message}`);
        break;
      }
      if (args === null) break;
      this.dispatch(args);
    }
    const hold = !this.ending && (this.writeBlocked || this.holding !== null || this.opsInFlight >= max);
    if (hold !== this.paused && !this.closed) {
      this.paused = hold;
      if (hold) this.socket.pause();
      else this.socket.resume();
    }
  }

  /** Reply `-ERR <text>` after what is owed, then close; read nothing more. */
  fatal(text: string): void {
    const cmd = this.enqueue(new Command(this, Kind.Get, this.proto));
    cmd.out = resp.error(`ERR ${text}`);
    cmd.closeAfter = true;
    this.ending = true;
    this.markDirty();
  }

  submit(target: Command | MgetPart | Part, op: OpCode, key: Buffer, value: Buffer | null, ttlMs: number, flags: number, ifVersion: number): void {
    if (target instanceof Command) target.op = op;
    this.opsInFlight++;
    // Keyspace notifications from the interim source: only while they are on and someone listens.
    const tap = this.srv.pubsub.tap;
    this.srv.ctx.pool.submit(tap === null ? target : tap.tap(target, op, key, flags, ttlMs), op, key, value, ttlMs, flags, ifVersion);
  }

  opDone(): void {
    this.opsInFlight--;
  }

  enqueue(cmd: Command): Command {
    if (this.tail === null) this.head = this.tail = cmd;
    else this.tail = this.tail.next = cmd;
    return cmd;
  }

  /** A command answered without the shards. */
  reply(out: string | Buffer, closeAfter = false): void {
    const rec = this.recording;
    if (rec !== null) {
      // Queued in MULTI: a wrong arity fails now (EXEC aborts, as Redis); anything else is the
      // command's place in EXEC's reply.
      if (typeof out === 'string' && out.startsWith('-ERR wrong number of arguments')) {
        rec.failed = true;
        this.txn.dirty = true;
        this.recording = null;
      } else {
        rec.local = out;
        return;
      }
    }
    const cmd = this.enqueue(new Command(this, Kind.Get, this.proto));
    cmd.out = out;
    cmd.closeAfter = closeAfter;
    this.markDirty();
  }

  commandDone(cmd: Command): void {
    this.srv.ctx.inflight.n--;
    this.srv.ctx.metrics.observe('redis', cmd.name ?? KIND_NAMES[cmd.kind], cmd.status, (performance.now() - cmd.started) / 1000);
    if (!this.closed) this.markDirty();
  }

  markDirty(): void {
    dirty.add(this);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flushDirty);
    }
  }

  /** Write every finished command at the head of the queue, in order, in one corked burst. */
  flush(): void {
    if (this.closed) return;
    const socket = this.socket;
    let ok = true;
    let wrote = false;
    while (this.head !== null && this.head.out !== null) {
      const cmd = this.head;
      this.head = cmd.next;
      if (this.head === null) this.tail = null;
      if (!wrote) {
        socket.cork();
        wrote = true;
      }
      ok = socket.write(cmd.out!) && ok;
      this.pushQueued -= cmd.pushed;
      if (cmd.closeAfter) {
        this.ending = true;
        this.head = this.tail = null;
        socket.uncork();
        socket.end();
        return;
      }
    }
    if (wrote) socket.uncork();
    if (!ok && !this.writeBlocked) {
      this.writeBlocked = true;
      socket.once('drain', this.onDrain);
    }
    this.pump();
    this.maybeEnd();
  }

  private readonly onDrain = (): void => {
    this.writeBlocked = false;
    this.pump();
  };

  /**
   * The peer ended its side and everything owed was written: end ours. (An empty queue after
   * pump() means nothing is in flight and no complete request is left unparsed.)
   */
  private maybeEnd(): void {
    if (this.peerEnded && this.head === null && !this.closed) {
      this.ending = true;
      this.socket.end();
    }
  }

  /** Shutdown: write what is finished and close. */
  shutdown(): void {
    this.ending = true;
    this.flush();
    if (!this.closed) this.socket.end();
  }

  // -------------------------------------------------------------------------------------------
  // Dispatch
  // -------------------------------------------------------------------------------------------

  private dispatch(args: Buffer[]): void {
    const name = args[0].toString('latin1').toLowerCase();
    const srv = this.srv;
    const queueing = this.txn.queued !== null && !TXN_CONTROL.has(name);
    // Inside MULTI a command refused now makes EXEC abort (EXECABORT), as in Redis.
    const refuse = (out: string): void => {
      if (queueing) this.txn.dirty = true;
      this.reply(out);
    };
    const denied = srv.guard.check(this, name);
    if (denied !== null) return refuse(resp.error(denied));
    const handler = HANDLERS.get(name);
    if (handler === undefined) return refuse(unknownCommand(args));
    if (this.sub !== null && inSubscribedMode(this) && !SUBSCRIBED_MODE_COMMANDS.has(name)) return this.reply(subscribedModeError(name, args));
    if (this.parser.oversized > 0) {
      const code = name === 'set' ? 'KV_ERR_VALUE_TOO_LARGE' : 'KV_ERR_BAD_REQUEST';
      return refuse(resp.error(errorText(code, `an argument of ${this.parser.oversized} bytes exceeds the limit of ${srv.limits.maxValueBytes} bytes`)));
    }
    if (name === 'reset') {
      this.txn.queued = null; // RESET also discards MULTI and forgets the watches
      this.txn.unwatch();
    }
    if (queueing && NOT_IN_MULTI.has(name)) return refuse(resp.error(`ERR ${name.toUpperCase()} cannot be queued in MULTI in kvsql`));
    if (queueing) this.recording = { ops: [], local: null, reply: null, failed: false };
    try {
      handler(this, args);
    } catch (err) {
      this.recording = null;
      const e = toErrorData(err);
      refuse(resp.error(errorText(e.code, e.message)));
      return;
    }
    const rec = this.recording;
    if (rec === null) return;
    this.recording = null;
    if (rec.failed) return;
    this.txn.queued!.push(rec);
    this.reply(resp.QUEUED);
  }

  /** MULTI: record a command's ops instead of submitting them; its reply is made at EXEC. */
  private record(kind: Kind, ops: TxnOp[], combine: Combine | null = null): void {
    const rec = this.recording!;
    rec.ops = ops;
    rec.reply = (replies, proto) => queuedReply(kind, combine, replies, proto);
  }

  authorize(op: OpCode, key: Buffer, flags = 0): void {
    checkKey(key, this.srv.limits);
    this.srv.guard.authorize(this, op, key);
    if (((flags ?? 0) & FLAG_GET_OLD) !== 0) this.srv.guard.authorize(this, OP_GET, key);
  }

  request(op: OpCode, key: Buffer, value: Buffer | null, flags: number): Promise<Reply> {
    return new Promise((resolve) => this.srv.ctx.pool.submit({ op, deliver: resolve }, op, key, value, 0, flags, 0));
  }

  shardOf(key: Uint8Array): number {
    return this.srv.ctx.pool.shardOf(key);
  }

  holdUntil(p: Promise<unknown>): void {
    this.holding = p;
    const resume = (): void => {
      this.holding = null;
      this.pump();
    };
    p.then(resume, resume);
  }

  get scripts(): ScriptRegistry {
    return this.srv.scripts;
  }

  answerLater(name: string, work: () => Promise<string | Buffer>): void {
    this.promised(Kind.Custom, work, name);
  }

  /** Start a command whose reply comes from the shards. */
  keyed(kind: Kind): Command | null {
    if (this.srv.ctx.closing()) {
      this.reply(SHUTTING_DOWN);
      return null;
    }
    this.srv.ctx.inflight.n++;
    return this.enqueue(new Command(this, kind, this.proto));
  }

  one(kind: Kind, op: OpCode, key: Buffer, value: Buffer | null, ttlMs: number, flags: number): void {
    checkKey(key, this.srv.limits);
    this.srv.guard.authorize(this, op, key);
    if (this.recording !== null) return this.record(kind, [[op, key, value, ttlMs, flags, 0]]);
    const cmd = this.keyed(kind);
    if (cmd === null) return;
    cmd.pending = 1;
    this.submit(cmd, op, key, value, ttlMs, flags, 0);
  }

  /** DEL / EXISTS / MGET: one op per key, each on its own (not atomic across keys). */
  many(kind: Kind, op: OpCode, args: Buffer[]): void {
    for (let i = 1; i < args.length; i++) {
      checkKey(args[i], this.srv.limits);
      this.srv.guard.authorize(this, op, args[i]); // every key before any op: refused whole
    }
    if (this.recording !== null) return this.record(kind, args.slice(1).map((k): TxnOp => [op, k, null, 0, 0, 0]));
    const cmd = this.keyed(kind);
    if (cmd === null) return;
    cmd.pending = args.length - 1;
    if (kind === Kind.Mget) cmd.values = new Array<Uint8Array | null>(args.length - 1).fill(null);
    for (let i = 1; i < args.length; i++) {
      this.submit(kind === Kind.Mget ? new MgetPart(cmd, i - 1) : cmd, op, args[i], null, 0, 0, 0);
    }
  }

  /**
   * A command answered by gateway work across the shards (SCAN, KEYS, DBSIZE, RANDOMKEY): in the
   * reply queue like any other, and one op in flight for flow control while it runs.
   */
  promised(kind: Kind, work: () => Promise<string | Buffer>, name: string | null = null): void {
    if (this.recording !== null) throw new KvError('KV_ERR_BAD_REQUEST', 'this command cannot be queued in MULTI in kvsql');
    const cmd = this.keyed(kind);
    if (cmd === null) return;
    cmd.name = name;
    this.opsInFlight++;
    work()
      .then(
        (out) => void (cmd.out = out),
        (err) => {
          const e = toErrorData(err);
          cmd.out = resp.error(errorText(e.code, e.message));
          cmd.status = statusOf(e.code);
        },
      )
      .finally(() => {
        this.opDone();
        this.commandDone(cmd);
      });
  }

  ops(name: string, specs: readonly OpSpec[], combine: Combine): void {
    for (const o of specs) {
      checkKey(o.key, this.srv.limits);
      this.srv.guard.authorize(this, o.op, o.key); // every key before any op: refused whole
      // A put that answers the value it replaced reads it too.
      if (((o.flags ?? 0) & FLAG_GET_OLD) !== 0) this.srv.guard.authorize(this, OP_GET, o.key);
    }
    if (this.recording !== null) return this.record(Kind.Custom, specs.map((o): TxnOp => [o.op, o.key, o.value ?? null, o.ttlMs ?? 0, o.flags ?? 0, 0]), combine);
    const cmd = this.keyed(Kind.Custom);
    if (cmd === null) return;
    cmd.name = name;
    cmd.combine = combine;
    cmd.parts = new Array<Reply>(specs.length);
    cmd.pending = specs.length;
    for (let i = 0; i < specs.length; i++) {
      const o = specs[i];
      this.submit(new Part(cmd, i, o.op), o.op, o.key, o.value ?? null, o.ttlMs ?? 0, o.flags ?? 0, 0);
    }
  }

  /** SET ... GET, GETSET: one put that also answers the value it replaced (FLAG_GET_OLD). */
  setGet(key: Buffer, value: Buffer, ttlMs: number, flags: number): void {
    this.ops('set', [{ op: OP_PUT, key, value, ttlMs, flags: flags | FLAG_GET_OLD }], (r, proto) => {
      const old = r[0][1] === 412 ? (r[0] as PreconditionFailed)[3] : (r[0] as PutDone)[4];
      return old === null || old === undefined ? resp.nil(proto) : resp.bulk(old);
    });
  }

}

function unknownCommand(args: Buffer[]): string {
  const show = (b: Buffer) => `'${b.toString('utf8', 0, 128).replace(/[\r\n]/g, ' ')}'`;
  return resp.error(`ERR unknown command ${show(args[0])}, with args beginning with: ${args.slice(1, 8).map(show).join(' ')}${args.length > 1 ? ' ' : ''}`);
}

// ---------------------------------------------------------------------------------------------
// Command handlers
// ---------------------------------------------------------------------------------------------

type Handler = (c: Conn, args: Buffer[]) => void;

const lc = (b: Buffer): string => b.toString('latin1').toLowerCase();

/** SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT t|KEEPTTL] (options: protocol/redis-options). */
const set: Handler = (c, args) => {
  if (args.length < 3) return c.reply(wrongArgs('set'));
  // EXAT/PXAT: made relative with this gateway's clock (resp-strings.ts).
  const o = parseSetOptions(args, (unit, arg) => expiryOption(unit, arg, 'set'));
  if (isOptionError(o)) return c.reply(resp.error(o.error));
  const { flags, get, ttlMs } = o;
  if (o.expiry && ttlMs <= 0 && (flags & FLAG_KEEP_TTL) === 0) {
    // An absolute time already past: the key would be set and expire at once, so it is deleted.
    if (get || flags !== 0) return c.reply(resp.error('ERR kvsql does not support SET with NX, XX or GET and an EXAT/PXAT in the past'));
    return c.ops('set', [{ op: OP_DEL, key: args[1] }], () => resp.OK);
  }
  if (get) return c.setGet(args[1], args[2], ttlMs, flags);
  c.one(Kind.Set, OP_PUT, args[1], args[2], ttlMs, flags);
};

const arity = (name: string, n: number, h: Handler): Handler => (c, args) => {
  if (n >= 0 ? args.length !== n : args.length < -n) return c.reply(wrongArgs(name));
  h(c, args);
};

const HELLO_FIELDS = (c: Conn): RespMap =>
  new RespMap([
    ['server', 'kvsql'],
    ['version', REDIS_COMPAT_VERSION],
    ['proto', c.proto],
    ['id', c.id],
    ['mode', 'standalone'],
    ['role', 'master'],
    ['modules', []],
  ]);

const hello: Handler = (c, args) => {
  let proto = c.proto;
  if (args.length > 1) {
    const v = intArg(args[1]);
    if (v === null) return c.reply(resp.error('ERR Protocol version is not an integer or out of range'));
    if (v !== 2 && v !== 3) return c.reply(resp.error('NOPROTO unsupported protocol version'));
    proto = v;
  }
  let name: string | null = null;
  for (let i = 2; i < args.length; i++) {
    const opt = lc(args[i]);
    if (opt === 'auth' && i + 2 < args.length) {
      const denied = c.srv.guard.authenticate(c, args[i + 1].toString('utf8'), args[i + 2]);
      if (denied !== null) return c.reply(resp.error(denied));
      i += 2;
    } else if (opt === 'setname' && i + 1 < args.length) {
      name = args[++i].toString('utf8');
      if (!validClientName(name)) return c.reply(resp.error('ERR Client names cannot contain spaces, newlines or special characters.'));
    } else return c.reply(resp.error(`ERR Syntax error in HELLO option '${args[i].toString('utf8', 0, 40)}'`));
  }
  c.proto = proto;
  if (name !== null) c.name = name;
  c.reply(resp.encode(HELLO_FIELDS(c), c.proto));
};

const validClientName = (s: string): boolean => /^[!-~]*$/.test(s);

const client: Handler = (c, args) => {
  const sub = lc(args[1]);
  switch (sub) {
    case 'setname':
      if (args.length !== 3) return c.reply(wrongArgs('client|setname'));
      if (!validClientName(args[2].toString('utf8'))) return c.reply(resp.error('ERR Client names cannot contain spaces, newlines or special characters.'));
      c.name = args[2].length === 0 ? null : args[2].toString('utf8');
      return c.reply(resp.OK);
    case 'getname':
      return c.reply(c.name === null ? resp.nil(c.proto) : resp.bulkText(c.name));
    case 'id':
      return c.reply(resp.integer(c.id));
    case 'setinfo':
      if (args.length !== 4) return c.reply(wrongArgs('client|setinfo'));
      if (!['lib-name', 'lib-ver'].includes(lc(args[2]))) return c.reply(resp.error(`ERR Unrecognized option '${args[2].toString('utf8', 0, 40)}'`));
      return c.reply(resp.OK);
    case 'info':
      return c.reply(resp.bulkText(clientLine(c) + '\n'));
    case 'list':
      return c.reply(resp.bulkText([...c.srv.conns].map((x) => clientLine(x) + '\n').join('')));
    case 'no-evict':
    case 'no-touch':
      return c.reply(resp.OK);
    default:
      return c.reply(resp.error(`ERR unknown subcommand '${args[1].toString('utf8', 0, 40)}'. Try CLIENT HELP.`));
  }
};

const clientLine = (c: Conn): string =>
  `id=${c.id} addr=${c.remoteAddress} name=${c.name ?? ''} db=0 sub=${c.sub?.channels.size ?? 0} psub=${c.sub?.patterns.size ?? 0} ssub=${c.sub?.shardChannels.size ?? 0} resp=${c.proto} user=${c.user ?? 'default'}`;

/** Redis 7 COMMAND info: [name, arity, flags, first key, last key, step, acl categories, tips, key specs, subcommands]. */
const COMMAND_TABLE: Array<[string, number, string[], number, number, number]> = [
  ['get', 2, ['readonly', 'fast'], 1, 1, 1],
  ['set', -3, ['write', 'denyoom'], 1, 1, 1],
  ['del', -2, ['write'], 1, -1, 1],
  ['exists', -2, ['readonly', 'fast'], 1, -1, 1],
  ['mget', -2, ['readonly', 'fast'], 1, -1, 1],
  ['ttl', 2, ['readonly', 'fast'], 1, 1, 1],
  ['pttl', 2, ['readonly', 'fast'], 1, 1, 1],
  ['persist', 2, ['write', 'fast'], 1, 1, 1],
  ['ping', -1, ['fast'], 0, 0, 0],
  ['echo', 2, ['fast'], 0, 0, 0],
  ['quit', -1, ['noscript', 'loading', 'stale', 'fast', 'no_auth', 'allow_busy'], 0, 0, 0],
  ['select', 2, ['loading', 'stale', 'fast'], 0, 0, 0],
  ['hello', -1, ['noscript', 'loading', 'stale', 'fast', 'no_auth', 'allow_busy'], 0, 0, 0],
  ['auth', -2, ['noscript', 'loading', 'stale', 'fast', 'no_auth', 'allow_busy'], 0, 0, 0],
  ['client', -2, ['noscript', 'loading', 'stale'], 0, 0, 0],
  ['command', -1, ['loading', 'stale'], 0, 0, 0],
  ['info', -1, ['loading', 'stale'], 0, 0, 0],
  ['config', -2, ['noscript', 'loading', 'stale'], 0, 0, 0],
  ...STRING_COMMANDS.map(([name, , arity, flags, first, last, step]): [string, number, string[], number, number, number] => [name, arity, flags, first, last, step]),
  ...TXN_COMMANDS.map(([name, , arity, flags, first, last, step]): [string, number, string[], number, number, number] => [name, arity, flags, first, last, step]),
  ...SCRIPT_COMMANDS.map(([name, , arity, flags, first, last, step]): [string, number, string[], number, number, number] => [name, arity, flags, first, last, step]),
  ['scan', -2, ['readonly'], 0, 0, 0],
  ['keys', 2, ['readonly'], 0, 0, 0],
  ['dbsize', 1, ['readonly', 'fast'], 0, 0, 0],
  ['randomkey', 1, ['readonly'], 0, 0, 0],
  ...PUBSUB_COMMANDS.map(([name, , arity, flags, first, last, step]): [string, number, string[], number, number, number] => [name, arity, flags, first, last, step]),
];
const commandInfo = (e: (typeof COMMAND_TABLE)[number]): RespValue => [e[0], e[1], e[2].map((f) => new Simple(f)), e[3], e[4], e[5], [], [], [], []];

const command: Handler = (c, args) => {
  if (args.length === 1) return c.reply(resp.encode(COMMAND_TABLE.map(commandInfo), c.proto));
  const sub = lc(args[1]);
  if (sub === 'count') return c.reply(resp.integer(COMMAND_TABLE.length));
  if (sub === 'info') {
    const names = args.length > 2 ? args.slice(2).map(lc) : COMMAND_TABLE.map((e) => e[0]);
    return c.reply(resp.encode(names.map((n) => { const e = COMMAND_TABLE.find((x) => x[0] === n); return e ? commandInfo(e) : null; }), c.proto));
  }
  // redis-cli asks for docs to show hints; kvsql has none to give (an empty map is valid).
  if (sub === 'docs') return c.reply(resp.encode(new RespMap([]), c.proto));
  if (sub === 'list') return c.reply(resp.encode(COMMAND_TABLE.map((e) => e[0]), c.proto));
  c.reply(resp.error(`ERR unknown subcommand '${args[1].toString('utf8', 0, 40)}'. Try COMMAND HELP.`));
};

const STARTED = Date.now();

const info: Handler = (c, args) => {
  const srv = c.srv;
  const sections: Record<string, string[]> = {
    server: [
      `redis_version:${REDIS_COMPAT_VERSION}`,
      `kvsql_version:${KVSQL_VERSION}`,
      'redis_mode:standalone',
      `os:${process.platform} ${process.arch}`,
      `process_id:${process.pid}`,
      `hostname:${hostname()}`,
      `tcp_port:${srv.port}`,
      `uptime_in_seconds:${Math.floor((Date.now() - STARTED) / 1000)}`,
    ],
    clients: [`connected_clients:${srv.conns.size}`],
    // Every acknowledged write is a committed MySQL transaction: the closest Redis terms are an
    // append-only file with fsync on every write.
    persistence: ['loading:0', 'aof_enabled:1', 'aof_fsync:always'],
    replication: ['role:master', 'connected_slaves:0'],
    keyspace: [],
  };
  const wanted = args.slice(1).map(lc);
  const all = wanted.length === 0 || wanted.some((w) => w === 'all' || w === 'everything' || w === 'default');
  const parts: string[] = [];
  for (const [name, lines] of Object.entries(sections)) {
    if (!all && !wanted.includes(name)) continue;
    parts.push(`# ${name[0].toUpperCase()}${name.slice(1)}\r\n${lines.map((l) => l + '\r\n').join('')}`);
  }
  c.reply(resp.bulkText(parts.join('\r\n')));
};

/** CONFIG GET answers what clients and redis-benchmark ask; kvsql's own settings are KVSQL_*. */
const CONFIG_VALUES: Array<[string, string]> = [
  ['save', ''],
  ['appendonly', 'yes'],
  ['appendfsync', 'always'],
  ['databases', '1'],
  ['maxmemory', '0'],
  ['timeout', '0'],
];

const config: Handler = (c, args) => {
  const sub = lc(args[1]);
  if (sub === 'get') {
    if (args.length < 3) return c.reply(wrongArgs('config|get'));
    const out: Array<[string, RespValue]> = [];
    const values = [...CONFIG_VALUES, ...c.srv.pubsub.configValues()];
    for (const p of args.slice(2)) {
      const re = globToRegExp(lc(p));
      for (const [k, v] of values) if (re.test(k) && !out.some((o) => o[0] === k)) out.push([k, v]);
      if (re.test('port') && !out.some((o) => o[0] === 'port')) out.push(['port', String(c.srv.port)]);
    }
    return c.reply(resp.encode(new RespMap(out), c.proto));
  }
  if (sub === 'resetstat') return c.reply(resp.OK);
  if (sub === 'set') return configSet(c, args);
  if (sub === 'rewrite') return c.reply(resp.error(`ERR CONFIG ${sub.toUpperCase()} is not supported by kvsql; configure it with KVSQL_* settings`));
  c.reply(resp.error(`ERR unknown subcommand '${args[1].toString('utf8', 0, 40)}'. Try CONFIG HELP.`));
};

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (const ch of glob) re += ch === '*' ? '.*' : ch === '?' ? '.' : ch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${re}$`);
}


// ---------------------------------------------------------------------------------------------
// Keyspace: SCAN, KEYS, DBSIZE, RANDOMKEY (pages of the listing, gateway/key-lister.ts)
// ---------------------------------------------------------------------------------------------

/** SCAN's page size when COUNT is not given (Redis's default). */
const SCAN_DEFAULT_COUNT = 10;
/** KEYS refuses to answer more keys than this, or more key bytes than KEYS_MAX_BYTES: use SCAN. */
export const KEYS_MAX_KEYS = 100_000;
const KEYS_MAX_BYTES = 16 * 1024 * 1024;
/** KEYS gives up after examining this many keys (a pattern that matches few keys of many). */
export const KEYS_MAX_EXAMINED = 1_000_000;
/** RANDOMKEY picks among at most this many keys after a random point. */
const RANDOMKEY_PAGE = 100;

/**
 * SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]: one listing page of COUNT keys (capped at
 * MAX_LIST_LIMIT) after the cursor's key, within MATCH's literal prefix, then filtered by the
 * pattern, so a page may hold fewer keys than COUNT, or none, before the cursor comes back "0".
 * Every key is a string: TYPE string lists them all, any other TYPE none.
 */
const scan: Handler = (c, args) => {
  const after = decodeCursor(args[1].toString('latin1'), c.srv.limits.maxKeyBytes);
  if (after === undefined) return c.reply(resp.error('ERR invalid cursor'));
  let pattern: Buffer | null = null;
  let count = SCAN_DEFAULT_COUNT;
  let type: string | null = null;
  for (let i = 2; i < args.length; i++) {
    const opt = lc(args[i]);
    if (i + 1 >= args.length) return c.reply(ERR_SYNTAX);
    if (opt === 'match') pattern = args[++i];
    else if (opt === 'count') {
      const n = intArg(args[++i]);
      if (n === null) return c.reply(ERR_NOT_INTEGER);
      if (n < 1) return c.reply(ERR_SYNTAX);
      count = Math.min(n, MAX_LIST_LIMIT);
    } else if (opt === 'type') type = lc(args[++i]);
    else return c.reply(ERR_SYNTAX);
  }
  const glob = pattern === null ? null : compileGlob(pattern);
  const prefix = glob === null ? Buffer.alloc(0) : glob.prefix;
  c.srv.guard.authorize(c, OP_GET, prefix);
  if (type !== null && type !== 'string') return c.reply(resp.encode(['0', []], c.proto));
  const pool = c.srv.ctx.pool;
  c.promised(Kind.Scan, async () => {
    const page = await listPage(pool, { prefix, after, limit: count, values: false });
    const keys = glob === null ? page.keys : page.keys.filter((k) => glob.matches(k));
    return scanReply(encodeCursor(page.next), keys);
  });
};

function scanReply(cursor: string, keys: Uint8Array[]): Buffer {
  const parts: Array<string | Uint8Array> = [resp.arrayHeader(2), resp.bulkText(cursor), resp.arrayHeader(keys.length)];
  for (const k of keys) parts.push(resp.bulk(k));
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
}

/**
 * KEYS pattern: a full scan of the pattern's literal prefix (every shard, pages of
 * MAX_LIST_LIMIT), bounded: past KEYS_MAX_KEYS matches (or KEYS_MAX_BYTES of them), or
 * KEYS_MAX_EXAMINED keys examined, it answers an error instead of building more.
 */
const keys: Handler = (c, args) => {
  const glob = compileGlob(args[1]);
  c.srv.guard.authorize(c, OP_GET, glob.prefix);
  const pool = c.srv.ctx.pool;
  c.promised(Kind.Keys, async () => {
    const found: Uint8Array[] = [];
    let bytes = 0;
    let examined = 0;
    let after: Uint8Array | null = null;
    do {
      const page = await listPage(pool, { prefix: glob.prefix, after, limit: MAX_LIST_LIMIT, values: false });
      examined += page.keys.length;
      for (const k of page.keys) {
        if (!glob.matches(k)) continue;
        found.push(k);
        bytes += k.length;
        if (found.length > KEYS_MAX_KEYS || bytes > KEYS_MAX_BYTES) {
          return resp.error(`ERR KEYS matched more than ${KEYS_MAX_KEYS} keys (or ${KEYS_MAX_BYTES} bytes of keys), the cap of a full scan in kvsql; use SCAN`);
        }
      }
      if (examined > KEYS_MAX_EXAMINED && page.next !== null) {
        return resp.error(`ERR KEYS examined more than ${KEYS_MAX_EXAMINED} keys, the cap of a full scan in kvsql; use SCAN with MATCH`);
      }
      after = page.next;
    } while (after !== null);
    const parts: Array<string | Uint8Array> = [resp.arrayHeader(found.length)];
    for (const k of found) parts.push(resp.bulk(k));
    return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
  });
};

/** DBSIZE: every shard counts the keys of the slots it serves (key-lister countKeys). */
const dbsize: Handler = (c) => {
  c.srv.guard.authorize(c, OP_GET, Buffer.alloc(0));
  const pool = c.srv.ctx.pool;
  c.promised(Kind.Dbsize, async () => resp.integer(await countKeys(pool)));
};

/**
 * RANDOMKEY: a key picked at random from one page after a random point (16 random printable
 * ASCII bytes, where keys usually live), or from the first page when nothing follows that point.
 * Uniform within the page, not across the keyspace.
 */
const randomkey: Handler = (c) => {
  c.srv.guard.authorize(c, OP_GET, Buffer.alloc(0));
  const pool = c.srv.ctx.pool;
  c.promised(Kind.Randomkey, async () => {
    const point = Buffer.alloc(16);
    for (let i = 0; i < point.length; i++) point[i] = 0x21 + Math.floor(Math.random() * 94);
    let page = await listPage(pool, { prefix: Buffer.alloc(0), after: point, limit: RANDOMKEY_PAGE, values: false });
    if (page.keys.length === 0) page = await listPage(pool, { prefix: Buffer.alloc(0), after: null, limit: RANDOMKEY_PAGE, values: false });
    if (page.keys.length === 0) return resp.nil(c.proto);
    return resp.bulk(page.keys[Math.floor(Math.random() * page.keys.length)]);
  });
};

const HANDLERS = new Map<string, Handler>([
  ['get', arity('get', 2, (c, a) => c.one(Kind.Get, OP_GET, a[1], null, 0, 0))],
  ['set', set],
  ['del', arity('del', -2, (c, a) => c.many(Kind.Del, OP_DEL, a))],
  ['unlink', arity('unlink', -2, (c, a) => c.many(Kind.Del, OP_DEL, a))],
  ['exists', arity('exists', -2, (c, a) => c.many(Kind.Exists, OP_TTL, a))],
  ['mget', arity('mget', -2, (c, a) => c.many(Kind.Mget, OP_GET, a))],
  ['ttl', arity('ttl', 2, (c, a) => c.one(Kind.Ttl, OP_TTL, a[1], null, 0, 0))],
  ['pttl', arity('pttl', 2, (c, a) => c.one(Kind.Pttl, OP_TTL, a[1], null, 0, 0))],
  ['persist', arity('persist', 2, (c, a) => c.one(Kind.Persist, OP_PERSIST, a[1], null, 0, 0))],
  ['ping', (c, a) => {
    if (a.length > 2) return c.reply(wrongArgs('ping'));
    if (c.sub !== null && inSubscribedMode(c)) return c.reply(subscribedPing(a));
    c.reply(a.length === 2 ? resp.bulk(a[1]) : resp.PONG);
  }],
  ['echo', arity('echo', 2, (c, a) => c.reply(resp.bulk(a[1])))],
  ['quit', (c) => c.reply(resp.OK, true)],
  ['select', arity('select', 2, (c, a) => {
    const n = intArg(a[1]);
    if (n === null) return c.reply(ERR_NOT_INTEGER);
    c.reply(n === 0 ? resp.OK : resp.error('ERR DB index is out of range'));
  })],
  ['hello', hello],
  ['auth', (c, a) => {
    if (a.length < 2 || a.length > 3) return c.reply(wrongArgs('auth'));
    const denied = c.srv.guard.authenticate(c, a.length === 3 ? a[1].toString('utf8') : 'default', a[a.length - 1]);
    c.reply(denied === null ? resp.OK : resp.error(denied));
  }],
  ['client', arity('client', -2, client)],
  ['command', command],
  ['info', info],
  ['config', arity('config', -2, config)],
  ...STRING_COMMANDS.map(([name, h]): [string, Handler] => [name, h as Handler]),
  ...TXN_COMMANDS.map(([name, h]): [string, Handler] => [name, h as Handler]),
  ...SCRIPT_COMMANDS.map(([name, h]): [string, Handler] => [name, h as Handler]),
  ['scan', arity('scan', -2, scan)],
  ['keys', arity('keys', 2, keys)],
  ['dbsize', arity('dbsize', 1, dbsize)],
  ['randomkey', arity('randomkey', 1, randomkey)],
  ...PUBSUB_COMMANDS.map(([name, h]): [string, Handler] => [name, h as Handler]),
]);

// ---------------------------------------------------------------------------------------------
// The listener
// ---------------------------------------------------------------------------------------------

class RespDoor {
  readonly conns = new Set<Conn>();
  /** Scripts for EVALSHA (resp-scripts.ts): this gateway's, shared by its connections. */
  readonly scripts = new ScriptRegistry();
  readonly guard: RespGuard;
  readonly limits: Limits;
  readonly parserLimits: resp.RespLimits;
  readonly pubsub: PubsubHub;
  port = 0;
  constructor(readonly ctx: RespContext) {
    this.guard = ctx.guard ?? ALLOW_ALL;
    this.pubsub = new PubsubHub({
      guard: this.guard,
      filtering: this.guard !== ALLOW_ALL,
      limit: ctx.pubsubLimit ?? DEFAULT_PUBSUB_LIMIT,
      notifyFlags: ctx.notifyFlags ?? 0,
      keyspaceSource: ctx.keyspaceSource ?? null,
      publishBus: ctx.publishBus ?? null,
      log: ctx.log,
    });
    this.limits = ctx.limits;
    this.parserLimits = {
      maxBulkBytes: Math.max(ctx.limits.maxValueBytes, ctx.limits.maxKeyBytes),
      maxArgs: MAX_ARGS,
      // One maximal value plus keys and options; MGET/DEL of many keys fit in the headroom.
      maxRequestBytes: ctx.limits.maxValueBytes + 16 * 1024 * 1024,
    };
  }

  readonly onConnection = (socket: Socket): void => {
    const conn = new Conn(socket, this);
    socket.on('error', (err) => this.ctx.log.debug({ err, client: conn.remoteAddress }, 'redis connection error'));
    if (!this.guard.accept(conn)) {
      socket.destroy();
      return;
    }
    this.conns.add(conn);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    socket.on('data', (chunk: Buffer) => conn.onData(chunk));
    socket.on('end', () => conn.onEnd());
    socket.on('close', () => conn.onClose());
  };
}

/** Start the RESP listener on ctx.host:ctx.port (0 picks a free port). */
export async function startRespServer(ctx: RespContext): Promise<RespServer> {
  const door = new RespDoor(ctx);
  // With TLS the listener hands over sockets after the handshake; a client that does not speak TLS
  // fails it and is dropped ('tlsClientError'), never reaching the parser.
  const server: NetServer = ctx.tls
    ? createTlsServer({ allowHalfOpen: true, noDelay: true, cert: ctx.tls.cert, key: ctx.tls.key }, door.onConnection)
    : createServer({ allowHalfOpen: true, noDelay: true }, door.onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(ctx.port, ctx.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => ctx.log.warn({ err }, 'redis listener error'));
  // 'close' fires once the listener is closed and every connection has ended.
  const serverClosed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  const address = server.address();
  door.port = typeof address === 'object' && address !== null ? address.port : ctx.port;
  return {
    port: door.port,
    get connections() {
      return door.conns.size;
    },
    setTls(t) {
      if (!(server instanceof TlsServer)) throw new Error('the Redis door was started without TLS');
      server.setSecureContext({ cert: t.cert, key: t.key });
    },
    stopListening() {
      server.close();
    },
    async closeConnections(timeoutMs: number) {
      if (server.listening) server.close();
      for (const c of [...door.conns]) c.shutdown();
      const timer = setTimeout(() => {
        for (const c of door.conns) c.socket.destroy();
      }, timeoutMs);
      await serverClosed;
      clearTimeout(timer);
      door.pubsub.close();
    },
  };
}

