/**
 * Owns the in-memory schedule of keys due to expire within the horizon. Relies on nothing. Never
 * reads the clock: every method that needs time takes `now`. Never decides a delete: an entry is
 * only a hint that a key may be due; the reap re-checks the row inside its transaction.
 *
 * A hashed wheel of `slotCount` slots of `slotMs` each. Slot `abs` (= floor(dueAt / slotMs)) lives
 * at index `abs % slotCount`. The wheel only accepts entries less than one revolution ahead of its
 * cursor; keys further out stay in MySQL and are loaded by the expirer's range scan later.
 *
 *   cursor (last slot fully elapsed)
 *      v
 *   [ due queue ] <- | s | s+1 | s+2 | ... | s+slotCount-1 |  <- add(dueAt)
 *   takeDue()           slots move to the due queue once their whole slot has elapsed
 */

import { Fifo } from '../protocol/fifo';

export interface WheelEntry {
  key: Buffer;
  dueAt: number;
}

export class TimerWheel {
  private readonly slots: WheelEntry[][];
  private cursor: number;
  private due = new Fifo<WheelEntry>();
  /** Entries in slots and in the due queue. */
  size = 0;

  constructor(
    readonly slotMs: number,
    readonly slotCount: number,
    now: number,
  ) {
    this.slots = Array.from({ length: slotCount }, () => []);
    this.cursor = Math.floor(now / slotMs) - 1;
  }

  /** The latest dueAt this wheel accepts right now. */
  get spanEnd(): number {
    return (this.cursor + this.slotCount) * this.slotMs - 1;
  }

  get dueCount(): number {
    return this.due.count;
  }

  /** false when `dueAt` is beyond one revolution: the caller leaves it to the range scan. */
  add(key: Buffer, dueAt: number): boolean {
    const abs = Math.floor(dueAt / this.slotMs);
    if (abs <= this.cursor) {
      this.due.push({ key, dueAt });
    } else if (abs - this.cursor < this.slotCount) {
      this.slots[abs % this.slotCount].push({ key, dueAt });
    } else {
      return false;
    }
    this.size++;
    return true;
  }

  /** Move every slot that has fully elapsed by `now` to the due queue. Work: elapsed slots. */
  advance(now: number): void {
    const last = Math.floor(now / this.slotMs) - 1;
    const steps = Math.min(last - this.cursor, this.slotCount);
    for (let i = 0; i < steps; i++) {
      const idx = (this.cursor + 1 + i) % this.slotCount;
      const slot = this.slots[idx];
      if (slot.length > 0) {
        for (const e of slot) this.due.push(e);
        this.slots[idx] = [];
      }
    }
    if (last > this.cursor) this.cursor = last;
  }

  /** Up to `max` due entries, oldest slot first. */
  takeDue(max: number): WheelEntry[] {
    const out = this.due.take(max);
    this.size -= out.length;
    return out;
  }

  clear(now: number): void {
    for (let i = 0; i < this.slotCount; i++) this.slots[i] = [];
    this.due = new Fifo<WheelEntry>();
    this.size = 0;
    this.cursor = Math.floor(now / this.slotMs) - 1;
  }
}
