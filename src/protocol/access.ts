/**
 * Owns the rules of access tokens: the token's text form, the token file's line format, and which
 * keys a token may read or write. Relies on ops (which op needs which right). Pure: no I/O, no
 * clock, no hashing (the gateway's auth module hashes and reads files); the client never imports it.
 *
 * A token, as the client sends it (`Authorization: Bearer <token>`):
 *
 *   kvsql_ 1f2e3d4c _ <43 chars: 32 random bytes, base64url>
 *   ^tag   ^id (8 hex, public: names the file entry)  ^secret
 *
 * The token file holds one JSON object per line (blank lines and `#` comments allowed):
 *
 *   {"id":"1f2e3d4c","name":"svc-a","sha256":"<hex of SHA-256(whole token)>",
 *    "grants":[{"rights":["read","write"],"prefixes":["a/",{"hex":"00ff"}]}]}
 *
 * A grant gives its rights on every key that starts with one of its prefixes (bytes; a string is
 * its UTF-8 bytes, {"hex": ...} any bytes, "" every key). `admin` is not about keys: it opens the
 * operational routes (/metrics, /v1/slots, /readyz details). A token may hold several grants.
 *
 * What must stay true: a check compares key bytes (already percent-decoded by the door) with
 * prefix bytes; nothing here decodes or normalizes a key, so no encoding trick reaches past it.
 */
import { OP_GET, OP_TTL, readsToo, type OpCode } from './ops';

export type Right = 'read' | 'write' | 'admin';
const RIGHTS: ReadonlySet<string> = new Set<Right>(['read', 'write', 'admin']);

/** One token as the gateway holds it after loading the file. */
export interface TokenEntry {
  readonly id: string;
  readonly name: string;
  /** SHA-256 of the whole token text (32 bytes). */
  readonly sha256: Uint8Array;
  readonly admin: boolean;
  /** Key prefixes this token may read (GET, TTL). */
  readonly read: readonly Uint8Array[];
  /** Key prefixes this token may write (PUT, DEL, EXPIRE, PERSIST). */
  readonly write: readonly Uint8Array[];
}

export const TOKEN_TAG = 'kvsql_';
const ID_HEX = 8;
const SECRET_CHARS = 43; // base64url of 32 bytes, no padding
/** The whole token's length: anything else is malformed without further work. */
export const TOKEN_CHARS = TOKEN_TAG.length + ID_HEX + 1 + SECRET_CHARS;
const TOKEN_RE = /^kvsql_([0-9a-f]{8})_[A-Za-z0-9_-]{43}$/;
const ID_RE = /^[0-9a-f]{8}$/;
const NAME_RE = /^[A-Za-z0-9._:@/-]{1,64}$/;

/** Builds a token from 4 id bytes and 32 secret bytes (the caller draws them from a CSPRNG). */
export function formatToken(idBytes: Uint8Array, secretBytes: Uint8Array): string {
  if (idBytes.length !== 4 || secretBytes.length !== 32) throw new Error('formatToken needs 4 id bytes and 32 secret bytes');
  return `${TOKEN_TAG}${Buffer.from(idBytes).toString('hex')}_${Buffer.from(secretBytes).toString('base64url')}`;
}

/** The token's id when `token` has the exact token shape, else null. */
export function tokenId(token: string): string | null {
  if (token.length !== TOKEN_CHARS) return null;
  const m = TOKEN_RE.exec(token);
  return m === null ? null : m[1];
}

/**
 * The token in an `Authorization` header value: `Bearer <token>` (scheme case-insensitive, one
 * space or more). '' when the header is absent; null when it is present but not a bearer token.
 */
export function bearerToken(header: string): string | null {
  if (header.length === 0) return '';
  if (header.length > 7 + 16 + TOKEN_CHARS) return null; // bounded work on a huge header
  if (header.length < 7) return null;
  // "bearer " case-insensitively, without allocating (this runs on every HTTP request).
  for (let i = 0; i < 6; i++) if ((header.charCodeAt(i) | 0x20) !== BEARER.charCodeAt(i)) return null;
  if (header.charCodeAt(6) !== 0x20) return null;
  return header.slice(7).trim();
}
const BEARER = 'bearer ';

/** WebSocket subprotocol carrying a token, for browsers (which cannot set Authorization). */
export const WS_BEARER_PROTOCOL = 'kvsql.bearer.';
/** The subprotocol a client offers beside the bearer one; the server echoes it. */
export const WS_PROTOCOL = 'kvsql';

/**
 * Splits a Sec-WebSocket-Protocol header: the token (from `kvsql.bearer.<token>`, or '' if none)
 * and the protocol to echo (never the one carrying the token).
 */
export function wsProtocols(header: string): { token: string; echo: string } {
  if (header.length === 0) return { token: '', echo: '' };
  let token = '';
  let echo = '';
  for (const raw of header.split(',')) {
    const p = raw.trim();
    if (p.startsWith(WS_BEARER_PROTOCOL)) token = p.slice(WS_BEARER_PROTOCOL.length);
    else if (p === WS_PROTOCOL) echo = p;
  }
  if (echo === '' && token === '') echo = header; // no token in it: answer as before
  return { token, echo };
}

/** The right an op needs on its key: writes that answer with the value (incr, getdel, SET ... GET) need both. */
export function rightFor(op: OpCode, flags = 0): 'read' | 'write' | 'read and write' {
  return op === OP_GET || op === OP_TTL ? 'read' : readsToo(op, flags) ? 'read and write' : 'write';
}

/** True when `key` starts with one of `prefixes` (byte comparison; an empty prefix matches all). */
export function underPrefix(prefixes: readonly Uint8Array[], key: Uint8Array): boolean {
  for (let i = 0; i < prefixes.length; i++) {
    const p = prefixes[i];
    if (p.length > key.length) continue;
    let j = 0;
    while (j < p.length && p[j] === key[j]) j++;
    if (j === p.length) return true;
  }
  return false;
}

/**
 * True when `entry` may list the keys with `prefix`: only when it may read every one of them,
 * i.e. one of its read prefixes is a prefix of `prefix` (a listing is refused, never silently
 * narrowed to the part the token may read).
 */
export function mayList(entry: TokenEntry, prefix: Uint8Array): boolean {
  return underPrefix(entry.read, prefix);
}

/** The refusal of a listing, the same words on every door. */
export function listRefusal(entry: TokenEntry, prefix: Uint8Array): string {
  return `token "${entry.name}" may not list keys with prefix of ${prefix.length} bytes: listing needs a read grant on that prefix or a shorter one`;
}

export function mayAccess(entry: TokenEntry, op: OpCode, key: Uint8Array, flags = 0): boolean {
  const right = rightFor(op, flags);
  if (right === 'read') return underPrefix(entry.read, key);
  return underPrefix(entry.write, key) && (right === 'write' || underPrefix(entry.read, key));
}

export class TokenFileError extends Error {
  override name = 'TokenFileError';
}

/** A grant as written in the file. */
export interface GrantJson {
  rights: Right[];
  prefixes: Array<string | { hex: string }>;
}

/** A token file line as written in the file. */
export interface TokenLineJson {
  id: string;
  name: string;
  sha256: string;
  grants: GrantJson[];
  created?: string;
}

function prefixBytes(p: unknown, where: string): Uint8Array {
  if (typeof p === 'string') return Buffer.from(p, 'utf8');
  if (p !== null && typeof p === 'object' && typeof (p as { hex?: unknown }).hex === 'string') {
    const hex = (p as { hex: string }).hex;
    if (!/^(?:[0-9a-fA-F]{2})*$/.test(hex)) throw new TokenFileError(`${where}: prefix hex "${hex.slice(0, 40)}" is not an even number of hex digits`);
    return Buffer.from(hex, 'hex');
  }
  throw new TokenFileError(`${where}: a prefix is a string or {"hex": "..."}`);
}

/**
 * Parses a whole token file. Throws TokenFileError naming the first bad line (the caller then
 * keeps the tokens it had: a typo must not lock everyone out, nor let anyone in).
 */
export function parseTokenFile(text: string): TokenEntry[] {
  const out: TokenEntry[] = [];
  const ids = new Set<string>();
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n].trim();
    if (line.length === 0 || line.startsWith('#')) continue;
    const where = `line ${n + 1}`;
    let j: TokenLineJson;
    try {
      j = JSON.parse(line) as TokenLineJson;
    } catch {
      throw new TokenFileError(`${where}: not a JSON object`);
    }
    if (j === null || typeof j !== 'object') throw new TokenFileError(`${where}: not a JSON object`);
    if (typeof j.id !== 'string' || !ID_RE.test(j.id)) throw new TokenFileError(`${where}: "id" must be 8 lowercase hex digits`);
    if (ids.has(j.id)) throw new TokenFileError(`${where}: id ${j.id} appears twice`);
    if (typeof j.name !== 'string' || !NAME_RE.test(j.name)) throw new TokenFileError(`${where}: "name" must match ${NAME_RE}`);
    if (typeof j.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(j.sha256)) throw new TokenFileError(`${where}: "sha256" must be 64 lowercase hex digits`);
    if (!Array.isArray(j.grants) || j.grants.length === 0) throw new TokenFileError(`${where}: "grants" must be a non-empty list`);
    const read: Uint8Array[] = [];
    const write: Uint8Array[] = [];
    let admin = false;
    for (const g of j.grants) {
      if (g === null || typeof g !== 'object' || !Array.isArray(g.rights) || g.rights.length === 0) {
        throw new TokenFileError(`${where}: each grant needs "rights": a non-empty list of read, write, admin`);
      }
      for (const r of g.rights) if (!RIGHTS.has(r)) throw new TokenFileError(`${where}: unknown right "${String(r).slice(0, 20)}" (read, write, admin)`);
      const prefixes = g.prefixes ?? [];
      if (!Array.isArray(prefixes)) throw new TokenFileError(`${where}: "prefixes" must be a list`);
      if (prefixes.length === 0 && (g.rights.includes('read') || g.rights.includes('write'))) {
        throw new TokenFileError(`${where}: read/write need at least one prefix ("" means every key)`);
      }
      const bytes = prefixes.map((p) => prefixBytes(p, where));
      if (g.rights.includes('read')) read.push(...bytes);
      if (g.rights.includes('write')) write.push(...bytes);
      if (g.rights.includes('admin')) admin = true;
    }
    ids.add(j.id);
    out.push({ id: j.id, name: j.name, sha256: Buffer.from(j.sha256, 'hex'), admin, read, write });
  }
  return out;
}

/** The file line for a new token (the caller appends it; the token itself is never written). */
export function tokenLine(id: string, name: string, sha256Hex: string, grants: GrantJson[], created: string): string {
  if (!ID_RE.test(id)) throw new TokenFileError('id must be 8 lowercase hex digits');
  if (!NAME_RE.test(name)) throw new TokenFileError(`name must match ${NAME_RE}`);
  const line: TokenLineJson = { id, name, sha256: sha256Hex, grants, created };
  parseTokenFile(JSON.stringify(line)); // same rules as loading
  return JSON.stringify(line);
}

/**
 * Counts failed token checks per source address and blocks an address that fails too often:
 * a token bucket per address, `perMinute` failures of burst, refilled at perMinute/60 per second.
 * Time is passed in (ms). Memory is bounded: at most `maxAddresses` buckets; past it the oldest
 * bucket goes (an attacker with many addresses can only make its own limit forgetful).
 *
 *   buckets: Map addr -> {tokens, at}   (insertion order = age; full buckets are dropped)
 *   blocked: Map addr -> until          (usually empty: the success path checks its size only)
 */
export class FailureLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly blocked = new Map<string, number>();
  private readonly ratePerMs: number;
  constructor(
    private readonly perMinute: number,
    private readonly maxAddresses = 10_000,
  ) {
    this.ratePerMs = perMinute / 60_000;
  }

  /** True when some address is blocked: only then need a successful request look its address up. */
  get anyBlocked(): boolean {
    return this.blocked.size > 0;
  }

  /** Milliseconds `addr` stays blocked (0: not blocked). */
  blockedFor(addr: string, now: number): number {
    const until = this.blocked.get(addr);
    if (until === undefined) return 0;
    if (until <= now) {
      this.blocked.delete(addr);
      return 0;
    }
    return until - now;
  }

  /** Records one failure; returns the ms `addr` is now blocked for (0: not blocked). */
  fail(addr: string, now: number): number {
    let b = this.buckets.get(addr);
    if (b === undefined) {
      if (this.buckets.size >= this.maxAddresses) this.evict(now);
      b = { tokens: this.perMinute, at: now };
      this.buckets.set(addr, b);
    } else {
      b.tokens = Math.min(this.perMinute, b.tokens + (now - b.at) * this.ratePerMs);
      b.at = now;
    }
    b.tokens -= 1;
    if (b.tokens >= 0) return 0;
    const wait = Math.ceil(-b.tokens / this.ratePerMs);
    if (this.blocked.size >= this.maxAddresses && !this.blocked.has(addr)) this.blocked.delete(this.blocked.keys().next().value!);
    this.blocked.set(addr, now + wait);
    return wait;
  }

  /** Addresses tracked (for tests and metrics). */
  get size(): number {
    return this.buckets.size;
  }

  private evict(now: number): void {
    // Drop buckets that have refilled, oldest first, looking at a bounded number; else the oldest.
    let looked = 0;
    for (const [addr, b] of this.buckets) {
      if (looked++ >= 64) break;
      if (b.tokens + (now - b.at) * this.ratePerMs >= this.perMinute) this.buckets.delete(addr);
    }
    if (this.buckets.size >= this.maxAddresses) this.buckets.delete(this.buckets.keys().next().value!);
  }
}
