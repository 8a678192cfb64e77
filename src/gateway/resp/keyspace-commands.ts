/**
 * Owns the Redis door's keyspace commands, answered by gateway work across the shards: SCAN,
 * KEYS, DBSIZE, RANDOMKEY, each a listing (gateway/key-lister.ts) in the reply queue like any other
 * command (the connection's `promised`), with bounds on what one command may cost. Relies on
 * key-lister, protocol/redis-keyspace (glob, cursor) and the connection's API. Must not touch
 * sockets or MySQL: every page comes through the pool.
 */
import { MAX_LIST_LIMIT } from '../../protocol/listing';
import { OP_GET } from '../../protocol/ops';
import { compileGlob, decodeCursor, encodeCursor } from '../../protocol/redis-keyspace';
import * as resp from '../../protocol/resp';
import { countKeys, listPage } from '../key-lister';
import { intArg, lc } from './args';
import type { RowTuple } from './command-api';
import type { Conn } from './connection';
import { ERR_NOT_INTEGER, ERR_SYNTAX } from './errors';
import { Kind } from './pending-command';

type Handler = (c: Conn, args: Buffer[]) => void;

/** SCAN's page size when COUNT is not given (Redis's default). */
const SCAN_DEFAULT_COUNT = 10;
/** KEYS refuses to answer more keys than this, or more key bytes than KEYS_MAX_BYTES: use SCAN. */
export const KEYS_MAX_KEYS = 100_000;
const KEYS_MAX_BYTES = 16 * 1024 * 1024;
/** KEYS gives up after examining this many keys (a pattern that matches few keys of many). */
export const KEYS_MAX_EXAMINED = 1_000_000;
/** RANDOMKEY picks among at most this many keys after a random point. */
const RANDOMKEY_PAGE = 100;

/**
 * SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]: one listing page of COUNT keys (capped at
 * MAX_LIST_LIMIT) after the cursor's key, within MATCH's literal prefix, then filtered by the
 * pattern, so a page may hold fewer keys than COUNT, or none, before the cursor comes back "0".
 * Every key is a string: TYPE string lists them all, any other TYPE none.
 */
const scan: Handler = (c, args) => {
  const after = decodeCursor(args[1].toString('latin1'), c.srv.limits.maxKeyBytes);
  if (after === undefined) return c.reply(resp.error('ERR invalid cursor'));
  let pattern: Buffer | null = null;
  let count = SCAN_DEFAULT_COUNT;
  let type: string | null = null;
  for (let i = 2; i < args.length; i++) {
    const opt = lc(args[i]);
    if (i + 1 >= args.length) return c.reply(ERR_SYNTAX);
    if (opt === 'match') pattern = args[++i];
    else if (opt === 'count') {
      const n = intArg(args[++i]);
      if (n === null) return c.reply(ERR_NOT_INTEGER);
      if (n < 1) return c.reply(ERR_SYNTAX);
      count = Math.min(n, MAX_LIST_LIMIT);
    } else if (opt === 'type') type = lc(args[++i]);
    else return c.reply(ERR_SYNTAX);
  }
  const glob = pattern === null ? null : compileGlob(pattern);
  const prefix = glob === null ? Buffer.alloc(0) : glob.prefix;
  c.srv.guard.authorize(c, OP_GET, prefix);
  if (type !== null && type !== 'string') return c.reply(resp.encode(['0', []], c.proto));
  const pool = c.srv.ctx.pool;
  c.promised(Kind.Scan, async () => {
    const page = await listPage(pool, { prefix, after, limit: count, values: false });
    const keys = glob === null ? page.keys : page.keys.filter((k) => glob.matches(k));
    return scanReply(encodeCursor(page.next), keys);
  });
};

function scanReply(cursor: string, keys: Uint8Array[]): Buffer {
  const parts: Array<string | Uint8Array> = [resp.arrayHeader(2), resp.bulkText(cursor), resp.arrayHeader(keys.length)];
  for (const k of keys) parts.push(resp.bulk(k));
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
}

/**
 * KEYS pattern: a full scan of the pattern's literal prefix (every shard, pages of
 * MAX_LIST_LIMIT), bounded: past KEYS_MAX_KEYS matches (or KEYS_MAX_BYTES of them), or
 * KEYS_MAX_EXAMINED keys examined, it answers an error instead of building more.
 */
const keys: Handler = (c, args) => {
  const glob = compileGlob(args[1]);
  c.srv.guard.authorize(c, OP_GET, glob.prefix);
  const pool = c.srv.ctx.pool;
  c.promised(Kind.Keys, async () => {
    const found: Uint8Array[] = [];
    let bytes = 0;
    let examined = 0;
    let after: Uint8Array | null = null;
    do {
      const page = await listPage(pool, { prefix: glob.prefix, after, limit: MAX_LIST_LIMIT, values: false });
      examined += page.keys.length;
      for (const k of page.keys) {
        if (!glob.matches(k)) continue;
        found.push(k);
        bytes += k.length;
        if (found.length > KEYS_MAX_KEYS || bytes > KEYS_MAX_BYTES) {
          return resp.error(`ERR KEYS matched more than ${KEYS_MAX_KEYS} keys (or ${KEYS_MAX_BYTES} bytes of keys), the cap of a full scan in kvsql; use SCAN`);
        }
      }
      if (examined > KEYS_MAX_EXAMINED && page.next !== null) {
        return resp.error(`ERR KEYS examined more than ${KEYS_MAX_EXAMINED} keys, the cap of a full scan in kvsql; use SCAN with MATCH`);
      }
      after = page.next;
    } while (after !== null);
    const parts: Array<string | Uint8Array> = [resp.arrayHeader(found.length)];
    for (const k of found) parts.push(resp.bulk(k));
    return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
  });
};

/** DBSIZE: every shard counts the keys of the slots it serves (key-lister countKeys). */
const dbsize: Handler = (c) => {
  c.srv.guard.authorize(c, OP_GET, Buffer.alloc(0));
  const pool = c.srv.ctx.pool;
  c.promised(Kind.Dbsize, async () => resp.integer(await countKeys(pool)));
};

/**
 * RANDOMKEY: a key picked at random from one page after a random point (16 random printable
 * ASCII bytes, where keys usually live), or from the first page when nothing follows that point.
 * Uniform within the page, not across the keyspace.
 */
const randomkey: Handler = (c) => {
  c.srv.guard.authorize(c, OP_GET, Buffer.alloc(0));
  const pool = c.srv.ctx.pool;
  c.promised(Kind.Randomkey, async () => {
    const point = Buffer.alloc(16);
    for (let i = 0; i < point.length; i++) point[i] = 0x21 + Math.floor(Math.random() * 94);
    let page = await listPage(pool, { prefix: Buffer.alloc(0), after: point, limit: RANDOMKEY_PAGE, values: false });
    if (page.keys.length === 0) page = await listPage(pool, { prefix: Buffer.alloc(0), after: null, limit: RANDOMKEY_PAGE, values: false });
    if (page.keys.length === 0) return resp.nil(c.proto);
    return resp.bulk(page.keys[Math.floor(Math.random() * page.keys.length)]);
  });
};

/** [name, handler, arity, flags, first key, last key, step, in MULTI] as COMMAND shows them (Redis 7's). */
export const KEYSPACE_COMMANDS: ReadonlyArray<RowTuple<Conn>> = [
  ['scan', scan, -2, ['readonly'], 0, 0, 0, 'refused'],
  ['keys', keys, 2, ['readonly'], 0, 0, 0, 'refused'],
  ['dbsize', dbsize, 1, ['readonly', 'fast'], 0, 0, 0, 'refused'],
  ['randomkey', randomkey, 1, ['readonly'], 0, 0, 0, 'refused'],
];
