/**
 * Owns TLS to a shard's MySQL servers: mysql2's `ssl` option from KVSQL_MYSQL_TLS, and the
 * certificate-name check mysql2 leaves out for IP hosts. Relies on node:tls and the socket the
 * mysql2 adapter hands a new connection's hook. Used by the store's pools and the admin tools'
 * connections alike; must not open connections itself.
 */
import { isIP } from 'node:net';
import { checkServerIdentity, type TLSSocket } from 'node:tls';
import type { MysqlTls } from '../../protocol/port-messages';

/**
 * mysql2's `ssl` option. Verification is chain AND host name; a server without TLS fails the
 * connect, never a silent downgrade. mysql2 (3.x) checks the name only for DNS host names: for an
 * IP address it checks "localhost" instead, so for IP hosts the name is checked by tlsIdentityError
 * on every new connection.
 */
export function sslOption(tls: MysqlTls | null | undefined, host: string): { ca?: string; rejectUnauthorized: boolean; verifyIdentity: boolean } | undefined {
  if (!tls) return undefined;
  return { ca: tls.ca ?? undefined, rejectUnauthorized: tls.verify, verifyIdentity: tls.verify && isIP(host) === 0 };
}

/** For an IP host with verification on: the certificate must name that IP (see sslOption). */
export function tlsIdentityError(tls: MysqlTls | null | undefined, host: string, stream: unknown): Error | null {
  if (!tls?.verify || isIP(host) === 0) return null;
  const socket = stream as TLSSocket;
  // A resumed session (mysql2 caches them) was set up by a checked handshake, and shows no
  // certificate: mysql2 skips its own checks then too.
  if (socket.isSessionReused()) return null;
  const err = checkServerIdentity(host, socket.getPeerCertificate());
  return err === undefined ? null : Object.assign(err, { fatal: true }); // a connection error: the shard is down
}

/** The host of a mysql:// URL, an IPv6 address without its brackets (what the certificate must name). */
export const hostOf = (url: string): string => new URL(url).hostname.replace(/^\[|\]$/g, '');
