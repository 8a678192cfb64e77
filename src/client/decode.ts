/**
 * Owns reading a reply: an op's wire reply as the value its method resolves, or the KvClientError
 * it rejects with (a server error, a failed precondition, a reply that makes no sense for the op),
 * a transaction's reply op by op, and copying small values out of the frame they arrived in.
 * Relies on the wire codec (protocol/ws-client-codec, ws-format). Never settles a call: the
 * client does.
 */
import { OP_DEL, OP_EXPIRE, OP_GET, OP_GETDEL, OP_INCR, OP_NAMES, OP_PERSIST, OP_PUT, OP_SCAN, OP_TTL, OP_TXN, type OpCode } from '../protocol/ops';
import { replyError } from '../protocol/ws-client-codec';
import { wireReplyOf, type IncrOptions, type WireListReply, type WireReply } from '../protocol/ws-format';
import type { TxnWire } from './encode';
import { KvClientError } from './errors';
import type { ClientCall } from './requests';
import type { GetResult, IncrFloatResult, IncrResult, ListItem, ListResult, PutResult, TtlResult, TxnResult } from './types';

/** What `op` resolves with for reply `r`, or the KvClientError it rejects with. */
export function replyResult(op: OpCode | typeof OP_SCAN, opts: ClientCall['opts'], r: WireReply, frameBytes: number): unknown {
  const status = r[1];
  const err = replyError(r);
  if (err !== null) return new KvClientError(err.code, `${OP_NAMES[op]}: ${err.message}`, status);
  if (status === 412) return new KvClientError('KV_ERR_PRECONDITION_FAILED', `${OP_NAMES[op]}: precondition failed`, 412);
  const result = op === OP_TXN ? decodeTxn(opts as TxnWire, r, frameBytes) : decodeResult(op, opts, r, frameBytes);
  return result !== undefined ? result : new KvClientError('KV_ERR_BAD_FRAME', `${OP_NAMES[op]}: unexpected reply with status ${status}`, status);
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
  const results = replies.map((sub, i) => replyResult(ops[i][0], ops[i][1], sub, frameBytes));
  return { succeeded: r[2], results };
}

/**
 * A value decoded from a frame is a view of it; a small value kept by the caller would pin the
 * whole frame (up to about 1 MiB). Copy unless the value is most of the frame anyway.
 */
function ownBytes(v: Uint8Array, frameBytes: number): Buffer {
  if (v.length * 2 >= frameBytes) return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.length);
  return Buffer.from(v);
}
