/**
 * Owns the server's side of the WebSocket replies: turning an actor's Reply into the wire's shape
 * (ws-format), the replies the gateway makes itself (errors, frame errors), and cutting replies
 * into frames. Relies on ops.ts, errors.ts, ws-format and msgpack-writer (not msgpackr, see
 * there). Pure: no I/O, no timers. Must not know about sockets or the pool.
 */
import { clientMessage, statusOf, type ErrorData } from './errors';
import { isErrorReply, OP_PERSIST, OP_TTL, replyOf, ttlLeftMs, type OpCode, type Reply } from './ops';
import { MsgpackWriter } from './msgpack-writer';
import { FRAME_ERROR_ID, type WireErrorReply, type WireReply, type WireTtlHit, type WireTxnReply } from './ws-format';
import type { TxnDone, TxnOp } from './txn';

/** An error the gateway answers itself (refused before any shard), as a wire reply. */
export function wireErrorReply(id: number, err: ErrorData): WireErrorReply {
  return [id, statusOf(err.code), { code: err.code, message: clientMessage(err.code, err.message) }];
}

export function frameErrorReply(message: string): WireErrorReply {
  return wireErrorReply(FRAME_ERROR_ID, { code: 'KV_ERR_BAD_FRAME', message });
}

/**
 * Turns the actor's reply for `op` into the wire reply for the client's `id`, IN PLACE: the shard
 * pool hands each Reply array to exactly one target, so reusing it saves an array per op. The
 * actor's shapes are the wire's except ttl ([expiresAt, nowMs] -> [ttlMs, expiresAt]), persist
 * (whether a TTL was removed is dropped), 412 (the current version is dropped) and errors
 * ([code, message, retryAfter] -> [{code, message}]).
 */
export function toWireReply(r: Reply, id: number, op: OpCode): WireReply {
  r[0] = id;
  const w = r as unknown[] as WireReply;
  if (isErrorReply(r)) {
    w[2] = { code: r[2], message: clientMessage(r[2], String(r[3])) };
    w.length = 3;
  } else if (r[1] >= 400) {
    w.length = 2; // 404, 412: no payload on this wire
  } else if (op === OP_PERSIST) {
    w.length = 2;
  } else if (op === OP_TTL) {
    const t = replyOf(OP_TTL, r);
    if (t[1] === 200) {
      const wt = w as WireTtlHit;
      const expiresAt = t[2];
      wt[2] = ttlLeftMs(t);
      wt[3] = expiresAt;
      wt.length = 4; // the version rides on the port's reply only (for WATCH)
    }
  }
  return w;
}

/** A transaction's reply on the wire: each op's reply as alone, under its index in `ran`. */
export function toWireTxnReply(r: TxnDone, id: number, ran: TxnOp[]): WireTxnReply {
  return [id, 200, r[2] === 1, r[3].map((sub, i) => toWireReply(sub, i, ran[i][0]))];
}

/**
 * Encodes replies[start..] into one frame of at most about `maxBytes` (always at least one reply)
 * and sets `next` to the first reply left out. The returned bytes are valid until the next encode.
 */
export class ReplyFrameEncoder {
  private readonly w = new MsgpackWriter();
  next = 0;

  encode(replies: readonly WireReply[], start: number, maxBytes: number): Buffer {
    const w = this.w;
    w.reset();
    const header = w.reserveArray32();
    let i = start;
    while (i < replies.length && (i === start || w.pos < maxBytes)) w.value(replies[i++]);
    w.patchArray32(header, i - start);
    this.next = i;
    return w.view();
  }
}
