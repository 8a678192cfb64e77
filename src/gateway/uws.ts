/**
 * Owns loading uWebSockets.js. Relies on the `uWebSockets.js` package (an unofficial native build
 * for Node 20). That package silently falls back to a slow pure-Node server when its binary does
 * not load; kvsql refuses to run on the fallback rather than serve at a fraction of its speed.
 */
import type * as UWS from 'uWebSockets.js';

export class UwsFallbackError extends Error {
  override name = 'UwsFallbackError';
}

export function loadUws(): typeof UWS {
  if (/^(1|true)$/i.test(process.env.UWS_USE_FALLBACK ?? '')) {
    throw new UwsFallbackError('UWS_USE_FALLBACK is set: kvsql needs the native uWebSockets.js binary; unset it');
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const uws = require('uWebSockets.js') as typeof UWS;
  if (!isNative(uws)) {
    throw new UwsFallbackError(
      `uWebSockets.js loaded its pure-Node fallback, not the native binary (needs ` +
        `binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node, Node 20 on Linux x64/arm64 or macOS). ` +
        'Refusing to start: run on Node 20 (ABI 115) or reinstall dependencies.',
    );
  }
  return uws;
}

/** The native App is a C++ function; the fallback's is JavaScript. */
export function isNative(uws: typeof UWS): boolean {
  return typeof uws.App === 'function' && /\[native code\]/.test(Function.prototype.toString.call(uws.App));
}
