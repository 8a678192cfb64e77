/**
 * Owns the one-line progress indicator on stderr. Relies on nothing. On a terminal the line is
 * rewritten in place (at most 10 times a second); when stderr is a pipe or a file, a line is
 * printed at most every 10 s so logs stay readable. `log` prints a permanent line above it.
 */

const TTY = process.stderr.isTTY === true;
const PIPE_INTERVAL_MS = 10_000;
const TTY_INTERVAL_MS = 100;

let current = '';
let lastDraw = 0;

function columns(): number {
  return process.stderr.columns ?? 120;
}

function draw(): void {
  const text = current.length > columns() - 1 ? current.slice(0, columns() - 2) + '…' : current;
  process.stderr.write(`\r\x1b[2K${text}`);
}

/** Sets the progress line. Cheap to call often: drawing is throttled. */
export function progress(text: string, force = false): void {
  current = text;
  const now = Date.now();
  if (TTY) {
    if (force || now - lastDraw >= TTY_INTERVAL_MS) {
      lastDraw = now;
      draw();
    }
  } else if (force || now - lastDraw >= PIPE_INTERVAL_MS) {
    lastDraw = now;
    process.stderr.write(`${text}\n`);
  }
}

/** Prints a permanent line (the progress line, if any, is redrawn below it). */
export function log(text: string): void {
  if (TTY) {
    process.stderr.write(`\r\x1b[2K${text}\n`);
    if (current !== '') draw();
  } else {
    process.stderr.write(`${text}\n`);
  }
}

export function clearProgress(): void {
  if (TTY && current !== '') process.stderr.write('\r\x1b[2K');
  current = '';
}

export const fmtInt = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');
