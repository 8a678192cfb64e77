/**
 * Owns the admin commands of the `kvsql` CLI: show the slot map, add a shard, drain (remove) one,
 * rebalance, move a slot range; with a progress bar. Relies on ShardSet, SlotMover, planRebalance
 * and the gateway's config (the same KVSQL_SHARDS / embedded settings as the server). Talks to
 * MySQL directly; gateways follow through kv_slots, without a restart.
 *
 *   kvsql slots status                    map, epoch, slots per shard, moves in progress
 *   kvsql slots move <lo>[-<hi>] <shard>  move a slot range to a shard (or finish a move)
 *   kvsql shards add <url>                join an empty database, then rebalance
 *   kvsql shards drain <shard>            move every slot off a shard, then forget it
 *   kvsql rebalance                       even out the slots; finishes interrupted moves first
 *   kvsql slot <key> [--hex]              a key's slot, and the shard serving it
 *   kvsql hashtags status|enable          the store's key hashing rule; switch to hash tags (offline)
 *
 * Every command that moves is safe to interrupt (Ctrl-C, kill -9, a MySQL server dying) and to
 * run again: it resumes each interrupted move where the shards' rows say it stopped.
 */
import { HASH_RULE_NAMES, SLOT_COUNT, STATE_NAMES, SLOT_OWNED, SLOT_MOVED, slotOf, tagChangesSlot, type MoveProgress } from '../protocol/slot-map';
import { enableHashTags } from './hash-tags';
import { resolveConfig, type Config } from '../config/config';
import { mysqlTls } from '../gateway/tls';
import { EMBEDDED_DATABASE, embeddedSqlPort } from '../embedded/embedded-cluster';
import { ShardSet, ShardReachError, redact, type SlotRow } from './shard-set';
import { classify } from '../shard-actor/mysql-errors';
import { DEFAULT_MOVE_OPTIONS, SlotMover, type MoveHooks, type MoveOptions } from './slot-mover';
import { currentOwners, planRebalance, type MoveUnit } from './rebalance';
import { COMMANDS, groupUsage } from '../cli-help';

export const ADMIN_COMMANDS = new Set(['slots', 'shards', 'rebalance', 'slot', 'hashtags']);

const USAGE = [...ADMIN_COMMANDS].map((g) => groupUsage(g).replace(/^usage:\n/, '')).join('\n');

export class UsageError extends Error {}

/** The shard URLs the server would use: KVSQL_SHARDS, or the embedded shards' local ports. */
export function adminUrls(config: Readonly<Config>): string[] {
  if (config.shards.length > 0) return config.shards;
  const r = config.replicas;
  const node = (i: number, j: number) => `mysql://root@127.0.0.1:${embeddedSqlPort(config.embeddedBasePort, i, j, r)}/${EMBEDDED_DATABASE}`;
  return Array.from({ length: config.embeddedShards }, (_, i) => Array.from({ length: r }, (_, j) => node(i, j)).join('|'));
}

export interface Progress {
  unitsDone: number;
  unitsTotal: number;
  slotsDone: number;
  slotsTotal: number;
  rows: number;
  startedAt: number;
  pauses: number[];
}

/** Run the units in order, reporting progress; returns the pauses (ms) measured. */
export async function runUnits(
  set: ShardSet,
  units: MoveUnit[],
  report: (p: Progress) => void,
  hooks: MoveHooks = {},
  opts: MoveOptions = DEFAULT_MOVE_OPTIONS,
): Promise<Progress> {
  const p: Progress = {
    unitsDone: 0,
    unitsTotal: units.length,
    slotsDone: 0,
    slotsTotal: units.reduce((n, u) => n + u.hi - u.lo + 1, 0),
    rows: 0,
    startedAt: Date.now(),
    pauses: [],
  };
  const mover = new SlotMover(set, opts, {
    ...hooks,
    onRows: (n) => {
      p.rows += n;
      hooks.onRows?.(n);
    },
    onPause: (ms, lo, hi, parts) => {
      p.pauses.push(ms);
      hooks.onPause?.(ms, lo, hi, parts);
    },
  });
  const store = (state: MoveProgress['state']) =>
    set.writeProgress({
      state,
      slotsTotal: p.slotsTotal,
      slotsDone: p.slotsDone,
      rowsCopied: p.rows,
      startedAt: p.startedAt,
      updatedAt: Date.now(),
      pauseP99Ms: pauseP99(p),
    });
  let stored = Date.now();
  await store('running');
  let rows: SlotRow[] = await set.slotRows();
  try {
    for (const u of units) {
      // A lock conflict (a deadlock, a lock wait timeout, a Galera certification conflict) fails
      // one statement; every step is guarded by the state it expects, so the unit is resumed from
      // the shards' rows, a bounded number of times.
      for (let attempt = 1; ; attempt++) {
        try {
          await mover.moveRange(u.lo, u.hi, u.target, rows);
          break;
        } catch (err) {
          if (classify(err) !== 'retry' || attempt >= MOVE_RETRIES) throw err;
          hooks.log?.(`slots ${u.lo}-${u.hi}: ${(err as { code?: string }).code}; resuming (attempt ${attempt + 1} of ${MOVE_RETRIES})`);
          await new Promise((r) => setTimeout(r, 20 * 2 ** attempt));
          rows = await set.slotRows();
        }
      }
      p.unitsDone++;
      p.slotsDone += u.hi - u.lo + 1;
      report(p);
      if (Date.now() - stored >= 1000) {
        stored = Date.now();
        await store('running');
      }
      rows = await set.slotRows(); // re-read: this move changed them
    }
  } catch (err) {
    await store('failed').catch(() => undefined);
    throw err;
  }
  await store('done');
  return p;
}

/** Attempts per unit when a statement fails on a lock conflict. */
const MOVE_RETRIES = 5;

/**
 * Takes the mover lock, plans an even share per member (none for those `draining`) in ranges of
 * `slotsPerMove`, and moves them; null when nothing had to move. The one rebalance of the CLI
 * commands and the embedded background rebalance.
 */
export async function rebalanceSet(
  set: ShardSet,
  draining: Set<number>,
  slotsPerMove: number,
  report: (p: Progress) => void,
  hooks: MoveHooks = {},
  opts: MoveOptions = DEFAULT_MOVE_OPTIONS,
): Promise<Progress | null> {
  await set.lockMovers();
  const units = planRebalance(await set.slotRows(), [...set.members.keys()], draining, slotsPerMove);
  return units.length === 0 ? null : runUnits(set, units, report, hooks, opts);
}

function pauseP99(p: Progress): number {
  const sorted = [...p.pauses].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] : 0;
}

/** One line of progress: a bar on a terminal, plain lines otherwise. */
export function progressReporter(out: NodeJS.WriteStream): (p: Progress) => void {
  let lastLine = 0;
  return (p) => {
    const secs = (Date.now() - p.startedAt) / 1000;
    const rate = secs > 0 ? p.rows / secs : 0;
    const frac = p.slotsTotal === 0 ? 1 : p.slotsDone / p.slotsTotal;
    const eta = frac > 0 ? (secs / frac) * (1 - frac) : 0;
    const p99 = pauseP99(p);
    const text =
      `${p.slotsDone}/${p.slotsTotal} slots, ${p.unitsDone}/${p.unitsTotal} moves, ${p.rows} rows, ${Math.round(rate)} rows/s, ` +
      `ETA ${Math.round(eta)} s, write pause p99 ${p99.toFixed(1)} ms`;
    if (out.isTTY) {
      const width = 30;
      const fill = Math.round(frac * width);
      out.write(`\r[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${text}   `);
      if (p.unitsDone === p.unitsTotal) out.write('\n');
    } else if (Date.now() - lastLine > 2000 || p.unitsDone === p.unitsTotal) {
      lastLine = Date.now();
      out.write(`${text}\n`);
    }
  };
}

export function formatStatus(set: ShardSet, rows: SlotRow[]): string {
  const owner = currentOwners(rows);
  const lines: string[] = [];
  let epoch = 0;
  for (const r of rows) epoch = Math.max(epoch, r.epoch);
  lines.push(`slot map epoch ${epoch}, ${SLOT_COUNT} slots, ${set.members.size} shards`);
  for (const m of [...set.members.values()].sort((a, b) => a.index - b.index)) {
    let n = 0;
    for (let s = 0; s < SLOT_COUNT; s++) if (owner[s] === m.index) n++;
    lines.push(`  shard ${m.index}  ${String(n).padStart(5)} slots  ${redact(m.url)}`);
  }
  lines.push('ranges (first-last -> shard):');
  let start = 0;
  for (let s = 1; s <= SLOT_COUNT; s++) {
    if (s === SLOT_COUNT || owner[s] !== owner[start]) {
      lines.push(`  ${start}-${s - 1} -> ${owner[start]}`);
      start = s;
    }
  }
  const moving = rows.filter((r) => r.state !== SLOT_OWNED && r.state !== 4);
  if (moving.length > 0) {
    lines.push(`moves in progress (${moving.length} slot rows): run \`kvsql rebalance\` to finish them`);
    for (const r of moving.slice(0, 20)) lines.push(`  slot ${r.slot}: shard ${r.shard} ${STATE_NAMES[r.state]} (peer ${r.peer}, epoch ${r.epoch})`);
  }
  return lines.join('\n');
}

/** Driver codes that mean "nothing answered there as expected" (the connection, the login, the database). */
const REACH_CODES = new Set([
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNRESET',
  'PROTOCOL_CONNECTION_LOST',
  'ER_ACCESS_DENIED_ERROR',
  'ER_BAD_DB_ERROR',
  'ER_DBACCESS_DENIED_ERROR',
]);

/** What to check when the shards the command was given cannot be read. */
export function reachHint(config: Readonly<Config>): string {
  if (config.shards.length > 0) {
    return 'Check that this MySQL server is up and reachable from here (host, port, firewall, user, password, database), and that KVSQL_SHARDS (or --shards=...) lists the same shard URLs as the gateways.';
  }
  const ports = adminUrls(config)
    .flatMap((e) => e.split('|'))
    .map((u) => new URL(u).port);
  return (
    `No shards are configured (KVSQL_SHARDS is empty), so this looked for the embedded shards on 127.0.0.1:${ports[0]}` +
    `${ports.length > 1 ? `-${ports[ports.length - 1]}` : ''}. They run only while \`kvsql\` (npm start) runs: start it first, with the same ` +
    '--data-dir, --embedded-shards, --embedded-base-port and --replicas; for external shards, set KVSQL_SHARDS (or --shards=...) as the gateways have it.'
  );
}

/** The key of `kvsql slot <key>`: its UTF-8 bytes, or with --hex the bytes it spells. */
function keyArg(text: string | undefined, hex: boolean): Buffer {
  if (text === undefined) throw new UsageError(`expected a key\nusage:\n${USAGE}`);
  if (hex && !/^(?:[0-9a-fA-F]{2})+$/.test(text)) throw new UsageError(`--hex: "${text.slice(0, 40)}" is not hex bytes (an even number of 0-9 a-f digits)`);
  const key = hex ? Buffer.from(text, 'hex') : Buffer.from(text, 'utf8');
  if (key.length === 0) throw new UsageError('a key is 1 to 1024 bytes; this one is empty');
  if (key.length > 1024) throw new UsageError(`a key is 1 to 1024 bytes; this one is ${key.length}`);
  return key;
}

/** `kvsql <slots|shards|rebalance|slot> ...`; returns the exit code. */
export async function runAdmin(argv: string[], env: NodeJS.ProcessEnv = process.env, out: NodeJS.WriteStream = process.stderr): Promise<number> {
  const positional = argv.filter((a) => !a.startsWith('--'));
  let slotsPerMove = 64;
  let rebalanceAfterAdd = true;
  let hex = false;
  const configArgs: string[] = [];
  for (const a of argv.filter((x) => x.startsWith('--'))) {
    const m = /^--slots-per-move=(\d+)$/.exec(a);
    if (m) slotsPerMove = Math.max(1, Math.min(SLOT_COUNT, Number(m[1])));
    else if (a === '--no-rebalance') rebalanceAfterAdd = false;
    else if (a === '--hex' && positional[0] === 'slot') hex = true;
    else configArgs.push(a);
  }
  const config = resolveConfig(configArgs, env);
  const [cmd, sub, arg1, arg2] = positional;
  // A command that does not exist is refused before any shard is contacted.
  if (!COMMANDS.some((c) => c.words[0] === cmd && (c.words.length === 1 || c.words[1] === sub))) {
    throw new UsageError(`${sub === undefined ? `missing subcommand for "${cmd}"` : `unknown command "${cmd} ${sub}"`}\nusage:\n${USAGE}`);
  }
  let slotKey: Buffer | null = null;
  if (cmd === 'slot') {
    slotKey = keyArg(sub, hex);
    // A slot that does not depend on the store's hashing rule needs no shard: it is printed even
    // when the store cannot be reached. A braced key's slot is printed once the rule is read.
    if (!tagChangesSlot(slotKey)) process.stdout.write(`slot ${slotOf(slotKey)}\n`);
  }
  const set = await ShardSet.open(adminUrls(config), { tls: mysqlTls(config) }).catch((err: unknown) => {
    throw err instanceof ShardReachError && REACH_CODES.has(err.code ?? '') ? new Error(`${err.message}\n${reachHint(config)}`, { cause: err }) : err;
  });
  try {
    const report = progressReporter(out);
    const shardArg = (x: string | undefined): number => {
      if (x === undefined || !/^\d+$/.test(x)) throw new UsageError(`expected a shard index, got ${x ?? 'nothing'}\n${USAGE}`);
      return set.member(Number(x)).index;
    };
    const rebalance = async (draining: Set<number>) => {
      const done = await rebalanceSet(set, draining, slotsPerMove, report, { log: (msg) => (out.isTTY ? undefined : out.write(`${msg}\n`)) });
      if (done === null) out.write('already balanced\n');
    };
    if (cmd === 'slots' && sub === 'status') {
      process.stdout.write(formatStatus(set, await set.slotRows()) + '\n');
    } else if (cmd === 'slots' && sub === 'move') {
      const m = /^(\d+)(?:-(\d+))?$/.exec(arg1 ?? '');
      if (!m) throw new UsageError(`expected a slot or slot range, got ${arg1 ?? 'nothing'}\n${USAGE}`);
      const lo = Number(m[1]);
      const hi = m[2] === undefined ? lo : Number(m[2]);
      if (lo > hi || hi >= SLOT_COUNT) throw new UsageError(`slot range must be within 0-${SLOT_COUNT - 1}`);
      const target = shardArg(arg2);
      await set.lockMovers();
      const units: MoveUnit[] = [];
      for (let s = lo; s <= hi; s += slotsPerMove) units.push({ lo: s, hi: Math.min(hi, s + slotsPerMove - 1), source: -1, target, resume: false });
      await runUnits(set, units, report);
    } else if (cmd === 'shards' && sub === 'add') {
      if (!arg1) throw new UsageError(`expected a mysql:// URL\n${USAGE}`);
      await set.lockMovers();
      const index = await set.addShard(arg1);
      await set.publishPeers();
      out.write(`shard ${index} joined (${redact(arg1)}); gateways pick it up at their next map refresh\n`);
      if (rebalanceAfterAdd) await rebalance(new Set());
    } else if (cmd === 'shards' && sub === 'drain') {
      const index = shardArg(arg1);
      await rebalance(new Set([index]));
      // It owns nothing now: forget it, so gateways stop starting actors for it.
      for (const m of set.members.values()) if (m.index !== index) await m.pool.query('DELETE FROM kv_peers WHERE shard_index = ?', [index]);
      out.write(`shard ${index} owns no slots; remove its URL from KVSQL_SHARDS (and restart gateways that list it) before deleting the database\n`);
    } else if (cmd === 'rebalance') {
      await rebalance(new Set());
    } else if (cmd === 'hashtags' && sub === 'status') {
      const rules = await set.hashRules();
      for (const [index, rule] of [...rules].sort((a, b) => a[0] - b[0])) process.stdout.write(`shard ${index}  ${HASH_RULE_NAMES[rule] ?? `rule ${rule}`}\n`);
    } else if (cmd === 'hashtags' && sub === 'enable') {
      const r = await enableHashTags(set, (line) => out.write(`${line}\n`));
      out.write(
        r.already
          ? 'the store hashes {tags} already\n'
          : `hash tags on: ${r.examined} braced keys examined, ${r.moved} moved to another shard, ${r.reslotted} re-slotted in place, ` +
              `${r.dropped} leftovers of earlier slot moves deleted; start the gateways\n`,
      );
    } else if (cmd === 'slot' && slotKey !== null) {
      const slot = slotOf(slotKey, await set.hashTags());
      if (tagChangesSlot(slotKey)) process.stdout.write(`slot ${slot}\n`);
      const rows = await set.slotRows();
      const owner = currentOwners(rows)[slot];
      const member = set.members.get(owner);
      const moving = rows.filter((r) => r.slot === slot && r.state !== SLOT_OWNED && r.state !== SLOT_MOVED);
      process.stdout.write(
        (member === undefined ? 'shard unknown (no member owns this slot: kvsql slots status)' : `shard ${owner}  ${redact(member.url)}`) +
          (moving.length > 0
            ? `  (being moved: ${moving.map((r) => `shard ${r.shard} ${STATE_NAMES[r.state]}`).join(', ')}; kvsql rebalance finishes it)`
            : '') +
          '\n',
      );
    } else {
      throw new UsageError(`usage:\n${USAGE}`);
    }
    return 0;
  } finally {
    await set.close();
  }
}
