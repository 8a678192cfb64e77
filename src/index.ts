/**
 * The package entry point: the server for embedding and tests, and (from src/client) the
 * TypeScript client.
 */
export { startServer, type Server } from './gateway/server';
export { resolveConfig, configFrom, type Config } from './config/config';
export { SlotMap, slotOf, SLOT_COUNT } from './protocol/slot-map';
export { KvError, ERRORS, type ErrorCode } from './protocol/errors';
export {
  createClient,
  KvClient,
  KvClientError,
  CLIENT_ERRORS,
  type ClientOptions,
  type DelOptions,
  type GetResult,
  type Key,
  type KvClientErrorCode,
  type PutOptions,
  type PutResult,
  type TtlResult,
  type IncrResult,
  type IncrFloatResult,
  type TxnCompare,
  type TxnOp,
  type TxnRequest,
  type TxnResult,
  type Value,
} from './client';
