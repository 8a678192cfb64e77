/**
 * Owns one torture run: a cluster of real processes (cluster.ts), the workload (workload.ts) for a
 * while, faults injected on a seeded schedule, then every fault healed, the final reads, and the
 * checker (test/checker) over the whole history. Used by `npm run torture` (run.ts) and by the
 * short runs in the suite. Must not judge the history itself.
 *
 * Faults (each followed by its repair before the next one starts):
 *   gw-kill   kill -9 of a gateway process with ops in flight; restarted on the same port 0.5-2 s later
 *   db-kill   kill -9 of a shard's mariadbd; restarted on the same data 0.5-2 s later
 *   db-stop   SIGSTOP of a shard's mariadbd for 1-4 s, then SIGCONT
 * Beside the register workload, a few clients increment counter keys (counters.ts): no
 * acknowledged increment may be lost or counted twice through any of these faults.
 *
 *   move      slot moves while serving: `kvsql shards add` of a spare server (then a rebalance onto
 *             it), and the next time `kvsql shards drain` of it (every slot moved off again)
 */
import { checkHistory, describeReport, violationCount, type CheckReport } from '../checker/check';
import type { HistoryOp, Outcome } from '../checker/history';
import { startCluster, type Cluster } from './cluster';
import { rng, startWorkload } from './workload';
import { checkCounters, startCounterWorkload, type CounterOp } from './counters';
import { checkTransfers, startTransferWorkload } from './transfers';
import { sleep } from '../helpers/wait';

export type FaultKind = 'gw-kill' | 'db-kill' | 'db-stop' | 'move';
export const FAULT_KINDS: FaultKind[] = ['gw-kill', 'db-kill', 'db-stop', 'move'];

export interface TortureOptions {
  durationMs: number;
  seed: number;
  keys: number;
  clients: number;
  shards?: number;
  /** Fault kinds to inject (empty: none). */
  faults: FaultKind[];
  /** Mean pause between the end of one fault and the start of the next. */
  faultIntervalMs?: number;
  /** Extra KVSQL_* settings for the gateways. */
  env?: Record<string, string>;
  mix?: 'full' | 'put-del';
  log?: (msg: string) => void;
  keyPrefix?: string;
  /** Clients of the counter workload (default 2; 0: none). */
  counterClients?: number;
  /** Search limits passed to the checker. */
  maxSearchOps?: number;
  searchBudget?: number;
}

export interface TortureResult {
  report: CheckReport;
  violations: number;
  faults: Record<FaultKind, number>;
  history: HistoryOp[];
  counters: CounterOp[];
  /** The one line a script reads. */
  summary: string;
  /** Details of every violation and undecided key. */
  details: string;
}

/** Starts the cluster a run uses: a mariadbd per shard, a spare one (for moves) and two gateway processes. */
export function startTortureCluster(opts: Pick<TortureOptions, 'shards' | 'env' | 'log'> = {}): Promise<Cluster> {
  const log = opts.log ?? (() => undefined);
  return startCluster({ shards: opts.shards ?? 2, spares: 1, gateways: 2, env: opts.env, log: (m) => log(`[mysql] ${m}`) });
}

/**
 * One run. With `shared`, runs on that cluster (its keys prefixed by `keyPrefix`) and leaves it
 * running; otherwise starts its own and stops it at the end.
 */
export async function runTorture(opts: TortureOptions, shared?: Cluster): Promise<TortureResult> {
  const log = opts.log ?? (() => undefined);
  const cluster = shared ?? (await startTortureCluster(opts));
  const faults: Record<FaultKind, number> = { 'gw-kill': 0, 'db-kill': 0, 'db-stop': 0, move: 0 };
  try {
    const gateways = cluster.gateways.map((g) => g.base);
    const workload = startWorkload({ gateways, clients: opts.clients, keys: opts.keys, seed: opts.seed, mix: opts.mix, keyPrefix: opts.keyPrefix });
    const counterClients = opts.counterClients ?? 2;
    const counters = counterClients > 0 ? startCounterWorkload({ gateways, clients: counterClients, keys: 2, keyPrefix: `${opts.keyPrefix ?? 't'}c` }) : null;
    const transfers = counterClients > 0 ? startTransferWorkload({ gateways, clients: counterClients, keyPrefix: `${opts.keyPrefix ?? 't'}x` }) : null;
    try {
      await runSchedule(cluster, opts, faults, log);
    } catch (err) {
      await workload.stop(); // its clients would keep the process alive
      await counters?.stop();
      await transfers?.stop();
      throw err;
    }
    log('stopping the workload');
    await workload.stop();
    await counters?.stop();
    await transfers?.stop();
    await cluster.waitReady();
    await workload.finalReads();
    const counterProblems = counters === null ? [] : checkCounters(counters.history, await counters.finalValues());
    const transferProblems = transfers === null ? [] : checkTransfers(transfers.history, await transfers.finalBalances());
    log(`checking ${workload.history.length} ops`);
    const report = checkHistory(workload.history, { maxSearchOps: opts.maxSearchOps, searchBudget: opts.searchBudget });
    const violations = violationCount(report) + counterProblems.length + transferProblems.length;
    const c = report.counts;
    const minutes = Math.round((opts.durationMs / 60_000) * 100) / 100;
    const incrs = (counters?.history ?? []).filter((o) => o.kind === 'incr');
    const count = (o: Outcome) => incrs.filter((i) => i.outcome === o).length;
    const txns = (transfers?.history ?? []).filter((o) => o.kind === 'transfer');
    const txnCount = (o: Outcome) => txns.filter((t) => t.outcome === o).length;
    const summary =
      `torture: minutes=${minutes} seed=${opts.seed} ops=${c.ops} ok=${c.ok} failed=${c.failed} unknown=${c.unknown} keys=${c.keys} ` +
      `clients=${opts.clients} faults=${FAULT_KINDS.map((k) => `${k}:${faults[k]}`).join(',')} violations=${violations} linearizable=${report.linearizable} ` +
      `incr=${count('ok')}/${count('unknown')}/${count('fail')} counter-violations=${counterProblems.length} ` +
      `txn=${txnCount('ok')}/${txnCount('unknown')}/${txnCount('fail')} txn-reads=${(transfers?.history ?? []).filter((o) => o.kind === 'read' && o.outcome === 'ok').length} transfer-violations=${transferProblems.length}`;
    const details = [describeReport(report), ...counterProblems.map((p) => `counter: ${p}`), ...transferProblems.map((p) => `transfer: ${p}`)]
      .filter(Boolean)
      .join('\n');
    return { report, violations, faults, history: workload.history, counters: counters?.history ?? [], summary, details };
  } finally {
    if (shared === undefined) await cluster.close();
  }
}

/** The faults of one run on their seeded schedule, for opts.durationMs; counts them in `faults`. */
async function runSchedule(cluster: Cluster, opts: TortureOptions, faults: Record<FaultKind, number>, log: (msg: string) => void): Promise<void> {
  const end = Date.now() + opts.durationMs;
  const random = rng(opts.seed ^ 0x5eed);
  const interval = opts.faultIntervalMs ?? 5000;
  if (opts.faults.length === 0) {
    await sleep(opts.durationMs);
    return;
  }
  // The first fault comes after a calm start, so every run has history on both sides of it.
  await sleep(Math.min(1000 + random() * interval, opts.durationMs / 3));
  while (Date.now() < end - 2000) {
    const kind = opts.faults[Math.floor(random() * opts.faults.length)];
    await inject(cluster, kind, random, log);
    faults[kind]++;
    await sleep(Math.min(interval * (0.5 + random()), Math.max(0, end - Date.now())));
  }
  await sleep(Math.max(0, end - Date.now()));
}

/** The shard index a cluster's spare server joined as, while it holds slots. */
const joinedSpare = new WeakMap<Cluster, number>();

async function inject(cluster: Cluster, kind: FaultKind, random: () => number, log: (msg: string) => void): Promise<void> {
  const pause = 500 + Math.floor(random() * 1500);
  switch (kind) {
    case 'gw-kill': {
      const g = cluster.gateways[Math.floor(random() * cluster.gateways.length)];
      log(`fault: kill -9 gateway ${g.index} (pid ${g.pid}), restart in ${pause} ms`);
      await g.kill();
      await sleep(pause);
      await g.start();
      break;
    }
    case 'db-kill': {
      const i = Math.floor(random() * cluster.shards.length);
      log(`fault: kill -9 mariadbd of shard ${i} (pid ${cluster.shards[i].pid}), restart in ${pause} ms`);
      await cluster.shards[i].kill();
      await sleep(pause);
      await cluster.shards[i].restart();
      break;
    }
    case 'move': {
      // 1024 slots per move: a few units per rebalance, so a short run sees several fences and flips.
      const spare = cluster.spares[0];
      const index = joinedSpare.get(cluster);
      const args = index === undefined ? ['shards', 'add', spare.url] : ['shards', 'drain', String(index)];
      log(`fault: kvsql ${args.join(' ')}`);
      const r = await cluster.admin([...args, '--slots-per-move=1024']);
      if (r.code !== 0) throw new Error(`kvsql ${args.join(' ')} exited with ${r.code}:\n${r.out}`);
      if (index === undefined) joinedSpare.set(cluster, Number(/shard (\d+) joined/.exec(r.out)![1]));
      else joinedSpare.delete(cluster);
      break;
    }
    case 'db-stop': {
      const i = Math.floor(random() * cluster.shards.length);
      const pid = cluster.shards[i].pid;
      const stopMs = 1000 + Math.floor(random() * 3000);
      log(`fault: SIGSTOP mariadbd of shard ${i} (pid ${pid}) for ${stopMs} ms`);
      process.kill(pid, 'SIGSTOP');
      try {
        await sleep(stopMs);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      break;
    }
  }
  // The next fault starts from a healthy store: both gateways see every shard up again.
  await cluster.waitReady();
}
