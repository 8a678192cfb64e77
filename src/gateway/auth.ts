/**
 * Owns authentication on the gateway: the token set loaded from KVSQL_AUTH_FILE (reloaded on
 * SIGHUP), checking a presented token, counting and rate-limiting failures per source address, and
 * the rule that a gateway without auth listens on loopback only. Relies on protocol/access (token
 * format, file format, prefix rules) and node:crypto. Must not touch shards or sockets: the doors
 * (http-api, ws-api, the Redis door) ask it and write their own replies.
 *
 *   token ─ length ─ id ─> tokens.get(id) ─ confirmed(id)? ─ yes: timingSafeEqual(token, confirmed) ─> entry | 401
 *                                                            └ no: shape check (charset; no hashing of junk),
 *                                                                  timingSafeEqual(SHA-256(token), stored hash) ─> entry
 *                                                                  (and remember the token as confirmed) | 401
 *
 * The confirmed map holds, in memory only, tokens that already matched their hash since the last
 * load: the next request compares bytes in constant time instead of hashing (SHA-256 was most of
 * the check's cost). It is rebuilt empty on every reload, so a revoked token is gone with its
 * entry. Memory holds what requests carry anyway; the file, logs and metrics still never do.
 *
 * Why SHA-256 and not a password hash: a token is 32 random bytes (256 bits), so the hash cannot
 * be reversed by guessing; bcrypt/scrypt/argon2 slow down guessing of low-entropy passwords, and
 * here would cost milliseconds on every HTTP request. The file, the logs and the metrics hold only
 * the hash and the token's public id and name.
 */
import { hash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { FailureLimiter, bearerToken, parseTokenFile, TOKEN_CHARS, TOKEN_TAG, tokenId, type TokenEntry } from '../protocol/access';
import { KvError } from '../protocol/errors';
import { ConfigError, type Config } from '../config/config';

export type { TokenEntry };

interface AuthLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

type FailureReason = 'missing' | 'malformed' | 'unknown' | 'rate_limited';

/** Where the id sits in a token of TOKEN_CHARS (see protocol/access). */
const ID_START = TOKEN_TAG.length;
const ID_END = ID_START + 8;
/** Compared against when the id is unknown, so a miss costs what a hit costs. */
const DUMMY_HASH = Buffer.alloc(32);

export class Auth {
  private tokens = new Map<string, TokenEntry>();
  /** id -> the token's bytes, once it matched its hash (see the module comment). */
  private confirmed = new Map<string, Buffer>();
  readonly limiter: FailureLimiter;
  private readonly failures: Record<FailureReason, number> = { missing: 0, malformed: 0, unknown: 0, rate_limited: 0 };
  private readonly forbidden = new Map<string, number>();
  private reloadsOk = 0;
  private reloadsFailed = 0;
  /** Grows on every successful reload: a door holding an entry re-resolves it when this moved. */
  generation = 0;

  private constructor(
    readonly file: string,
    failuresPerMinute: number,
    private readonly log: AuthLogger,
  ) {
    this.limiter = new FailureLimiter(failuresPerMinute);
  }

  /** Null when auth is off. Throws ConfigError when the file cannot be read or parsed. */
  static fromConfig(config: Pick<Config, 'authFile' | 'authFailuresPerMinute'>, log: AuthLogger): Auth | null {
    if (config.authFile === '') return null;
    const auth = new Auth(config.authFile, config.authFailuresPerMinute, log);
    try {
      auth.tokens = auth.read();
    } catch (err) {
      throw new ConfigError(`KVSQL_AUTH_FILE: ${(err as Error).message}`);
    }
    log.info({ file: config.authFile, tokens: auth.tokens.size }, 'auth on: tokens loaded');
    return auth;
  }

  private read(): Map<string, TokenEntry> {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      throw new Error(`cannot read ${this.file}: ${(err as Error).message}`);
    }
    const list = parseTokenFile(text);
    return new Map(list.map((t) => [t.id, t]));
  }

  /**
   * Re-reads the file (SIGHUP). On any error the old set stays in force: a typo must neither lock
   * every client out nor let anyone in. Returns the error message, or null on success.
   */
  reload(): string | null {
    try {
      this.tokens = this.read();
      this.confirmed = new Map();
      this.generation++;
      this.reloadsOk++;
      this.log.info({ file: this.file, tokens: this.tokens.size }, 'auth: tokens reloaded');
      return null;
    } catch (err) {
      this.reloadsFailed++;
      const message = (err as Error).message;
      this.log.error({ file: this.file, err: message }, 'auth: reload failed; the previous tokens stay in force');
      return message;
    }
  }

  get size(): number {
    return this.tokens.size;
  }

  /** The entry that now stands for `old` (same id and hash), or null when it was revoked. */
  current(old: TokenEntry): TokenEntry | null {
    const now = this.tokens.get(old.id);
    return now !== undefined && timingSafeEqual(now.sha256, old.sha256) ? now : null;
  }

  /**
   * Checks a presented token ('' = none). `address` is called only when needed (a failure, or
   * while some address is blocked). Throws KV_ERR_UNAUTHORIZED or KV_ERR_TOO_MANY_AUTH_FAILURES.
   */
  authenticate(token: string, address: () => string): TokenEntry {
    if (this.limiter.anyBlocked) {
      const wait = this.limiter.blockedFor(address(), Date.now());
      if (wait > 0) return this.refuseBlocked(wait);
    }
    let reason: FailureReason;
    if (token.length === 0) {
      reason = 'missing';
    } else if (token.length !== TOKEN_CHARS) {
      reason = 'malformed';
    } else {
      const id = token.slice(ID_START, ID_END);
      const known = this.confirmed.get(id);
      if (known !== undefined) {
        // Same length by construction (TOKEN_CHARS); latin1 keeps every char one byte.
        if (timingSafeEqual(Buffer.from(token, 'latin1'), known)) return this.tokens.get(id)!;
        reason = 'unknown';
      } else if (tokenId(token) === null) {
        reason = 'malformed';
      } else {
        const entry = this.tokens.get(id);
        const digest = hash('sha256', token, 'buffer');
        const ok = timingSafeEqual(digest, entry === undefined ? DUMMY_HASH : entry.sha256);
        if (ok && entry !== undefined) {
          this.confirmed.set(id, Buffer.from(token, 'latin1'));
          return entry;
        }
        reason = 'unknown';
      }
    }
    return this.refuse(reason, address);
  }

  /**
   * An `Authorization` header value (Bearer), or `fallback` when there is no header (the WebSocket
   * subprotocol token). Throws like authenticate().
   */
  authenticateBearer(header: string, address: () => string, fallback = ''): TokenEntry {
    const token = bearerToken(header);
    if (token === null) return this.refuse('malformed', address);
    return this.authenticate(token === '' ? fallback : token, address);
  }

  /** HTTP: the Authorization header's bearer token. Call inside the handler (req is live). */
  authenticateHttp(res: HttpResponse, req: HttpRequest): TokenEntry {
    return this.authenticateBearer(req.getHeader('authorization'), () => remoteAddress(res));
  }

  /** Counts a 403 (a valid token without the right), by door. */
  forbid(door: string): void {
    this.forbidden.set(door, (this.forbidden.get(door) ?? 0) + 1);
  }

  private refuse(reason: FailureReason, address: () => string): never {
    if (this.limiter.anyBlocked) {
      // authenticate() checked the address already; a malformed header comes here directly.
      const wait = this.limiter.blockedFor(address(), Date.now());
      if (wait > 0) return this.refuseBlocked(wait);
    }
    this.failures[reason]++;
    const addr = address();
    const wait = this.limiter.fail(addr, Date.now());
    if (wait > 0) {
      this.log.warn({ address: addr, blockedMs: wait }, 'auth: too many failed token checks; address blocked');
      return this.refuseBlocked(wait);
    }
    // The token itself is never logged: a mistyped secret is still (almost) a secret.
    throw new KvError(
      'KV_ERR_UNAUTHORIZED',
      reason === 'missing' ? 'a token is required: send Authorization: Bearer <token>' : 'the token is not valid (malformed, unknown or revoked)',
    );
  }

  private refuseBlocked(waitMs: number): never {
    this.failures.rate_limited++;
    throw new KvError('KV_ERR_TOO_MANY_AUTH_FAILURES', `too many failed token checks from this address; retry in ${Math.ceil(waitMs / 1000)} s`);
  }

  /** Prometheus lines (no secrets, no addresses). */
  renderMetrics(): string {
    const out: string[] = [];
    out.push('# HELP kvsql_auth_failures_total Requests refused for their token: missing, malformed, unknown (or revoked), rate_limited.');
    out.push('# TYPE kvsql_auth_failures_total counter');
    for (const [reason, n] of Object.entries(this.failures)) out.push(`kvsql_auth_failures_total{reason="${reason}"} ${n}`);
    out.push('# HELP kvsql_auth_forbidden_total Requests refused 403: a valid token without the right for that key or route.');
    out.push('# TYPE kvsql_auth_forbidden_total counter');
    for (const [door, n] of this.forbidden) out.push(`kvsql_auth_forbidden_total{door="${door}"} ${n}`);
    out.push('# HELP kvsql_auth_tokens Tokens loaded.');
    out.push('# TYPE kvsql_auth_tokens gauge');
    out.push(`kvsql_auth_tokens ${this.tokens.size}`);
    out.push('# HELP kvsql_auth_reloads_total Token file reloads (SIGHUP), by result.');
    out.push('# TYPE kvsql_auth_reloads_total counter');
    out.push(`kvsql_auth_reloads_total{result="ok"} ${this.reloadsOk}`);
    out.push(`kvsql_auth_reloads_total{result="failed"} ${this.reloadsFailed}`);
    out.push('# HELP kvsql_auth_blocked_addresses Source addresses tracked by the failure rate limit.');
    out.push('# TYPE kvsql_auth_blocked_addresses gauge');
    out.push(`kvsql_auth_blocked_addresses ${this.limiter.size}`);
    return out.join('\n') + '\n';
  }
}

const decoder = new TextDecoder();
/** The peer's address as text (uWS gives bytes of text). Only on the failure path. */
export function remoteAddress(res: { getRemoteAddressAsText(): ArrayBuffer }): string {
  return decoder.decode(res.getRemoteAddressAsText());
}

/** True for addresses only this host can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h);
}

/**
 * Secure by default: without auth a door listens on loopback only, unless KVSQL_ALLOW_INSECURE
 * says the operator accepts the risk. Throws ConfigError naming the risk.
 */
export function checkExposure(config: Pick<Config, 'authFile' | 'allowInsecure'>, host: string, door: string): void {
  if (config.authFile !== '' || config.allowInsecure || isLoopback(host)) return;
  throw new ConfigError(
    `refusing to listen on ${host} (${door}) with auth off: anyone who can reach that address could read, overwrite and delete every key. ` +
      'Set KVSQL_AUTH_FILE (see README, "Auth and TLS"), or listen on 127.0.0.1, or set KVSQL_ALLOW_INSECURE=true to accept the risk.',
  );
}
