/**
 * Owns a TCP proxy for fault tests: it sits between shard actors and a real MySQL (the store's
 * shard URL points at the proxy's port) and misbehaves on demand. Relies on node:net only. Must
 * not interpret MySQL beyond spotting a COMMIT: it forwards bytes, delays them, drops them or
 * resets connections.
 *
 *   client (actor) ──> proxy :port ──> MySQL
 *
 * Modes (setMode, applied to open connections at once and to new ones):
 *   pass                     forward everything
 *   latency {ms}             every chunk, both ways, is delivered ms later (order kept)
 *   slow {bytesPerSecond}    both ways limited to that bandwidth (order kept)
 *   blackhole                accept, forward nothing, answer nothing, never reset or close
 *   reset                    reset (RST) every open connection, and each new one at once
 *   reset-before-commit      on the next COM_QUERY whose text ends with COMMIT (client -> server),
 *                            reset both sides instead of forwarding it; then back to pass
 *   reset-after-commit       forward that COMMIT, then reset the client before the server's reply
 *                            reaches it (the reply is dropped); then back to pass
 *   reset-before-query {startsWith}
 *                            like reset-before-commit, for the next COM_QUERY whose text starts
 *                            with that string (e.g. 'INSERT': the writes, before COMMIT is sent);
 *                            back to pass after `times` resets (default 1)
 *
 * Client -> server bytes are cut into MySQL packets (3-byte little-endian length, 1-byte
 * sequence, payload; COM_QUERY is payload byte 0x03) so a COMMIT can be held back whole.
 */
import net from 'node:net';

export type ProxyMode =
  | { kind: 'pass' }
  | { kind: 'latency'; ms: number }
  | { kind: 'slow'; bytesPerSecond: number }
  | { kind: 'blackhole' }
  | { kind: 'reset' }
  | { kind: 'reset-before-commit' }
  | { kind: 'reset-after-commit' }
  | { kind: 'reset-before-query'; startsWith: string; times?: number };

export interface TcpProxy {
  readonly port: number;
  /** `url` (a mysql:// URL of the real server) with host and port replaced by the proxy's. */
  via(url: string): string;
  setMode(mode: ProxyMode): void;
  readonly mode: ProxyMode;
  /** COMMIT packets seen, and the connections reset because of one (before/after forwarding). */
  readonly stats: { commits: number; resetBeforeCommit: number; resetAfterCommit: number; resetBeforeQuery: number; connections: number };
  close(): Promise<void>;
}

const COM_QUERY = 0x03;
const COMMIT = Buffer.from('COMMIT');

/** One direction of one connection: an ordered send queue that honours latency and bandwidth. */
class Lane {
  private readonly queue: Array<{ buf: Buffer; due: number }> = [];
  private timer: NodeJS.Timeout | null = null;
  /** When the link is free again (slow mode). */
  private busyUntil = 0;
  constructor(
    private readonly out: net.Socket,
    private readonly proxy: Proxy,
  ) {}

  send(buf: Buffer): void {
    const mode = this.proxy.mode;
    if (mode.kind === 'blackhole') return;
    const now = Date.now();
    let due = now;
    if (mode.kind === 'latency') due = now + mode.ms;
    else if (mode.kind === 'slow') {
      this.busyUntil = Math.max(now, this.busyUntil) + (buf.length * 1000) / mode.bytesPerSecond;
      due = this.busyUntil;
    }
    if (due <= now && this.queue.length === 0) {
      this.write(buf);
      return;
    }
    this.queue.push({ buf, due });
    this.arm();
  }

  private arm(): void {
    if (this.timer !== null || this.queue.length === 0) return;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        const now = Date.now();
        while (this.queue.length > 0 && this.queue[0].due <= now) {
          const item = this.queue.shift()!;
          if (this.proxy.mode.kind !== 'blackhole') this.write(item.buf);
        }
        this.arm();
      },
      Math.max(0, this.queue[0].due - Date.now()),
    );
  }

  private write(buf: Buffer): void {
    if (!this.out.destroyed) this.out.write(buf);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.queue.length = 0;
  }
}

class Pair {
  private pending: Buffer = Buffer.alloc(0);
  private readonly toServer: Lane;
  private readonly toClient: Lane;
  /** reset-after-commit: the COMMIT went up; drop the reply and reset the client. */
  private resetOnReply = false;
  closed = false;

  constructor(
    readonly client: net.Socket,
    readonly server: net.Socket,
    private readonly proxy: Proxy,
  ) {
    this.toServer = new Lane(server, proxy);
    this.toClient = new Lane(client, proxy);
    client.on('data', (d: Buffer) => this.fromClient(d));
    server.on('data', (d: Buffer) => this.fromServer(d));
    const end = () => this.destroy(false);
    client.on('error', end);
    server.on('error', end);
    client.on('close', end);
    server.on('close', end);
  }

  private fromClient(d: Buffer): void {
    if (this.closed) return;
    if (this.proxy.mode.kind === 'blackhole') return;
    this.pending = this.pending.length === 0 ? d : Buffer.concat([this.pending, d]);
    // Forward whole packets only, so a COMMIT can be held back.
    let start = 0;
    while (this.pending.length - start >= 4) {
      const len = this.pending.readUIntLE(start, 3);
      if (this.pending.length - start < 4 + len) break;
      const packet = this.pending.subarray(start, start + 4 + len);
      start += 4 + len;
      const mode = this.proxy.mode;
      if (
        mode.kind === 'reset-before-query' &&
        packet[4] === COM_QUERY &&
        packet.subarray(5, 5 + mode.startsWith.length).toString('latin1') === mode.startsWith
      ) {
        this.proxy.stats.resetBeforeQuery++;
        const left = (mode.times ?? 1) - 1;
        this.proxy.setMode(left > 0 ? { ...mode, times: left } : { kind: 'pass' });
        this.destroy(true);
        return;
      }
      if (len >= 1 + COMMIT.length && packet[4] === COM_QUERY && packet.subarray(packet.length - COMMIT.length).equals(COMMIT)) {
        this.proxy.stats.commits++;
        const kind = this.proxy.mode.kind;
        if (kind === 'reset-before-commit') {
          this.proxy.stats.resetBeforeCommit++;
          this.proxy.setMode({ kind: 'pass' });
          this.destroy(true);
          return;
        }
        if (kind === 'reset-after-commit') {
          this.proxy.setMode({ kind: 'pass' });
          this.resetOnReply = true;
        }
      }
      this.toServer.send(Buffer.from(packet));
    }
    this.pending = start === this.pending.length ? Buffer.alloc(0) : Buffer.from(this.pending.subarray(start));
  }

  private fromServer(d: Buffer): void {
    if (this.closed) return;
    if (this.resetOnReply) {
      // The server answered the COMMIT: it happened. The client never learns it.
      this.proxy.stats.resetAfterCommit++;
      this.destroy(true);
      return;
    }
    this.toClient.send(d);
  }

  destroy(reset: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.toServer.stop();
    this.toClient.stop();
    if (reset) {
      this.client.resetAndDestroy();
      this.server.resetAndDestroy();
    } else {
      this.client.destroy();
      this.server.destroy();
    }
    this.proxy.pairs.delete(this);
  }
}

class Proxy implements TcpProxy {
  mode: ProxyMode = { kind: 'pass' };
  readonly stats = { commits: 0, resetBeforeCommit: 0, resetAfterCommit: 0, resetBeforeQuery: 0, connections: 0 };
  readonly pairs = new Set<Pair>();
  /** Client sockets accepted while black-holed: held open, never answered. */
  private readonly held = new Set<net.Socket>();
  private readonly server: net.Server;
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {
    this.server = net.createServer((client) => this.accept(client));
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.port = (this.server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  private accept(client: net.Socket): void {
    this.stats.connections++;
    client.setNoDelay(true);
    if (this.mode.kind === 'reset') {
      client.on('error', () => undefined);
      client.resetAndDestroy();
      return;
    }
    if (this.mode.kind === 'blackhole') {
      client.on('error', () => undefined);
      client.on('close', () => this.held.delete(client));
      this.held.add(client);
      return;
    }
    client.pause();
    const server = net.connect(this.targetPort, this.targetHost);
    server.setNoDelay(true);
    const pair = new Pair(client, server, this);
    this.pairs.add(pair);
    server.once('connect', () => client.resume());
  }

  via(url: string): string {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  setMode(mode: ProxyMode): void {
    this.mode = mode;
    if (mode.kind === 'reset') for (const p of [...this.pairs]) p.destroy(true);
    if (mode.kind !== 'blackhole') {
      // Connections accepted during a black hole stay dead (as after a real network partition
      // the client has long given up on them); reset them so nothing lingers.
      for (const c of this.held) c.resetAndDestroy();
      this.held.clear();
    }
  }

  async close(): Promise<void> {
    for (const p of [...this.pairs]) p.destroy(false);
    for (const c of this.held) c.destroy();
    this.held.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A proxy on a free loopback port forwarding to targetHost:targetPort. */
export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const proxy = new Proxy(targetHost, targetPort);
  await proxy.listen();
  return proxy;
}

/** A proxy in front of the server of a mysql:// URL. */
export function startTcpProxyFor(url: string): Promise<TcpProxy> {
  const u = new URL(url);
  return startTcpProxy(u.hostname, Number(u.port || 3306));
}
