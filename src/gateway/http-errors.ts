/**
 * Owns how an error is written on HTTP: the status line, the headers the status calls for
 * (Retry-After from the registry's policy, WWW-Authenticate) and the JSON body
 * `{"error":{"code","message"}}`, the message as the registry lets a client see it (clientMessage). Used by every HTTP route and the WebSocket upgrade. Relies on
 * protocol/errors (status and Retry-After of each code) and uWebSockets.js. Must not decide which
 * error applies: callers pass the code.
 */
import type { HttpResponse } from 'uWebSockets.js';
import { clientMessage, retryAfterOf, statusOf, type ErrorCode } from '../protocol/errors';

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  204: '204 No Content',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  409: '409 Conflict',
  412: '412 Precondition Failed',
  413: '413 Payload Too Large',
  414: '414 URI Too Long',
  429: '429 Too Many Requests',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
  504: '504 Gateway Timeout',
};

export const statusLine = (s: number): string => STATUS_TEXT[s] ?? `${s} Unknown`;

export interface ErrorWriteOptions {
  /** The request was HEAD: headers only (a body would be read as the start of the next reply). */
  head?: boolean;
  /**
   * The request's body is left unread: uWebSockets.js closes such a connection after the reply,
   * so say `Connection: close`, or a keep-alive client reuses the dying socket ("socket hang up").
   */
  close?: boolean;
}

export const CLOSE: ErrorWriteOptions = Object.freeze({ close: true });
export const HEAD: ErrorWriteOptions = Object.freeze({ head: true });

/** Writes a JSON error. Only call corked (inside a handler's synchronous part or res.cork). */
export function writeError(res: HttpResponse, code: ErrorCode | string, message: string, extra?: () => void, opts?: ErrorWriteOptions): void {
  const status = statusOf(code);
  res.writeStatus(statusLine(status));
  const retryAfter = retryAfterOf(code);
  if (retryAfter !== null) res.writeHeader('Retry-After', String(retryAfter));
  else if (status === 401) res.writeHeader('WWW-Authenticate', 'Bearer realm="kvsql"');
  extra?.();
  res.writeHeader('Content-Type', 'application/json');
  if (opts?.head)
    res.endWithoutBody(); // (a HEAD request has no body to leave unread)
  else res.end(JSON.stringify({ error: { code, message: clientMessage(code, message) } }), opts?.close);
}
