/**
 * Owns closed-loop HTTP load through autocannon: N keep-alive connections, each sending its next
 * request when the previous one answers, every request on a random key of the key space
 * (autocannon `requests[].setupRequest`). Relies on autocannon. Latency is recorded into our own
 * histogram from autocannon's per-response event (its own histogram rounds to whole ms).
 */
import autocannon from 'autocannon';
import { LatencyHistogram } from './histogram';

export type HttpMix = 'get' | 'put' | 'mixed' | 'noop';

export interface AutocannonRun {
  base: string;
  connections: number;
  durationS: number;
  mix: HttpMix;
  keys: number;
  keyPrefix: string;
  value: Buffer;
  readRatio: number;
  /** Sent with every request (e.g. Authorization for a gateway with auth on). */
  headers?: Record<string, string>;
  onTick?: (ok: number, errors: number, elapsedS: number) => void;
}

export interface HttpLoadResult {
  hist: LatencyHistogram;
  ok: number;
  errors: number;
  /** "503 x12, 404 x3, connection errors x1" */
  errorDetail: string;
  elapsedS: number;
}

export function runAutocannon(run: AutocannonRun): Promise<HttpLoadResult> {
  const { keys, keyPrefix, value, readRatio } = run;
  const kvPath = `/v1/kv/${keyPrefix}`;
  const randomKeyPath = () => kvPath + Math.floor(Math.random() * keys);
  const extra = run.headers ?? {};
  let request: autocannon.Request;
  switch (run.mix) {
    case 'noop':
      request = { method: 'GET', path: '/v1/noop', headers: { ...extra } };
      break;
    case 'get':
      request = { method: 'GET', headers: { ...extra }, setupRequest: (req) => ((req.path = randomKeyPath()), req) };
      break;
    case 'put':
      request = {
        method: 'PUT',
        body: value,
        headers: { 'content-type': 'application/octet-stream', ...extra },
        setupRequest: (req) => ((req.path = randomKeyPath()), req),
      };
      break;
    case 'mixed':
      request = {
        setupRequest: (req) => {
          req.path = randomKeyPath();
          // Fresh headers every time: autocannon writes Content-Length into the headers object
          // it hands us and keeps it, so a GET after a PUT would otherwise announce a body.
          if (Math.random() < readRatio) {
            req.method = 'GET';
            req.body = undefined;
            req.headers = { ...extra };
          } else {
            req.method = 'PUT';
            req.body = value;
            req.headers = { 'content-type': 'application/octet-stream', ...extra };
          }
          return req;
        },
      };
      break;
  }
  const hist = new LatencyHistogram();
  let ok = 0;
  let failed = 0;
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const instance = autocannon({ url: run.base, connections: run.connections, duration: run.durationS, requests: [request], timeout: 30 }, (err, result) => {
      clearInterval(ticker);
      if (err) return reject(err);
      const codes = Object.entries(result.statusCodeStats)
        .filter(([code]) => Number(code) >= 400)
        .map(([code, s]) => `${code} x${s.count}`);
      if (result.errors > 0) codes.push(`connection errors/timeouts x${result.errors}`);
      resolve({ hist, ok, errors: result.non2xx + result.errors, errorDetail: codes.join(', '), elapsedS: result.duration });
    });
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) {
        ok++;
        hist.recordMs(responseTime);
      } else {
        failed++;
      }
    });
    const ticker = setInterval(() => run.onTick?.(ok, failed, (performance.now() - started) / 1000), 250);
  });
}
