/**
 * Owns the translation of MySQL driver errors, and of the conditions the store and the actor
 * detect themselves (StoreError), into kvsql's terms, in one place. Relies on protocol/errors.
 * Touches no connection.
 *
 *   retry       the transaction was rolled back and can be decided again from fresh locks
 *               (ER_LOCK_DEADLOCK 1213, ER_LOCK_WAIT_TIMEOUT 1205, and ER_DUP_ENTRY 1062: another
 *               gateway created a key this batch saw absent; KV_VERSIONS_MOVED, raised by the
 *               actor when a create's versions had to be taken again, see write-path.ts). On Galera a
 *               certification conflict at COMMIT is ER_LOCK_DEADLOCK too: the transaction was
 *               not applied.
 *   connection  the connection or server is gone; the shard may be down
 *   fatal       anything else: a bug or a misconfigured server, reported as 500
 *
 * Driver errors are classified by `err.code` (and mysql2's `fatal` flag); a StoreError by its
 * type, then its code. Whether the connection that raised an error may go back to the pool is
 * isConnectionFatal's answer.
 */
import { KvError } from '../protocol/errors';

export type ErrorClass = 'retry' | 'connection' | 'fatal';

/** The conditions kvsql detects on its side of the driver, and their class. */
const STORE_ERRORS = {
  /** The actor gave up on the batch at the op deadline (mysql-store: nothing more is sent). */
  KV_ABANDONED: 'connection',
  /** No pooled connection in time (mysql-store/connections.ts): the server hangs or cannot be reached. */
  KV_ACQUIRE_TIMEOUT: 'connection',
  /** No node of a Galera shard group is usable (node-selector.ts). */
  KV_NO_WRITER_NODE: 'connection',
  /**
   * The health probe found `@@read_only = 1` (a demoted primary, or a replica): it answers but
   * must not take writes, so it counts as down, like the ER_OPTION_PREVENTS_STATEMENT its
   * writes get.
   */
  KV_SHARD_READ_ONLY: 'connection',
  /** The database was created as another shard (or with other slots) than this gateway says. */
  KV_SHARD_IDENTITY_MISMATCH: 'fatal',
  /** kv_shard.hash_rule says `kvsql hashtags enable` is moving rows (or was interrupted). */
  KV_HASH_RULE_SWITCHING: 'fatal',
  /** A create's versions had to be taken again and a decision depended on them (write-path.ts). */
  KV_VERSIONS_MOVED: 'retry',
  /** A key-range scan's rows and the served set kept being read at different epochs (a move's flips). */
  KV_SERVED_SET_MOVING: 'retry',
} as const satisfies Record<string, ErrorClass>;

export type StoreErrorCode = keyof typeof STORE_ERRORS;

/** A condition kvsql detects itself (not an error of the driver or the server). */
export class StoreError extends Error {
  readonly errorClass: ErrorClass;
  constructor(
    readonly code: StoreErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'StoreError';
    this.errorClass = STORE_ERRORS[code];
  }
}

const RETRY_CODES = new Set(['ER_LOCK_DEADLOCK', 'ER_LOCK_WAIT_TIMEOUT', 'ER_DUP_ENTRY']);
const CONNECTION_CODES = new Set([
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'ER_SERVER_SHUTDOWN',
  'ER_CON_COUNT_ERROR',
  'ER_TOO_MANY_USER_CONNECTIONS',
  'ER_CONNECTION_KILLED',
  'ER_QUERY_INTERRUPTED',
  'ER_CLIENT_INTERACTION_TIMEOUT',
  'ER_OPTION_PREVENTS_STATEMENT', // read-only primary during a failover
  'ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION',
  // Refusals during the handshake: mysql2 passes the server's error packet on without its
  // `fatal` flag (1129 "Host ... is blocked because of many connection errors", 1130 "Host ...
  // is not allowed to connect", 1184 "Aborted connection").
  'ER_HOST_IS_BLOCKED',
  'ER_HOST_NOT_PRIVILEGED',
  'ER_NEW_ABORTING_CONNECTION',
  // Galera: a node outside the Primary component (or still joining) refuses every statement
  // with 1047 "WSREP has not yet prepared node for application use"; its shard group switches.
  'ER_UNKNOWN_COM_ERROR',
]);

export function classify(err: unknown): ErrorClass {
  if (err instanceof StoreError) return err.errorClass;
  const e = err as { code?: string; fatal?: boolean } | null;
  const code = e?.code ?? '';
  if (RETRY_CODES.has(code)) return 'retry';
  if (CONNECTION_CODES.has(code) || e?.fatal === true) return 'connection';
  // The one driver error with neither a code nor the `fatal` flag that means "gone": mysql2's
  // pool, ended (a Galera group's pool dropped when its node stopped being the writer, or the
  // store closing), fails every connection request waiting on it with 'Pool is closed.'.
  if (code === '' && /^Pool is closed/.test(String((err as Error | null)?.message))) return 'connection';
  return 'fatal';
}

/**
 * True when the connection that raised `err` must be destroyed, never returned to the pool: it
 * is lost or broken (mysql2's `fatal`), its statement timed out (mysql2 keeps a timed-out
 * statement as the connection's active command until the server answers), or the actor
 * abandoned its batch (a statement may still be running in a hung server).
 */
export function isConnectionFatal(err: unknown): boolean {
  if (err instanceof StoreError) return err.code === 'KV_ABANDONED';
  const e = err as { fatal?: boolean; code?: string } | null;
  return e?.fatal === true || e?.code === 'PROTOCOL_CONNECTION_LOST' || e?.code === 'PROTOCOL_SEQUENCE_TIMEOUT';
}

export function toKvError(err: unknown, shard: number): KvError {
  switch (classify(err)) {
    case 'retry':
      return new KvError('KV_ERR_OVERLOADED', `shard ${shard}: lock contention persisted after retries`);
    case 'connection':
      return new KvError('KV_ERR_SHARD_UNAVAILABLE', `shard ${shard} is unavailable`);
    default:
      return new KvError('KV_ERR_INTERNAL', `shard ${shard}: ${(err as { code?: string })?.code ?? 'internal error'}`);
  }
}
