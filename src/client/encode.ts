/**
 * Owns turning a call into what goes on the wire: the same checks as the server (with its
 * messages), each op's encoded size bound, and a txn() request as the wire's compares and op lists.
 * Relies on protocol/validate, listing and ws-format (shared with the server, so validation
 * messages match). Never sends anything and never keeps state between calls.
 */
import { KvError } from '../protocol/errors';
import { checkListRequest } from '../protocol/listing';
import { OP_DEL, OP_EXPIRE, OP_GET, OP_GETDEL, OP_INCR, OP_PERSIST, OP_PUT, OP_SCAN, OP_TTL, type OpCode } from '../protocol/ops';
import { checkTtlMs, checkValue, type Limits } from '../protocol/validate';
import type { TxnRequestWire } from '../protocol/ws-client-codec';
import {
  readDelOptions,
  readIncr,
  readListOptions,
  readPutOptions,
  type DelOptions,
  type IncrOptions,
  type ListOptions,
  type OpFields,
  type PutOptions,
} from '../protocol/ws-format';
import type { Key, TxnOp, TxnRequest, Value } from './types';

/** Encoded bytes of one request beyond its key and value (array, id, op, headers, options). */
export const REQUEST_OVERHEAD_BYTES = 128;

export type OpOptions = PutOptions | DelOptions | IncrOptions | undefined;

/** A transaction as sent: the wire's arrays, and each op's code and options to read its reply. */
export interface TxnWire extends TxnRequestWire {
  success: Array<[OpCode, OpOptions]>;
  failure: Array<[OpCode, OpOptions]>;
}

const scratch: OpFields = { ttlMs: 0, flags: 0, ifVersion: 0 };

function keyBytes(key: unknown): number {
  if (typeof key === 'string') return Buffer.byteLength(key, 'utf8');
  if (key instanceof Uint8Array) return key.length;
  return -1;
}

/** The same checks as the server, with its messages (KvError); returns the op's encoded size bound. */
export function checkOp(
  op: OpCode | typeof OP_SCAN,
  key: Key,
  value: Value | null,
  ttlMs: number,
  opts: PutOptions | DelOptions | IncrOptions | ListOptions | undefined,
  limits: Limits,
): number {
  const kb = keyBytes(key);
  if (op === OP_SCAN) {
    if (kb < 0) throw new KvError('KV_ERR_BAD_KEY', `prefix must be a string or Uint8Array, got ${typeof key}`);
    const o = readListOptions(opts);
    checkListRequest(Buffer.alloc(kb), o.after, o.limit, o.values, limits);
    return kb + (o.after?.length ?? 0) + REQUEST_OVERHEAD_BYTES;
  }
  if (kb < 0) throw new KvError('KV_ERR_BAD_KEY', `key must be a string or Uint8Array, got ${typeof key}`);
  if (kb === 0) throw new KvError('KV_ERR_BAD_KEY', 'key must not be empty');
  if (kb > limits.maxKeyBytes) throw new KvError('KV_ERR_KEY_TOO_LONG', `key is ${kb} bytes, the limit is ${limits.maxKeyBytes}`);
  let vb = 0;
  if (op === OP_PUT) {
    vb = keyBytes(value);
    if (vb < 0) throw new KvError('KV_ERR_BAD_REQUEST', `value must be a string or Uint8Array, got ${typeof value}`);
    checkValue(vb, limits);
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

/** A txn() request checked op by op and put in the wire's shape, with its encoded size bound. */
export function encodeTxn(req: TxnRequest, limits: Limits): { t: TxnWire; size: number } {
  const t: TxnWire = { compares: [], wire: [[], []], success: [], failure: [] };
  let size = REQUEST_OVERHEAD_BYTES;
  for (const c of req.compare ?? []) {
    size += checkOp(OP_GET, c.key, null, 0, undefined, limits);
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
      size += checkOp(code, o.key, value, ttlMs, opts, limits);
      const n: unknown[] = code === OP_PUT || code === OP_INCR ? [code, o.key, value] : code === OP_EXPIRE ? [code, o.key, ttlMs] : [code, o.key];
      if (opts !== undefined) n.push(opts);
      wire.push(n);
      decoded.push([code, opts]);
    }
  }
  return { t, size };
}

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

/**
 * TTLs are milliseconds in integers on the wire; a fraction (1.5) is most likely seconds or a
 * computed delay: say what is wanted. Kept in the "ttl must be positive" wording of the server's
 * message (protocol/validate), which says "got float 1.5".
 */
function checkWholeMs(ttl: unknown): void {
  if (typeof ttl === 'number' && Number.isFinite(ttl) && !Number.isInteger(ttl)) {
    throw new KvError('KV_ERR_BAD_TTL', `ttl must be positive whole milliseconds, got ${String(ttl).slice(0, 40)} (e.g. Math.ceil(seconds * 1000))`);
  }
}
