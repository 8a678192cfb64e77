/**
 * Owns the Redis serialization protocol (RESP2 and RESP3) as kvsql speaks it: an incremental
 * parser of client requests and encoders of replies. Relies on nothing. Pure: no I/O, no timers.
 *
 * Why not `redis-parser` (npm): it parses *replies* (a client's side), keeps no limit on a bulk's
 * declared length (a `$2000000000` header makes it wait for, and buffer, 2 GB), cannot skip an
 * oversized argument while keeping the connection, and does not read inline commands (what a
 * person types over telnet or `nc`). ioredis 6 dropped it too. Requests are a small subset of
 * RESP (arrays of bulk strings, or one inline line), so this parser is about 150 lines.
 *
 * A request in the byte stream:
 *
 *   *<n>\r\n  $<len>\r\n <len bytes> \r\n   ... n times          (what every client library sends)
 *   <word> <word> ...\n                                          (inline; \r before \n optional)
 *
 * Incremental state, kept across feed() calls so a frame cut anywhere resumes where it stopped:
 *
 *   buf[pos..]  + more[] (chunks not merged yet; merged only when a line or a whole bulk is there)
 *   args        the arguments of the request being read (null between requests)
 *   argsLeft    how many bulks of it are still to come
 *   bulkLen     the length of the bulk whose body is awaited (-1: a header line is awaited)
 *   skip        bytes of an oversized bulk still to discard (never buffered)
 */

export const CRLF = '\r\n';

/** A request that breaks the protocol: the server answers `-ERR Protocol error: ...` and closes. */
export class RespProtocolError extends Error {
  override name = 'RespProtocolError';
}

export interface RespLimits {
  /** Largest bulk argument kept; a larger one (up to MAX_SKIPPABLE_BULK) is skipped and flagged. */
  maxBulkBytes: number;
  /** Most arguments in one request. */
  maxArgs: number;
  /** Most bytes kept for one request's arguments together. */
  maxRequestBytes: number;
}

/** Longest header or inline line (Redis: PROTO_INLINE_MAX_SIZE). */
export const MAX_LINE_BYTES = 64 * 1024;
/** A bulk declared larger than this is a protocol error (Redis's proto-max-bulk-len default). */
export const MAX_SKIPPABLE_BULK = 512 * 1024 * 1024;

const EMPTY = Buffer.alloc(0);
const DOLLAR = 36;
const STAR = 42;
const LF = 10;
const CR = 13;

export class RespRequestParser {
  private buf: Buffer = EMPTY;
  private pos = 0;
  private more: Buffer[] = [];
  private moreBytes = 0;
  private args: Buffer[] | null = null;
  private argsLeft = 0;
  private argsBytes = 0;
  private bulkLen = -1;
  private skip = 0;
  /** An oversized bulk is being skipped (it may end inside feed(), before next() sees it). */
  private skipping = false;
  /**
   * Set on the request just returned by next(): the declared length of the largest argument that
   * was over maxBulkBytes and skipped (its place in the args holds an empty buffer); 0 if none.
   */
  oversized = 0;
  private pendingOversized = 0;

  constructor(private readonly limits: RespLimits) {}

  /** Bytes received and not yet consumed (bounded: the caller stops feeding while paused). */
  get buffered(): number {
    return this.buf.length - this.pos + this.moreBytes;
  }

  feed(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.skip > 0) {
      // Discard an oversized bulk's body as it arrives, without buffering it.
      const n = Math.min(this.skip, chunk.length);
      this.skip -= n;
      if (n === chunk.length) return;
      chunk = chunk.subarray(n);
    }
    if (this.pos >= this.buf.length && this.more.length === 0) {
      this.buf = chunk;
      this.pos = 0;
    } else {
      this.more.push(chunk);
      this.moreBytes += chunk.length;
    }
  }

  /**
   * The next complete request as its arguments (the first is the command name), or null when more
   * bytes are needed. Returned buffers may share memory with fed chunks; they are not reused.
   * Throws RespProtocolError on a malformed request (the connection cannot be resynchronised).
   */
  next(): Buffer[] | null {
    for (;;) {
      if (this.skipping) {
        // The skip began at a header: discard what is buffered, chunk by chunk, without merging.
        const n = Math.min(this.skip, this.buf.length - this.pos);
        this.pos += n;
        this.skip -= n;
        while (this.skip > 0 && this.more.length > 0) {
          const c = this.more.shift()!;
          this.moreBytes -= c.length;
          if (c.length <= this.skip) {
            this.skip -= c.length;
          } else {
            this.buf = c.subarray(this.skip);
            this.pos = 0;
            this.skip = 0;
          }
        }
        if (this.skip > 0) return null; // the rest is discarded in feed() as it arrives
        this.skipping = false;
        if (this.finishArg(EMPTY)) return this.take();
        continue;
      }
      if (this.bulkLen >= 0) {
        const need = this.bulkLen + 2;
        if (this.buffered < need) return null;
        if (this.buf.length - this.pos < need) this.merge();
        const end = this.pos + this.bulkLen;
        if (this.buf[end] !== CR || this.buf[end + 1] !== LF) throw new RespProtocolError("expected '\\r\\n' after a bulk string");
        const arg = this.buf.subarray(this.pos, end);
        this.pos = end + 2;
        this.bulkLen = -1;
        if (this.finishArg(arg)) return this.take();
        continue;
      }
      const line = this.line();
      if (line === null) return null;
      if (this.args === null) {
        if (line.end === line.start) continue; // an empty line between requests, as Redis allows
        if (this.buf[line.start] === STAR) {
          const n = this.integer(line.start + 1, line.end, 'invalid multibulk length');
          if (n > this.limits.maxArgs) throw new RespProtocolError(`too many arguments in one request (${n}; the limit is ${this.limits.maxArgs})`);
          if (n <= 0) continue; // "*0" and "*-1" are no request, as in Redis
          this.args = [];
          this.argsLeft = n;
          this.argsBytes = 0;
          continue;
        }
        const words = inlineWords(this.buf.subarray(line.start, line.end));
        if (words.length === 0) continue;
        this.oversized = 0;
        return words;
      }
      if (this.buf[line.start] !== DOLLAR) {
        throw new RespProtocolError(`expected '$', got '${String.fromCharCode(this.buf[line.start] ?? 32)}'`);
      }
      const len = this.integer(line.start + 1, line.end, 'invalid bulk length');
      if (len < 0 || len > MAX_SKIPPABLE_BULK) throw new RespProtocolError('invalid bulk length');
      if (len > this.limits.maxBulkBytes) {
        this.pendingOversized = Math.max(this.pendingOversized, len);
        this.skip = len + 2;
        this.skipping = true;
        // The bytes already buffered are consumed by the skip branch above; later ones in feed().
        continue;
      }
      if (this.argsBytes + len > this.limits.maxRequestBytes) {
        throw new RespProtocolError(`request larger than ${this.limits.maxRequestBytes} bytes`);
      }
      this.argsBytes += len;
      this.bulkLen = len;
    }
  }

  /** Adds one argument; true when the request is complete. */
  private finishArg(arg: Buffer): boolean {
    this.args!.push(arg);
    return --this.argsLeft === 0;
  }

  private take(): Buffer[] {
    const args = this.args!;
    this.args = null;
    this.oversized = this.pendingOversized;
    this.pendingOversized = 0;
    return args;
  }

  /** Concatenate the unconsumed rest of buf with every chunk that arrived after it. */
  private merge(): void {
    if (this.more.length === 0) return;
    this.more.unshift(this.buf.subarray(this.pos));
    this.buf = Buffer.concat(this.more);
    this.pos = 0;
    this.more = [];
    this.moreBytes = 0;
  }

  /** The next line without its \r\n (or bare \n), consumed; null if incomplete. */
  private line(): { start: number; end: number } | null {
    let nl = this.buf.indexOf(LF, this.pos);
    if (nl === -1 && this.more.length > 0) {
      this.merge();
      nl = this.buf.indexOf(LF, this.pos);
    }
    if (nl === -1) {
      if (this.buf.length - this.pos > MAX_LINE_BYTES) throw new RespProtocolError(this.args === null ? 'too big inline request' : 'too big bulk count string');
      return null;
    }
    if (nl - this.pos > MAX_LINE_BYTES) throw new RespProtocolError(this.args === null ? 'too big inline request' : 'too big bulk count string');
    const start = this.pos;
    const end = nl > start && this.buf[nl - 1] === CR ? nl - 1 : nl;
    this.pos = nl + 1;
    return { start, end };
  }

  private integer(from: number, to: number, what: string): number {
    if (to <= from || to - from > 12) throw new RespProtocolError(what);
    let neg = false;
    let i = from;
    if (this.buf[i] === 45 /* - */) {
      neg = true;
      i++;
      if (i === to) throw new RespProtocolError(what);
    }
    let n = 0;
    for (; i < to; i++) {
      const c = this.buf[i] - 48;
      if (c < 0 || c > 9) throw new RespProtocolError(what);
      n = n * 10 + c;
    }
    return neg ? -n : n;
  }
}

/**
 * Splits an inline request on spaces and tabs; "double" and 'single' quotes group words, with
 * \" \\ \n \r \t and \xHH escapes in double quotes (as redis-cli and Redis's sdssplitargs).
 */
export function inlineWords(line: Buffer): Buffer[] {
  const words: Buffer[] = [];
  let i = 0;
  const n = line.length;
  while (i < n) {
    while (i < n && (line[i] === 32 || line[i] === 9)) i++;
    if (i >= n) break;
    const q = line[i];
    if (q === 34 /* " */ || q === 39 /* ' */) {
      const bytes: number[] = [];
      i++;
      let closed = false;
      while (i < n) {
        const c = line[i];
        if (c === q) {
          closed = true;
          i++;
          break;
        }
        if (c === 92 /* \ */ && i + 1 < n) {
          const e = line[i + 1];
          if (q === 34 && e === 120 /* x */ && i + 3 < n && isHex(line[i + 2]) && isHex(line[i + 3])) {
            bytes.push(parseInt(String.fromCharCode(line[i + 2], line[i + 3]), 16));
            i += 4;
            continue;
          }
          if (q === 34) {
            bytes.push(e === 110 ? 10 : e === 114 ? 13 : e === 116 ? 9 : e === 98 ? 8 : e === 97 ? 7 : e);
            i += 2;
            continue;
          }
          if (e === 39) {
            bytes.push(39);
            i += 2;
            continue;
          }
        }
        bytes.push(c);
        i++;
      }
      if (!closed) throw new RespProtocolError('unbalanced quotes in request');
      if (i < n && line[i] !== 32 && line[i] !== 9) throw new RespProtocolError('unbalanced quotes in request');
      words.push(Buffer.from(bytes));
    } else {
      const start = i;
      while (i < n && line[i] !== 32 && line[i] !== 9) i++;
      words.push(line.subarray(start, i));
    }
  }
  return words;
}

function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

// ---------------------------------------------------------------------------------------------
// Replies. Protocol 2 or 3 changes only nulls, maps, sets and doubles; the rest is shared.
// ---------------------------------------------------------------------------------------------

export type Proto = 2 | 3;

export const OK = '+OK\r\n';
export const PONG = '+PONG\r\n';
export const QUEUED = '+QUEUED\r\n';

export const simple = (s: string): string => `+${s}\r\n`;
/** An error reply; `text` starts with its code word (ERR, TRYAGAIN, ...) and has no line breaks. */
export const error = (text: string): string => `-${text.replace(/[\r\n]+/g, ' ')}\r\n`;
export const integer = (n: number): string => `:${n}\r\n`;
export const nil = (proto: Proto): string => (proto === 3 ? '_\r\n' : '$-1\r\n');
export const nilArray = (proto: Proto): string => (proto === 3 ? '_\r\n' : '*-1\r\n');

/** A bulk string from text (encoded as UTF-8). */
export function bulkText(s: string): string {
  return `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
}

/** A bulk string from bytes, as one buffer (header, bytes, CRLF). */
export function bulk(v: Uint8Array): Buffer {
  const header = `$${v.length}\r\n`;
  const out = Buffer.allocUnsafe(header.length + v.length + 2);
  out.write(header, 0, 'latin1');
  out.set(v, header.length);
  out[out.length - 2] = CR;
  out[out.length - 1] = LF;
  return out;
}

export const arrayHeader = (n: number): string => `*${n}\r\n`;
/** A map of n pairs: RESP3 `%n`, RESP2 a flat array of 2n. */
export const mapHeader = (n: number, proto: Proto): string => (proto === 3 ? `%${n}\r\n` : `*${n * 2}\r\n`);
export const setHeader = (n: number, proto: Proto): string => (proto === 3 ? `~${n}\r\n` : `*${n}\r\n`);

/** A value tree to encode: strings are bulk strings; use Simple for +status. */
export type RespValue = string | number | null | Uint8Array | RespValue[] | Simple | RespMap;
export class Simple {
  constructor(readonly text: string) {}
}
export class RespMap {
  constructor(readonly entries: Array<[string, RespValue]>) {}
}

/** Encodes a small value tree (connection-level replies: HELLO, COMMAND, CONFIG). Not for the hot path. */
export function encode(v: RespValue, proto: Proto): string | Buffer {
  const parts: Array<string | Buffer> = [];
  const walk = (x: RespValue): void => {
    if (x === null) parts.push(nil(proto));
    else if (typeof x === 'string') parts.push(bulkText(x));
    else if (typeof x === 'number') parts.push(integer(x));
    else if (x instanceof Simple) parts.push(simple(x.text));
    else if (x instanceof RespMap) {
      parts.push(mapHeader(x.entries.length, proto));
      for (const [k, val] of x.entries) {
        parts.push(bulkText(k));
        walk(val);
      }
    } else if (Array.isArray(x)) {
      parts.push(arrayHeader(x.length));
      for (const e of x) walk(e);
    } else parts.push(bulk(x));
  };
  walk(v);
  if (parts.every((p) => typeof p === 'string')) return parts.join('');
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
}
