/**
 * Owns one shard's write transactions: ready chains (each key's consecutive writes, a mixed chain's
 * reap among them) or ready transactions and scripts, in one MySQL transaction per batch, and the
 * settling of a COMMIT whose outcome is in doubt. Relies on ActorState (scheduler, store, outbox,
 * slots, stats, retries), BatchWatch (deadline), SlotRefusals, VersionAllocator, write-plan,
 * txn-plan, script-session and the Expirer (told what was reaped, expiries set, reaps failed).
 * Must not decide when to run (the actor's flush policy) nor what a write does to a row (the
 * write plan).
 *
 *   chains / txns ─> prune answered ─> sort by key (lock order) ─> store.transact(keys, slots,
 *     decide:  checkSlots ─> [txns: compares or script on the locked rows] ─> versions ─> planWrites
 *     recheck: a create's INSERT saw a newer block ─> versions again ─> same rows, or retry
 *   ) ─> answer · SlotsRefused ─> regroup (run rest, retry held) · lost in COMMIT ─> settle, then
 *        release the keys
 *
 * What must stay true: a key of a batch whose COMMIT may still apply stays held in the scheduler
 * until the server has settled that transaction; a write is retried only if COMMIT was never sent.
 */
import { errorReply, needsValue, OP_REAP, reapDeleted, replyOf, type Reply } from '../protocol/ops';
import { observe, type ActorState } from './actor-state';
import type { BatchWatch } from './deadlines';
import type { Expirer } from './expirer';
import type { Chain } from './key-scheduler';
import type { ScriptRunner } from './lua-sandbox';
import { classify, StoreError, toKvError } from './mysql-errors';
import type { PendingOp } from './pending-op';
import { runScript } from './script-session';
import type { LockedRow, RowMutations, SlotStates, TxControl } from './shard-store';
import { checkSlots, SlotsRefused, type SlotRefusals } from './slot-refusals';
import { choose, comparesHold, txnChains, txnReply } from './txn-plan';
import type { VersionAllocator, Versions } from './version-allocator';
import { planWrites, versionDemand, type WritePlan } from './write-plan';

/** Retry interval of settling an in-doubt COMMIT while the server cannot be asked. */
const SETTLE_RETRY_MS = 500;
/** While a settle keeps failing, one warning per this interval (the first failure is logged at once). */
const SETTLE_WARN_EVERY_MS = 30_000;

export class WritePath {
  /** Write batches whose COMMIT outcome is being settled (their keys stay held): stats' `inDoubt`. */
  private settling = 0;

  constructor(
    private readonly s: ActorState,
    private readonly watch: BatchWatch,
    private readonly refusals: SlotRefusals,
    private readonly versions: VersionAllocator,
    private readonly expirer: Expirer,
    /** The actor's Lua VM, made at the first script. */
    private readonly scriptRunner: () => Promise<ScriptRunner>,
  ) {}

  /**
   * One write transaction: ready chains, or ready transaction ops (`txns`, each with an empty chain
   * per key it names, no key shared; which of a transaction's op lists runs, or what a script
   * writes, is decided from the locked rows: txn-plan.ts, script-session.ts).
   */
  /** Write batches whose in-doubt COMMIT is not settled yet (their keys are held meanwhile). */
  get inDoubt(): number {
    return this.settling;
  }

  async run(taken: Chain[], txns: PendingOp[] = []): Promise<void> {
    const s = this.s;
    // Ops answered while they waited (deadline, shard down) were told "not applied": drop them.
    const chains: Chain[] = [];
    const chainsOf = new Map<PendingOp, Chain[]>();
    for (const t of txns) {
      const own = txnChains(t.txn!);
      chainsOf.set(t, own);
      chains.push(...own);
    }
    for (const c of taken) if (s.scheduler.prune(c, isUnanswered)) chains.push(c);
    if (chains.length === 0) return;
    s.writesInFlight++;
    s.stats.writeBatches++;
    let opCount = 0;
    for (const c of chains) opCount += c.ops.length;
    observe(s.stats.writeBatchSizes, opCount);
    s.stats.writeBatchOps += opCount;
    // Lock order: every transaction locks its rows in ascending key order.
    chains.sort((a, b) => Buffer.compare(a.key, b.key));
    const keys = chains.map((c) => c.key);
    const slotSet = new Set<number>();
    for (const c of chains) slotSet.add(c.slot);
    const slots = [...slotSet].sort((a, b) => a - b);
    const userOps: PendingOp[] = [...txns];
    // incr, append, getdel, getex and put-returning-the-old-value decide from the row's value:
    // lock it with its value then.
    let withValues = txns.some((t) => t.txn!.withValues);
    for (const c of chains) {
      for (const op of c.ops) {
        if (op.op !== OP_REAP) userOps.push(op);
        if (needsValue(op.op, op.flags)) withValues = true;
      }
    }
    // A transaction's compares decide which of its op lists runs, a script's calls what it
    // writes: `active` holds the chains to plan, `decisions` each transaction's outcome.
    let active = chains;
    let decisions = new Map<PendingOp, { succeeded: boolean; scriptOut: Buffer | null }>();
    /** The transaction each planned op belongs to. */
    let ownerOf = new Map<PendingOp, PendingOp>();
    const b = this.watch.begin('write', userOps);
    const result = await this.watch.race(
      b,
      s.withRetries(
        async () => {
          let plan: WritePlan | undefined;
          let taken: Versions | null = null;
          let decided: { locked: Map<string, LockedRow>; now: number; needed: number } | undefined;
          await s.store.transact(
            keys,
            slots,
            async (locked, now, issuedBelow = 0, states: SlotStates) => {
              const changed = checkSlots(chains, states);
              if (txns.length > 0) {
                active = [];
                decisions = new Map();
                ownerOf = new Map();
                for (const t of txns) {
                  const script = t.txn!.script;
                  let own: Chain[];
                  let succeeded = true;
                  let scriptOut: Buffer | null = null;
                  if (script !== undefined) {
                    const ran = runScript(await this.scriptRunner(), script, new Set(chainsOf.get(t)!.map((c) => c.keyStr)), locked, now, s.cfg.maxValueBytes);
                    own = ran.chains;
                    scriptOut = ran.out;
                  } else {
                    succeeded = comparesHold(t.txn!, locked, now);
                    own = choose(t.txn!, succeeded);
                  }
                  for (const c of own) for (const op of c.ops) ownerOf.set(op, t);
                  decisions.set(t, { succeeded, scriptOut });
                  active.push(...own);
                }
                active.sort((x, y) => Buffer.compare(x.key, y.key));
              }
              // A re-created key must get a version above its deleted past, which may have been
              // issued through another gateway: check kv_seq then (see VersionAllocator.take).
              const demand = versionDemand(active, locked);
              taken = demand.count > 0 ? await this.versions.take(demand.count, demand.above, demand.createsKey ? issuedBelow : 0) : null;
              decided = { locked, now, needed: demand.count };
              plan = planWrites(active, locked, now, taken?.first ?? 0, s.feedOn, s.cfg.maxValueBytes);
              if (changed !== undefined) plan.mutations.changed = changed;
              return plan.mutations;
            },
            b.ctl,
            // After INSERTing keys that had no row: a key absent at the locking read was not
            // locked, so between that read and the INSERT another gateway may have created it
            // with a version from a newer block and deleted it again. Our INSERT then succeeds,
            // but with versions below that incarnation's: the key's versions would go backwards
            // (they must only grow). The INSERT now holds those keys; if any actor reserved a block after
            // ours, take versions from a block reserved now (above all issued so far) instead.
            async (issuedNow) => {
              if (taken === null || issuedNow <= taken.blockEnd) return null;
              const fresh = await this.versions.take(decided!.needed, issuedNow - 1);
              const replanned = planWrites(active, decided!.locked, decided!.now, fresh.first, s.feedOn, s.cfg.maxValueBytes);
              if (!sameRows(plan!.mutations, replanned.mutations)) throw versionsMoved();
              replanned.mutations.changed = plan!.mutations.changed;
              plan = replanned;
              // Rows created and deleted again in the batch stay deleted.
              const deleted = new Set(replanned.mutations.deletes.map((k) => k.toString('latin1')));
              return {
                upserts: [...replanned.mutations.inserts, ...replanned.mutations.upserts].filter((r) => !deleted.has(r[0].toString('latin1'))),
                feed: replanned.mutations.feed,
              };
            },
            withValues,
          );
          return plan!;
        },
        (err) => !(err instanceof SlotsRefused) && classify(err) !== 'fatal' && !lostDuringCommit(err, b.ctl),
        b.ctl,
      ),
    );
    this.watch.end(b);
    s.writesInFlight--;
    if (result !== null && !result.ok && result.error instanceof SlotsRefused) {
      if (txns.length === 0) {
        const { rest, held, delay } = this.refusals.regroupChains(chains, result.error);
        if (rest.length > 0) void this.run(rest);
        if (held.length > 0) setTimeout(() => void this.run(held), delay);
      } else {
        const { rest, held, delay } = this.refusals.regroupTxns(txns, chainsOf, result.error);
        if (rest.length > 0) void this.run([], rest);
        if (held.length > 0) setTimeout(() => void this.run([], held), delay);
      }
      s.afterBatch();
      return;
    }
    for (const c of chains) this.refusals.forget(c);
    for (const t of txns) this.refusals.forget(t);
    const release = (): void => {
      for (const t of txns) s.scheduler.txnDone(t);
      if (txns.length === 0) for (const c of chains) s.scheduler.chainDone(c);
    };
    // In doubt: COMMIT was sent and no answer came (deadline, or the connection broke).
    let inDoubt = false;
    if (result === null) {
      inDoubt = b.ctl.phase === 'commit';
    } else if (result.ok) {
      s.lastOkAt = s.localClock();
      const committed = result.value;
      const now = s.now();
      if (txns.length > 0) {
        const planned = new Map<PendingOp, Array<[PendingOp, Reply]>>(txns.map((t) => [t, []]));
        for (const pr of committed.replies) planned.get(ownerOf.get(pr[0])!)!.push(pr);
        for (const t of txns) {
          const d = decisions.get(t)!;
          if (d.scriptOut !== null) s.out.answer(t, [t.id, 200, d.scriptOut]);
          else s.out.answer(t, txnReply(t, d.succeeded, planned.get(t)!));
        }
      } else {
        for (const [op, reply] of committed.replies) {
          if (op.op === OP_REAP) this.expirer.onReaped(op.key, op.dueAt, reapDeleted(replyOf(OP_REAP, reply)), now);
          else s.out.answer(op, reply);
        }
      }
      for (const [key, at] of committed.expiries) this.expirer.onExpirySet(key, at);
      if (committed.mutations.feed !== undefined && committed.mutations.feed.length > 0) s.feed?.kick();
    } else {
      s.onStoreError(result.error);
      inDoubt = lostDuringCommit(result.error, b.ctl);
      // A connection lost while COMMIT was in flight may or may not have committed.
      const e = inDoubt
        ? {
            code: 'KV_ERR_OUTCOME_UNKNOWN' as const,
            message: `shard ${s.cfg.shard}: connection lost during commit; the write may or may not have been applied`,
          }
        : toKvError(result.error, s.cfg.shard);
      for (const op of userOps) s.out.answer(op, errorReply(op.id, e.code, e.message));
    }
    // A reap that did not commit is the expirer's to try again.
    const reapsFailed = (): void => {
      for (const c of chains) for (const op of c.ops) if (op.op === OP_REAP) this.expirer.onReapFailed(op.key);
    };
    if (inDoubt) {
      for (const op of userOps) op.value = null; // sent already; not needed again
      this.settleThenRelease(
        () => {
          reapsFailed();
          release();
        },
        b.ctl,
        chains.length,
      );
    } else {
      if (result === null || !result.ok) reapsFailed();
      release();
    }
    s.afterBatch();
  }

  /**
   * Keeps the keys of an in-doubt transaction held until the server has finished it (committed
   * or rolled back), asking again every SETTLE_RETRY_MS while it cannot be reached. Only then may
   * a later write to those keys lock their rows and see the outcome.
   */
  private settleThenRelease(release: () => void, ctl: TxControl, keys: number): void {
    const s = this.s;
    this.settling++;
    const started = s.localClock();
    let attempts = 0;
    let warnedAt = -Infinity;
    const attempt = async (): Promise<void> => {
      attempts++;
      let settled = false;
      let why = 'the transaction is still running on the server';
      try {
        settled = await s.store.settle(ctl.threadId, ctl.connectedAt);
      } catch (err) {
        why = (err as Error).message;
      }
      if (!settled) {
        // Retried until the server answers: releasing the keys earlier would let a later write
        // read rows this transaction may still change. Said, not swallowed: the keys stay held.
        const now = s.localClock();
        if (now - warnedAt >= SETTLE_WARN_EVERY_MS) {
          warnedAt = now;
          s.log('warn', 'in-doubt commit not settled yet; its keys stay held', { thread: ctl.threadId, keys, attempts, ms: now - started, why });
        }
        if (!s.stopped) setTimeout(() => void attempt(), SETTLE_RETRY_MS).unref();
        else this.settling--;
        return;
      }
      this.settling--;
      s.log('info', 'in-doubt commit settled; its keys are free again', { thread: ctl.threadId, keys, attempts, ms: s.localClock() - started });
      release();
      s.afterBatch();
    };
    void attempt();
  }
}

const isUnanswered = (op: PendingOp): boolean => op.answered !== true;

/**
 * The connection broke during the COMMIT round trip: the outcome is unknown, never retried.
 * `ctl.phase` is the phase of the attempt that threw `err` (the store resets it per attempt).
 */
function lostDuringCommit(err: unknown, ctl: TxControl): boolean {
  return ctl.phase === 'commit' && classify(err) === 'connection';
}

/**
 * True when two plans of one batch change the same rows the same way (versions aside). New
 * versions change a decision only for a conditional write on a version issued in the same chain,
 * which a client cannot know in advance; then the batch is decided again from scratch.
 */
function sameRows(a: RowMutations, b: RowMutations): boolean {
  const keys = (rows: Array<[Buffer, ...unknown[]]>) => rows.map((r) => r[0].toString('latin1')).join('\0');
  return (
    keys(a.inserts) === keys(b.inserts) &&
    keys(a.upserts) === keys(b.upserts) &&
    keys(a.ttlUpdates) === keys(b.ttlUpdates) &&
    a.deletes.map((k) => k.toString('latin1')).join('\0') === b.deletes.map((k) => k.toString('latin1')).join('\0') &&
    a.ttlUpdates.every((t, i) => t[1] === b.ttlUpdates[i][1]) &&
    a.inserts.every((r, i) => r[3] === b.inserts[i][3]) &&
    a.upserts.every((r, i) => r[3] === b.upserts[i][3])
  );
}

/** Rolls the batch back to be decided again (classified 'retry', like a deadlock). */
function versionsMoved(): StoreError {
  return new StoreError('KV_VERSIONS_MOVED', 'a conditional write depended on versions that had to be taken again');
}
