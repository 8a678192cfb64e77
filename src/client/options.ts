/**
 * Owns the client's options: their defaults and their checks, resolved once when a client is made
 * (unknown keys and non-positive numbers refused with the option's name). Relies on types.ts.
 * Never reads the environment: a client is configured by its caller only.
 */
import type { ClientOptions, SecurityOptions } from './types';

const DEFAULTS = {
  maxInflight: 1024,
  timeoutMs: 10_000,
  maxValueBytes: 1024 * 1024,
  maxKeyBytes: 1024,
  maxFrameBytes: 60 * 1024,
  reconnectMinDelayMs: 100,
  reconnectMaxDelayMs: 5000,
} satisfies Required<Omit<ClientOptions, keyof SecurityOptions>>;

export type NumericOptions = typeof DEFAULTS;

export interface ResolvedOptions extends NumericOptions {
  security: SecurityOptions;
}

/** The options with defaults filled in, frozen; throws TypeError naming a bad option. */
export function resolveOptions(opts: ClientOptions): Readonly<ResolvedOptions> {
  const { token, ca, ...numeric } = opts;
  for (const k of Object.keys(numeric)) {
    if (!(k in DEFAULTS)) throw new TypeError(`unknown client option "${k}" (known: ${Object.keys(DEFAULTS).join(', ')}, token, ca)`);
  }
  if (token !== undefined && (typeof token !== 'string' || !/^[\x21-\x7e]+$/.test(token))) {
    throw new TypeError('client option token must be a non-empty string of printable ASCII');
  }
  const o = { ...DEFAULTS, ...numeric };
  for (const [k, v] of Object.entries(o)) {
    if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`client option ${k} must be a positive integer, got ${String(v)}`);
  }
  o.reconnectMaxDelayMs = Math.max(o.reconnectMaxDelayMs, o.reconnectMinDelayMs);
  return Object.freeze({ ...o, security: { token, ca } });
}
