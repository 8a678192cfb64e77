/**
 * Owns refusing a listening port that another process holds, before the gateway listens on it.
 * Relies on node:net. Must not be used for the second listen of a TLS reload, which shares this
 * process's own port on purpose.
 *
 * Why: uWebSockets.js binds an explicit port with SO_REUSEPORT, so a second store on a busy port
 * "listened" too and the kernel spread the connections over both, silently. A node:net socket
 * sets SO_REUSEADDR but never SO_REUSEPORT, so its bind fails with EADDRINUSE while any socket
 * listens on the port, a uWS one included. The probe is closed before uWS binds: a process that
 * takes the port in between is not caught (the Redis door, on node:net, needs no probe at all).
 */
import net from 'node:net';

/** `code` is stable; the message names the address, the setting and what to do. */
export class PortInUseError extends Error {
  readonly code = 'KVSQL_PORT_IN_USE';
  constructor(
    readonly host: string,
    readonly port: number,
    setting: string,
    flag: string,
  ) {
    super(
      `cannot listen on ${host}:${port} (${setting}): the port is in use by another process (another kvsql?). Stop it, or choose another port (${flag}=...)`,
    );
  }
}

/** Resolves when `host:port` can be bound now; port 0 always can. Other bind errors pass through. */
export function probePort(host: string, port: number, setting: string, flag: string): Promise<void> {
  if (port === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'EADDRINUSE' ? new PortInUseError(host, port, setting, flag) : new Error(`cannot listen on ${host}:${port} (${setting}): ${err.message}`),
      );
    });
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}
