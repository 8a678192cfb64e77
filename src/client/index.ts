/**
 * The client's public surface: createClient and its types. See client.ts for behaviour and
 * docs/websocket-protocol.md for the wire format.
 */
export {
  createClient,
  KvClient,
  type ClientOptions,
  type DelOptions,
  type GetResult,
  type Key,
  type ListItem,
  type ListOptions,
  type ListRequest,
  type ListResult,
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
  type Watch,
  type WatchEvent,
  type WatchOptions,
} from './client';
export { KvClientError, CLIENT_ERRORS, type KvClientErrorCode } from './errors';
