/**
 * Owns a command waiting for its reply: one entry of a connection's reply queue (Command), how its
 * ops' replies become its RESP reply (by Kind, or its `combine`), the per-op targets of MGET and of
 * combined commands, and the same reply made for a command queued in MULTI (queuedReply). Relies on
 * protocol/ops (replies), protocol/resp (encoding), errors.ts and ShardPool's ReplyTarget (what
 * the pool delivers to). Must not touch sockets or the pool: its owner (connection.ts) submits,
 * counts and writes.
 *
 *   pool ─ deliver(reply) ─> Command (one op) ─┐
 *   pool ─ deliver(reply) ─> Part i / MgetPart i ─> Command.part(i) / mgetPart(i)
 *                                               └─ pending hits 0: complete() sets `out`, tells its owner
 */
import { isErrorReply, OP_GET, OP_PERSIST, OP_TTL, replyOf, ttlLeftMs, type ErrorReply, type OpCode, type Reply } from '../../protocol/ops';
import * as resp from '../../protocol/resp';
import type { Proto } from '../../protocol/resp';
import type { ReplyTarget } from '../shard-pool';
import type { Combine } from './command-api';
import { replyError } from './errors';

/** What a Command tells the connection it belongs to. */
export interface CommandOwner {
  /** One op of it was answered (flow control: ops in flight). */
  opDone(): void;
  /** Its reply is known (`out` set): count it, and write it when its turn comes. */
  commandDone(cmd: Command): void;
}

/** What a command does with its ops' replies. */
export const enum Kind {
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
  /** Any command built on RespCall.ops (string-commands.ts and others): its `combine` makes the reply. */
  Custom,
  Scan,
  Keys,
  Dbsize,
  Randomkey,
}

/** Kind's name in metrics, by Kind. */
export const KIND_NAMES: readonly string[] = [
  'get',
  'set',
  'del',
  'exists',
  'mget',
  'expire',
  'expire',
  'ttl',
  'pttl',
  'persist',
  'custom',
  'scan',
  'keys',
  'dbsize',
  'randomkey',
];

/** One request in a connection's reply queue. `out` is its encoded reply once known. */
export class Command implements ReplyTarget {
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
    readonly conn: CommandOwner | null,
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
export function queuedReply(kind: Kind, combine: Combine | null, replies: Reply[], proto: Proto): string | Buffer {
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
export class Part implements ReplyTarget {
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
export class MgetPart implements ReplyTarget {
  readonly op = OP_GET;
  constructor(
    readonly cmd: Command,
    readonly i: number,
  ) {}
  deliver(r: Reply): void {
    this.cmd.mgetPart(this.i, r);
  }
}
