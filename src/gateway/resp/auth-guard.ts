/**
 * Owns auth on the Redis-protocol door: a RespGuard (guard.ts, the seam) backed by Auth. Relies on
 * Auth, protocol/access and the command table (which commands are `no_auth`). Must not touch
 * sockets: the connection asks, and writes the replies.
 *
 * Redis semantics, with a kvsql token as the password: until `AUTH <token>` (or `AUTH <any user>
 * <token>`, or `HELLO 3 AUTH <user> <token>`) succeeds, every command but AUTH, HELLO, QUIT and
 * RESET gets `NOAUTH Authentication required.`; a wrong token gets `WRONGPASS ...` (and counts as
 * a failed attempt for the address's rate limit). Rights are checked per key before any op of the
 * command is submitted (an MGET with one forbidden key is refused whole). After a token reload a
 * session's entry is looked up again on its next command: revoked means NOAUTH again.
 */
import { mayAccess, type TokenEntry } from '../../protocol/access';
import { KvError, toErrorData } from '../../protocol/errors';
import type { Auth } from '../auth';
import { authorizeOp } from '../door-policy';
import { NO_AUTH_COMMANDS } from './command-table';
import { errorText, NOAUTH, WRONGPASS } from './errors';
import type { RespGuard, RespSession } from './guard';

interface Held {
  entry: TokenEntry;
  generation: number;
}

/** The token-backed RespGuard: a kvsql token is the password. */
export function respAuthGuard(auth: Auth): RespGuard {
  const held = new WeakMap<RespSession, Held>();
  /** The session's current entry, re-resolved after a reload; null = not (or no longer) authenticated. */
  const current = (s: RespSession): TokenEntry | null => {
    const h = held.get(s);
    if (h === undefined) return null;
    if (h.generation !== auth.generation) {
      const now = auth.current(h.entry);
      if (now === null) {
        held.delete(s);
        s.user = null;
        return null;
      }
      h.entry = now;
      h.generation = auth.generation;
    }
    return h.entry;
  };
  return {
    accept: (s) => !auth.limiter.anyBlocked || auth.limiter.blockedFor(s.remoteAddress, Date.now()) === 0,
    check: (s, command) => (NO_AUTH_COMMANDS.has(command) || current(s) !== null ? null : NOAUTH),
    authenticate: (s, _user, password) => {
      try {
        // The token is ASCII; any other byte makes it malformed (latin1 keeps every byte distinct).
        const entry = auth.authenticate(password.toString('latin1'), () => s.remoteAddress);
        held.set(s, { entry, generation: auth.generation });
        s.user = entry.name;
        return null;
      } catch (err) {
        held.delete(s);
        s.user = null;
        const e = toErrorData(err);
        return e.code === 'KV_ERR_TOO_MANY_AUTH_FAILURES' ? errorText(e.code, e.message) : WRONGPASS;
      }
    },
    authorize: (s, op, key) => {
      const entry = current(s);
      if (entry === null) throw new KvError('KV_ERR_UNAUTHORIZED', 'authentication required');
      authorizeOp(auth, 'redis', entry, op, key);
    },
    allows: (s, op, key) => {
      const entry = current(s);
      return entry !== null && mayAccess(entry, op, key);
    },
    isAdmin: (s) => current(s)?.admin === true,
    forget: (s) => {
      held.delete(s);
      s.user = null;
    },
  };
}
