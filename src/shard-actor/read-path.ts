/**
 * Owns one shard's read batches: the ready reads (GET, TTL) of many keys in one SELECT of the live
 * rows, retried on anything but a fatal error, each op answered from its key's row. Relies on
 * ActorState (scheduler, store, outbox, slots, stats, retries), BatchWatch (deadline) and
 * SlotRefusals (a read of a slot this shard does not serve is refused). Must not write, and must
 * not decide when to run: the actor's flush policy takes the reads and a read slot for it.
 *
 *   takeReads ─> drop ops answered while they waited ─> readLive(unique keys, slots)
 *       row absent -> 404 · GET -> value, version, expiry · TTL -> expiry, server now, version
 *       slot not served -> WRONG_SHARD (refuse) · error -> the error's reply · abandoned -> (answered)
 */
import { errorReply, getHit, notFound, OP_GET, ttlHit } from '../protocol/ops';
import { observe, type ActorState } from './actor-state';
import type { BatchWatch } from './deadlines';
import { classify, toKvError } from './mysql-errors';
import type { PendingOp } from './pending-op';
import type { LiveRow } from './shard-store';
import type { SlotRefusals } from './slot-refusals';

export class ReadPath {
  constructor(
    private readonly s: ActorState,
    private readonly watch: BatchWatch,
    private readonly refusals: SlotRefusals,
  ) {}

  async run(taken: PendingOp[]): Promise<void> {
    const s = this.s;
    // Ops answered while they waited (deadline, shard down) are not run.
    let batch = taken;
    for (const op of taken) {
      if (op.answered) {
        batch = taken.filter((o) => !o.answered);
        for (const o of taken) if (o.answered) s.scheduler.readDone(o);
        break;
      }
    }
    if (batch.length === 0) return;
    s.readsInFlight++;
    s.stats.readBatches++;
    observe(s.stats.readBatchSizes, batch.length);
    s.stats.readBatchOps += batch.length;
    const keys: Buffer[] = [];
    const seen = new Set<string>();
    const slotSet = new Set<number>();
    for (const op of batch) {
      slotSet.add(op.slot);
      if (!seen.has(op.keyStr)) {
        seen.add(op.keyStr);
        keys.push(op.key);
      }
    }
    const slots = [...slotSet];
    const b = this.watch.begin('read', batch);
    // A read is idempotent: retried on anything but a fatal error.
    const result = await this.watch.race(
      b,
      s.withRetries(
        () => s.store.readLive(keys, slots, b.ctl),
        (err) => classify(err) !== 'fatal',
        b.ctl,
      ),
    );
    this.watch.end(b);
    s.readsInFlight--;
    if (result === null) {
      // Abandoned at the deadline: abandon() answered every op.
    } else if (result.ok) {
      s.lastOkAt = s.localClock();
      const byKey = new Map<string, LiveRow>();
      for (const r of result.value.rows) byKey.set(r.k.toString('latin1'), r);
      const served = result.value.served;
      let refused: PendingOp[] | undefined;
      for (const op of batch) {
        const row = byKey.get(op.keyStr);
        if (!served.has(op.slot)) (refused ??= []).push(op);
        else if (row === undefined) s.out.answer(op, notFound(op.id));
        else if (op.op === OP_GET) {
          s.out.answer(op, getHit(op.id, row.v, Number(row.version), row.expires_at === null ? null : Number(row.expires_at)));
          // Many GETs of one large value share one row but each reply carries a copy: send in
          // frames of a few MiB so one batch never packs gigabytes into one buffer.
          s.out.countValueBytes(row.v.length);
        } else s.out.answer(op, ttlHit(op.id, row.expires_at === null ? null : Number(row.expires_at), Number(row.now_ms), Number(row.version)));
      }
      if (refused !== undefined) this.refusals.refuse(refused);
    } else {
      s.onStoreError(result.error);
      const e = toKvError(result.error, s.cfg.shard);
      for (const op of batch) s.out.answer(op, errorReply(op.id, e.code, e.message));
    }
    for (const op of batch) s.scheduler.readDone(op);
    s.afterBatch();
  }
}
