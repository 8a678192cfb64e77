#!/usr/bin/env node
/**
 * Owns the `npm run torture` command: parse options, run torture.ts once, print the violations
 * and the one summary line, exit 1 on any violation (2 on bad options). Relies on a built dist/.
 *
 *   npm run torture -- --minutes=10 [--seed=N] [--keys=8] [--clients=16] [--faults=gw-kill,db-kill,db-stop,move|none]
 */
import fs from 'node:fs';
import { checkHistory, describeReport, violationCount } from '../checker/check';
import type { HistoryOp } from '../checker/history';
import { FAULT_KINDS, runTorture, type FaultKind } from './torture';

const USAGE =
  'usage: npm run torture -- [--minutes=10] [--seed=N] [--keys=8] [--clients=16] [--faults=gw-kill,db-kill,db-stop,move|none] [--fault-interval-ms=5000] [--mix=full|put-del] [--history-out=FILE] [--check=FILE] [--quiet]';

function parse(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of argv) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`bad argument ${JSON.stringify(a)}`);
    out[m[1]] = m[2] ?? 'true';
  }
  for (const k of Object.keys(out)) {
    if (!['minutes', 'seed', 'keys', 'clients', 'faults', 'fault-interval-ms', 'mix', 'history-out', 'check', 'quiet', 'help'].includes(k))
      throw new Error(`unknown option --${k}`);
  }
  return out;
}

function positive(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${JSON.stringify(v)}`);
  return n;
}

async function main(): Promise<void> {
  let args: Record<string, string>;
  let faults: FaultKind[];
  try {
    args = parse(process.argv.slice(2));
    if (args.help) {
      console.log(USAGE);
      return;
    }
    const f = args.faults ?? FAULT_KINDS.join(',');
    faults = f === 'none' ? [] : (f.split(',') as FaultKind[]);
    for (const k of faults) if (!FAULT_KINDS.includes(k)) throw new Error(`unknown fault ${JSON.stringify(k)} (known: ${FAULT_KINDS.join(', ')}, none)`);
  } catch (err) {
    console.error(`torture: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (args.check !== undefined) {
    // Re-check a saved history (e.g. after changing the checker), no store needed.
    const report = checkHistory(JSON.parse(fs.readFileSync(args.check, 'utf8')) as HistoryOp[]);
    const details = describeReport(report);
    if (details) console.log(details);
    console.log(`check: ops=${report.counts.ops} keys=${report.counts.keys} violations=${violationCount(report)} linearizable=${report.linearizable}`);
    process.exitCode = violationCount(report) > 0 ? 1 : 0;
    return;
  }
  const seed = args.seed !== undefined ? Math.floor(positive('seed', args.seed, 1)) : Math.floor(Math.random() * 1e9);
  const quiet = args.quiet === 'true';
  const result = await runTorture({
    durationMs: positive('minutes', args.minutes, 10) * 60_000,
    seed,
    keys: Math.floor(positive('keys', args.keys, 8)),
    clients: Math.floor(positive('clients', args.clients, 16)),
    faults,
    faultIntervalMs: positive('fault-interval-ms', args['fault-interval-ms'], 5000),
    mix: args.mix === 'put-del' ? 'put-del' : 'full',
    log: quiet ? undefined : (m) => console.error(`[${new Date().toISOString()}] ${m}`),
  });
  if (args['history-out'] !== undefined) {
    // Infinity (never in a recorded history) would not survive JSON; times are finite.
    fs.writeFileSync(args['history-out'], JSON.stringify(result.history));
  }
  if (result.details) console.log(result.details);
  console.log(result.summary);
  process.exitCode = result.violations > 0 ? 1 : 0;
}

main().catch((err) => {
  console.error(`torture: ${(err as Error)?.stack ?? err}`);
  process.exit(1);
});
