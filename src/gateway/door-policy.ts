/**
 * Owns the policy every door applies the same way, so each door (http-api, ws-api, http-txn's
 * route, watch-sse, the admin routes, the Redis door's auth-guard) only translates its wire format:
 *
 *   authorize   may this token do this (op on a key, a transaction, a listing, a watch, an admin
 *               route)? A refusal is a KV_ERR_FORBIDDEN KvError with the same words on every door,
 *               counted once in kvsql_auth_forbidden_total{door}.
 *   present     what a client may see of an error is the registry's call (protocol/errors
 *               clientMessage: a 500's message is hidden, KV_ERR_OUTCOME_UNKNOWN's is not), applied
 *               by each door's one error writer (http-errors writeError, protocol/ws-replies,
 *               resp/errors errorText, http-txn's results), never by a route.
 *   put options the rules between a put's options (protocol/put-rules checkPutRules), shared with
 *               the WebSocket decoder and the client, which live in protocol.
 *
 * Relies on protocol/access (grants), protocol/errors (the registry) and Auth (the 403 count).
 * Must not touch sockets, wire formats or the pool. The success path allocates nothing: a
 * refusal is built only when there is one.
 */
import { listRefusal, mayAccess, mayList, rightFor, type TokenEntry } from '../protocol/access';
import { KvError } from '../protocol/errors';
import { OP_GET, type OpCode } from '../protocol/ops';
import type { TxnProgram } from '../protocol/txn';
import type { Auth } from './auth';

/** The label of kvsql_auth_forbidden_total: where a refusal was made. */
export type Door = 'http' | 'ws' | 'redis' | 'admin';

/** Counts and builds a refusal (the only place a KV_ERR_FORBIDDEN for a token is made). */
function forbidden(auth: Auth | null, door: Door, message: string): KvError {
  auth?.forbid(door);
  return new KvError('KV_ERR_FORBIDDEN', message);
}

/** The refusal of `op` (with its flags) on `key` for `who` (null: auth off), or null when allowed. */
export function opRefusal(auth: Auth | null, door: Door, who: TokenEntry | null, op: OpCode, key: Uint8Array, flags = 0): KvError | null {
  if (who === null || mayAccess(who, op, key, flags)) return null;
  return forbidden(auth, door, `token "${who.name}" has no ${rightFor(op, flags)} right on this key`);
}

/** Throws opRefusal's refusal, if any. */
export function authorizeOp(auth: Auth | null, door: Door, who: TokenEntry | null, op: OpCode, key: Uint8Array, flags = 0): void {
  const refused = opRefusal(auth, door, who, op, key, flags);
  if (refused !== null) throw refused;
}

/**
 * A transaction's refusal, or null: every key authorized for what its op does (a compare needs the
 * read right), the first refused one named by its right; the transaction is refused whole.
 */
export function txnRefusal(auth: Auth | null, door: Door, who: TokenEntry | null, program: TxnProgram): KvError | null {
  if (who === null) return null;
  let op: OpCode | null = null;
  let flags = 0;
  for (const [k] of program[0]) {
    if (!mayAccess(who, OP_GET, k)) {
      op = OP_GET;
      break;
    }
  }
  for (let l = 1; l <= 2 && op === null; l++) {
    for (const o of program[l as 1 | 2]) {
      if (!mayAccess(who, o[0], o[1], o[4])) {
        op = o[0];
        flags = o[4];
        break;
      }
    }
  }
  if (op === null) return null;
  return forbidden(auth, door, `token "${who.name}" has no ${rightFor(op, flags)} right on a key of this transaction`);
}

/** A listing's refusal (a page of keys, SCAN), or null: refused, never narrowed (access.ts mayList). */
export function listingRefusal(auth: Auth | null, door: Door, who: TokenEntry | null, prefix: Uint8Array): KvError | null {
  if (who === null || mayList(who, prefix)) return null;
  return forbidden(auth, door, listRefusal(who, prefix));
}

/** A watch's refusal (the change feed under a prefix), or null: the same grant a listing needs. */
export function watchRefusal(auth: Auth | null, door: Door, who: TokenEntry | null, prefix: Uint8Array): KvError | null {
  if (who === null || mayList(who, prefix)) return null;
  return forbidden(
    auth,
    door,
    `token "${who.name}" may not watch keys with prefix of ${prefix.length} bytes: watching needs a read grant on that prefix or a shorter one`,
  );
}

/** An admin route's refusal, or null. */
export function adminRefusal(auth: Auth | null, door: Door, who: TokenEntry | null): KvError | null {
  if (who === null || who.admin) return null;
  return forbidden(auth, door, `token "${who.name}" has no admin right`);
}
