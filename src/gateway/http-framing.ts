/**
 * Owns HTTP message framing (RFC 9112 §6): refusing a request whose body length is ambiguous, and
 * telling whether a request carries a body. Every HTTP route and the WebSocket upgrade call it
 * first. Relies on http-errors and uWebSockets.js. Must not read the body.
 *
 * uWebSockets.js itself closes the connection, answering nothing, on a Content-Length that is not
 * all digits (negative, "+3", "3, 3", over 2^63) and on Content-Length together with
 * Transfer-Encoding. It does NOT look past the first header line of a name: with
 * `Content-Length: 3` and `Content-Length: 5` it reads 3 bytes and takes the other 2 as the start
 * of the next request, while a proxy that honours the second line forwards 5 bytes as one request:
 * request smuggling. An empty value (`Content-Length:`) counts as no body. So every route checks
 * all lines of both headers first (req.getHeader sees only the first):
 *   - at most one Content-Length line, and its value digits only (duplicates are refused even when
 *     identical: RFC 9110 §8.6 lets a recipient reject them, and uWS already refuses `3, 3`);
 *   - at most one Transfer-Encoding line, and its value exactly `chunked` (any case): uWS would
 *     de-chunk `gzip, chunked` and hand over gzip bytes as the value; `identity` is obsolete;
 *   - not both (a line uWS let through, e.g. an empty Content-Length, with Transfer-Encoding).
 * A refusal is 400 KV_ERR_BAD_REQUEST with `Connection: close`: the body's extent is unknown, so
 * nothing after the head can be trusted as the next request. The reply is written on the next turn,
 * not in the handler: checked on uWS 20.30, a request pipelined behind a synchronous reply runs
 * even when that reply closes the connection (so the smuggled request would run), while a request
 * pipelined behind a pending reply makes uWS drop the connection without running it. So a
 * smuggling attempt ends in a close with no reply at all, and a lone bad request gets its 400.
 */
import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { CLOSE, writeError } from './http-errors';

let clLines = 0;
let teLines = 0;
let framingBad: string | null = null;

/** req.forEach visitor: module-level, so no closure per request. Header names are lower case. */
function visitFramingHeader(name: string, value: string): void {
  if (name === 'content-length') {
    clLines++;
    if (!/^[0-9]+$/.test(value)) framingBad = `Content-Length must be a non-negative decimal integer, got "${value.slice(0, 40)}"`;
  } else if (name === 'transfer-encoding') {
    teLines++;
    if (value.trim().toLowerCase() !== 'chunked')
      framingBad = `Transfer-Encoding must be "chunked" (no other coding is supported), got "${value.slice(0, 40)}"`;
  }
}

/** Why the request's framing is refused, or null. Call inside the handler. */
export function framingProblem(req: HttpRequest): string | null {
  clLines = 0;
  teLines = 0;
  framingBad = null;
  req.forEach(visitFramingHeader);
  if (clLines > 1) return `${clLines} Content-Length headers; send exactly one`;
  if (teLines > 1) return `${teLines} Transfer-Encoding headers; send at most one`;
  if (clLines > 0 && teLines > 0) return 'Content-Length and Transfer-Encoding together; send one';
  return framingBad;
}

/**
 * Answers 400 and closes when the request's framing is ambiguous (see framingProblem); returns
 * true when it did, and the handler must stop. Every route calls it first.
 */
export function refusedFraming(res: HttpResponse, req: HttpRequest): boolean {
  const problem = framingProblem(req);
  if (problem === null) return false;
  let aborted = false;
  res.onAborted(() => (aborted = true));
  setImmediate(() => {
    if (!aborted) res.cork(() => writeError(res, 'KV_ERR_BAD_REQUEST', problem, undefined, CLOSE));
  });
  return true;
}

/** True when the request carries a body (only PUT /v1/kv reads one). Call inside the handler. */
export function hasBody(req: HttpRequest): boolean {
  const length = req.getHeader('content-length');
  return (length !== '' && length !== '0') || req.getHeader('transfer-encoding') !== '';
}
