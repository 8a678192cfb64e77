/**
 * Owns the translation of MySQL driver errors into kvsql's terms, by `err.code`, in one place.
 * Relies on protocol/errors. Touches no connection.
 *
 *   retry       the transaction was rolled back and can be decided again from fresh locks
 *               (ER_LOCK_DEADLOCK 1213, ER_LOCK_WAIT_TIMEOUT 1205, and ER_DUP_ENTRY 1062: another
 *               gateway created a key this batch saw absent; KV_VERSIONS_MOVED, raised by the
 *               actor when a create's versions had to be taken again, see actor.ts). On Galera a
 *               certification conflict at COMMIT is ER_LOCK_DEADLOCK too: the transaction was
 *               not applied.
 *   connection  the connection or server is gone; the shard may be down
 *   fatal       anything else: a bug or a misconfigured server, reported as 500
 */
import { KvError } from '../protocol/errors';

export type ErrorClass = 'retry' | 'connection' | 'fatal';

const RETRY_CODES = new Set(['ER_LOCK_DEADLOCK', 'ER_LOCK_WAIT_TIMEOUT', 'ER_DUP_ENTRY', 'KV_VERSIONS_MOVED']);
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
  'POOL_CLOSED',
  // Galera: a node outside the Primary component (or still joining) refuses every statement
  // with 1047 "WSREP has not yet prepared node for application use"; its shard group switches.
  'ER_UNKNOWN_COM_ERROR',
  'KV_NO_WRITER_NODE', // no node of a Galera shard group is usable (node-selector.ts)
  'KV_ACQUIRE_TIMEOUT', // no pooled connection in time (shard-store): the server hangs
  'KV_ABANDONED', // the actor gave up at the op deadline
]);

export function classify(err: unknown): ErrorClass {
  const e = err as { code?: string; fatal?: boolean; errno?: number } | null;
  const code = e?.code ?? '';
  if (RETRY_CODES.has(code)) return 'retry';
  if (CONNECTION_CODES.has(code) || e?.fatal === true) return 'connection';
  if (/connect|closed state|Connection lost|Pool is closed/i.test(String((err as Error)?.message))) return 'connection';
  return 'fatal';
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
