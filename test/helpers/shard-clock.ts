/**
 * Owns judging expiry by the clock that decides it: the shard's (README, "which clock decides").
 * Measures a shard's clock offset from this process's clock with a bounded error, and checks a
 * stream of reads against a key's expiry instant: a read that began at or after the instant (on
 * the shard clock) must miss, and a read that ended before it must hit. Relies on mysql2 only.
 */
import assert from 'node:assert/strict';
import mysql from 'mysql2/promise';
import { sleep } from './wait';

export interface ShardClock {
  /** shard ms = local ms + offset, within +- error. */
  offset: number;
  error: number;
}

/** Best of several samples: the one with the shortest round trip bounds the error tightest. */
export async function measureShardClock(url: string, samples = 7): Promise<ShardClock> {
  const conn = await mysql.createConnection({ uri: url });
  try {
    let best: ShardClock = { offset: 0, error: Infinity };
    for (let i = 0; i < samples; i++) {
      const t0 = Date.now();
      const [rows] = await conn.query('SELECT CAST(ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000) AS SIGNED) AS ms');
      const t1 = Date.now();
      const shardMs = Number((rows as Array<{ ms: number | string }>)[0].ms);
      // The shard read its clock somewhere in [t0, t1]; NOW(3) truncates to the ms, +1 covers it.
      const error = (t1 - t0) / 2 + 1;
      if (error < best.error) best = { offset: shardMs - (t0 + t1) / 2, error };
    }
    return best;
  } finally {
    await conn.end();
  }
}

/** One read, with when it began and ended on this process's clock. */
export interface TimedRead {
  status: number;
  began: number;
  ended: number;
}

/**
 * Asserts one read is consistent with the key expiring at `expiresAt` (shard ms): a hit must have
 * begun before the instant (surely, allowing for the clock error), a miss must have ended at or
 * after it. `what` names the read in the message.
 */
export function checkRead(read: TimedRead, expiresAt: number, clock: ShardClock, what: string): void {
  const beganShard = read.began + clock.offset;
  const endedShard = read.ended + clock.offset;
  if (read.status === 200) {
    assert.ok(
      beganShard - clock.error < expiresAt,
      `${what}: 200 for a read that began ${Math.round(beganShard - expiresAt)} ms after the expiry instant (shard clock, error ${clock.error} ms)`,
    );
  } else if (read.status === 404) {
    assert.ok(
      endedShard + clock.error >= expiresAt,
      `${what}: 404 for a read that ended ${Math.round(expiresAt - endedShard)} ms before the expiry instant: deleted early`,
    );
  } else {
    assert.fail(`${what}: unexpected status ${read.status}`);
  }
}

/**
 * Reads `key` through `get` back to back until a miss is seen at least `settleMs` after the
 * expiry instant, checking every read with checkRead; fails if the key is still there
 * `timeoutMs` after the instant. Returns the reads.
 */
export async function watchExpiry(
  get: () => Promise<{ status: number }>,
  expiresAt: number,
  clock: ShardClock,
  what: string,
  timeoutMs = 3000,
  settleMs = 50,
): Promise<TimedRead[]> {
  const reads: TimedRead[] = [];
  const localExpiry = expiresAt - clock.offset;
  for (;;) {
    const began = Date.now();
    const { status } = await get();
    const read = { status, began, ended: Date.now() };
    reads.push(read);
    checkRead(read, expiresAt, clock, `${what} read ${reads.length}`);
    if (status === 404 && read.began >= localExpiry + settleMs) return reads;
    assert.ok(read.ended < localExpiry + timeoutMs, `${what}: still no miss ${timeoutMs} ms after the expiry instant`);
    await sleep(5);
  }
}
