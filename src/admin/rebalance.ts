/**
 * Owns deciding which slots move where: an even share of the 16,384 slots for every shard that
 * is not being drained, moving as few slots as possible, in contiguous units. Relies on the slot
 * rows (ShardSet) and situationOf (SlotMover). Pure: no I/O.
 *
 *   owners now:   0000000000000000 1111111111111111          (2 shards, 8192 slots each)
 *   add shard 2:  0000000000022222 1111111111122222          (each gives its highest 2730-2731)
 */
import { SLOT_COUNT } from '../protocol/slot-map';
import { situationOf } from './slot-mover';
import type { SlotRow } from './shard-set';

export interface MoveUnit {
  lo: number;
  hi: number;
  source: number;
  target: number;
  /** An interrupted move being finished (it goes first). */
  resume: boolean;
}

/** The shard serving (or about to serve) each slot, from every member's rows. */
export function currentOwners(rows: SlotRow[]): Int32Array {
  const bySlot: SlotRow[][] = Array.from({ length: SLOT_COUNT }, () => []);
  for (const r of rows) bySlot[r.slot].push(r);
  const owner = new Int32Array(SLOT_COUNT).fill(-1);
  for (let s = 0; s < SLOT_COUNT; s++) {
    const sit = situationOf(bySlot[s], s, -1);
    owner[s] = sit.kind === 'flip' ? sit.target : sit.source;
  }
  return owner;
}

/**
 * Units to move so that every shard in `members` minus `draining` owns an even share (the first
 * SLOT_COUNT % n of them, by index, one more). Interrupted moves come first, as they were.
 */
export function planRebalance(rows: SlotRow[], members: number[], draining: Set<number>, maxSlotsPerUnit: number): MoveUnit[] {
  const bySlot: SlotRow[][] = Array.from({ length: SLOT_COUNT }, () => []);
  for (const r of rows) bySlot[r.slot].push(r);
  const units: MoveUnit[] = [];
  const owner = new Int32Array(SLOT_COUNT);
  const pending: Array<{ slot: number; source: number; target: number }> = [];
  for (let s = 0; s < SLOT_COUNT; s++) {
    const sit = situationOf(bySlot[s], s, -1);
    if (sit.kind === 'copy' || sit.kind === 'final' || sit.kind === 'flip') {
      pending.push({ slot: s, source: sit.source, target: sit.target });
      owner[s] = sit.target;
    } else owner[s] = sit.source;
  }
  units.push(...group(pending, maxSlotsPerUnit, true));
  const inFlight = new Set(pending.map((p) => p.slot));

  const active = members.filter((m) => !draining.has(m)).sort((a, b) => a - b);
  if (active.length === 0) throw new Error('cannot drain every shard: at least one must keep the slots');
  const want = new Map<number, number>();
  active.forEach((m, i) => want.set(m, Math.floor(SLOT_COUNT / active.length) + (i < SLOT_COUNT % active.length ? 1 : 0)));
  const have = new Map<number, number>();
  for (let s = 0; s < SLOT_COUNT; s++) have.set(owner[s], (have.get(owner[s]) ?? 0) + 1);
  // Surplus slots: each over-full (or draining) shard gives its highest-numbered slots.
  const moves: Array<{ slot: number; source: number; target: number }> = [];
  const deficit = active.filter((m) => (have.get(m) ?? 0) < want.get(m)!);
  let d = 0;
  for (let s = SLOT_COUNT - 1; s >= 0 && d < deficit.length; s--) {
    const from = owner[s];
    const surplus = (have.get(from) ?? 0) - (want.get(from) ?? 0);
    if (surplus <= 0 || inFlight.has(s)) continue;
    const to = deficit[d];
    moves.push({ slot: s, source: from, target: to });
    have.set(from, have.get(from)! - 1);
    have.set(to, (have.get(to) ?? 0) + 1);
    if (have.get(to)! >= want.get(to)!) d++;
  }
  moves.sort((x, y) => x.slot - y.slot);
  units.push(...group(moves, maxSlotsPerUnit, false));
  return units;
}

function group(moves: Array<{ slot: number; source: number; target: number }>, max: number, resume: boolean): MoveUnit[] {
  const out: MoveUnit[] = [];
  for (const m of moves) {
    const last = out[out.length - 1];
    if (last && last.hi === m.slot - 1 && last.source === m.source && last.target === m.target && last.hi - last.lo + 1 < max) last.hi = m.slot;
    else out.push({ lo: m.slot, hi: m.slot, source: m.source, target: m.target, resume });
  }
  return out;
}
