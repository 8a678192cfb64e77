/**
 * Owns waiting in tests: `sleep` for a fixed pause, `waitFor` to poll a condition until it holds.
 * Relies on timers only. Every test and helper waits through these two; prefer `waitFor` on the
 * condition a test needs over a `sleep` long enough on a quiet machine.
 */
import assert from 'node:assert/strict';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface WaitOptions {
  /** Give up (an AssertionError naming `message`) after this many ms; default 10 s. */
  timeoutMs?: number;
  /** Pause between two checks; default 25 ms. */
  intervalMs?: number;
  /** What is awaited, or what failed when it never came: the failure says it. A function is called
   *  only then, so it can describe the state at the timeout. */
  message?: string | (() => string | Promise<string>);
  /** A `cond` that throws counts as not true yet (a server still down refuses the check itself);
   *  the last error is named on timeout. Off by default: an assert inside `cond` fails at once. */
  ignoreErrors?: boolean;
}

/**
 * Checks `cond` (at once, then every `intervalMs`) until it returns true; resolves with the ms it
 * took. Fails with an AssertionError when `timeoutMs` passes first.
 */
export async function waitFor(cond: () => boolean | Promise<boolean>, opts: WaitOptions = {}): Promise<number> {
  const { timeoutMs = 10_000, intervalMs = 25, message = 'the condition', ignoreErrors = false } = opts;
  const started = Date.now();
  let lastError: unknown;
  for (;;) {
    try {
      if (await cond()) return Date.now() - started;
    } catch (err) {
      if (!ignoreErrors) throw err;
      lastError = err;
    }
    if (Date.now() - started >= timeoutMs) {
      const why = lastError === undefined ? '' : `; last error: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
      assert.fail(`${typeof message === 'string' ? message : await message()} (not true after ${timeoutMs} ms${why})`);
    }
    await sleep(intervalMs);
  }
}
