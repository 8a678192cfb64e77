/**
 * Owns the meaning of every write: given the rows a transaction has locked and the shard's clock,
 * decide each operation's result and the row changes to apply. Relies on protocol/ops. Pure: no
 * I/O, no clock (`now` comes from MySQL inside the transaction), so conditional writes are
 * decided from locked rows, never from memory, and stay correct with several gateways.
 *
 * A chain (several writes to one key, in order) is folded over the row's state:
 *
 *   locked row ──op1──> state ──op2──> state ... ──> one mutation for the key:
 *     absent at the end, row existed      -> DELETE
 *     a put in the chain, row existed      -> upsert (key, last value, last version, expiry)
 *     a put in the chain, no row           -> plain INSERT (fails if another gateway created it)
 *     ... and absent again at the end      -> INSERT, then DELETE (see below)
 *     only the expiry changed              -> expiry update
 *
 * A row whose expires_at <= now is treated as absent by every op (it is merely not reaped yet).
 *
 * OP_REAP appears here only in a chain that also holds user writes (key-scheduler: a reap queued
 * on a busy key is gathered with the writes queued around it); it deletes the row if it is still
 * expired at that point of the chain, e.g. [reap, expire] deletes an expired row that the expire
 * alone would leave. Chains of reaps only never come here: the actor's reap lane runs them as
 * one conditional DELETE without a locking read (store.reap, STATEMENTS.reapBatch), which is the
 * same decision (`expires_at <= NOW(3)`, under the row's lock) at a third of the round trips.
 */
import {
  appendDone,
  deleted,
  errorReply,
  expireSet,
  FLAG_CLEAR_TTL,
  FLAG_FLOAT,
  FLAG_GET_OLD,
  FLAG_TTL_GT,
  FLAG_TTL_LT,
  FLAG_TTL_NX,
  FLAG_TTL_XX,
  FLAG_IF_ABSENT,
  FLAG_IF_EXISTS,
  FLAG_IF_VERSION,
  FLAG_KEEP_TTL,
  getHit,
  incrDone,
  notFound,
  OP_APPEND,
  OP_DEL,
  OP_EXPIRE,
  OP_GET,
  OP_GETDEL,
  OP_GETEX,
  OP_INCR,
  OP_PERSIST,
  OP_PUT,
  OP_REAP,
  OP_SETRANGE,
  OP_TTL,
  persisted,
  preconditionFailed,
  putDone,
  reaped,
  ttlHit,
  type Reply,
} from '../protocol/ops';
import { increment } from '../protocol/numbers';
import { setRange } from '../protocol/setrange';
import {
  FEED_APPEND,
  FEED_CREATED,
  FEED_WITH_TTL,
  FEED_DEL,
  FEED_EXPIRE,
  FEED_EXPIRED,
  FEED_INCR,
  FEED_INCR_FLOAT,
  FEED_PERSIST,
  FEED_PUT,
  FEED_SETRANGE,
} from '../protocol/feed';
import type { Chain } from './key-scheduler';
import type { PendingOp } from './pending-op';
import type { FeedWrite, LockedRow, RowMutations } from './shard-store';

export interface WritePlan {
  mutations: RowMutations;
  replies: Array<[PendingOp, Reply]>;
  /** Keys whose new expires_at is set, for the expiry wheel. */
  expiries: Array<[Buffer, number]>;
}

/**
 * What a write batch asks of the version allocator, from its chains and its rows as locked. With
 * planWrites, the actor's whole interface to this module: demand, take versions, plan.
 */
export interface VersionDemand {
  /** Versions the batch may use: an upper bound, one per put. */
  count: number;
  /** Every version handed out must be above this: the highest version of the locked rows. */
  above: number;
  /** A put may create a key that has no row: its past versions are unknown here (check kv_seq). */
  createsKey: boolean;
}

export function versionDemand(chains: Chain[], locked: Map<string, LockedRow>): VersionDemand {
  return { count: versionsNeeded(chains), above: highestVersion(locked), createsKey: createsKey(chains, locked) };
}

/** Ops that may write a new value, and so take a new version: put, incr, append, setrange. */
const writesValue = (op: number): boolean => op === OP_PUT || op === OP_INCR || op === OP_APPEND || op === OP_SETRANGE;

export function versionsNeeded(chains: Chain[]): number {
  let n = 0;
  for (const c of chains) for (const op of c.ops) if (writesValue(op.op)) n++;
  return n;
}

/** True when a put may create a key that has no row: its past versions are then unknown here. */
export function createsKey(chains: Chain[], locked: Map<string, LockedRow>): boolean {
  for (const c of chains) {
    if (locked.has(c.keyStr)) continue;
    for (const op of c.ops) if (writesValue(op.op)) return true;
  }
  return false;
}

export function highestVersion(locked: Map<string, LockedRow>): number {
  let max = 0;
  for (const row of locked.values()) if (row.version > max) max = row.version;
  return max;
}

/**
 * `feed`: also list the change-feed rows of the plan (mutations.feed), one per op that changed the
 * key, in op order, plus an `expired` row before the first change of a row that was expired but
 * not yet reaped when locked (the change removes or overwrites it: the reaper never will).
 */
export function planWrites(
  chains: Chain[],
  locked: Map<string, LockedRow>,
  now: number,
  firstVersion: number,
  feed = false,
  /** KVSQL_MAX_VALUE_BYTES: an APPEND whose result would pass it is refused (its argument alone was checked at the edge). */
  maxValueBytes = Infinity,
): WritePlan {
  const plan: WritePlan = { mutations: { inserts: [], upserts: [], ttlUpdates: [], deletes: [] }, replies: [], expiries: [] };
  const events: FeedWrite[] | null = feed ? (plan.mutations.feed = []) : null;
  let nextVersion = firstVersion;
  for (const chain of chains) {
    const firstEvent = events === null ? 0 : events.length;
    const row = locked.get(chain.keyStr);
    const existed = row !== undefined;
    let exists = existed;
    let version = row?.version ?? 0;
    let expiresAt = row?.expiresAt ?? null;
    let value: Uint8Array | null = null;
    // The live value as the chain has made it so far (the locked row's, fetched only when the
    // batch has an op that needs it: incr, append, getdel, getex).
    let current: Uint8Array | null = row?.value ?? null;
    let expiryChanged = false;
    let lastPut: [Uint8Array, number, number | null] | null = null;

    for (const op of chain.ops) {
      const live = exists && (expiresAt === null || expiresAt > now);
      switch (op.op) {
        case OP_PUT: {
          // A failed precondition carries the key's current version (null: absent), so a
          // compare-and-set loop needs no extra read.
          const old = (op.flags & FLAG_GET_OLD) !== 0 ? (live ? current : null) : undefined;
          if (
            ((op.flags & FLAG_IF_ABSENT) !== 0 && live) ||
            ((op.flags & FLAG_IF_EXISTS) !== 0 && !live) ||
            ((op.flags & FLAG_IF_VERSION) !== 0 && !(live && version === op.ifVersion))
          ) {
            const r = preconditionFailed(op.id, live ? version : null);
            if (old !== undefined) r.push(old);
            plan.replies.push([op, r]);
            break;
          }
          version = nextVersion++;
          expiresAt = op.ttlMs > 0 ? now + op.ttlMs : (op.flags & FLAG_KEEP_TTL) !== 0 && live ? expiresAt : null;
          value = current = op.value!;
          exists = true;
          lastPut = [value, version, expiresAt];
          events?.push([chain.key, version, FEED_PUT | (live ? 0 : FEED_CREATED) | (op.ttlMs > 0 ? FEED_WITH_TTL : 0), expiresAt]);
          const r = putDone(op.id, !live, version, expiresAt);
          if (old !== undefined) r.push(old);
          plan.replies.push([op, r]);
          break;
        }
        case OP_INCR:
        case OP_APPEND:
        case OP_SETRANGE: {
          // All keep the TTL of a live key, as Redis; an absent (or expired) key starts empty.
          let next: Uint8Array;
          if (op.op === OP_SETRANGE && op.value!.length === 0) {
            // Redis writes nothing: the length as it is, and an absent key stays absent.
            plan.replies.push([op, live ? appendDone(op.id, false, version, expiresAt, current!.length) : notFound(op.id)]);
            break;
          }
          if (op.op === OP_INCR) {
            const r = increment(live ? current : null, op.value!, (op.flags & FLAG_FLOAT) !== 0);
            if (!r.ok) {
              plan.replies.push([op, errorReply(op.id, r.code, r.message)]);
              break;
            }
            next = r.value;
          } else if (op.op === OP_SETRANGE) {
            next = setRange(live ? current : null, op.ifVersion, op.value!);
          } else {
            const length = (live && current !== null ? current.length : 0) + op.value!.length;
            if (length > maxValueBytes) {
              // Only the actor knows the current length: the door checked the argument alone.
              plan.replies.push([
                op,
                errorReply(op.id, 'KV_ERR_VALUE_TOO_LARGE', `APPEND would make a value of ${length} bytes, the limit is ${maxValueBytes}`),
              ]);
              break;
            }
            next = live && current !== null ? Buffer.concat([current, op.value!]) : op.value!;
          }
          version = nextVersion++;
          if (!live) expiresAt = null;
          value = current = next;
          exists = true;
          lastPut = [value, version, expiresAt];
          events?.push([chain.key, version, feedKind(op.op, op.flags) | (live ? 0 : FEED_CREATED), expiresAt]);
          plan.replies.push([
            op,
            op.op === OP_INCR ? incrDone(op.id, !live, next, version, expiresAt) : appendDone(op.id, !live, version, expiresAt, next.length),
          ]);
          break;
        }
        case OP_GETDEL: {
          if (!live) {
            exists = false;
            plan.replies.push([op, notFound(op.id)]);
          } else {
            plan.replies.push([op, getHit(op.id, current!, version, expiresAt)]);
            events?.push([chain.key, version, FEED_DEL, null]);
            exists = false;
            value = current = null;
          }
          break;
        }
        case OP_GETEX: {
          if (!live) {
            plan.replies.push([op, notFound(op.id)]);
            break;
          }
          if (op.ttlMs > 0) {
            expiresAt = now + op.ttlMs;
            expiryChanged = true;
            events?.push([chain.key, version, FEED_EXPIRE, expiresAt]);
          } else if ((op.flags & FLAG_CLEAR_TTL) !== 0 && expiresAt !== null) {
            expiresAt = null;
            expiryChanged = true;
            events?.push([chain.key, version, FEED_PERSIST, null]);
          }
          plan.replies.push([op, getHit(op.id, current!, version, expiresAt)]);
          break;
        }
        case OP_DEL: {
          if (!live) {
            exists = false; // an expired row is removed too; the caller still sees 404
            plan.replies.push([op, notFound(op.id)]);
          } else if ((op.flags & FLAG_IF_VERSION) !== 0 && version !== op.ifVersion) {
            plan.replies.push([op, preconditionFailed(op.id, version)]);
          } else {
            exists = false;
            value = current = null;
            events?.push([chain.key, version, FEED_DEL, null]);
            plan.replies.push([op, deleted(op.id)]);
          }
          break;
        }
        case OP_EXPIRE: {
          if (!live) {
            plan.replies.push([op, notFound(op.id)]);
          } else if (!expireConditionMet(op.flags, expiresAt, now + op.ttlMs)) {
            plan.replies.push([op, preconditionFailed(op.id, version)]);
          } else {
            expiresAt = now + op.ttlMs;
            expiryChanged = true;
            events?.push([chain.key, version, FEED_EXPIRE, expiresAt]);
            plan.replies.push([op, expireSet(op.id, expiresAt)]);
          }
          break;
        }
        case OP_PERSIST: {
          if (!live) {
            plan.replies.push([op, notFound(op.id)]);
          } else {
            const hadTtl = expiresAt !== null;
            if (hadTtl) {
              expiryChanged = true;
              events?.push([chain.key, version, FEED_PERSIST, null]);
            }
            expiresAt = null;
            plan.replies.push([op, persisted(op.id, hadTtl)]);
          }
          break;
        }
        // Reads appear in a chain only inside a transaction (txn-plan.ts): they see the chain's
        // state so far, as Redis's GET between writes of a MULTI does.
        case OP_GET:
          plan.replies.push([op, live ? getHit(op.id, current!, version, expiresAt) : notFound(op.id)]);
          break;
        case OP_TTL:
          plan.replies.push([op, live ? ttlHit(op.id, expiresAt, now, version) : notFound(op.id)]);
          break;
        case OP_REAP: {
          // Only a row that is still expired now, inside this transaction, is deleted.
          const expired = exists && expiresAt !== null && expiresAt <= now;
          if (expired) {
            exists = false;
            value = current = null;
          }
          plan.replies.push([op, reaped(op.id, expired)]);
          break;
        }
        default:
          plan.replies.push([op, errorReply(op.id, 'KV_ERR_UNKNOWN_OP', `op ${op.op} is not a write`)]);
      }
    }

    // The locked row was expired (not yet reaped) and this chain removes or overwrites it: its
    // expiry is reported here, before the chain's own changes, since no reap will report it.
    if (events !== null && row !== undefined && row.expiresAt !== null && row.expiresAt <= now && (!exists || value !== null)) {
      events.splice(firstEvent, 0, [chain.key, row.version, FEED_EXPIRED, null]);
    }
    if (!exists) {
      if (existed) plan.mutations.deletes.push(chain.key);
      else if (lastPut !== null) {
        // Created and deleted again within the chain, on a key with no row (so not locked): the
        // puts were answered with versions, so this incarnation must be ordered against other
        // gateways' creates of the key like any other. INSERT (ER_DUP_ENTRY if another
        // gateway's row is there; the actor's version recheck), then DELETE in the same
        // transaction: nothing remains, but another gateway's concurrent create is ordered
        // before or after it, never beside it with a lower version (a key's versions only grow).
        plan.mutations.inserts.push([chain.key, lastPut[0], lastPut[1], lastPut[2]]);
        plan.mutations.deletes.push(chain.key);
      }
    } else if (value !== null) {
      // A key with no row when locked is INSERTed, not upserted: if another gateway creates it
      // meanwhile, the INSERT fails with ER_DUP_ENTRY and the whole batch is decided again from
      // the row it then locks (never "both created it", never a lost If-None-Match).
      (existed ? plan.mutations.upserts : plan.mutations.inserts).push([chain.key, value, version, expiresAt]);
      if (expiresAt !== null) plan.expiries.push([chain.key, expiresAt]);
    } else if (expiryChanged) {
      plan.mutations.ttlUpdates.push([chain.key, expiresAt]);
      if (expiresAt !== null) plan.expiries.push([chain.key, expiresAt]);
    }
  }
  return plan;
}

/** The feed's kind of a put made by a read-modify-write op (Redis's event name follows from it). */
function feedKind(op: number, flags: number): number {
  if (op === OP_APPEND) return FEED_APPEND;
  if (op === OP_SETRANGE) return FEED_SETRANGE;
  return (flags & FLAG_FLOAT) !== 0 ? FEED_INCR_FLOAT : FEED_INCR;
}

/** EXPIRE's NX/XX/GT/LT, as Redis: a key without a TTL counts as one that never expires. */
function expireConditionMet(flags: number, current: number | null, next: number): boolean {
  if ((flags & FLAG_TTL_NX) !== 0 && current !== null) return false;
  if ((flags & FLAG_TTL_XX) !== 0 && current === null) return false;
  if ((flags & FLAG_TTL_GT) !== 0 && (current === null || next <= current)) return false;
  if ((flags & FLAG_TTL_LT) !== 0 && current !== null && next >= current) return false;
  return true;
}
