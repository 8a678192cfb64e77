/**
 * Owns one script run inside the actor's write transaction: the commands a script may call
 * (redis.call / redis.pcall), each decided at once against the rows the transaction locked and
 * the script's own earlier writes, and the writes it leaves. Relies on write-plan (every command
 * is the same op, decided the same way, as from the Redis door), lua-sandbox (values) and
 * protocol (ops, numbers). Pure: no I/O; the clock is the transaction's `now`.
 *
 *   script ── redis.call('INCRBY', k, 5) ──> op on k's chain ──> planWrites([chain of k]) ──> reply
 *        ... ──> end ──> chains (every key's ops, in call order) ──> the actor plans them for real
 *
 * Versions: while the script runs, each key's chain is planned with placeholder versions (no reply
 * a script sees carries a version); the actor then takes real versions and plans the chains again,
 * which decides every op the same way (no command here is conditional on a version).
 *
 * A key the script did not declare in KEYS is refused: the transaction locked only those.
 */
import {
  FLAG_FLOAT,
  FLAG_GET_OLD,
  FLAG_IF_ABSENT,
  FLAG_KEEP_TTL,
  isErrorReply,
  OP_APPEND,
  OP_DEL,
  OP_EXPIRE,
  OP_GET,
  OP_GETDEL,
  OP_GETEX,
  OP_INCR,
  OP_PERSIST,
  OP_PUT,
  errorReply,
  OP_SETRANGE,
  OP_TTL,
  ttlLeftMs,
  type GetHit,
  type IncrDone,
  type OpCode,
  type PreconditionFailed,
  type PutDone,
  type Reply,
  type TtlHit,
} from '../protocol/ops';
import { parseFloatText, parseInt64 } from '../protocol/numbers';
import {
  expirePastWithCondition,
  isOptionError,
  NOT_INTEGER_ERROR,
  parseExpireOptions,
  parseGetexOptions,
  parseSetOptions,
  SET_PAST_WITH_CONDITION,
  timeArgMs,
  type OptionError,
} from '../protocol/redis-options';
import { setRangeError } from '../protocol/setrange';
import type { Chain } from './key-scheduler';
import type { PendingOp, TxnGroup } from './pending-op';
import { SCRIPT_ERRORS, type RedisValue, type ScriptRunner } from './lua-sandbox';
import type { LockedRow } from './shard-store';
import { planWrites } from './write-plan';

/** Versions handed out while a script runs: never seen by it, replaced before anything is written. */
const PLACEHOLDER_VERSION = 1;

const OK: RedisValue = { status: 'OK' };
const err = (text: string): RedisValue => ({ error: text });
const NOT_INTEGER: RedisValue = NOT_INTEGER_ERROR;

/** One command: its ops (each on one key; ifVersion: setrange's offset) and how its reply is made from theirs. */
interface Planned {
  ops: Array<{ op: OpCode; key: Buffer; value?: Buffer | null; ttlMs?: number; flags?: number; ifVersion?: number }>;
  reply: (r: Reply[]) => RedisValue;
}

/** Commands a script may call that write (EVAL_RO refuses them; lua-sandbox asks). */
export const SCRIPT_WRITE_COMMANDS: ReadonlySet<string> = new Set([
  'set',
  'setnx',
  'setex',
  'psetex',
  'getset',
  'del',
  'unlink',
  'incr',
  'decr',
  'incrby',
  'decrby',
  'incrbyfloat',
  'append',
  'setrange',
  'getdel',
  'getex',
  'expire',
  'pexpire',
  'expireat',
  'pexpireat',
  'persist',
  'mset',
]);

export class ScriptSession {
  private readonly chains = new Map<string, Chain>();
  private nextId = 0;

  constructor(
    private readonly declared: ReadonlySet<string>,
    private readonly locked: Map<string, LockedRow>,
    private readonly now: number,
    /** KVSQL_MAX_VALUE_BYTES: SETRANGE may not make a value longer (as at the Redis door). */
    private readonly maxValueBytes: number,
  ) {}

  /** The chains of every key the script wrote or read, in lock order, to plan for real. */
  result(): Chain[] {
    return [...this.chains.values()].sort((a, b) => Buffer.compare(a.key, b.key));
  }

  /** redis.call / redis.pcall: a command's reply, or an error reply ({error}). */
  readonly call = (args: Buffer[]): RedisValue => {
    const name = args[0].toString('latin1').toLowerCase();
    const planned = this.plan(name, args);
    if (!isPlanned(planned)) return planned;
    for (const o of planned.ops) {
      if (!this.declared.has(o.key.toString('latin1'))) {
        return err(
          `ERR Script attempted to access key '${o.key.toString('utf8', 0, 64)}', which is not in its KEYS: kvsql runs a script on the shard of its declared keys only`,
        );
      }
    }
    const replies = planned.ops.map((o) => this.apply(o.op, o.key, o.value ?? null, o.ttlMs ?? 0, o.flags ?? 0, o.ifVersion ?? 0));
    const failed = replies.find(isErrorReply);
    if (failed !== undefined) return err(failed[3].startsWith('ERR ') ? failed[3] : `ERR ${failed[3]}`);
    return planned.reply(replies);
  };

  /** Append one op to its key's chain and decide it there, now. */
  private apply(op: OpCode, key: Buffer, value: Buffer | null, ttlMs: number, flags: number, ifVersion: number): Reply {
    // A value the script built was never seen by the door's size check: the same limit here.
    if (op === OP_PUT && value !== null && value.length > this.maxValueBytes)
      return errorReply(this.nextId++, 'KV_ERR_VALUE_TOO_LARGE', `a value of ${value.length} bytes, the limit is ${this.maxValueBytes}`);
    const keyStr = key.toString('latin1');
    let chain = this.chains.get(keyStr);
    if (chain === undefined) this.chains.set(keyStr, (chain = { keyStr, key, slot: 0, ops: [] }));
    const p: PendingOp = { id: this.nextId++, op, key, keyStr, slot: 0, value, ttlMs, flags, ifVersion, dueAt: 0 };
    chain.ops.push(p);
    const plan = planWrites([chain], this.locked, this.now, PLACEHOLDER_VERSION, false, this.maxValueBytes);
    return plan.replies[plan.replies.length - 1][1];
  }

  private plan(name: string, a: Buffer[]): Planned | RedisValue {
    const n = a.length;
    const one = (op: OpCode, reply: Planned['reply'], value: Buffer | null = null, ttlMs = 0, flags = 0): Planned => ({
      ops: [{ op, key: a[1], value, ttlMs, flags }],
      reply,
    });
    const arity = (min: number, max = min): boolean => n >= min && n <= max;
    switch (name) {
      case 'get':
        return arity(2) ? one(OP_GET, (r) => bulkOf(r[0])) : WRONG;
      case 'getdel':
        return arity(2) ? one(OP_GETDEL, (r) => bulkOf(r[0])) : WRONG;
      case 'getex':
        return n < 2 ? WRONG : this.getex(a);
      case 'strlen':
        return arity(2) ? one(OP_GET, (r) => (r[0][1] === 200 ? (r[0] as GetHit)[2].length : 0)) : WRONG;
      case 'exists':
      case 'del':
      case 'unlink': {
        if (n < 2) return WRONG;
        const op = name === 'exists' ? OP_TTL : OP_DEL;
        return { ops: a.slice(1).map((key) => ({ op, key })), reply: (r) => r.filter((x) => x[1] === (op === OP_DEL ? 204 : 200)).length };
      }
      case 'mget':
        return n < 2 ? WRONG : { ops: a.slice(1).map((key) => ({ op: OP_GET, key })), reply: (r) => r.map(bulkOf) };
      case 'mset':
        if (n < 3 || n % 2 === 0) return WRONG;
        return { ops: pairs(a).map(([key, value]) => ({ op: OP_PUT, key, value })), reply: () => OK };
      case 'set':
        return n < 3 ? WRONG : this.set(a);
      case 'setnx':
        return arity(3) ? one(OP_PUT, (r) => (r[0][1] === 412 ? 0 : 1), a[2], 0, FLAG_IF_ABSENT) : WRONG;
      case 'getset':
        return arity(3) ? one(OP_PUT, (r) => oldOf(r[0]), a[2], 0, FLAG_GET_OLD) : WRONG;
      case 'setex':
      case 'psetex': {
        if (!arity(4)) return WRONG;
        const t = timeArgMs(a[2], name === 'setex' ? 1000 : 1, false, this.now, name, true);
        return typeof t === 'number' ? one(OP_PUT, () => OK, a[3], t) : t;
      }
      case 'incr':
      case 'decr':
        return arity(2) ? one(OP_INCR, integerOf, Buffer.from(name === 'incr' ? '1' : '-1')) : WRONG;
      case 'incrby':
      case 'decrby': {
        if (!arity(3)) return WRONG;
        const d = parseInt64(a[2]);
        if (d === null) return NOT_INTEGER;
        if (name === 'decrby' && d === -(2n ** 63n)) return err('ERR decrement would overflow');
        return one(OP_INCR, integerOf, Buffer.from(String(name === 'incrby' ? d : -d)));
      }
      case 'incrbyfloat': {
        if (!arity(3)) return WRONG;
        const d = parseFloatText(a[2]);
        if (d === null) return err('ERR value is not a valid float');
        return one(OP_INCR, (r) => Buffer.from((r[0] as IncrDone)[2]), a[2], 0, FLAG_FLOAT);
      }
      case 'append':
        return arity(3) ? one(OP_APPEND, (r) => (r[0] as unknown as [number, number, number, number | null, number])[4], a[2]) : WRONG;
      case 'setrange': {
        if (!arity(4)) return WRONG;
        const offset = parseInt64(a[2]);
        if (offset === null) return NOT_INTEGER;
        const refused = setRangeError(offset, a[3].length, this.maxValueBytes);
        if (refused !== null) return err('redis' in refused ? refused.redis : `ERR ${refused.code} ${refused.message}`);
        // An empty value writes nothing (Redis): the length as it is.
        if (a[3].length === 0) return one(OP_GET, (r) => (r[0][1] === 200 ? (r[0] as GetHit)[2].length : 0));
        return {
          ops: [{ op: OP_SETRANGE, key: a[1], value: a[3], ifVersion: Number(offset) }],
          reply: (r) => (r[0] as unknown as [number, number, number, number | null, number])[4],
        };
      }
      case 'expire':
      case 'pexpire':
      case 'expireat':
      case 'pexpireat':
        return n < 3 ? WRONG : this.expire(name, a);
      case 'persist':
        return arity(2) ? one(OP_PERSIST, (r) => (r[0][1] === 200 && (r[0] as [number, number, number])[2] === 1 ? 1 : 0)) : WRONG;
      case 'ttl':
      case 'pttl':
        return arity(2)
          ? one(OP_TTL, (r) => {
              if (r[0][1] !== 200) return -2;
              const ms = ttlLeftMs(r[0] as TtlHit);
              return ms === null ? -1 : name === 'pttl' ? ms : Math.floor((ms + 500) / 1000);
            })
          : WRONG;
      case 'type':
        return arity(2) ? one(OP_TTL, (r) => ({ status: r[0][1] === 200 ? 'string' : 'none' })) : WRONG;
      case 'time':
        return arity(1) ? [Buffer.from(String(Math.floor(this.now / 1000))), Buffer.from(String((this.now % 1000) * 1000))] : WRONG;
      case 'ping':
        return n === 1 ? { status: 'PONG' } : n === 2 ? a[1] : WRONG;
      default:
        return err(SCRIPT_ERRORS.unknownCommand);
    }
  }

  /** SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL], parsed as the Redis door parses it (protocol/redis-options). */
  private set(a: Buffer[]): Planned | RedisValue {
    const o = parseSetOptions(a, (unit, arg) =>
      unit === 'ex' || unit === 'px' ? timeArgMs(arg, unit === 'ex' ? 1000 : 1, false, this.now, 'set', true) : this.atArg(arg, unit === 'exat' ? 1000 : 1),
    );
    if (isOptionError(o)) return o;
    const get = o.get;
    if (o.expiry && o.ttlMs <= 0 && (o.flags & FLAG_KEEP_TTL) === 0) {
      // An absolute time already past: set and expired at once, i.e. deleted (as the Redis door
      // does); never stored with a TTL, which a read could see before it ran out.
      if (get || o.flags !== 0) return SET_PAST_WITH_CONDITION;
      return { ops: [{ op: OP_DEL, key: a[1] }], reply: () => OK };
    }
    const flags = get ? o.flags | FLAG_GET_OLD : o.flags;
    return {
      ops: [{ op: OP_PUT, key: a[1], value: a[2], ttlMs: o.ttlMs, flags }],
      reply: (r) => (get ? oldOf(r[0]) : r[0][1] === 412 ? null : OK),
    };
  }

  /** GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST], parsed as the Redis door parses it; EXAT/PXAT with the shard's clock. */
  private getex(a: Buffer[]): Planned | RedisValue {
    // EX/PX: relative, positive; EXAT/PXAT: absolute with the shard's clock, <= 0 when already past.
    const o = parseGetexOptions(a, (unit, arg) =>
      timeArgMs(arg, unit === 'ex' || unit === 'exat' ? 1000 : 1, unit === 'exat' || unit === 'pxat', this.now, 'getex', true),
    );
    if (isOptionError(o)) return o;
    if (o.kind === 'get') return { ops: [{ op: OP_GET, key: a[1] }], reply: (r) => bulkOf(r[0]) };
    // An absolute time already past: Redis deletes the key and answers the value it had.
    if (o.kind === 'ttl' && o.ttlMs <= 0) return { ops: [{ op: OP_GETDEL, key: a[1] }], reply: (r) => bulkOf(r[0]) };
    return { ops: [{ op: OP_GETEX, key: a[1], ttlMs: o.ttlMs, flags: o.flags }], reply: (r) => bulkOf(r[0]) };
  }

  /** EXPIRE/PEXPIRE key t [NX|XX|GT|LT], EXPIREAT/PEXPIREAT with the shard's clock. */
  private expire(name: string, a: Buffer[]): Planned | RedisValue {
    const flags = parseExpireOptions(a, 3);
    if (typeof flags !== 'number') return flags;
    const ms = timeArgMs(a[2], name === 'expire' || name === 'expireat' ? 1000 : 1, name.endsWith('at'), this.now, name, false);
    if (typeof ms !== 'number') return ms;
    // A time already past deletes the key, as Redis does; with NX/XX/GT/LT refused, as the door
    // refuses it (the delete would have to be conditional on the key's TTL).
    if (ms <= 0 && flags !== 0) return expirePastWithCondition(name);
    if (ms <= 0) return { ops: [{ op: OP_DEL, key: a[1] }], reply: (r) => (r[0][1] === 204 ? 1 : 0) };
    return { ops: [{ op: OP_EXPIRE, key: a[1], ttlMs: ms, flags }], reply: (r) => (r[0][1] === 200 ? 1 : 0) };
  }

  /** SET's EXAT/PXAT with the shard's clock (redis-options timeArgMs, as the door reads it). */
  private atArg(b: Buffer, unit: 1 | 1000): number | OptionError {
    const ms = timeArgMs(b, unit, true, this.now, 'set', true);
    // Already past: <= 0, and set() deletes the key.
    return ms;
  }
}

const WRONG: RedisValue = err(SCRIPT_ERRORS.wrongArity);

/**
 * Runs a script against `locked` rows (only `declared` keys may be touched): the chains it leaves
 * to write and its reply as RESP2 bytes. As Redis, a script that raised keeps the writes it made
 * before; one stopped (time, memory) or broken leaves nothing.
 */
export function runScript(
  runner: ScriptRunner,
  script: NonNullable<TxnGroup['script']>,
  declared: ReadonlySet<string>,
  locked: Map<string, LockedRow>,
  now: number,
  maxValueBytes: number,
): { chains: Chain[]; out: Buffer } {
  const session = new ScriptSession(declared, locked, now, maxValueBytes);
  const res = runner.run(script.body, script.keys, script.argv, session.call, !script.mayWrite);
  return { chains: res.ok || res.reason === 'script' ? session.result() : [], out: toResp2(res.ok ? res.reply : { error: res.error }) };
}

/** A script's reply as RESP2 bytes, as the Redis door sends it. */
export function toResp2(v: RedisValue): Buffer {
  const parts: Buffer[] = [];
  const walk = (x: RedisValue): void => {
    if (x === null) parts.push(Buffer.from('$-1\r\n'));
    else if (typeof x === 'number' || typeof x === 'bigint') parts.push(Buffer.from(`:${x}\r\n`));
    else if (Buffer.isBuffer(x)) parts.push(Buffer.from(`$${x.length}\r\n`), x, Buffer.from('\r\n'));
    else if (Array.isArray(x)) {
      parts.push(Buffer.from(`*${x.length}\r\n`));
      for (const y of x) walk(y);
    } else if ('error' in x) parts.push(Buffer.from(`-${x.error.replace(/[\r\n]+/g, ' ')}\r\n`));
    else parts.push(Buffer.from(`+${x.status.replace(/[\r\n]+/g, ' ')}\r\n`));
  };
  walk(v);
  return Buffer.concat(parts);
}

function isPlanned(x: Planned | RedisValue): x is Planned {
  return typeof x === 'object' && x !== null && !Buffer.isBuffer(x) && !Array.isArray(x) && 'ops' in x;
}

function pairs(a: Buffer[]): Array<[Buffer, Buffer]> {
  const out: Array<[Buffer, Buffer]> = [];
  for (let i = 1; i + 1 < a.length; i += 2) out.push([a[i], a[i + 1]]);
  return out;
}

const bulkOf = (r: Reply): RedisValue => (r[1] === 200 ? Buffer.from((r as GetHit)[2]) : null);

/** A value as Redis's integer reply: a number, or a bigint past 2^53. */
function integerOf(r: Reply[]): RedisValue {
  const text = Buffer.from((r[0] as IncrDone)[2]).toString('latin1');
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : BigInt(text);
}

function oldOf(r: Reply): RedisValue {
  const old = r[1] === 412 ? (r as PreconditionFailed)[3] : (r as PutDone)[4];
  return old === null || old === undefined ? null : Buffer.from(old);
}
