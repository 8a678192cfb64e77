/**
 * Owns POST /v1/txn's JSON: reading a transaction request into a program (protocol/txn.ts) and
 * writing its result. Relies on protocol (ops, txn, validate, numbers). Pure: no I/O.
 *
 *   {"compare": [{"key": "a", "version": 7}, {"key": "b", "exists": false}],
 *    "success": [{"op": "put", "key": "a", "value": "text", "ttl": 60},
 *                {"op": "incr", "key": "n", "by": "1"}, {"op": "get", "key": "b"}],
 *    "failure": [{"op": "get", "key": "a"}]}
 *
 * Keys and values are UTF-8 strings ("key", "value") or base64 ("keyBase64", "valueBase64").
 * Ops: get, put (ttl seconds, keepTtl), del, expire (ttl), persist, ttl, incr (by: an integer as
 * a string or number; float: true), getdel. The answer:
 *
 *   {"succeeded": true, "results": [{"status": 201, "version": 12, "expiresAt": ...}, ...]}
 *
 * one result per op of the list that ran, each as that op's own route answers it (values base64,
 * as the listing gives them; an error as {"status", "error": {"code", "message"}}).
 */
import { clientMessage, KvError } from '../protocol/errors';
import {
  FLAG_FLOAT,
  FLAG_KEEP_TTL,
  isErrorReply,
  OP_DEL,
  OP_EXPIRE,
  OP_GET,
  OP_GETDEL,
  OP_INCR,
  OP_PERSIST,
  OP_PUT,
  OP_TTL,
  ttlLeftMs,
  type AppendDone,
  type ExpireSet,
  type GetHit,
  type IncrDone,
  type OpCode,
  type PreconditionFailed,
  type PutDone,
  type Reply,
  type TtlHit,
} from '../protocol/ops';
import { ABSENT, EXISTS, MAX_TXN_OPS, type TxnCompare, type TxnDone, type TxnOp, type TxnProgram } from '../protocol/txn';
import { parseFloatText, parseInt64 } from '../protocol/numbers';
import { checkKey, checkValue, parseTtlSeconds, type Limits } from '../protocol/validate';
import { checkPutRules, WS_PUT_NAMES } from '../protocol/put-rules';

const OPS: Record<string, OpCode> = {
  get: OP_GET,
  put: OP_PUT,
  del: OP_DEL,
  expire: OP_EXPIRE,
  persist: OP_PERSIST,
  ttl: OP_TTL,
  incr: OP_INCR,
  getdel: OP_GETDEL,
};
const FIELDS: Record<string, ReadonlySet<string>> = {
  put: new Set(['value', 'valueBase64', 'ttl', 'keepTtl']),
  expire: new Set(['ttl']),
  incr: new Set(['by', 'float']),
};
const NONE: ReadonlySet<string> = new Set();

const bad = (message: string): KvError => new KvError('KV_ERR_BAD_REQUEST', message);

/** The program in a POST /v1/txn body; throws a KvError naming the first thing wrong. */
export function parseTxnJson(body: Buffer, limits: Limits): TxnProgram {
  let j: unknown;
  try {
    j = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw bad(`body is not JSON: ${(err as Error).message}`);
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw bad('body must be a JSON object {"compare", "success", "failure"}');
  for (const k of Object.keys(j))
    if (k !== 'compare' && k !== 'success' && k !== 'failure') throw bad(`unknown field "${k.slice(0, 40)}" (allowed: compare, success, failure)`);
  const o = j as Record<string, unknown>;
  const list = (name: string): unknown[] => {
    const v = o[name] ?? [];
    if (!Array.isArray(v)) throw bad(`${name} must be an array`);
    return v;
  };
  const compare = list('compare').map((c, i) => parseCompare(c, `compare[${i}]`, limits));
  const success = list('success').map((x, i) => parseOp(x, `success[${i}]`, limits));
  const failure = list('failure').map((x, i) => parseOp(x, `failure[${i}]`, limits));
  if (compare.length + success.length + failure.length > MAX_TXN_OPS) throw bad(`a transaction holds at most ${MAX_TXN_OPS} compares and ops`);
  return [compare, success, failure];
}

function record(x: unknown, at: string): Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw bad(`${at} must be an object`);
  return x as Record<string, unknown>;
}

function bytes(o: Record<string, unknown>, name: string, at: string): Buffer | null {
  const text = o[name];
  const b64 = o[`${name}Base64`];
  if (text !== undefined && b64 !== undefined) throw bad(`${at}: give ${name} or ${name}Base64, not both`);
  if (text !== undefined) {
    if (typeof text !== 'string') throw bad(`${at}.${name} must be a string`);
    return Buffer.from(text, 'utf8');
  }
  if (b64 !== undefined) {
    if (typeof b64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw bad(`${at}.${name}Base64 must be base64`);
    return Buffer.from(b64, 'base64');
  }
  return null;
}

function key(o: Record<string, unknown>, at: string, limits: Limits): Buffer {
  const k = bytes(o, 'key', at);
  if (k === null) throw new KvError('KV_ERR_BAD_KEY', `${at} needs a key (key or keyBase64)`);
  checkKey(k, limits);
  return k;
}

function parseCompare(x: unknown, at: string, limits: Limits): TxnCompare {
  const o = record(x, at);
  for (const f of Object.keys(o)) if (!['key', 'keyBase64', 'version', 'exists'].includes(f)) throw bad(`${at}: unknown field "${f.slice(0, 40)}"`);
  const k = key(o, at, limits);
  if ((o.version === undefined) === (o.exists === undefined)) throw bad(`${at} needs exactly one of version (the key's version) or exists (true or false)`);
  if (o.exists !== undefined) {
    if (typeof o.exists !== 'boolean') throw bad(`${at}.exists must be true or false`);
    return [k, o.exists ? EXISTS : ABSENT];
  }
  if (typeof o.version !== 'number' || !Number.isSafeInteger(o.version) || o.version < 1)
    throw bad(`${at}.version must be a positive integer (use exists: false for an absent key)`);
  return [k, o.version];
}

function parseOp(x: unknown, at: string, limits: Limits): TxnOp {
  const o = record(x, at);
  const name = o.op;
  const op = typeof name === 'string' ? OPS[name] : undefined;
  if (op === undefined) throw new KvError('KV_ERR_UNKNOWN_OP', `${at}.op must be one of ${Object.keys(OPS).join(', ')}`);
  const allowed = FIELDS[name as string] ?? NONE;
  for (const f of Object.keys(o))
    if (f !== 'op' && f !== 'key' && f !== 'keyBase64' && !allowed.has(f)) throw bad(`${at}: unknown field "${f.slice(0, 40)}" for ${name as string}`);
  const k = key(o, at, limits);
  const ttl = (): number => {
    if (o.ttl === undefined) return 0;
    if (typeof o.ttl !== 'number' && typeof o.ttl !== 'string') throw new KvError('KV_ERR_BAD_TTL', `${at}.ttl must be a number of seconds`);
    return parseTtlSeconds(String(o.ttl));
  };
  switch (op) {
    case OP_PUT: {
      const v = bytes(o, 'value', at);
      if (v === null) throw bad(`${at} needs a value (value or valueBase64)`);
      checkValue(v.length, limits);
      if (o.keepTtl !== undefined && typeof o.keepTtl !== 'boolean') throw bad(`${at}.keepTtl must be true or false`);
      const ttlMs = ttl();
      const flags = o.keepTtl === true ? FLAG_KEEP_TTL : 0;
      checkPutRules(ttlMs, flags, WS_PUT_NAMES, `${at}: `);
      return [OP_PUT, k, v, ttlMs, flags, 0];
    }
    case OP_EXPIRE: {
      const ttlMs = ttl();
      if (ttlMs === 0) throw new KvError('KV_ERR_BAD_TTL', `${at} needs a positive ttl (seconds)`);
      return [OP_EXPIRE, k, null, ttlMs, 0, 0];
    }
    case OP_INCR: {
      const float = o.float === true;
      if (o.float !== undefined && typeof o.float !== 'boolean') throw bad(`${at}.float must be true or false`);
      const by = o.by === undefined ? '1' : typeof o.by === 'number' || typeof o.by === 'string' ? String(o.by) : null;
      const text = by === null ? null : Buffer.from(by, 'latin1');
      if (text === null || (float ? parseFloatText(text) === null : parseInt64(text) === null)) {
        throw bad(`${at}.by must be ${float ? 'a finite decimal number' : 'a signed 64-bit integer (as a string past 2^53)'}`);
      }
      return [OP_INCR, k, text, 0, float ? FLAG_FLOAT : 0, 0];
    }
    default:
      return [op, k, null, 0, 0, 0];
  }
}

/** The response body for a transaction that ran (`ran`: the op list its reply answers). */
export function txnJson(done: TxnDone, ran: TxnOp[]): string {
  const results = done[3].map((r, i) => resultJson(ran[i][0], r));
  return `{"succeeded":${done[2] === 1},"results":[${results.join(',')}]}`;
}

const b64 = (v: Uint8Array): string => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');

function resultJson(op: OpCode, r: Reply): string {
  if (isErrorReply(r)) return `{"status":${r[1]},"error":{"code":${JSON.stringify(r[2])},"message":${JSON.stringify(clientMessage(r[2], r[3]))}}}`;
  const status = r[1];
  if (status === 404 || status === 204) return `{"status":${status}}`;
  if (status === 412) return `{"status":412,"version":${(r as PreconditionFailed)[2] ?? null}}`;
  switch (op) {
    case OP_GET:
    case OP_GETDEL: {
      const g = r as GetHit;
      return `{"status":200,"value":"${b64(g[2])}","version":${g[3]},"expiresAt":${g[4]}}`;
    }
    case OP_PUT: {
      const p = r as PutDone;
      return `{"status":${status},"version":${p[2]},"expiresAt":${p[3]}}`;
    }
    case OP_INCR: {
      const n = r as IncrDone;
      return `{"status":${status},"value":"${Buffer.from(n[2]).toString('latin1')}","version":${n[3]},"expiresAt":${n[4]}}`;
    }
    case OP_EXPIRE:
      return `{"status":200,"expiresAt":${(r as ExpireSet)[2]}}`;
    case OP_PERSIST:
      return '{"status":200,"expiresAt":null}';
    case OP_TTL: {
      const t = r as TtlHit;
      const left = ttlLeftMs(t);
      return `{"status":200,"ttl":${left === null ? null : left / 1000},"expiresAt":${t[2]},"version":${t[4]}}`;
    }
    default:
      return `{"status":${status},"version":${(r as AppendDone)[2]}}`;
  }
}
