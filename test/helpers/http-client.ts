/**
 * Owns talking HTTP to a test store the way a client does: node:http over a keep-alive agent,
 * paths sent exactly as given (keys percent-encoded byte by byte, so binary keys arrive intact;
 * global fetch would re-normalise the URL), whole bodies as Buffers. Relies on node:http only.
 * Must not interpret replies beyond parsing: tests assert on status, headers and bytes.
 */
import http from 'node:http';
import assert from 'node:assert/strict';
import net from 'node:net';

export interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text(): string;
  json(): any;
}

export interface RequestOptions {
  body?: Uint8Array | string;
  headers?: Record<string, string>;
}

/** Unreserved characters stay as they are; every other byte becomes %XX. */
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/** Percent-encodes every key byte that is not unreserved (so `/` is sent as %2F). */
export function encodeKey(key: string | Uint8Array): string {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
  let out = '';
  for (const b of bytes) {
    const ch = String.fromCharCode(b);
    out += UNRESERVED.test(ch) ? ch : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export const kvPath = (key: string | Uint8Array, query = ''): string => `/v1/kv/${encodeKey(key)}${query ? `?${query}` : ''}`;
export const ttlPath = (key: string | Uint8Array, query = ''): string => `/v1/ttl/${encodeKey(key)}${query ? `?${query}` : ''}`;

export class HttpClient {
  readonly agent: http.Agent;

  constructor(
    readonly port: number,
    maxSockets = 16,
  ) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets });
  }

  request(method: string, path: string, opts: RequestOptions = {}): Promise<HttpReply> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: this.port, method, path, headers: opts.headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            text: () => body.toString('utf8'),
            json: () => JSON.parse(body.toString('utf8')),
          });
        });
      });
      req.on('error', reject);
      req.end(opts.body);
    });
  }

  get(key: string | Uint8Array, headers?: Record<string, string>): Promise<HttpReply> {
    return this.request('GET', kvPath(key), { headers });
  }

  put(key: string | Uint8Array, value: Uint8Array | string, query = '', headers?: Record<string, string>): Promise<HttpReply> {
    return this.request('PUT', kvPath(key, query), { body: value, headers });
  }

  del(key: string | Uint8Array, headers?: Record<string, string>): Promise<HttpReply> {
    return this.request('DELETE', kvPath(key), { headers });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** The version in an `ETag: "<n>"` header. */
export function etagVersion(reply: HttpReply): number {
  const tag = reply.headers.etag;
  assert.match(String(tag), /^"\d+"$/, `ETag ${tag} is not a quoted version`);
  return Number(String(tag).slice(1, -1));
}

/** Asserts a JSON error reply: status, stable code, a message. */
export function assertError(reply: HttpReply, status: number, code: string): void {
  assert.equal(reply.status, status, `expected ${status} ${code}, got ${reply.status} ${reply.text()}`);
  assert.match(String(reply.headers['content-type']), /application\/json/);
  const body = reply.json();
  assert.equal(body.error?.code, code, reply.text());
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.message.length > 0);
}

/**
 * Sends raw bytes on a fresh connection and returns everything the server sends until it closes
 * (send `Connection: close`). Does not half-close: uWebSockets.js treats a client FIN as an abort.
 */
export function rawRequest(port: number, bytes: Buffer | string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error(`no close within ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
  });
}
