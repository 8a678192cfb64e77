/**
 * Owns the HTTP API: routes, request decoding, response encoding. Relies on uWebSockets.js,
 * ShardPool, protocol (ops and their reply shapes, errors, validate), http-errors (every error
 * response), http-framing (checked first on every route) and Metrics. Must not touch MySQL or
 * the actors' internals: every operation goes through ShardPool.submit and comes back as a Reply.
 *
 * uWebSockets.js lifetimes: the HttpRequest is valid only during the handler, so everything is
 * read from it before returning; the body arrives in chunks that are neutered after each callback,
 * so they are copied; every async response sets onAborted and writes inside cork().
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { KvError, statusOf, toErrorData } from '../protocol/errors';
import {
  FLAG_FLOAT,
  FLAG_IF_ABSENT,
  isErrorReply,
  FLAG_IF_EXISTS,
  FLAG_IF_VERSION,
  FLAG_KEEP_TTL,
  OP_DEL,
  OP_EXPIRE,
  OP_GET,
  OP_INCR,
  OP_NAMES,
  OP_PERSIST,
  OP_PUT,
  OP_SCAN,
  OP_TTL,
  OP_TXN,
  ttlLeftMs,
  type ExpireSet,
  type GetHit,
  type IncrDone,
  type OpCode,
  type PreconditionFailed,
  type PutDone,
  type Reply,
  type TtlHit,
  type TxnDone,
} from '../protocol/ops';
import { packTxn, type TxnProgram } from '../protocol/txn';
import { parseTxnJson, txnJson } from './http-txn';
import { txnRoute } from './txn-route';
import { checkKey, checkValue, parseTtlSeconds, parseVersionTag, type Limits } from '../protocol/validate';
import { checkPutRules, HTTP_PUT_NAMES } from '../protocol/put-rules';
import { parseFloatText, parseInt64 } from '../protocol/numbers';
import type { TokenEntry } from '../protocol/access';
import { authorizeOp, listingRefusal, txnRefusal } from './door-policy';
import { checkListRequest, type ListPage } from '../protocol/listing';
import { listPage } from './key-lister';
import type { Auth } from './auth';
import type { FeedHub } from './feed-hub';
import { CLOSE, HEAD, statusLine, writeError } from './http-errors';
import { hasBody, refusedFraming } from './http-framing';
import type { Metrics } from './metrics';
import type { ReplyTarget, ShardPool } from './shard-pool';

export interface HttpContext {
  pool: ShardPool;
  metrics: Metrics;
  limits: Limits;
  /** Set when shutting down: new requests get 503. */
  closing: () => boolean;
  /** Called when an HTTP call finishes, for graceful shutdown accounting. */
  inflight: { n: number };
  /** Token checks; null when auth is off. */
  auth: Auth | null;
  /** The change feed's watchers; null when KVSQL_FEED is off. */
  feed: FeedHub | null;
}

/** POST /v1/txn's body limit: room for two values of the largest size, and at least 16 MiB. */
export const txnBodyLimit = (limits: Limits): number => Math.max(2 * limits.maxValueBytes, 16 * 1024 * 1024);

/**
 * One HTTP call waiting for its shard. Holds the response until the reply arrives; an aborted
 * client only marks it, the shard's reply is still consumed (the write still happened).
 */
class HttpCall implements ReplyTarget {
  /** OP_TXN: the program sent, to name each result's op. */
  txn: TxnProgram | null;
  aborted = false;
  done = false;
  readonly started = performance.now();
  constructor(
    readonly ctx: HttpContext,
    readonly res: HttpResponse,
    /** Also decides the reply's shape: the TTL routes are their own ops (ttl, expire, persist). */
    readonly op: OpCode | typeof OP_SCAN,
    /** HEAD: the headers of GET, no body. */
    readonly head = false,
  ) {
    this.txn = null;
    ctx.inflight.n++;
    res.onAborted(() => {
      this.aborted = true;
      this.finish(499);
    });
  }

  deliver(reply: Reply): void {
    if (this.aborted || this.done) return;
    this.res.cork(() => this.write(reply));
    this.finish(reply[1]);
  }

  /** A page of keys (GET /v1/kv), encoded by listJson. */
  page(p: ListPage): void {
    if (this.aborted || this.done) return;
    this.res.cork(() => this.res.writeStatus('200 OK').writeHeader('Content-Type', 'application/json').end(listJson(p)));
    this.finish(200);
  }

  /** `close`: the request body is not (fully) read, see ErrorWriteOptions. */
  fail(err: unknown, close = false): void {
    if (this.aborted || this.done) return;
    const e = toErrorData(err);
    this.res.cork(() => writeError(this.res, e.code, e.message, undefined, close ? CLOSE : undefined));
    this.finish(statusOf(e.code));
  }

  finish(status: number): void {
    if (this.done) return;
    this.done = true;
    this.ctx.inflight.n--;
    this.ctx.metrics.observe('http', OP_NAMES[this.op], status, (performance.now() - this.started) / 1000);
  }

  private write(r: Reply): void {
    const res = this.res;
    const head = this.head ? HEAD : undefined;
    if (isErrorReply(r)) {
      writeError(res, r[2], r[3], undefined, head);
      return;
    }
    const status = r[1];
    if (status === 404) return writeError(res, 'KV_ERR_NOT_FOUND', 'key not found', undefined, head);
    if (status === 412) {
      // The key's current version, so a compare-and-set loop needs no extra GET; null: absent.
      const current = (r as PreconditionFailed)[2];
      if (current === null || current === undefined) return writeError(res, 'KV_ERR_PRECONDITION_FAILED', 'precondition failed: the key is absent');
      return writeError(res, 'KV_ERR_PRECONDITION_FAILED', `precondition failed: the key's current version is ${current}`, () =>
        res.writeHeader('ETag', `"${current}"`),
      );
    }
    switch (this.op) {
      case OP_GET: {
        const g = r as GetHit;
        const value = g[2];
        res.writeStatus('200 OK');
        res.writeHeader('ETag', `"${g[3]}"`);
        if (g[4] !== null) res.writeHeader('X-Expires-At', String(g[4]));
        res.writeHeader('Content-Type', 'application/octet-stream');
        // (endWithoutBody(length) leaves uWS 20.30 waiting for that many bytes: it then drops the
        // connection. The header written by hand and a bare endWithoutBody() keep it usable.)
        if (this.head) res.writeHeader('Content-Length', String(value.length)).endWithoutBody();
        else res.end(value);
        return;
      }
      case OP_PUT: {
        const p = r as PutDone;
        res.writeStatus(statusLine(status));
        res.writeHeader('ETag', `"${p[2]}"`);
        if (p[3] !== null) res.writeHeader('X-Expires-At', String(p[3]));
        res.writeHeader('Content-Type', 'application/json');
        res.end(`{"version":${p[2]},"expiresAt":${p[3] ?? null}}`);
        return;
      }
      case OP_INCR: {
        // The value as a JSON string: a signed 64-bit counter does not fit a JSON number's
        // exact range (etcd's JSON gateway writes int64 the same way).
        const n = r as IncrDone;
        res.writeStatus(statusLine(status));
        res.writeHeader('ETag', `"${n[3]}"`);
        if (n[4] !== null) res.writeHeader('X-Expires-At', String(n[4]));
        res.writeHeader('Content-Type', 'application/json');
        res.end(`{"value":"${Buffer.from(n[2]).toString('latin1')}","version":${n[3]},"expiresAt":${n[4] ?? null}}`);
        return;
      }
      case OP_DEL:
        res.writeStatus('204 No Content');
        res.endWithoutBody();
        return;
      case OP_EXPIRE:
        res.writeStatus('200 OK').writeHeader('Content-Type', 'application/json');
        res.end(`{"expiresAt":${(r as ExpireSet)[2]}}`);
        return;
      case OP_PERSIST:
        res.writeStatus('200 OK').writeHeader('Content-Type', 'application/json');
        res.end('{"expiresAt":null}');
        return;
      case OP_TXN: {
        const done = r as TxnDone;
        res.writeStatus('200 OK').writeHeader('Content-Type', 'application/json');
        res.end(txnJson(done, done[2] === 1 ? this.txn![1] : this.txn![2]));
        return;
      }
      case OP_TTL: {
        const t = r as TtlHit;
        const expiresAt = t[2];
        const left = ttlLeftMs(t);
        const ttl = left === null ? null : left / 1000;
        res.writeStatus('200 OK').writeHeader('Content-Type', 'application/json');
        res.end(`{"ttl":${ttl},"expiresAt":${expiresAt}}`);
        return;
      }
    }
  }
}

const HEX = /^[0-9a-fA-F]{2}$/;

/**
 * The key is the percent-decoded rest of the path after the route prefix, as bytes: `%2F` is a
 * `/` inside the key, `%00`..`%FF` any byte; a literal `/` is part of the key too. Characters
 * outside ASCII (sent unencoded) count as their UTF-8 bytes.
 */
export function decodeKey(url: string, prefixLength: number): Buffer {
  const raw = url.slice(prefixLength);
  let plain = true;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 37 /* % */ || c > 127) {
      plain = false;
      break;
    }
  }
  if (plain) return Buffer.from(raw, 'latin1');
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 37) {
      const hex = raw.slice(i + 1, i + 3);
      if (!HEX.test(hex)) throw new KvError('KV_ERR_BAD_KEY', `bad percent-encoding at offset ${i} of the key`);
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (c > 127) {
      // uWebSockets.js decodes the raw path as UTF-8 and turns bytes that are not UTF-8 into
      // U+FFFD, so those bytes are lost: refuse rather than write a key the client did not name.
      if (c === 0xfffd) throw new KvError('KV_ERR_BAD_KEY', `byte at offset ${i} of the key is not UTF-8; send binary key bytes percent-encoded (%XX)`);
      // One code point, which may be a surrogate pair: encoding the halves alone gives U+FFFD.
      const cp = raw.codePointAt(i)!;
      for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) bytes.push(b);
      if (cp > 0xffff) i++;
    } else {
      bytes.push(c);
    }
  }
  return Buffer.from(bytes);
}

/** Bytes a key keeps as they are in listJson: RFC 3986 unreserved, and `/`, `:`, `@`. */
const KEEP = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/:@') KEEP[c.charCodeAt(0)] = 1;
const HEX_DIGITS = '0123456789ABCDEF';

/**
 * A key as JSON text in a listing: every byte but those in KEEP as %XX, so the text is the key's
 * path form (`/v1/kv/<it>` names the key) and can be sent back as `after=<it>` unchanged.
 */
export function keyText(key: Uint8Array): string {
  let out = '';
  for (let i = 0; i < key.length; i++) {
    const b = key[i];
    out += KEEP[b] === 1 ? String.fromCharCode(b) : `%${HEX_DIGITS[b >> 4]}${HEX_DIGITS[b & 15]}`;
  }
  return out;
}

/**
 * `{"keys":[...],"next":...}`, with `values=1` also `"values"` (base64) and `"expiresAt"` (unix
 * ms or null), parallel to keys. Keys and next as keyText (next null: the listing is complete).
 */
function listJson(p: ListPage): string {
  let out = '{"keys":[';
  for (let i = 0; i < p.keys.length; i++) out += `${i > 0 ? ',' : ''}"${keyText(p.keys[i])}"`;
  out += ']';
  if (p.values !== null) {
    out += ',"values":[';
    for (let i = 0; i < p.values.length; i++)
      out += `${i > 0 ? ',' : ''}"${Buffer.from(p.values[i].buffer, p.values[i].byteOffset, p.values[i].byteLength).toString('base64')}"`;
    out += `],"expiresAt":${JSON.stringify(p.expiresAt)}`;
  }
  return `${out},"next":${p.next === null ? 'null' : `"${keyText(p.next)}"`}}`;
}

const LIST_PARAMS = new Set(['prefix', 'after', 'limit', 'values']);

/**
 * GET /v1/kv's query: `prefix` and `after` are key bytes written as in the path (%XX for any
 * byte, other characters as their UTF-8 bytes) where `+` is a space, as in any query string;
 * `limit` a decimal integer; `values` 1/true or 0/false.
 */
function parseListQuery(raw: string, limits: Limits) {
  let prefix: Uint8Array = Buffer.alloc(0);
  let after: Uint8Array | null = null;
  let limit: number | string | undefined;
  let values = false;
  const seen = new Set<string>();
  for (const part of raw.split('&')) {
    if (part.length === 0) continue;
    const eq = part.indexOf('=');
    const name = eq === -1 ? part : part.slice(0, eq);
    const text = eq === -1 ? '' : part.slice(eq + 1).replace(/\+/g, ' ');
    if (!LIST_PARAMS.has(name))
      throw new KvError('KV_ERR_BAD_REQUEST', `unknown query parameter "${name.slice(0, 40)}" (allowed: ${[...LIST_PARAMS].join(', ')})`);
    if (seen.has(name)) throw new KvError('KV_ERR_BAD_REQUEST', `query parameter "${name}" given twice`);
    seen.add(name);
    if (name === 'prefix') prefix = decodeKey(text, 0);
    else if (name === 'after') after = decodeKey(text, 0);
    else if (name === 'limit') limit = /^\d{1,7}$/.test(text) ? Number(text) : text;
    else if (text === '1' || text === 'true' || text === '') values = true;
    else if (text !== '0' && text !== 'false') throw new KvError('KV_ERR_BAD_REQUEST', `values must be 1 or 0, got "${text.slice(0, 40)}"`);
  }
  return checkListRequest(prefix, after, limit, values, limits);
}

interface Query {
  ttlMs: number;
  keepTtl: boolean;
  /** POST: the increment as ASCII, checked (a signed 64-bit integer, or a float with float=1). */
  incr: Buffer | null;
  float: boolean;
}

function parseQuery(raw: string, allowed: ReadonlySet<string>): Query {
  const q: Query = { ttlMs: 0, keepTtl: false, incr: null, float: false };
  let sawTtl = false;
  for (const part of raw.split('&')) {
    if (part.length === 0) continue;
    const eq = part.indexOf('=');
    const name = eq === -1 ? part : part.slice(0, eq);
    let value: string;
    try {
      value = decodeURIComponent((eq === -1 ? '' : part.slice(eq + 1)).replace(/\+/g, ' '));
    } catch {
      throw new KvError('KV_ERR_BAD_REQUEST', `query parameter "${name.slice(0, 40)}" is not valid percent-encoding`);
    }
    if (!allowed.has(name)) {
      throw new KvError('KV_ERR_BAD_REQUEST', `unknown query parameter "${name.slice(0, 40)}" (allowed: ${[...allowed].join(', ') || 'none'})`);
    }
    if (name === 'ttl') {
      q.ttlMs = parseTtlSeconds(value);
      sawTtl = true;
    } else if (name === 'keepttl') {
      if (value === 'true' || value === '1' || value === '') q.keepTtl = true;
      else if (value === 'false' || value === '0') q.keepTtl = false;
      else throw new KvError('KV_ERR_BAD_REQUEST', `keepttl must be true or false, got "${value.slice(0, 40)}"`);
    } else if (name === 'incr') {
      q.incr = Buffer.from(value, 'latin1');
    } else if (name === 'float') {
      if (value === 'true' || value === '1' || value === '') q.float = true;
      else if (value !== 'false' && value !== '0') throw new KvError('KV_ERR_BAD_REQUEST', `float must be true or false, got "${value.slice(0, 40)}"`);
    }
  }
  if (allowed.has('incr')) {
    if (q.incr === null) throw new KvError('KV_ERR_BAD_REQUEST', 'incr query parameter is required (POST /v1/kv/{key}?incr=N)');
    const n = q.float ? parseFloatText(q.incr) : parseInt64(q.incr);
    if (n === null || (q.float && !Number.isFinite(n as number))) {
      throw new KvError(
        'KV_ERR_BAD_REQUEST',
        `incr must be ${q.float ? 'a finite decimal number' : 'a signed 64-bit integer'}, got "${q.incr.toString('latin1').slice(0, 40)}"`,
      );
    }
  }
  if (allowed.has('ttl') && allowed.size === 1 && !sawTtl) throw new KvError('KV_ERR_BAD_TTL', 'ttl query parameter is required');
  return q;
}

const NO_PARAMS = new Set<string>();
const PUT_PARAMS = new Set(['ttl', 'keepttl']);
const TTL_PARAMS = new Set(['ttl']);
const INCR_PARAMS = new Set(['incr', 'float']);

interface Conditions {
  flags: number;
  ifVersion: number;
}

function parseConditions(req: HttpRequest, allowIfNoneMatch: boolean): Conditions {
  const ifMatch = req.getHeader('if-match');
  const ifNoneMatch = req.getHeader('if-none-match');
  if (ifMatch !== '' && ifNoneMatch !== '') throw new KvError('KV_ERR_BAD_REQUEST', 'send If-Match or If-None-Match, not both');
  if (ifNoneMatch !== '') {
    if (!allowIfNoneMatch) throw new KvError('KV_ERR_BAD_REQUEST', 'If-None-Match is only supported on PUT');
    if (ifNoneMatch.trim() !== '*') throw new KvError('KV_ERR_BAD_REQUEST', 'If-None-Match supports only "*" (create if absent)');
    return { flags: FLAG_IF_ABSENT, ifVersion: 0 };
  }
  if (ifMatch !== '') {
    // `If-Match: *` (RFC 9110): only if the key exists (Redis SET XX). Only PUT takes it: on
    // DELETE an absent key is already a 404.
    if (ifMatch.trim() === '*') {
      if (!allowIfNoneMatch) throw new KvError('KV_ERR_BAD_REQUEST', 'If-Match: * is only supported on PUT');
      return { flags: FLAG_IF_EXISTS, ifVersion: 0 };
    }
    return { flags: FLAG_IF_VERSION, ifVersion: parseVersionTag(ifMatch) };
  }
  return { flags: 0, ifVersion: 0 };
}

export function mountHttpApi(app: TemplatedApp, ctx: HttpContext): void {
  const { pool, limits } = ctx;
  const KV = '/v1/kv/'.length;
  const TTL = '/v1/ttl/'.length;

  /**
   * Shared guard: refuse during shutdown, and turn any decode error into a 4xx. A refused
   * request's body is never read, so such a reply closes the connection (see ErrorWriteOptions).
   */
  const guard = (res: HttpResponse, req: HttpRequest, op: OpCode | typeof OP_SCAN, fn: (who: TokenEntry | null) => void): void => {
    if (refusedFraming(res, req)) return;
    if (ctx.closing()) {
      writeError(res, 'KV_ERR_SHUTTING_DOWN', 'server is shutting down', undefined, CLOSE);
      return;
    }
    try {
      // The token first: without a valid one nothing else of the request is looked at.
      fn(ctx.auth === null ? null : ctx.auth.authenticateHttp(res, req));
    } catch (err) {
      const e = toErrorData(err);
      ctx.metrics.observe('http', OP_NAMES[op], statusOf(e.code), 0);
      writeError(res, e.code, e.message, undefined, req.getMethod() === 'head' ? HEAD : hasBody(req) ? CLOSE : undefined);
    }
  };

  const simple =
    (op: OpCode, prefix: number, params: ReadonlySet<string>, allowConditions: boolean) =>
    (res: HttpResponse, req: HttpRequest): void =>
      guard(res, req, op, (who) => {
        const key = decodeKey(req.getUrl(), prefix);
        checkKey(key, limits);
        authorizeOp(ctx.auth, 'http', who, op, key);
        const q = parseQuery(req.getQuery() ?? '', params);
        const c = allowConditions ? parseConditions(req, false) : { flags: 0, ifVersion: 0 };
        pool.submit(new HttpCall(ctx, res, op), op, key, null, q.ttlMs, c.flags, c.ifVersion);
      });

  app.get('/v1/kv/*', simple(OP_GET, KV, NO_PARAMS, false));
  // RFC 9110: HEAD wherever GET works; same status and headers, Content-Length of the value, no body.
  app.head('/v1/kv/*', (res, req) =>
    guard(res, req, OP_GET, () => {
      const key = decodeKey(req.getUrl(), KV);
      checkKey(key, limits);
      parseQuery(req.getQuery() ?? '', NO_PARAMS);
      pool.submit(new HttpCall(ctx, res, OP_GET, true), OP_GET, key, null, 0, 0, 0);
    }),
  );
  app.del('/v1/kv/*', simple(OP_DEL, KV, NO_PARAMS, true));
  app.get('/v1/ttl/*', simple(OP_TTL, TTL, NO_PARAMS, false));
  app.put('/v1/ttl/*', simple(OP_EXPIRE, TTL, TTL_PARAMS, false));
  app.del('/v1/ttl/*', simple(OP_PERSIST, TTL, NO_PARAMS, false));

  app.put('/v1/kv/*', (res, req) =>
    guard(res, req, OP_PUT, (who) => {
      const key = decodeKey(req.getUrl(), KV);
      checkKey(key, limits);
      authorizeOp(ctx.auth, 'http', who, OP_PUT, key);
      const q = parseQuery(req.getQuery() ?? '', PUT_PARAMS);
      const c = parseConditions(req, true);
      const flags = c.flags | (q.keepTtl ? FLAG_KEEP_TTL : 0);
      checkPutRules(q.ttlMs, flags, HTTP_PUT_NAMES);
      const declared = req.getHeader('content-length');
      if (declared !== '' && Number(declared) > limits.maxValueBytes) checkValue(Number(declared), limits);
      const call = new HttpCall(ctx, res, OP_PUT);
      let chunks: Buffer[] | null = [];
      let size = 0;
      res.onData((chunk, isLast) => {
        if (chunks === null) return; // already answered (too large)
        size += chunk.byteLength;
        if (size > limits.maxValueBytes) {
          chunks = null;
          call.fail(new KvError('KV_ERR_VALUE_TOO_LARGE', `value exceeds the limit of ${limits.maxValueBytes} bytes`), !isLast);
          return;
        }
        // Copy: uWebSockets.js neuters the chunk when this callback returns.
        chunks.push(Buffer.from(new Uint8Array(chunk)));
        if (isLast) {
          const value = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size);
          chunks = null;
          pool.submit(call, OP_PUT, key, value, q.ttlMs, flags, c.ifVersion);
        }
      });
    }),
  );

  // Atomic increment: POST /v1/kv/{key}?incr=N (float=1: a float increment). No body.
  app.post('/v1/kv/*', (res, req) =>
    guard(res, req, OP_INCR, (who) => {
      if (hasBody(req)) throw new KvError('KV_ERR_BAD_REQUEST', 'POST /v1/kv/{key}?incr=N takes no body');
      const key = decodeKey(req.getUrl(), KV);
      checkKey(key, limits);
      authorizeOp(ctx.auth, 'http', who, OP_INCR, key);
      const q = parseQuery(req.getQuery() ?? '', INCR_PARAMS);
      pool.submit(new HttpCall(ctx, res, OP_INCR), OP_INCR, key, q.incr, 0, q.float ? FLAG_FLOAT : 0, 0);
    }),
  );

  // A transaction (http-txn.ts): compares, then the success or the failure ops, atomically on
  // the one shard that serves every key it names (txn-route.ts). Every key is authorized for what
  // its op does (a compare needs the read right) before anything is sent.
  app.post('/v1/txn', (res, req) =>
    guard(res, req, OP_TXN, (who) => {
      parseQuery(req.getQuery() ?? '', NO_PARAMS);
      const max = txnBodyLimit(limits);
      const declared = req.getHeader('content-length');
      if (declared !== '' && Number(declared) > max) throw new KvError('KV_ERR_VALUE_TOO_LARGE', `a transaction body is at most ${max} bytes`);
      const call = new HttpCall(ctx, res, OP_TXN);
      let chunks: Buffer[] | null = [];
      let size = 0;
      res.onData((chunk, isLast) => {
        if (chunks === null) return;
        size += chunk.byteLength;
        if (size > max) {
          chunks = null;
          call.fail(new KvError('KV_ERR_VALUE_TOO_LARGE', `a transaction body is at most ${max} bytes`), !isLast);
          return;
        }
        chunks.push(Buffer.from(new Uint8Array(chunk)));
        if (!isLast) return;
        const body = Buffer.concat(chunks, size);
        chunks = null;
        try {
          const program = parseTxnJson(body, limits);
          const refused = txnRefusal(ctx.auth, 'http', who, program);
          if (refused !== null) throw refused;
          const first = txnRoute(program, (k) => pool.shardOf(k));
          call.txn = program;
          if (first === null) call.deliver([0, 200, 1, []]);
          else pool.submit(call, OP_TXN, first, Buffer.from(packTxn(program)), 0, 0, 0);
        } catch (err) {
          call.fail(err);
        }
      });
    }),
  );

  // Known routes, wrong method: 405 with Allow. Empty key: 400.
  const notAllowed =
    (allow: string) =>
    (res: HttpResponse, req: HttpRequest): void => {
      if (refusedFraming(res, req)) return;
      writeError(res, 'KV_ERR_METHOD_NOT_ALLOWED', `method not allowed; allowed: ${allow}`, () => res.writeHeader('Allow', allow), {
        head: req.getMethod() === 'head',
        close: hasBody(req),
      });
    };
  const emptyKey = (res: HttpResponse, req: HttpRequest): void => {
    if (!refusedFraming(res, req)) writeError(res, 'KV_ERR_BAD_KEY', 'key must not be empty', undefined, hasBody(req) ? CLOSE : undefined);
  };
  // A page of keys in byte order across all shards (key-lister.ts). A token needs a read grant
  // on the prefix (or a shorter one): a listing is refused, never narrowed (access.ts mayList).
  app.get('/v1/kv', (res, req) =>
    guard(res, req, OP_SCAN, (who) => {
      const q = parseListQuery(req.getQuery() ?? '', limits);
      const refused = listingRefusal(ctx.auth, 'http', who, q.prefix);
      if (refused !== null) throw refused;
      const call = new HttpCall(ctx, res, OP_SCAN);
      listPage(pool, q).then(
        (p) => call.page(p),
        (err) => call.fail(err),
      );
    }),
  );
  app.put('/v1/kv', emptyKey).del('/v1/kv', emptyKey);
  app.get('/v1/ttl', emptyKey).put('/v1/ttl', emptyKey).del('/v1/ttl', emptyKey);
  app.any('/v1/kv/*', notAllowed('GET, HEAD, PUT, POST, DELETE'));
  app.any('/v1/ttl/*', notAllowed('GET, PUT, DELETE'));
  app.any('/v1/kv', notAllowed('GET, PUT, DELETE'));
  app.any('/v1/ttl', notAllowed('GET, PUT, DELETE'));
  app.any('/v1/txn', notAllowed('POST'));
}
