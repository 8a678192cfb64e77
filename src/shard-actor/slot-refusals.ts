/**
 * Owns a write batch's refusal by slot: which slots this shard may write now (checkSlots, inside
 * the transaction), and what becomes of the chains and transactions of refused slots. Relies on
 * ActorState (scheduler, outbox, store.movedTo), the Expirer (a refused reap is its to retry) and
 * protocol/slot-map. Must not run writes: it hands back what runs now and what is held, and the
 * write path runs them.
 *
 *   slot state     in the transaction          after the rollback
 *   OWNED          written                      -
 *   COPYING        written, logged as changed   -
 *   FENCED         SlotsRefused.held            kept (keys still held), retried, at most slotHoldMs,
 *                                               then 503 SLOT_MOVING
 *   anything else  SlotsRefused.wrong           503 WRONG_SHARD with the new owner (gateway re-routes)
 */
import { errorReply, OP_REAP, wrongShard } from '../protocol/ops';
import { SLOT_COPYING, SLOT_FENCED, SLOT_OWNED } from '../protocol/slot-map';
import type { ActorState } from './actor-state';
import type { Expirer } from './expirer';
import type { Chain } from './key-scheduler';
import type { PendingOp } from './pending-op';
import type { SlotStates } from './shard-store';

/** First retry of a write held by a fence; doubles up to HOLD_RETRY_MAX_MS. */
const HOLD_RETRY_MS = 5;
const HOLD_RETRY_MAX_MS = 20;

/**
 * A write batch touched slots this shard must not write now: `wrong` ones it does not own
 * (answered KV_ERR_WRONG_SHARD: the gateway re-routes), `held` ones are fenced by a move (kept
 * and tried again until the flip, at most KVSQL_SLOT_HOLD_MS). Thrown inside the transaction,
 * which then rolls back having written nothing.
 */
export class SlotsRefused extends Error {
  constructor(
    readonly wrong: Set<number>,
    readonly held: Set<number>,
  ) {
    super('slots refused');
  }
}

/** What a refused batch leaves to run: at once (`rest`), and after `delay` ms (`held`). */
export interface Regrouped<T> {
  rest: T[];
  held: T[];
  delay: number;
}

/**
 * Which slots of a write batch this shard may write now. Throws SlotsRefused if any is not owned
 * or fenced; returns the [slot, key] pairs to log for slots being copied away (else undefined).
 */
export function checkSlots(chains: Chain[], states: SlotStates): Array<[number, Buffer]> | undefined {
  let refused: SlotsRefused | undefined;
  let changed: Array<[number, Buffer]> | undefined;
  for (const c of chains) {
    const slot = c.slot;
    const state = states.get(slot);
    if (state === SLOT_OWNED) continue;
    if (state === SLOT_COPYING) (changed ??= []).push([slot, c.key]);
    else if (state === SLOT_FENCED) (refused ??= new SlotsRefused(new Set(), new Set())).held.add(slot);
    else (refused ??= new SlotsRefused(new Set(), new Set())).wrong.add(slot);
  }
  if (refused !== undefined) throw refused;
  return changed;
}

export class SlotRefusals {
  /** Chains (and transactions) held by a fence: when each was first held. */
  private readonly heldSince = new Map<Chain | PendingOp, number>();
  /** Refusals are answered in the order they were decided (each waits for the hint lookup). */
  private refusing: Promise<void> = Promise.resolve();

  constructor(
    private readonly s: ActorState,
    private readonly expirer: Expirer,
  ) {}

  /** The chain or transaction ran (or failed) for good: it is no longer held by a fence. */
  forget(c: Chain | PendingOp): void {
    this.heldSince.delete(c);
  }

  /**
   * Split a refused batch: chains of slots this shard does not own are answered (the gateway
   * re-routes them); chains of fenced slots are kept, still holding their keys in the scheduler
   * so later ops on those keys stay behind them, and tried again shortly; the rest run at once.
   */
  regroupChains(chains: Chain[], refused: SlotsRefused): Regrouped<Chain> {
    let wrong: PendingOp[] | undefined;
    const rest: Chain[] = [];
    const held: Chain[] = [];
    const now = this.s.localClock();
    for (const c of chains) {
      const slot = c.slot;
      const since = this.heldSince.get(c);
      if (refused.wrong.has(slot)) {
        this.heldSince.delete(c);
        for (const op of c.ops) {
          if (op.op === OP_REAP) this.expirer.onReapFailed(op.key);
          else (wrong ??= []).push(op);
        }
        this.s.scheduler.chainDone(c);
      } else if (refused.held.has(slot)) {
        if (since !== undefined && now - since >= this.s.cfg.slotHoldMs) {
          this.heldSince.delete(c);
          for (const op of c.ops) {
            if (op.op === OP_REAP) this.expirer.onReapFailed(op.key);
            else
              this.s.out.answer(op, errorReply(op.id, 'KV_ERR_SLOT_MOVING', `slot ${slot} is being moved; it stayed fenced for ${this.s.cfg.slotHoldMs} ms`));
          }
          this.s.scheduler.chainDone(c);
        } else {
          if (since === undefined) this.heldSince.set(c, now);
          held.push(c);
        }
      } else rest.push(c);
    }
    if (wrong !== undefined) this.refuse(wrong);
    return { rest, held, delay: this.retryDelay(held, now) };
  }

  /**
   * Transactions touched slots this shard must not write now: as regroupChains, each whole. One
   * with a slot not owned is refused (the gateway re-routes it), one with a fenced slot is kept
   * and tried again (at most KVSQL_SLOT_HOLD_MS), the others run at once.
   */
  regroupTxns(txns: PendingOp[], chainsOf: Map<PendingOp, Chain[]>, refused: SlotsRefused): Regrouped<PendingOp> {
    const now = this.s.localClock();
    const rest: PendingOp[] = [];
    const held: PendingOp[] = [];
    for (const t of txns) {
      const slots = chainsOf.get(t)!.map((c) => c.slot);
      const since = this.heldSince.get(t);
      if (slots.some((s) => refused.wrong.has(s))) {
        this.heldSince.delete(t);
        this.refuse([t]);
        this.s.scheduler.txnDone(t);
      } else if (slots.some((s) => refused.held.has(s))) {
        if (since !== undefined && now - since >= this.s.cfg.slotHoldMs) {
          this.heldSince.delete(t);
          this.s.out.answer(
            t,
            errorReply(
              t.id,
              'KV_ERR_SLOT_MOVING',
              `slot ${slots.find((s) => refused.held.has(s))} is being moved; it stayed fenced for ${this.s.cfg.slotHoldMs} ms`,
            ),
          );
          this.s.scheduler.txnDone(t);
        } else {
          if (since === undefined) this.heldSince.set(t, now);
          held.push(t);
        }
      } else rest.push(t);
    }
    return { rest, held, delay: this.retryDelay(held, now) };
  }

  /** Half the time the oldest held one has waited, within HOLD_RETRY_MS..HOLD_RETRY_MAX_MS. */
  private retryDelay(held: Array<Chain | PendingOp>, now: number): number {
    if (held.length === 0) return 0;
    const waited = now - (this.heldSince.get(held[0]) ?? now);
    return Math.min(HOLD_RETRY_MAX_MS, Math.max(HOLD_RETRY_MS, waited / 2));
  }

  /**
   * Answer ops whose slot this shard does not own KV_ERR_WRONG_SHARD, with the new owner's index
   * when this shard moved the slot away, or its own when it is taking the slot over (the gateway
   * then re-routes at once, or comes back shortly, without re-reading the whole map). The hint is
   * looked up after the refusal, so it is only a hint. Refusals are answered in the order they
   * were decided.
   */
  refuse(ops: PendingOp[]): void {
    const slots = [...new Set(ops.map((o) => o.slot))];
    this.refusing = this.refusing.then(async () => {
      const hints = await this.s.store.movedTo(slots).catch(() => new Map<number, number>());
      const shard = this.s.shardIndex ?? '?';
      for (const op of ops) this.s.out.answer(op, wrongShard(op.id, `shard ${shard} does not own slot ${op.slot}`, hints.get(op.slot) ?? -1));
      this.s.out.flush();
    });
  }
}
