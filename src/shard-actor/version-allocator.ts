/**
 * Owns the versions this actor hands out. Relies on ShardStore.reserveVersionBlock. Never touches
 * a data transaction.
 *
 * Versions come from blocks reserved in the shard's kv_seq row by an autocommit UPDATE, so each
 * number is issued once per shard, by one actor, forever: a key's version never repeats, even
 * after the key is deleted or expires and is created again. Reserving blocks outside the data
 * transactions keeps the counter row from serializing writers (one UPDATE per BLOCK writes).
 *
 *   kv_seq.next_version:  ... | block of actor A | block of actor B | next free ->
 *                               ^cursor    ^end
 *
 * A write must also get a version above the row's current one. With one gateway that always
 * holds (the block is newer than any row). With several, another actor may hold a newer block;
 * then `take` reserves a fresh block, which starts above every number issued so far.
 *
 * `take` returns the block's end with the versions: while kv_seq's counter still equals it, no
 * actor has reserved a newer block, so nobody has issued a version above these (every other
 * block lies below this one). The actor checks that after a create's INSERT (see write-path.ts).
 */
export interface Versions {
  /** First of the versions taken. */
  first: number;
  /** End (exclusive) of the block they came from. */
  blockEnd: number;
}

export class VersionAllocator {
  private cursor = 0;
  private end = 0;
  private pending: Promise<void> = Promise.resolve();

  constructor(
    private readonly reserve: (size: number, above: number) => Promise<number>,
    private readonly blockSize = 10_000,
  ) {}

  /**
   * First of `count` consecutive versions, all greater than `above`, for the caller alone.
   * `issuedBelow` (kv_seq's counter, 0 when not needed): when it has moved past this block,
   * another actor reserved a newer block and may have issued versions above ours, so the
   * versions must also be above those. A key created from absent needs this: its earlier life
   * (deleted or reaped, perhaps through another gateway) left no row to take `above` from.
   */
  take(count: number, above: number, issuedBelow = 0): Promise<Versions> | Versions {
    if (issuedBelow > this.end) above = Math.max(above, issuedBelow - 1);
    if (this.cursor > above && this.end - this.cursor >= count) {
      const first = this.cursor;
      this.cursor += count;
      return { first, blockEnd: this.end };
    }
    return this.refillAndTake(count, above);
  }

  private async refillAndTake(count: number, above: number): Promise<Versions> {
    // One reservation at a time; a waiter re-checks the block another waiter just reserved.
    const previous = this.pending;
    let done!: () => void;
    this.pending = new Promise((r) => (done = r));
    try {
      await previous;
      if (!(this.cursor > above && this.end - this.cursor >= count)) {
        const size = Math.max(this.blockSize, count);
        const start = await this.reserve(size, above);
        this.cursor = start;
        this.end = start + size;
      }
      const first = this.cursor;
      this.cursor += count;
      return { first, blockEnd: this.end };
    } finally {
      done();
    }
  }
}
