/**
 * Owns the Redis-protocol door's listener (RESP2, and RESP3 after `HELLO 3`): a node:net (or
 * node:tls) server on the main thread, the door's shared state (connections, guard, limits, the
 * pub/sub hub, the script registry), and its start and shutdown. uWebSockets.js has no raw TCP
 * server, hence node:net. Relies on connection.ts (one per socket), guard.ts, pubsub-hub.ts,
 * scripts.ts and HttpContext (pool, limits, metrics, shutdown state). Must not parse or answer
 * commands: connections do.
 */
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, Server as TlsServer } from 'node:tls';
import type * as resp from '../../protocol/resp';
import type { Limits } from '../../protocol/validate';
import type { HttpContext } from '../http-api';
import { Conn } from './connection';
import { ALLOW_ALL, type RespGuard } from './guard';
import type { KeyspaceSource, PublishBus } from './keyspace-source';
import { DEFAULT_PUBSUB_LIMIT, PubsubHub, type PubsubLimit } from './pubsub-hub';
import { ScriptRegistry } from './scripts';

/** Most arguments in one request (Redis: 1024*1024). */
const MAX_ARGS = 1024 * 1024;

export interface RespContext extends HttpContext {
  host: string;
  port: number;
  maxInflight: number;
  guard?: RespGuard;
  /** Serve TLS (tls.createServer) with this PEM certificate and key; null/undefined = clear text. */
  tls?: { cert: string; key: string } | null;
  log: { warn(obj: object, msg: string): void; debug(obj: object, msg: string): void };
  /** notify-keyspace-events at start, as Redis's flag bits (KVSQL_REDIS_NOTIFY_KEYSPACE_EVENTS); 0 = off. */
  notifyFlags?: number;
  /** client-output-buffer-limit pubsub (KVSQL_REDIS_PUBSUB_BUFFER_LIMIT); Redis's 32mb 8mb 60 when absent. */
  pubsubLimit?: PubsubLimit;
  /** Where keyspace notifications come from (the change feed); absent: the interim local source (keyspace-source.ts). */
  keyspaceSource?: KeyspaceSource | null;
  /** How PUBLISH reaches other gateways; absent: this gateway only. */
  publishBus?: PublishBus | null;
  /** FLUSHDB and FLUSHALL are allowed (KVSQL_REDIS_FLUSH; admin tokens only when auth is on). */
  flushEnabled?: boolean;
}

export interface RespServer {
  port: number;
  /** Stop accepting connections (existing ones keep being served). */
  stopListening(): void;
  /** Write what is finished, close every connection; resolves when all are closed (at most `timeoutMs`, then they are destroyed). */
  closeConnections(timeoutMs: number): Promise<void>;
  readonly connections: number;
  /** TLS only: new connections get this certificate and key (SIGHUP); open ones keep theirs. */
  setTls(tls: { cert: string; key: string }): void;
}

export class RespDoor {
  readonly conns = new Set<Conn>();
  /** Scripts for EVALSHA (scripts.ts): this gateway's, shared by its connections. */
  readonly scripts = new ScriptRegistry();
  readonly guard: RespGuard;
  readonly limits: Limits;
  readonly parserLimits: resp.RespLimits;
  readonly pubsub: PubsubHub;
  port = 0;
  constructor(readonly ctx: RespContext) {
    this.guard = ctx.guard ?? ALLOW_ALL;
    this.pubsub = new PubsubHub({
      guard: this.guard,
      filtering: this.guard !== ALLOW_ALL,
      limit: ctx.pubsubLimit ?? DEFAULT_PUBSUB_LIMIT,
      notifyFlags: ctx.notifyFlags ?? 0,
      keyspaceSource: ctx.keyspaceSource ?? null,
      publishBus: ctx.publishBus ?? null,
      log: ctx.log,
    });
    this.limits = ctx.limits;
    this.parserLimits = {
      maxBulkBytes: Math.max(ctx.limits.maxValueBytes, ctx.limits.maxKeyBytes),
      maxArgs: MAX_ARGS,
      // One maximal value plus keys and options; MGET/DEL of many keys fit in the headroom.
      maxRequestBytes: ctx.limits.maxValueBytes + 16 * 1024 * 1024,
    };
  }

  readonly onConnection = (socket: Socket): void => {
    const conn = new Conn(socket, this);
    socket.on('error', (err) => this.ctx.log.debug({ err, client: conn.remoteAddress }, 'redis connection error'));
    if (!this.guard.accept(conn)) {
      socket.destroy();
      return;
    }
    this.conns.add(conn);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    socket.on('data', (chunk: Buffer) => conn.onData(chunk));
    socket.on('end', () => conn.onEnd());
    socket.on('close', () => conn.onClose());
  };
}

/** Start the RESP listener on ctx.host:ctx.port (0 picks a free port). */
export async function startRespServer(ctx: RespContext): Promise<RespServer> {
  const door = new RespDoor(ctx);
  // With TLS the listener hands over sockets after the handshake; a client that does not speak TLS
  // fails it and is dropped ('tlsClientError'), never reaching the parser.
  const server: NetServer = ctx.tls
    ? createTlsServer({ allowHalfOpen: true, noDelay: true, cert: ctx.tls.cert, key: ctx.tls.key }, door.onConnection)
    : createServer({ allowHalfOpen: true, noDelay: true }, door.onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(ctx.port, ctx.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => ctx.log.warn({ err }, 'redis listener error'));
  // 'close' fires once the listener is closed and every connection has ended.
  const serverClosed = new Promise<void>((resolve) => server.once('close', () => resolve()));
  const address = server.address();
  door.port = typeof address === 'object' && address !== null ? address.port : ctx.port;
  return {
    port: door.port,
    get connections() {
      return door.conns.size;
    },
    setTls(t) {
      if (!(server instanceof TlsServer)) throw new Error('the Redis door was started without TLS');
      server.setSecureContext({ cert: t.cert, key: t.key });
    },
    stopListening() {
      server.close();
    },
    async closeConnections(timeoutMs: number) {
      if (server.listening) server.close();
      for (const c of [...door.conns]) c.shutdown();
      const timer = setTimeout(() => {
        for (const c of door.conns) c.socket.destroy();
      }, timeoutMs);
      await serverClosed;
      clearTimeout(timer);
      door.pubsub.close();
    },
  };
}
