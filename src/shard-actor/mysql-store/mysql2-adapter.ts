/**
 * Owns every use of mysql2's private fields, so that an upgrade of mysql2 breaks one file and its
 * test (test/shard-actor/mysql2-adapter.test.ts), not the store. mysql2 is pinned to an exact
 * version in package.json for the same reason: these fields are not its API. Relies on mysql2's
 * promise pool wrapping a core pool (`pool.pool`), whose `'connection'` event hands each new core
 * connection, whose `_allConnections` lists every connection it opened, and on each core
 * connection's `stream` (its socket). Must not decide anything: which connection to drop, and
 * when, is the store's call.
 *
 *   promise Pool ──.pool──> core Pool ──'connection'──> core Connection ──.stream──> Socket/TLSSocket
 *                               └──._allConnections──> every core Connection (idle and in use)
 *   PoolConnection ──.connection──> core Connection (kvConnectedAt stamped by the hook)
 */
import type { Socket } from 'node:net';
import type { Pool, PoolConnection } from 'mysql2/promise';

/** A new connection, as a pool's connection hook sees it (mysql2's core Connection, narrowed). */
export interface NewConnection {
  /** The connection's socket: a TLSSocket when `ssl` is set. */
  readonly stream: unknown;
  /** The server's id of its session (the handshake's connection id). */
  readonly threadId: number | null;
  /** A statement before the connection is handed to anyone (session setup); callback style. */
  query(sql: string, cb: (err: Error | null) => void): void;
  destroy(): void;
}

type CoreConnection = NewConnection & { stream?: Socket; kvConnectedAt?: number };
type CorePool = { on(ev: 'connection', cb: (c: CoreConnection) => void): void; _allConnections?: { toArray(): CoreConnection[] } };

const coreOf = (pool: Pool): CorePool => (pool as unknown as { pool: CorePool }).pool;

/**
 * Calls `hook` with every connection the pool opens, before it is handed out (mysql2's promise
 * pool has no such event of its own). An error of a statement the hook runs must be handled in
 * its callback: unhandled, it would be an 'error' event that ends the process.
 */
export function onNewConnection(pool: Pool, hook: (conn: NewConnection) => void): void {
  coreOf(pool).on('connection', hook);
}

/** Records when a new connection was made (local ms): settle() compares it with the server's uptime. */
export function stampConnectedAt(conn: NewConnection, ms: number): void {
  (conn as CoreConnection).kvConnectedAt = ms;
}

/** When a pooled connection was made (stampConnectedAt), or 0 when it was not stamped. */
export function connectedAtOf(conn: PoolConnection): number {
  return (conn.connection as unknown as CoreConnection).kvConnectedAt ?? 0;
}

/**
 * Out of the pool and its socket closed at once. mysql2's destroy() only half-closes (FIN), which
 * a hung or black-holed peer never completes, and it never answers the statement in flight: the
 * caller must not wait for that statement (the actor races it against the op deadline).
 */
export function destroyHard(conn: PoolConnection): void {
  conn.destroy();
  (conn.connection as unknown as CoreConnection).stream?.destroy();
}

/**
 * Closes the socket of every connection the pool opened, idle or in use, at once, with `err`:
 * each statement in flight on them fails with it now instead of at its timeout. The pool itself
 * is left to the caller (end() it).
 */
export function destroyAllSockets(pool: Pool, err: Error): void {
  const all = coreOf(pool)._allConnections?.toArray() ?? [];
  for (const c of all) c.stream?.destroy(err);
}
