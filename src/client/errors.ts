/**
 * Owns the client's error type. Relies on the server's registry (protocol/errors.ts) for every
 * code the server sends, and adds the codes only a client can observe. Match on `code`.
 */
import { statusOf, type ErrorCode } from '../protocol/errors';

/** Codes the client raises itself; never sent by a server. */
export const CLIENT_ERRORS = {
  /**
   * The connection dropped while the op was on the wire: it may or may not have been applied.
   * Never retried by the client (a retried put or del could apply twice or undo another write).
   */
  KV_ERR_CONNECTION_LOST: 500,
  /** close() was called before the op was answered (nginx's "client closed request"). */
  KV_ERR_CLIENT_CLOSED: 499,
} as const;

export type KvClientErrorCode = ErrorCode | keyof typeof CLIENT_ERRORS;

export class KvClientError extends Error {
  readonly code: KvClientErrorCode;
  /** The server's status for server errors; the registry's status for client-side ones. */
  readonly status: number;
  constructor(code: KvClientErrorCode, message: string, status?: number) {
    super(message);
    this.name = 'KvClientError';
    this.code = code;
    this.status = status ?? (CLIENT_ERRORS as Record<string, number>)[code] ?? statusOf(code);
  }
}
