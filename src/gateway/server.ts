/**
 * Owns one gateway process's server: the uWebSockets.js app, its operational routes (/healthz,
 * /readyz, /metrics, /v1/slots), the shard pool, and graceful shutdown. Relies on http-api,
 * ws-api, ShardPool, Metrics, config. Must not touch MySQL: only the shard actors do.
 *
 * Shutdown order (SIGTERM/SIGINT via the CLI): stop listening -> refuse new requests with 503 ->
 * wait for in-flight HTTP calls and WebSocket ops to be answered -> drain and stop the actors
 * (their last transactions commit) -> close sockets.
 *
 * Reload (SIGHUP via the CLI): the token file is read again (open WebSockets keep their
 * connection, with their token's new rights, or are closed if it was revoked); with TLS, a new
 * SSLApp is built from the certificate files and listens on the same port beside the old one
 * (uWS sets SO_REUSEPORT), then the old listen socket closes. That same SO_REUSEPORT would let a
 * second process share the port silently, so the first listen is preceded by a probe that refuses
 * a port another process holds (port-probe.ts). uWS 20.30 cannot swap the default
 * certificate of a running app (addServerName only adds SNI names), hence the second app.
 * Connections accepted by the old app keep its certificate until they close.
 */
import { hostname } from 'node:os';
import pino from 'pino';
import type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket, WebSocket } from 'uWebSockets.js';
import { retryAfterOf, toErrorData } from '../protocol/errors';
import type { ShardStats } from '../protocol/port-messages';
import { SLOT_COUNT } from '../protocol/slot-map';
import { Auth, checkExposure } from './auth';
import { MAX_KEY_BYTES, type Config } from '../config/config';
import { mountHttpApi, type HttpContext } from './http-api';
import { statusLine, writeError } from './http-errors';
import { hasBody, refusedFraming } from './http-framing';
import { Metrics, METRICS_CONTENT_TYPE } from './metrics';
import { feedKeyspaceSource, respAuthGuard, startRespServer, type KeyspaceSource, type PublishBus, type RespGuard, type RespServer } from './resp';
import { notifyFlagsOf } from '../protocol/redis-notify';
import { ShardPool } from './shard-pool';
import { probePort } from './port-probe';
import { serverTls, type ServerTls } from './tls';
import { loadUws } from './uws';
import { mountWsApi, refreshTokens, type WsContext } from './ws-api';
import { FeedHub } from './feed-hub';
import { mountWatchSse } from './watch-sse';
import { adminRefusal } from './door-policy';

export interface Server {
  port: number;
  /** The Redis-protocol port; null when KVSQL_REDIS_PORT is off. */
  redisPort: number | null;
  host: string;
  pool: ShardPool;
  /** Token checks (null: auth off), for other doors (the Redis door) to share. */
  auth: Auth | null;
  /** The change feed's watchers (null: KVSQL_FEED off), for other doors (Redis keyspace notifications). */
  feed: FeedHub | null;
  /** True when the HTTP/WebSocket door speaks TLS. */
  tls: boolean;
  /** SIGHUP: re-read the token file and the TLS files. Resolves to the errors (empty: all reloaded). */
  reload(): Promise<string[]>;
  close(): Promise<void>;
}

export type Logger = pino.Logger;

export function createLogger(level: string): Logger {
  // pid and hostname tell apart the lines of many gateways; errors go under `err` (with stack).
  return pino({ level, base: { service: 'kvsql', pid: process.pid, hostname: hostname() } });
}

export interface ServerOptions {
  /** Authentication and authorisation of Redis-protocol connections (default: the tokens when auth is on, else allow everything). */
  redisGuard?: RespGuard;
  /** Keyspace notifications for the Redis door (the change feed); absent: the interim local source (gateway/resp/keyspace-source.ts). */
  keyspaceSource?: KeyspaceSource;
  /** Carries Redis PUBLISH to other gateways; absent: this gateway's subscribers only. */
  publishBus?: PublishBus;
}

export async function startServer(
  config: Readonly<Config>,
  shardUrls: string[],
  log: Logger = createLogger(config.logLevel),
  opts: ServerOptions = {},
): Promise<Server> {
  const uws = loadUws();
  // Refuse a bad security setup before any shard work starts.
  checkExposure(config, config.host, config.redisPort === null ? 'HTTP/WebSocket' : 'HTTP/WebSocket and Redis');
  const auth = Auth.fromConfig(config, log);
  let tls = serverTls(config);
  const pool = await ShardPool.start(config, shardUrls, log);
  const metrics = new Metrics();
  const limits = { maxKeyBytes: MAX_KEY_BYTES, maxValueBytes: config.maxValueBytes };
  let closing = false;
  const inflight = { n: 0 };
  const sockets = new Set<WebSocket<unknown>>();

  const feed = config.feed ? new FeedHub(pool, true) : null;
  const apiContext: WsContext = {
    pool,
    metrics,
    limits,
    closing: () => closing,
    inflight,
    auth,
    sockets,
    maxInflight: config.wsMaxInflight,
    feed,
    feedWatcherBufferBytes: config.feedWatcherBufferBytes,
  };

  /** Admin routes: true when the request may go on; else the 401/403 is written. */
  const admitted = (res: HttpResponse, req: HttpRequest, needAdmin: boolean): boolean => {
    if (auth === null) return true;
    try {
      const who = auth.authenticateHttp(res, req);
      const refused = needAdmin ? adminRefusal(auth, 'admin', who) : null;
      if (refused !== null) {
        writeError(res, refused.code, refused.message);
        return false;
      }
      return true;
    } catch (err) {
      const e = toErrorData(err);
      writeError(res, e.code, e.message, undefined, { head: req.getMethod() === 'head', close: hasBody(req) });
      return false;
    }
  };

  /** Every route, on a fresh app (a TLS reload builds a second app). */
  const buildApp = (t: ServerTls | null): TemplatedApp => {
    const app: TemplatedApp = t === null ? uws.App() : uws.SSLApp({ cert_file_name: t.certFile, key_file_name: t.keyFile });
    mountHttpApi(app, apiContext as HttpContext);
    mountWsApi(app, apiContext);
    mountWatchSse(app, apiContext);

    // The load generator's ceiling: the same server and routing layer, no shard work at all
    // (with auth on, the token check too: any valid token).
    app.get('/v1/noop', (res, req) => {
      if (refusedFraming(res, req)) return;
      if (admitted(res, req, false)) res.end('ok');
    });
    // Open: a liveness probe carries no token and says nothing.
    app.get('/healthz', (res, req) => {
      if (refusedFraming(res, req)) return;
      res.writeHeader('Content-Type', 'application/json').end('{"status":"ok"}');
    });
    // Open too (a readiness probe carries no token), but the per-shard errors and the shard
    // groups' nodes (which name hosts) are for admins.
    // Ready = this gateway can serve: it is not shutting down and at least one shard answers. One
    // shard down is "degraded", still 200: every gateway sees the same shards, so failing readiness
    // for it would take every gateway out of the load balancer and turn one shard's outage into a
    // full one (the down shard's keys get 503 from any gateway anyway). All shards down is 503.
    app.get('/readyz', (res, req) => {
      if (refusedFraming(res, req)) return;
      if (closing) {
        writeError(res, 'KV_ERR_SHUTTING_DOWN', 'server is shutting down');
        return;
      }
      let detail = auth === null;
      if (!detail && req.getHeader('authorization') !== '') {
        if (!admitted(res, req, true)) return; // 401/403 written
        detail = true;
      }
      // Health as of this request; shard groups (Galera) add their writer and node states, asked
      // from the actors, and a stats answer that does not come within a second leaves those out
      // rather than delaying the probe.
      const health = pool.health();
      const down = health.filter((h) => !h.up);
      const answer = (stats: Array<ShardStats | null>): void => {
        const groups = stats.flatMap((s) =>
          s?.group
            ? [
                {
                  shard: s.shard,
                  writer: s.group.writer >= 0 ? s.group.nodes[s.group.writer].node : null,
                  switches: s.group.switches,
                  lastSwitch: s.group.lastSwitchReason || null,
                  nodes: s.group.nodes,
                },
              ]
            : [],
        );
        const body = {
          shards: health.length,
          up: health.length - down.length,
          down: detail ? down.map((d) => ({ shard: d.shard, error: d.error })) : down.map((d) => ({ shard: d.shard })),
          ...(groups.length > 0 ? { groups } : {}),
        };
        if (closing) {
          writeError(res, 'KV_ERR_SHUTTING_DOWN', 'server is shutting down');
        } else if (down.length === health.length) {
          res
            .writeStatus(statusLine(503))
            .writeHeader('Retry-After', String(retryAfterOf('KV_ERR_SHARD_UNAVAILABLE')))
            .writeHeader('Content-Type', 'application/json');
          res.end(JSON.stringify({ status: 'unavailable', ...body }));
        } else {
          res.writeHeader('Content-Type', 'application/json').end(JSON.stringify({ status: down.length > 0 ? 'degraded' : 'ready', ...body }));
        }
      };
      if (!detail || !pool.hasGroups) {
        answer([]);
        return;
      }
      let aborted = false;
      res.onAborted(() => (aborted = true));
      void pool.stats(1000).then((stats) => {
        if (!aborted) res.cork(() => answer(stats));
      });
    });
    app.get('/metrics', (res, req) => {
      if (refusedFraming(res, req)) return;
      if (!admitted(res, req, true)) return;
      let aborted = false;
      res.onAborted(() => (aborted = true));
      void pool.stats().then((stats) => {
        if (aborted) return;
        const body =
          metrics.render(stats, pool.queueDepths(), pool.rejected) +
          metrics.renderHandoffs(pool.handoffs()) +
          metrics.renderSlots({
            epoch: pool.epoch,
            moving: pool.movingSlots,
            redirects: pool.redirects,
            refreshes: pool.refreshes,
            progress: pool.moveProgress,
          }) +
          (auth === null ? '' : auth.renderMetrics());
        res.cork(() => res.writeHeader('Content-Type', METRICS_CONTENT_TYPE).end(body));
      });
    });
    app.get('/v1/slots', (res, req) => {
      if (refusedFraming(res, req)) return;
      if (!admitted(res, req, true)) return;
      res.writeHeader('Content-Type', 'application/json');
      res.end(
        JSON.stringify({
          slots: SLOT_COUNT,
          hash: 'crc16-xmodem',
          hashTags: pool.hashTags,
          shards: pool.shardCount,
          epoch: pool.epoch,
          moving: pool.movingSlots,
          ranges: pool.slotRanges(),
        }),
      );
    });
    app.any('/*', (res, req) => {
      if (refusedFraming(res, req)) return;
      writeError(res, 'KV_ERR_ROUTE_NOT_FOUND', 'no such route; see README for the API', undefined, { head: req.getMethod() === 'head', close: hasBody(req) });
    });
    return app;
  };

  const listen = (app: TemplatedApp, port: number): Promise<us_listen_socket> =>
    new Promise<us_listen_socket>((resolve, reject) => {
      app.listen(config.host, port, (sock) => (sock ? resolve(sock) : reject(new Error(`cannot listen on ${config.host}:${port}`))));
    });
  // Old apps stay referenced: connections they accepted live on until they close.
  const apps: TemplatedApp[] = [buildApp(tls)];
  let listenSocket: us_listen_socket;
  try {
    // uWS would share a port another process holds (SO_REUSEPORT): refuse it first (port-probe.ts).
    await probePort(config.host, config.port, 'KVSQL_PORT', '--port');
    listenSocket = await listen(apps[0], config.port);
    if (tls !== null && config.port === 0) {
      // uWS sets SO_REUSEPORT only on an explicit port, and a TLS reload listens a second time on
      // the same port: listen again on the port just picked.
      const picked = uws.us_socket_local_port(listenSocket);
      uws.us_listen_socket_close(listenSocket);
      listenSocket = await listen(apps[0], picked);
    }
  } catch (err) {
    await pool.stop(1000); // the actors and their MySQL pools would otherwise keep the process alive
    throw err;
  }
  const port = uws.us_socket_local_port(listenSocket);
  let redis: RespServer | null = null;
  if (config.redisPort !== null) {
    try {
      // With auth on, the Redis door checks the same tokens (AUTH <token>); TLS as on the HTTP port.
      const guard = opts.redisGuard ?? (auth !== null ? (respAuthGuard(auth) satisfies RespGuard) : undefined);
      const [hardBytes, softBytes, softSeconds] = config.redisPubsubBufferLimit;
      redis = await startRespServer({
        ...apiContext,
        host: config.host,
        port: config.redisPort,
        maxInflight: config.redisMaxInflight,
        guard,
        tls,
        log,
        notifyFlags: notifyFlagsOf(config.redisNotifyKeyspaceEvents),
        pubsubLimit: { hardBytes, softBytes, softSeconds },
        // The change feed, when on, is the keyspace source: every gateway's and door's writes and
        // the expirer's `expired` (feedKeyspaceSource, gateway/resp/keyspace-source.ts); else the
        // interim local one.
        keyspaceSource: opts.keyspaceSource ?? (feed !== null ? feedKeyspaceSource(feed, log) : undefined),
        publishBus: opts.publishBus,
        flushEnabled: config.redisFlush,
      });
    } catch (err) {
      uws.us_listen_socket_close(listenSocket);
      await pool.stop(1000);
      throw new Error(
        `cannot listen for Redis clients on ${config.host}:${config.redisPort} (KVSQL_REDIS_PORT; "off" turns it off): ${(err as Error).message}`,
      );
    }
  }
  const redisPort = redis?.port ?? null;
  if (redis !== null) metrics.redisConnections = () => redis!.connections;
  log.info(
    { host: config.host, port, redisPort, shards: shardUrls.length, batching: config.batching, auth: auth !== null, tls: tls !== null },
    'kvsql listening',
  );
  if (tls !== null) log.info({ cert: tls.certFile, validTo: tls.validTo }, 'TLS on');

  let closed: Promise<void> | null = null;
  let reloading: Promise<string[]> = Promise.resolve([]);
  const reload = (): Promise<string[]> =>
    (reloading = reloading.then(async () => {
      const errors: string[] = [];
      if (closed) return errors;
      if (auth !== null) {
        const err = auth.reload();
        if (err === null) {
          const revoked = refreshTokens(apiContext);
          if (revoked > 0) log.info({ closed: revoked }, 'auth: WebSockets of revoked tokens closed');
        } else {
          errors.push(`KVSQL_AUTH_FILE: ${err}`);
        }
      }
      if (tls !== null) {
        try {
          const next = serverTls(config)!;
          const app = buildApp(next);
          const sock = await listen(app, port);
          if (closed) {
            uws.us_listen_socket_close(sock);
            return errors;
          }
          uws.us_listen_socket_close(listenSocket);
          listenSocket = sock;
          apps.push(app);
          tls = next;
          redis?.setTls(next);
          log.info({ cert: next.certFile, validTo: next.validTo }, 'TLS certificate reloaded');
        } catch (err) {
          const message = `TLS: ${(err as Error).message}; the previous certificate stays in use`;
          log.error({ err: message }, 'TLS reload failed');
          errors.push(message);
        }
      }
      return errors;
    }));

  const close = (): Promise<void> => {
    if (closed) return closed;
    closed = (async () => {
      closing = true;
      uws.us_listen_socket_close(listenSocket);
      redis?.stopListening();
      // Watchers end first, each told its cursor (they resume on another gateway).
      feed?.closeAll({ code: 'KV_ERR_SHUTTING_DOWN', message: 'server is shutting down; resume from the cursor' });
      const deadline = Date.now() + config.shutdownTimeoutMs;
      while (inflight.n > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      if (inflight.n > 0) log.warn({ inflight: inflight.n }, 'shutdown timeout: answering no more');
      for (const ws of sockets) ws.end(1001, 'server shutting down');
      await redis?.closeConnections(1000);
      await pool.stop(Math.max(1000, deadline - Date.now()));
      metrics.close();
      log.info({}, 'kvsql stopped');
    })();
    return closed;
  };

  return { port, redisPort, host: config.host, pool, auth, tls: tls !== null, feed, reload, close };
}
