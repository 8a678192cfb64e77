/**
 * Owns the client's public types: keys and values, the options, and what each method resolves.
 * Relies on protocol/ws-format for the option types the server reads the same way. Pure types:
 * no code.
 */
import type { DelOptions, ListOptions, PutOptions } from '../protocol/ws-format';

export type { PutOptions, DelOptions, ListOptions };

export type Key = string | Uint8Array;
export type Value = string | Uint8Array;

/** Who the client is and whom it trusts (not numbers: kept apart from the numeric options). */
export interface SecurityOptions {
  /** Access token, sent as `Authorization: Bearer <token>` at the upgrade. */
  token?: string;
  /** PEM CA certificate(s) a `wss://` server's certificate must chain to (default: Node's CAs). */
  ca?: string | Buffer | Array<string | Buffer>;
}

export interface ClientOptions extends SecurityOptions {
  /** Ops on the wire at once; more are queued locally. Default 1024. */
  maxInflight?: number;
  /** Per-op timeout in ms, from the call until the reply (queued time included). Default 10000. */
  timeoutMs?: number;
  /** Values above this are refused locally (set it to the server's KVSQL_MAX_VALUE_BYTES). Default 1 MiB. */
  maxValueBytes?: number;
  /** Keys above this are refused locally (the server's limit is 1024 and not configurable). */
  maxKeyBytes?: number;
  /**
   * A frame of several ops stays under this many bytes; a single op larger than it goes alone.
   * Default 60 KiB: below the 64 KiB a server always allows beyond its largest value.
   */
  maxFrameBytes?: number;
  /** First reconnect delay in ms; doubles per failed attempt (with jitter). Default 100. */
  reconnectMinDelayMs?: number;
  /** Largest reconnect delay in ms. Default 5000. */
  reconnectMaxDelayMs?: number;
}

export interface GetResult {
  /** The value's bytes. Never pins a larger received frame: a small value is copied out of it. */
  value: Buffer;
  version: number;
  /** Unix ms when the key expires, or null when it has no TTL. */
  expiresAt: number | null;
}

export interface PutResult {
  version: number;
  expiresAt: number | null;
  /** True when the key was absent (or expired) before this put. */
  created: boolean;
}

/** After incr: the new value (bigint: counters are signed 64-bit, past 2^53). */
export interface IncrResult {
  value: bigint;
  version: number;
  expiresAt: number | null;
  /** True when the key was absent (or expired) and the increment created it. */
  created: boolean;
}

/** After incrByFloat: the new value. */
export interface IncrFloatResult {
  value: number;
  version: number;
  expiresAt: number | null;
  created: boolean;
}

export interface TtlResult {
  /** Milliseconds left, or null when the key has no TTL. */
  ttlMs: number | null;
  expiresAt: number | null;
}

/** A compare of txn(): the key has exactly this version, or exists (any version), or is absent. */
export type TxnCompare = { key: Key; version: number } | { key: Key; exists: boolean };

/** An op of txn(), named as the method that does it alone. */
export type TxnOp =
  | { op: 'get'; key: Key }
  | { op: 'put'; key: Key; value: Value; opts?: PutOptions }
  | { op: 'del'; key: Key; opts?: DelOptions }
  | { op: 'pexpire'; key: Key; ttlMs: number }
  | { op: 'persist'; key: Key }
  | { op: 'pttl'; key: Key }
  | { op: 'incr'; key: Key; by?: number | bigint }
  | { op: 'incrByFloat'; key: Key; by: number }
  | { op: 'getdel'; key: Key };

/** What txn() takes: if every compare holds, the success ops run, else the failure ops. */
export interface TxnRequest {
  compare?: TxnCompare[];
  success?: TxnOp[];
  failure?: TxnOp[];
}

/**
 * What txn() resolves: which list ran, and each of its ops' results as that op's method
 * resolves it, or the KvClientError it would reject with (an INCR of text fails alone).
 */
export interface TxnResult {
  succeeded: boolean;
  results: unknown[];
}

/** What list() and listAll() take: keys with `prefix` (default: every key), in byte order. */
export interface ListRequest extends ListOptions {
  prefix?: Key;
}

export interface ListItem {
  key: Buffer;
  /** With `values: true`: the value and its expiry (unix ms, or null for no TTL). */
  value?: Buffer;
  expiresAt?: number | null;
}

export interface ListResult {
  items: ListItem[];
  /** Pass as `after` for the next page; null once the listing is complete. */
  next: Buffer | null;
}
