/**
 * Owns the embedded data dir's lock: one store per data dir. Relies on /proc (Linux) to tell a
 * live holder from a reused pid. Must not touch anything in the data dir but its lock file, and
 * never signals the holder: a store that finds the dir in use refuses to start.
 *
 *   <dataDir>/kvsql.lock    {"pid": 1234, "started": "<ticks since boot, /proc/1234/stat field 22>"}
 *
 * Why: two stores on one data dir each took the other's mariadbd for a leftover, stopped it and
 * restarted their own, for as long as both ran (503 for ~70 s when it happened).
 *
 * Taking it: create the file with O_EXCL (link of a complete temp file, so a reader never sees a
 * half-written lock). If it exists and its holder is alive, refuse; if the holder is dead (a
 * store killed with -9), or a live process that is not the holder (pid reused: a different start
 * time), the lock is stale and is taken over. A lock naming this process is live while this
 * process holds it (two clusters in one process), stale otherwise (a container's pid 1, again).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isAlive } from './local-mysqld';

export const LOCK_FILE = 'kvsql.lock';

/** The data dir is held by a live process. `code` is stable; the message names the pid and the fix. */
export class DataDirInUseError extends Error {
  readonly code = 'KVSQL_DATA_DIR_IN_USE';
  constructor(
    readonly dataDir: string,
    readonly pid: number,
  ) {
    super(
      `data dir ${dataDir} in use by pid ${pid} (another kvsql store; lock file ${path.join(dataDir, LOCK_FILE)}). Stop that store, or give this one its own data dir (KVSQL_DATA_DIR / --data-dir)`,
    );
  }
}

export interface DataDirLock {
  readonly file: string;
  /** Removes the lock file if it is still ours. Idempotent; also runs at process exit. */
  release(): void;
}

interface Holder {
  pid: number;
  started: string | null;
}

/** Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot. */
function startTicks(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) S ppid ...": comm may hold spaces, so count fields after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function readHolder(file: string): Holder | null {
  try {
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Holder>;
    return Number.isInteger(parsed.pid) ? { pid: parsed.pid!, started: typeof parsed.started === 'string' ? parsed.started : null } : null;
  } catch {
    return null; // unreadable or half-written by a version without the link step: stale
  }
}

/** Lock files this process holds: a lock naming our own pid is stale only when it is not one of them. */
const heldHere = new Set<string>();

function holderAlive(h: Holder, file: string): boolean {
  // Our own pid in a lock we do not hold: an earlier life of a container whose first process
  // is always pid 1.
  if (h.pid === process.pid) return heldHere.has(file);
  if (!isAlive(h.pid)) return false;
  const now = startTicks(h.pid);
  return h.started === null || now === null || now === h.started;
}

/** Takes the lock on `dataDir` (created if missing) or throws DataDirInUseError. */
export function lockDataDir(dataDir: string): DataDirLock {
  const dir = path.resolve(dataDir);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  const mine = JSON.stringify({ pid: process.pid, started: startTicks(process.pid) });
  const tmp = `${file}.${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  fs.writeFileSync(tmp, `${mine}\n`);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        fs.linkSync(tmp, file);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 5) throw err;
      }
      const holder = readHolder(file);
      if (holder !== null && holderAlive(holder, file)) throw new DataDirInUseError(dir, holder.pid);
      // Stale. Another starter may be taking it over too: remove it only if it still names the
      // stale holder (the other may have replaced it already); then only one link() succeeds.
      // What is left is the instant between this read and the rm: two stores started within
      // microseconds of each other on a stale lock.
      if (JSON.stringify(readHolder(file)) === JSON.stringify(holder)) fs.rmSync(file, { force: true });
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  heldHere.add(file);
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    heldHere.delete(file);
    process.removeListener('exit', release);
    try {
      if (fs.readFileSync(file, 'utf8').trim() === mine) fs.rmSync(file, { force: true });
    } catch {
      /* already gone */
    }
  };
  process.once('exit', release);
  return { file, release };
}
