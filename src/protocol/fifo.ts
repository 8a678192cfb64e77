/**
 * Owns the one FIFO of every hot queue: the shard actor's (ready reads, ready chains, each key's
 * waiting ops, the expiry wheel's due entries, admitted ops by deadline) and the gateway's (each
 * shard's submit order, for the deadline backstop and the queue-wait bound). Relies on nothing.
 * Pure.
 *
 * Consumed from a head index, never with Array.shift (which moves every remaining item):
 *
 *   items: [ consumed ... | head -> live ... ]
 *
 * Emptied, it starts a fresh array; once the consumed prefix is most of the array, the live tail
 * is copied down, so memory stays proportional to what is live and each item is copied O(1)
 * times on average.
 */
export class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  get count(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** The oldest item, left in place. */
  peek(): T | undefined {
    return this.head < this.items.length ? this.items[this.head] : undefined;
  }

  /** Remove and return the oldest item; only call when count > 0. */
  shift(): T {
    const item = this.items[this.head++];
    this.compact();
    return item;
  }

  /** Up to `max` oldest items, removed. */
  take(max: number): T[] {
    const end = Math.min(this.items.length, this.head + max);
    const out = this.items.slice(this.head, end);
    this.head = end;
    this.compact();
    return out;
  }

  /** Everything, removed. */
  drain(): T[] {
    const out = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return out;
  }

  private compact(): void {
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 32 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}
