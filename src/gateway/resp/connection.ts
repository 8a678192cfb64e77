/**
 * Owns one Redis connection: its reply queue (replies leave in request order), flow control
 * (reading pauses while too many ops are in flight or the socket is not draining), the corked
 * flush of finished replies, its session fields (name, protocol, user), its transaction and
 * pub/sub state, and the calls handlers make (command-api.ts: submit ops, reply, record in MULTI).
 * Relies on ShardPool.submit (the same submit the HTTP and WebSocket APIs use), protocol/resp
 * (parsing, encoding), pending-command.ts, dispatch.ts and the door (listener.ts: guard, limits,
 * pub/sub hub, scripts). Must not touch MySQL or the actors' internals: every key operation goes
 * through ShardPool.submit and comes back as a Reply.
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
import type { Socket } from 'node:net';
import { KvError, statusOf, toErrorData } from '../../protocol/errors';
import { FLAG_GET_OLD, isReadOp, OP_GET, OP_PUT, type OpCode, type PreconditionFailed, type PutDone, type Reply } from '../../protocol/ops';
import * as resp from '../../protocol/resp';
import { RespProtocolError, RespRequestParser, type Proto } from '../../protocol/resp';
import type { TxnOp } from '../../protocol/txn';
import { checkKey } from '../../protocol/validate';
import type { Combine, OpSpec, PubsubCall, RespCall, ScriptCall, TxnCall } from './command-api';
import { dispatch } from './dispatch';
import { codeError, isWrongArgs, SHUTTING_DOWN } from './errors';
import type { RespSession } from './guard';
import type { RespDoor } from './listener';
import { Command, KIND_NAMES, Kind, MgetPart, Part, queuedReply, type CommandOwner } from './pending-command';
import type { PubsubHub, Subscriber } from './pubsub-hub';
import type { ScriptRegistry } from './scripts';
import { TxnState, type Queued } from './transactions';

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

export class Conn implements RespSession, RespCall, TxnCall, PubsubCall, ScriptCall, CommandOwner {
  readonly id = nextSessionId++;
  readonly txn = new TxnState();
  /** While a command is queued in MULTI: what it would submit (set and taken by dispatch.ts). */
  recording: (Queued & { failed: boolean }) | null = null;
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
  /** Pub/sub: null until the connection first subscribes (pubsub-commands.ts). */
  sub: Subscriber | null = null;
  /** Bytes of push frames queued and not yet written. */
  private pushQueued = 0;
  /** The slot of the last write this connection submitted (-1: none yet): WAIT asks its shard. */
  lastWriteSlot = -1;

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
      dispatch(this, args);
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
    if (!isReadOp(op)) this.lastWriteSlot = this.srv.ctx.pool.slotOf(key);
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
      if (isWrongArgs(out)) {
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
  // What handlers call (command-api.ts)
  // -------------------------------------------------------------------------------------------

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
    if (!isReadOp(op)) this.lastWriteSlot = this.srv.ctx.pool.slotOf(key);
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

  get maxValueBytes(): number {
    return this.srv.limits.maxValueBytes;
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
    if (this.recording !== null)
      return this.record(
        kind,
        args.slice(1).map((k): TxnOp => [op, k, null, 0, 0, 0]),
      );
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
          cmd.out = codeError(e.code, e.message);
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
    if (this.recording !== null)
      return this.record(
        Kind.Custom,
        specs.map((o): TxnOp => [o.op, o.key, o.value ?? null, o.ttlMs ?? 0, o.flags ?? 0, o.ifVersion ?? 0]),
        combine,
      );
    const cmd = this.keyed(Kind.Custom);
    if (cmd === null) return;
    cmd.name = name;
    cmd.combine = combine;
    cmd.parts = new Array<Reply>(specs.length);
    cmd.pending = specs.length;
    for (let i = 0; i < specs.length; i++) {
      const o = specs[i];
      this.submit(new Part(cmd, i, o.op), o.op, o.key, o.value ?? null, o.ttlMs ?? 0, o.flags ?? 0, o.ifVersion ?? 0);
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
