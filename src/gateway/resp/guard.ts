/**
 * Owns the Redis door's auth seam: what a guard knows of a connection (RespSession), the questions
 * the door asks it (RespGuard), and ALLOW_ALL, the guard when auth is off. Relies on protocol/ops
 * (op codes). Must not touch sockets or tokens: the token-backed guard is auth-guard.ts, and the
 * door writes every reply itself.
 */
import type { OpCode } from '../../protocol/ops';
import type { Proto } from '../../protocol/resp';

/** What the guard knows of a connection. */
export interface RespSession {
  readonly id: number;
  readonly remoteAddress: string;
  name: string | null;
  proto: Proto;
  /** Set by the guard when credentials were accepted (AUTH, HELLO ... AUTH). */
  user: string | null;
}

/**
 * The seam where authentication and authorisation go. Called once per connection (`accept`) and
 * before every command (`check`); AUTH and HELLO's AUTH option call `authenticate`. With auth off
 * the guard is ALLOW_ALL, which allows everything and, like Redis without a password, refuses AUTH;
 * with auth on it is respAuthGuard (auth-guard.ts).
 */
export interface RespGuard {
  /** A new connection: false closes it at once. */
  accept(session: RespSession): boolean;
  /** Before each command (lower-case name): null allows it, else an error reply's text (e.g. `NOAUTH Authentication required.`). */
  check(session: RespSession, command: string): string | null;
  /** Credentials from AUTH or HELLO: null accepts them (and may set session.user), else an error reply's text. */
  authenticate(session: RespSession, user: string, password: Buffer): string | null;
  /** Before a command's ops are submitted, per key: throws a KvError (e.g. KV_ERR_FORBIDDEN) to refuse the command. */
  authorize(session: RespSession, op: OpCode, key: Uint8Array): void;
  /** The same question without throwing or counting a refusal: may this session see a pub/sub message about `key` now? */
  allows(session: RespSession, op: OpCode, key: Uint8Array): boolean;
  /** May the session change the gateway's settings (CONFIG SET)? The admin right. */
  isAdmin(session: RespSession): boolean;
  /** RESET: forget the session's credentials (with auth on it must AUTH again). */
  forget(session: RespSession): void;
}

export const ALLOW_ALL: RespGuard = {
  accept: () => true,
  check: () => null,
  authenticate: () => 'ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?',
  authorize: () => undefined,
  allows: () => true,
  isAdmin: () => true,
  forget: () => undefined,
};
