/**
 * Owns reading other processes' resource use from /proc (Linux): resident memory and CPU time,
 * per process and per thread. Relies on nothing. Used to tell which process a scenario saturated
 * (the gateway's main thread, its shard worker threads, a MySQL shard, or the load generator).
 */
import fs from 'node:fs';
import os from 'node:os';

const TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux we run on

/** VmRSS of `pid` in bytes; NaN when unreadable (not Linux, process gone). */
export function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** utime+stime of a process or thread, in seconds; NaN when unreadable. */
function cpuSeconds(statPath: string): number {
  try {
    const stat = fs.readFileSync(statPath, 'utf8');
    // "pid (comm) state ..." — comm may contain spaces; fields after ')' start at state (3rd).
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

/**
 * A thread's label. Node 20 names every thread "node" (worker threads included), so only the main
 * thread (tid = pid) can be told apart; the others are shard workers, V8 and libuv helpers.
 */
function threadName(pid: number, tid: number): string {
  if (tid === pid) return 'main';
  try {
    const comm = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
    return comm === 'node' ? `thread ${tid}` : comm;
  } catch {
    return `thread ${tid}`;
  }
}

/** Busy cores of the whole machine since boot, from /proc/stat: [busy, total] in ticks. */
function machineTicks(): [number, number] {
  try {
    const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = cpu[3] + (cpu[4] || 0); // idle + iowait
    const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
    return [total - idle, total];
  } catch {
    return [NaN, NaN];
  }
}

export interface Watched {
  /** Shown in reports: "gateway", "shard-0 mysqld", "load generator". */
  label: string;
  pid: number;
  /** Also report the busiest threads of this process (the gateway: main thread vs workers). */
  threads?: boolean;
}

export interface CpuUse {
  label: string;
  /** Average cores used over the window: 1.0 = one core fully busy. */
  cores: number;
  threads?: Array<{ name: string; tid: number; cores: number }>;
}

interface Snapshot {
  at: number;
  machine: [number, number];
  proc: number[];
  threads: Array<Map<number, number>>;
}

/**
 * Measures CPU use of a set of processes between start() and stop(). The machine has few cores;
 * a process near `os.availableParallelism()` cores, or a thread near 1.0, is the bottleneck.
 */
export class CpuMeter {
  private first: Snapshot | null = null;
  constructor(private readonly watched: Watched[]) {}

  private snap(): Snapshot {
    return {
      at: performance.now(),
      machine: machineTicks(),
      proc: this.watched.map((w) => cpuSeconds(`/proc/${w.pid}/stat`)),
      threads: this.watched.map((w) => {
        const m = new Map<number, number>();
        if (!w.threads) return m;
        try {
          for (const t of fs.readdirSync(`/proc/${w.pid}/task`)) m.set(Number(t), cpuSeconds(`/proc/${w.pid}/task/${t}/stat`));
        } catch {
          /* gone */
        }
        return m;
      }),
    };
  }

  start(): void {
    this.first = this.snap();
  }

  stop(): CpuUse[] {
    const a = this.first;
    if (a === null) return [];
    const b = this.snap();
    const secs = (b.at - a.at) / 1000;
    return this.watched
      .map((w, i) => {
        const use: CpuUse = { label: w.label, cores: round2((b.proc[i] - a.proc[i]) / secs) };
        if (w.threads) {
          const list: Array<{ name: string; tid: number; cores: number }> = [];
          for (const [tid, after] of b.threads[i]) {
            const before = a.threads[i].get(tid) ?? 0;
            const cores = round2((after - before) / secs);
            if (cores >= 0.02) list.push({ name: threadName(w.pid, tid), tid, cores });
          }
          list.sort((x, y) => y.cores - x.cores);
          use.threads = list.slice(0, 6);
        }
        return use;
      })
      .concat([{ label: MACHINE, cores: round2((b.machine[0] - a.machine[0]) / TICKS_PER_SECOND / secs) }]);
  }
}

const round2 = (n: number): number => (Number.isFinite(n) ? Math.round(n * 100) / 100 : NaN);

export const CORES = os.availableParallelism();
/** The CpuUse entry for every process on the machine (ours and anyone else's). */
export const MACHINE = 'machine (all processes)';

/** "gateway 1.62 (main 0.98, shard-0 0.31) · shard-0 mysqld 0.12 · load generator 0.95" */
export function describeCpu(list: CpuUse[]): string {
  return list
    .filter((u) => Number.isFinite(u.cores))
    .map((u) => {
      const t =
        u.threads && u.threads.length > 0
          ? ` (${u.threads
              .slice(0, 3)
              .map((x) => `${x.name} ${x.cores.toFixed(2)}`)
              .join(', ')})`
          : '';
      return `${u.label} ${u.cores.toFixed(2)}${t}`;
    })
    .join(' · ');
}

/**
 * Cores busy machine-wide over `ms`, measured while the harness itself idles: the background
 * every result row shares (on a shared machine, e.g. someone's test suite).
 */
export async function backgroundBusyCores(ms = 1000): Promise<number> {
  const a = machineTicks();
  const t = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const b = machineTicks();
  return round2((b[0] - a[0]) / TICKS_PER_SECOND / ((performance.now() - t) / 1000));
}
