/**
 * Owns the client's change-feed watch: one WebSocket of its own per watch (so a busy watch never
 * delays ops, and ops never delay events), the watch op (15) on it, and resuming. Relies on `ws`
 * and the wire codec. Must not import gateway code.
 *
 *   socket ─ [1, 15, prefix, {from, exact}] ─> server
 *          <─ [1, 200, cursor] ready   <─ [1, 206, type, key, version, at, expiresAt, cursor] ...
 *   events ─> queue ─> async iterator (next())
 *
 * Resuming: after a dropped connection, or an error the server sends with a cursor (watch too
 * slow, shutting down, shard restarted), it connects again and watches from the last cursor it
 * handed out: at least once, nothing lost; a consumer drops repeats by (shard, seq) or version.
 * A cursor past retention, a bad cursor or a refused token end the iteration with that error.
 * Memory: while more than MAX_QUEUED events wait for the consumer the socket is not read (the
 * server then cuts the watch off as too slow, and it resumes once the consumer catches up).
 */
import WebSocket from 'ws';
import { Packr } from 'msgpackr';
import { decodeReplyFrame } from '../protocol/ws-client-codec';
import { OP_WATCH } from '../protocol/ops';
import { KvClientError } from './errors';

export interface WatchOptions {
  /** 'now' (default) or a cursor from an earlier event or error. */
  from?: string;
  /** Watch exactly this key instead of a prefix. */
  exact?: boolean;
}

export interface WatchEvent {
  type: 'put' | 'del' | 'expire' | 'persist' | 'expired';
  key: Buffer;
  /** The version written (put), or the version of the value acted on (del, expire, persist, expired). */
  version: number;
  /** Unix ms (the shard's clock) when the change committed. */
  at: number;
  expiresAt: number | null;
  /** Resume after this event: pass as `from`. */
  cursor: string;
  /** The shard (kv_shard index) and the event's id in its feed: together they name it exactly. */
  shard: number;
  seq: number;
}

export interface Watch extends AsyncIterableIterator<WatchEvent> {
  /** The cursor after the last event handed out (or where the watch started). */
  readonly cursor: string | null;
  /** Resolves once the server runs the watch (its starting cursor). */
  readonly ready: Promise<string>;
  close(): void;
}

/** Events read ahead of the consumer before the socket stops being read. */
const MAX_QUEUED = 10_000;
/** Errors after which the watch resumes by itself from the error's cursor. */
const RESUMABLE = new Set(['KV_ERR_WATCH_TOO_SLOW', 'KV_ERR_SHUTTING_DOWN', 'KV_ERR_SHARD_UNAVAILABLE']);
const RESUME_DELAY_MS = 200;
const WATCH_ID = 1;

const packr = new Packr({ useRecords: false, moreTypes: false });

export function openWatch(
  url: string,
  prefix: Uint8Array,
  opts: WatchOptions,
  security: { token?: string; ca?: string | Buffer | Array<string | Buffer> },
): Watch {
  const queue: WatchEvent[] = [];
  let head = 0;
  let cursor: string | null = opts.from !== undefined && opts.from !== 'now' ? opts.from : null;
  let failure: KvClientError | null = null;
  let closed = false;
  let socket: WebSocket | null = null;
  let paused = false;
  let wake: (() => void) | null = null;
  let readyResolve!: (c: string) => void;
  let readyReject!: (e: Error) => void;
  const ready = new Promise<string>((res, rej) => {
    readyResolve = res;
    readyReject = rej;
  });
  ready.catch(() => undefined);

  const notify = (): void => {
    const w = wake;
    wake = null;
    w?.();
  };

  const connect = (): void => {
    if (closed) return;
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      headers: security.token === undefined ? undefined : { Authorization: `Bearer ${security.token}` },
      ca: security.ca,
    });
    ws.binaryType = 'nodebuffer';
    socket = ws;
    let ended = false;
    const resume = (): void => {
      if (ended) return;
      ended = true;
      ws.removeAllListeners('message');
      ws.terminate();
      if (!closed && failure === null) setTimeout(connect, RESUME_DELAY_MS).unref();
    };
    ws.on('open', () => {
      ws.send(packr.pack([[WATCH_ID, OP_WATCH, Buffer.from(prefix), { from: cursor ?? 'now', exact: opts.exact === true }]]));
    });
    ws.on('message', (data: Buffer) => {
      let replies;
      try {
        replies = decodeReplyFrame(data);
      } catch {
        return resume();
      }
      for (const r of replies) {
        if (r[0] !== WATCH_ID) continue;
        if (r[1] === 200) {
          cursor = r[2] as string;
          readyResolve(cursor);
        } else if (r[1] === 206) {
          const a = r as unknown[];
          queue.push({
            type: a[2] as WatchEvent['type'],
            key: Buffer.from(a[3] as Uint8Array),
            version: a[4] as number,
            at: a[5] as number,
            expiresAt: (a[6] as number | null) ?? null,
            cursor: a[7] as string,
            shard: a[8] as number,
            seq: a[9] as number,
          });
        } else {
          const e = (r[2] ?? {}) as { code?: string; message?: string; cursor?: string };
          if (typeof e.cursor === 'string' && e.cursor.length > 0 && RESUMABLE.has(String(e.code))) {
            if (queue.length === head) cursor = e.cursor;
            else pendingCursor = e.cursor;
            return resume();
          }
          failure = new KvClientError((e.code ?? 'KV_ERR_INTERNAL') as KvClientError['code'], e.message ?? 'watch failed', r[1]);
          readyReject(failure);
          ended = true;
          ws.terminate();
        }
      }
      if (queue.length - head > MAX_QUEUED && !paused) {
        paused = true;
        ws.pause();
      }
      notify();
    });
    ws.on('error', (err: Error) => {
      const refused = /Unexpected server response: (401|403)/.exec(err.message);
      if (refused !== null) {
        failure = new KvClientError(refused[1] === '401' ? 'KV_ERR_UNAUTHORIZED' : 'KV_ERR_FORBIDDEN', err.message);
        readyReject(failure);
        notify();
      }
    });
    ws.on('close', () => {
      resume();
      notify();
    });
  };
  // A resumable error arrived while events it covers were still queued: the cursor moves there
  // only once the consumer has taken them (each event carries its own cursor meanwhile).
  let pendingCursor: string | null = null;

  const it: Watch = {
    get cursor() {
      return cursor;
    },
    ready,
    close(): void {
      if (closed) return;
      closed = true;
      socket?.terminate();
      notify();
    },
    async next(): Promise<IteratorResult<WatchEvent>> {
      for (;;) {
        if (head < queue.length) {
          const e = queue[head++];
          if (head === queue.length) {
            queue.length = 0;
            head = 0;
          } else if (head > 4096 && head * 2 > queue.length) {
            queue.splice(0, head);
            head = 0;
          }
          cursor = e.cursor;
          if (queue.length === head && pendingCursor !== null) {
            cursor = pendingCursor;
            pendingCursor = null;
          }
          if (paused && queue.length - head < MAX_QUEUED / 2) {
            paused = false;
            socket?.resume();
          }
          return { value: e, done: false };
        }
        if (failure !== null) throw failure;
        if (closed) return { value: undefined, done: true };
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
    async return(): Promise<IteratorResult<WatchEvent>> {
      it.close();
      return { value: undefined, done: true };
    },
    [Symbol.asyncIterator]() {
      return it;
    },
  };
  connect();
  return it;
}
