/**
 * Owns the client's one WebSocket: opening it (token, CA), noticing it open, closed or refused,
 * dropping one no longer trusted, and reconnecting with doubling, jittered delays until closed.
 * Relies on the `ws` package. Never holds ops: it reports to the client through `ConnectionEvents`
 * (the client fails what was on the wire; nothing is ever resent).
 *
 *   connect ──open──► open ──close/drop──► detached ──delay (min·2^attempts, ≤ max, ×[0.5,1))──► connect
 *      └──upgrade refused (401/403/404/429): onRefused, then as a close
 */
import WebSocket from 'ws';
import type { KvClientErrorCode } from './errors';
import type { SecurityOptions } from './types';

/** The code an op gets when the upgrade is answered with this status. */
const REFUSALS: Record<string, KvClientErrorCode> = {
  '401': 'KV_ERR_UNAUTHORIZED',
  '403': 'KV_ERR_FORBIDDEN',
  '404': 'KV_ERR_ROUTE_NOT_FOUND',
  '429': 'KV_ERR_TOO_MANY_AUTH_FAILURES',
};

export interface ConnectionEvents {
  onOpen(): void;
  onFrame(data: Buffer): void;
  /** The server refused the upgrade: ops waiting would only time out. */
  onRefused(code: KvClientErrorCode, why: string): void;
  /** The connection is gone (reconnecting follows unless closed). */
  onLost(why: string): void;
}

export interface ConnectionOptions {
  handshakeTimeoutMs: number;
  reconnectMinDelayMs: number;
  reconnectMaxDelayMs: number;
  security: SecurityOptions;
}

export class Connection {
  private socket: WebSocket | null = null;
  private open = false;
  private closed = false;
  private attempts = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private error = '';

  constructor(
    readonly url: string,
    private readonly o: ConnectionOptions,
    private readonly events: ConnectionEvents,
  ) {
    this.connect();
  }

  /** True while a connection is open. */
  get isOpen(): boolean {
    return this.open;
  }

  /** The last socket error's message, '' once connected. */
  get lastError(): string {
    return this.error;
  }

  /** The open socket, or null. */
  get ws(): WebSocket | null {
    return this.open ? this.socket : null;
  }

  private connect(): void {
    this.reconnectTimer = null;
    if (this.closed) return;
    const { token, ca } = this.o.security;
    const ws = new WebSocket(this.url, {
      perMessageDeflate: false,
      handshakeTimeout: this.o.handshakeTimeoutMs,
      headers: token === undefined ? undefined : { Authorization: `Bearer ${token}` },
      ca,
    });
    ws.binaryType = 'nodebuffer';
    this.socket = ws;
    ws.on('open', () => {
      if (ws !== this.socket) return;
      this.open = true;
      this.attempts = 0;
      this.error = '';
      this.events.onOpen();
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (ws !== this.socket) return;
      if (!isBinary) return this.drop('the server sent a text frame');
      this.events.onFrame(data);
    });
    ws.on('error', (err: Error) => {
      this.error = err.message;
      // Refused at the upgrade for the token, or no WebSocket API at this URL's path (404): waiting
      // ops would only time out; fail them now (reconnecting goes on: the server's token file may
      // be reloaded, a proxy's route fixed).
      const refused = /Unexpected server response: (401|403|404|429)/.exec(err.message);
      if (refused !== null)
        this.events.onRefused(
          REFUSALS[refused[1]],
          refused[1] === '404' ? `${err.message}: no WebSocket API at ${this.url} (kvsql serves it at /v1/ws)` : err.message,
        );
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (ws !== this.socket) return;
      const why = reason.length > 0 ? `${code} ${reason.toString()}` : `${code}`;
      this.detach(`the connection closed (${why}${this.error ? `; ${this.error}` : ''})`);
    });
  }

  /** Ends a connection we no longer trust, then reconnects. */
  drop(why: string): void {
    const ws = this.socket;
    this.detach(why);
    ws?.terminate();
  }

  /** The connection is gone: tell the client, then reconnect. */
  private detach(why: string): void {
    this.socket = null;
    this.open = false;
    this.events.onLost(why);
    if (this.closed) return;
    const base = Math.min(this.o.reconnectMaxDelayMs, this.o.reconnectMinDelayMs * 2 ** Math.min(this.attempts, 20));
    this.attempts++;
    this.reconnectTimer = setTimeout(() => this.connect(), base * (0.5 + Math.random() / 2));
  }

  /** Stops reconnecting and closes the socket; resolves once it is closed. */
  close(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const ws = this.socket;
    this.socket = null;
    this.open = false;
    if (ws === null || ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      ws.close(1000, 'client closed');
    });
  }
}
