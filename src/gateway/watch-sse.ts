/**
 * Owns GET /v1/watch: a key prefix's changes as Server-Sent Events. Relies on uWebSockets.js,
 * the feed hub, http-api's key decoding and http-errors. Must not touch MySQL or the actors.
 *
 *   GET /v1/watch?prefix=user%3A&from=now        (or Last-Event-ID: <cursor>, which wins)
 *   : kvsql watch                                  (at once: the stream is open)
 *   id: <cursor>\nevent: ready\ndata: {"cursor":"..."}          once the watch runs
 *   id: <cursor>\nevent: put\ndata: {"key":"user:1","version":7,"at":...,"expiresAt":null,"shard":0,"seq":123}
 *   event: error\ndata: {"code":"KV_ERR_WATCH_TOO_SLOW","message":"...","cursor":"..."}   then the end
 *
 * Every event's `id:` is the cursor after it, so a browser's EventSource resumes by itself
 * (Last-Event-ID) after a dropped connection, losing nothing. uWS lifetimes: the request is read
 * before returning, onAborted is set, every later write is corked, and nothing touches `res`
 * after abort or end. Memory: bytes written while uWS reports backpressure are counted; past
 * KVSQL_FEED_WATCHER_BUFFER_BYTES the watch is cut off with its cursor.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { KvError, statusOf, toErrorData } from '../protocol/errors';
import type { TokenEntry } from '../protocol/access';
import { watchRefusal } from './door-policy';
import { decodeKey, keyText } from './http-api';
import type { FeedError, FeedEvent, Subscription } from './feed-hub';
import { writeError } from './http-errors';
import { refusedFraming } from './http-framing';
import type { WsContext } from './ws-api';

export const WATCH_PATH = '/v1/watch';
/** A comment line this often keeps proxies from closing an idle stream. */
const HEARTBEAT_MS = 15_000;

const WATCH_PARAMS = new Set(['prefix', 'exact', 'from']);

function parseWatchQuery(raw: string): { prefix: Uint8Array; exact: boolean; from: string } {
  let prefix: Buffer = Buffer.alloc(0);
  let exact = false;
  let from = 'now';
  for (const part of raw.split('&')) {
    if (part.length === 0) continue;
    const eq = part.indexOf('=');
    const name = eq === -1 ? part : part.slice(0, eq);
    const text = eq === -1 ? '' : part.slice(eq + 1).replace(/\+/g, ' ');
    if (!WATCH_PARAMS.has(name))
      throw new KvError('KV_ERR_BAD_REQUEST', `unknown query parameter "${name.slice(0, 40)}" (allowed: ${[...WATCH_PARAMS].join(', ')})`);
    if (name === 'prefix') prefix = decodeKey(text, 0);
    else if (name === 'from')
      from = text; // base64url: nothing to unescape
    else exact = text === '1' || text === 'true' || text === '';
  }
  if (prefix.length > 1024) throw new KvError('KV_ERR_KEY_TOO_LONG', `prefix is ${prefix.length} bytes, the limit is 1024`);
  return { prefix, exact, from: from === '' ? 'now' : from };
}

export function mountWatchSse(app: TemplatedApp, ctx: WsContext): void {
  app.get(WATCH_PATH, (res: HttpResponse, req: HttpRequest) => {
    if (refusedFraming(res, req)) return;
    if (ctx.closing()) {
      writeError(res, 'KV_ERR_SHUTTING_DOWN', 'server is shutting down');
      return;
    }
    let q: { prefix: Uint8Array; exact: boolean; from: string };
    let who: TokenEntry | null = null;
    try {
      if (ctx.auth !== null) who = ctx.auth.authenticateHttp(res, req);
      q = parseWatchQuery(req.getQuery() ?? '');
      const last = req.getHeader('last-event-id');
      if (last !== '') q.from = last;
      if (ctx.feed === null) throw new KvError('KV_ERR_BAD_REQUEST', 'the change feed is off on this gateway (KVSQL_FEED=off)');
      const refused = watchRefusal(ctx.auth, 'http', who, q.prefix);
      if (refused !== null) throw refused;
    } catch (err) {
      const e = toErrorData(err);
      ctx.metrics.observe('http', 'watch', statusOf(e.code), 0);
      writeError(res, e.code, e.message);
      return;
    }
    const limit = ctx.feedWatcherBufferBytes;
    let done = false;
    let backlog = 0;
    let sub: Subscription | null = null;
    let heartbeat: NodeJS.Timeout | null = null;
    const finish = (): void => {
      done = true;
      if (heartbeat !== null) clearInterval(heartbeat);
      sub?.unsubscribe();
    };
    const write = (text: string): void => {
      if (done) return;
      res.cork(() => {
        if (!res.write(text)) backlog += text.length;
      });
    };
    const end = (text: string): void => {
      if (done) return;
      res.cork(() => res.end(text));
      finish();
    };
    res.onAborted(finish);
    res.onWritable(() => {
      backlog = 0;
      return true;
    });
    const sink = {
      onEvent(e: FeedEvent, cursor: string): void {
        if (done) return;
        if (backlog > limit) {
          end(
            `event: error\ndata: ${JSON.stringify({ code: 'KV_ERR_WATCH_TOO_SLOW', message: `more than ${limit} bytes of events were waiting to be sent; resume from the cursor`, cursor })}\n\n`,
          );
          return;
        }
        write(
          `id: ${cursor}\nevent: ${e.type}\ndata: {"key":"${keyText(e.key)}","version":${e.version},"at":${e.at},"expiresAt":${e.expiresAt},"shard":${e.shard},"seq":${e.id}}\n\n`,
        );
      },
      onError(err: FeedError): void {
        end(`event: error\ndata: ${JSON.stringify({ code: err.code, message: err.message, cursor: err.cursor })}\n\n`);
      },
      backlogged(): boolean {
        return backlog > limit / 2;
      },
    };
    res.cork(() => {
      res
        .writeStatus('200 OK')
        .writeHeader('Content-Type', 'text/event-stream')
        .writeHeader('Cache-Control', 'no-cache')
        .writeHeader('X-Accel-Buffering', 'no');
      res.write(': kvsql watch\n\n');
    });
    try {
      sub = ctx.feed!.subscribe({ prefix: q.prefix, exact: q.exact, from: q.from }, sink);
    } catch (err) {
      const e = toErrorData(err);
      ctx.metrics.observe('http', 'watch', statusOf(e.code), 0);
      end(`event: error\ndata: ${JSON.stringify({ code: e.code, message: e.message })}\n\n`);
      return;
    }
    ctx.metrics.observe('http', 'watch', 200, 0);
    heartbeat = setInterval(() => write(':\n\n'), HEARTBEAT_MS);
    heartbeat.unref();
    void ctx.feed!.ready(sub).then((cursor) => write(`id: ${cursor}\nevent: ready\ndata: {"cursor":"${cursor}"}\n\n`));
  });
}
