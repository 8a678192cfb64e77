/**
 * Owns one gateway process's server: the uWebSockets.js app, its operational routes (/healthz,
 * /readyz, /metrics, /v1/slots), the shard pool, and graceful shutdown. Relies on http-api,
 * ws-api, ShardPool, Metrics, config. Must not touch MySQL: only the shard actors do.
 *
 * Shutdown order (SIGTERM/SIGINT via the CLI): stop listening -> refuse new requests with 503 ->
 * wait for in-flight HTTP calls and WebSocket ops to be answered -> drain and stop the actors
 * (their last transactions commit) -> close sockets.
 */
import pino from 'pino';
import type { TemplatedApp, us_listen_socket, WebSocket } from 'uWebSockets.js';
import { MAX_KEY_BYTES, type Config } from './config';
import { hasBody, mountHttpApi, refusedFraming, writeError } from './http-api';
import { Metrics } from './metrics';
import { startRespServer, type RespGuard, type RespServer } from './resp-server';
import { ShardPool } from './shard-pool';
import { loadUws } from './uws';
import { mountWsApi } from './ws-api';

export interface Server {
  port: number;
  /** The Redis-protocol port; null when KVSQL_REDIS_PORT is off. */
  redisPort: number | null;
  host: string;
  pool: ShardPool;
  close(): Promise<void>;
}

export type Logger = pino.Logger;

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'kvsql' } });
}

export interface ServerOptions {
  /** Authentication and authorisation of Redis-protocol connections (default: allow everything). */
  redisGuard?: RespGuard;
}

export async function startServer(
  config: Readonly<Config>,
  shardUrls: string[],
  log: Logger = createLogger(config.logLevel),
  opts: ServerOptions = {},
): Promise<Server> {
  const uws = loadUws();
  const pool = await ShardPool.start(config, shardUrls, log);
  const metrics = new Metrics();
  const limits = { maxKeyBytes: MAX_KEY_BYTES, maxValueBytes: config.maxValueBytes };
  let closing = false;
  const inflight = { n: 0 };
  const sockets = new Set<WebSocket<unknown>>();

  const app: TemplatedApp = uws.App();
  const apiContext = { pool, metrics, limits, closing: () => closing, inflight };
  mountHttpApi(app, apiContext);
  mountWsApi(app, { ...apiContext, sockets, maxInflight: config.wsMaxInflight });

  // The load generator's ceiling: the same server and routing layer, no shard work at all.
  app.get('/v1/noop', (res, req) => {
    if (refusedFraming(res, req)) return;
    res.end('ok');
  });
  app.get('/healthz', (res, req) => {
    if (refusedFraming(res, req)) return;
    res.writeHeader('Content-Type', 'application/json').end('{"status":"ok"}');
  });
  app.get('/readyz', (res, req) => {
    if (refusedFraming(res, req)) return;
    if (closing) {
      writeError(res, 'KV_ERR_SHUTTING_DOWN', 'server is shutting down');
      return;
    }
    let aborted = false;
    res.onAborted(() => (aborted = true));
    // Shard groups (Galera) also report their writer node and node states; a stats answer that
    // does not come within a second leaves those out rather than delaying the probe.
    void pool.stats(1000).then((stats) => {
      if (aborted) return;
      const health = pool.health();
      const down = health.filter((h) => !h.up);
      const groups = stats.flatMap((s) => (s?.group ? [{ shard: s.shard, writer: s.group.writer >= 0 ? s.group.nodes[s.group.writer].node : null, switches: s.group.switches, lastSwitch: s.group.lastSwitchReason || null, nodes: s.group.nodes }] : []));
      res.cork(() => {
        if (closing) {
          writeError(res, 'KV_ERR_SHUTTING_DOWN', 'server is shutting down');
        } else if (down.length > 0) {
          res.writeStatus('503 Service Unavailable').writeHeader('Retry-After', '1').writeHeader('Content-Type', 'application/json');
          res.end(JSON.stringify({ status: 'unavailable', down: down.map((d) => ({ shard: d.shard, error: d.error })), ...(groups.length > 0 ? { groups } : {}) }));
        } else {
          res.writeHeader('Content-Type', 'application/json').end(JSON.stringify({ status: 'ready', shards: health.length, ...(groups.length > 0 ? { groups } : {}) }));
        }
      });
    });
  });
  app.get('/metrics', (res, req) => {
    if (refusedFraming(res, req)) return;
    let aborted = false;
    res.onAborted(() => (aborted = true));
    void pool.stats().then((stats) => {
      if (aborted) return;
      const body = metrics.render(stats, pool.queueDepths(), pool.rejected);
      res.cork(() => res.writeHeader('Content-Type', 'text/plain; version=0.0.4').end(body));
    });
  });
  app.get('/v1/slots', (res, req) => {
    if (refusedFraming(res, req)) return;
    res.writeHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ slots: 16384, hash: 'crc16-xmodem', shards: pool.shardCount, ranges: pool.slotMap.toRanges() }));
  });
  app.any('/*', (res, req) => {
    if (refusedFraming(res, req)) return;
    writeError(res, 'KV_ERR_ROUTE_NOT_FOUND', 'no such route; see README for the API', undefined, { head: req.getMethod() === 'head', close: hasBody(req) });
  });

  let listenSocket: us_listen_socket;
  try {
    listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
      app.listen(config.host, config.port, (sock) => (sock ? resolve(sock) : reject(new Error(`cannot listen on ${config.host}:${config.port}`))));
    });
  } catch (err) {
    await pool.stop(1000); // the actors and their MySQL pools would otherwise keep the process alive
    throw err;
  }
  const port = uws.us_socket_local_port(listenSocket);
  let redis: RespServer | null = null;
  if (config.redisPort !== null) {
    try {
      redis = await startRespServer({ ...apiContext, host: config.host, port: config.redisPort, maxInflight: config.redisMaxInflight, guard: opts.redisGuard, log });
    } catch (err) {
      uws.us_listen_socket_close(listenSocket);
      await pool.stop(1000);
      throw new Error(`cannot listen for Redis clients on ${config.host}:${config.redisPort} (KVSQL_REDIS_PORT; "off" turns it off): ${(err as Error).message}`);
    }
  }
  const redisPort = redis?.port ?? null;
  log.info({ host: config.host, port, redisPort, shards: shardUrls.length, batching: config.batching }, 'kvsql listening');

  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    if (closed) return closed;
    closed = (async () => {
      closing = true;
      uws.us_listen_socket_close(listenSocket);
      redis?.stopListening();
      const deadline = Date.now() + config.shutdownTimeoutMs;
      while (inflight.n > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      if (inflight.n > 0) log.warn({ inflight: inflight.n }, 'shutdown timeout: answering no more');
      for (const ws of sockets) ws.end(1001, 'server shutting down');
      await redis?.closeConnections(1000);
      await pool.stop(Math.max(1000, deadline - Date.now()));
      log.info({}, 'kvsql stopped');
    })();
    return closed;
  };

  return { port, redisPort, host: config.host, pool, close };
}
