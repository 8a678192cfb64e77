/**
 * Owns how the Redis door reads a command's arguments: names and options as lower-case latin1
 * (a byte each, so no argument can fail to decode), and Redis's strict integer arguments. Relies
 * on nothing. Must not reply: callers turn a null into their error (errors.ts).
 */

/** An option or subcommand name, lower-cased. */
export const lc = (b: Buffer): string => b.toString('latin1').toLowerCase();

/** An integer argument within the safe range (optional '-', at most 18 digits), or null. */
export function intArg(b: Buffer): number | null {
  const s = b.toString('latin1');
  if (!/^-?\d{1,18}$/.test(s)) return null;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : null;
}
