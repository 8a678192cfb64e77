/**
 * Owns the rules between a put's options, the same on every door that takes them (HTTP PUT and
 * its query and headers, the WebSocket's put options and so the client, POST /v1/txn's put ops):
 * a ttl and keep-the-TTL contradict, and a put has at most one condition (only if absent, only if
 * it exists, only if it has a version). Relies on ops (flags) and errors. Pure: no I/O. Must not
 * know a wire format: each door names the options in its own words (PutOptionNames).
 *
 * Redis's SET grammar (NX|XX, KEEPTTL with EX...) is redis-options.ts: Redis's own syntax errors.
 */
import { KvError } from './errors';
import { FLAG_IF_ABSENT, FLAG_IF_EXISTS, FLAG_IF_VERSION, FLAG_KEEP_TTL } from './ops';

/** How a door spells each option in its refusals. */
export interface PutOptionNames {
  readonly ttl: string;
  readonly keepTtl: string;
  readonly ifAbsent: string;
  readonly ifExists: string;
  readonly ifVersion: string;
}

/** The WebSocket's (and the client's, and POST /v1/txn's) names. */
export const WS_PUT_NAMES: PutOptionNames = Object.freeze({
  ttl: 'ttl',
  keepTtl: 'keepTtl: true',
  ifAbsent: 'ifAbsent',
  ifExists: 'ifExists',
  ifVersion: 'ifVersion',
});

/** HTTP's: query parameters and conditional headers. */
export const HTTP_PUT_NAMES: PutOptionNames = Object.freeze({
  ttl: 'ttl',
  keepTtl: 'keepttl=true',
  ifAbsent: 'If-None-Match',
  ifExists: 'If-Match: *',
  ifVersion: 'If-Match',
});

/**
 * Throws KV_ERR_BAD_REQUEST when a put's TTL (ms, 0: none) and flags ask for contradicting things;
 * `at` prefixes the message (a transaction's "success[0]: "). Allocates nothing when they agree.
 */
export function checkPutRules(ttlMs: number, flags: number, names: PutOptionNames, at = ''): void {
  if (ttlMs > 0 && (flags & FLAG_KEEP_TTL) !== 0) throw bad(at, `${names.ttl} and ${names.keepTtl} contradict each other; send one`);
  const absent = (flags & FLAG_IF_ABSENT) !== 0;
  const exists = (flags & FLAG_IF_EXISTS) !== 0;
  const version = (flags & FLAG_IF_VERSION) !== 0;
  if (absent && version) throw bad(at, `send ${names.ifAbsent} or ${names.ifVersion}, not both`);
  if (absent && exists) throw bad(at, `send ${names.ifAbsent} or ${names.ifExists}, not both`);
  if (exists && version) throw bad(at, `send ${names.ifExists} or ${names.ifVersion}, not both`);
}

const bad = (at: string, message: string): KvError => new KvError('KV_ERR_BAD_REQUEST', at + message);
