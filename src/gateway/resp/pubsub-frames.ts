/**
 * Owns the bytes of pub/sub frames: messages, pattern messages and (un)subscribe confirmations,
 * as RESP2 arrays or RESP3 pushes, built in one allocation. Relies on protocol/resp (nil). Must
 * not decide who gets a frame (pubsub-hub.ts does).
 */
import * as resp from '../../protocol/resp';
import type { Proto } from '../../protocol/resp';

const HEAD3 = ['', '', '*3\r\n', '>3\r\n'];
const HEAD4 = ['', '', '*4\r\n', '>4\r\n'];
export const BULK = (s: string): string => `$${s.length}\r\n${s}\r\n`;

/** A frame: the head (ASCII) then each part as a bulk string (or a RESP nil for null), then a tail. */
export function frame(head: string, parts: Array<Uint8Array | null>, proto: Proto, tail = ''): Buffer {
  let n = head.length + tail.length;
  const nil = resp.nil(proto);
  for (const p of parts) n += p === null ? nil.length : String(p.length).length + p.length + 5;
  const out = Buffer.allocUnsafe(n);
  let at = out.write(head, 0, 'latin1');
  for (const p of parts) {
    if (p === null) {
      at += out.write(nil, at, 'latin1');
      continue;
    }
    at += out.write(`$${p.length}\r\n`, at, 'latin1');
    out.set(p, at);
    at += p.length;
    out[at++] = 13;
    out[at++] = 10;
  }
  out.write(tail, at, 'latin1');
  return out;
}

export const message = (proto: Proto, kind: string, channel: Uint8Array, msg: Uint8Array): Buffer => frame(HEAD3[proto] + BULK(kind), [channel, msg], proto);
export const pmessage = (proto: Proto, pattern: Uint8Array, channel: Uint8Array, msg: Uint8Array): Buffer =>
  frame(HEAD4[proto] + BULK('pmessage'), [pattern, channel, msg], proto);
/** `subscribe ch n`, `unsubscribe ch n` (ch null: the reply to UNSUBSCRIBE when subscribed to nothing). */
export const confirm = (proto: Proto, kind: string, channel: Uint8Array | null, count: number): Buffer =>
  frame(HEAD3[proto] + BULK(kind), [channel], proto, `:${count}\r\n`);
