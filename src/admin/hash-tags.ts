/**
 * Owns switching a store's key hashing rule from whole keys to hash tags (`kvsql hashtags
 * enable`), offline: with every gateway stopped, the rows of braced keys whose slot changes are
 * moved to the shard that owns their new slot, then every shard records the new rule. Relies on
 * ShardSet (members, mover lock, kv_slots, hash rules, own sessions) and protocol/slot-map. Must
 * not run beside a gateway or a mover: it refuses both, and leaves the store refused by gateways
 * (HASH_SWITCHING) until it completes, so an interrupted run is finished by running it again.
 *
 *   rules: 0 whole ──set 2──> 2 switching ──no gateway session? ──rows moved──> 1 hash tags
 *                              (gateways refuse)  └─ sessions found: each shard back to its rule
 *
 * Per row of a key whose slot differs between the rules (old = whole key, new = {tag}), on shard
 * m, with `slot` column c (the slot it was written with):
 *   c = new                    moved already (an earlier run): kept
 *   c = old, m serves old      the key's row: upserted into owner(new) with slot = new, then
 *                              deleted from m (on m itself: only its slot column changes)
 *   c = old, m serves not old  a leftover of a slot moved away (never served): deleted, so it
 *                              cannot surface once m serves the key's new slot
 * Every step is guarded by c, so a repeated step is a no-op; versions: every shard's kv_seq is
 * raised to the highest before the rule flips (a moved row keeps its version, and a key created
 * later on its new shard must get a higher one, as after a slot move).
 */
import type { RowDataPacket } from 'mysql2/promise';
import { shardNodes } from '../config/config';
import { HASH_SWITCHING, HASH_TAGS, SLOT_COUNT, SLOT_MOVED, SLOT_OWNED, STATE_NAMES, slotOf, tagChangesSlot } from '../protocol/slot-map';
import { UNSLOTTED } from '../shard-actor/schema-migration';
import { openConnection, redact, type ShardSet } from './shard-set';

/** Rows examined per page of one shard's keys (primary-key order, braced keys only). */
const PAGE = 500;
/** How long sessions of a gateway just stopped may take to leave the server's process list. */
const SESSIONS_GONE_MS = 3000;

export interface EnableResult {
  /** The store hashed tags already: nothing was done. */
  already: boolean;
  /** Rows of braced keys read, and of those: moved to another shard, re-slotted in place, leftovers deleted. */
  examined: number;
  moved: number;
  reslotted: number;
  dropped: number;
}

/** A session on a shard's database that is not this command's: a gateway, or anything else. */
export interface ForeignSession {
  shard: number;
  node: string;
  id: number;
  user: string;
  host: string;
}

/**
 * Switch the store to hash tags. Throws, leaving each shard's rule as it was, when a gateway (any
 * other session on a shard database) is connected, a slot move is unfinished, or old rows still
 * lack their slot.
 */
export async function enableHashTags(set: ShardSet, say: (line: string) => void = () => undefined): Promise<EnableResult> {
  const result: EnableResult = { already: false, examined: 0, moved: 0, reslotted: 0, dropped: 0 };
  await set.lockMovers();
  const before = await set.hashRules();
  if ([...before.values()].every((r) => r === HASH_TAGS)) return { ...result, already: true };
  const owner = await ownersAtRest(set);
  for (const m of set.members.values()) {
    const [rows] = await m.pool.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM kv WHERE slot = ?', [UNSLOTTED]);
    if (Number(rows[0].n) > 0)
      throw new Error(`shard ${m.index} has rows whose slot is not filled yet: start a gateway once (it fills them), stop it, then run this again`);
  }
  // The check for running gateways below reads PROCESSLIST, which shows other users' sessions
  // only with the PROCESS privilege: without it, a gateway could go unseen and keep routing by
  // whole keys while rows move. Refuse rather than trust an empty list.
  await assertSeesAllSessions(set);
  // From here, a gateway that starts refuses the store; one already running is found below.
  await setRules(set, () => HASH_SWITCHING);
  const sessions = await foreignSessions(set);
  if (sessions.length > 0) {
    await setRules(set, (index) => before.get(index)!);
    throw new Error(
      `stop every gateway first: ${sessions.length} other session(s) use the shard databases (` +
        sessions
          .slice(0, 5)
          .map((s) => `shard ${s.shard} ${redact(s.node)}: id ${s.id} ${s.user}@${s.host}`)
          .join('; ') +
        (sessions.length > 5 ? '; ...' : '') +
        '). Nothing was changed.',
    );
  }
  say('no gateway is connected; moving the rows of braced keys whose slot changes');
  for (const m of set.members.values()) await migrateShard(set, m.index, owner, result);
  // A row keeps its version where it goes: versions a shard issues next must be above it.
  let next = 0;
  for (const m of set.members.values()) {
    const [rows] = await m.pool.query<RowDataPacket[]>('SELECT next_version FROM kv_seq WHERE id = 1');
    next = Math.max(next, Number(rows[0].next_version));
  }
  for (const m of set.members.values()) await m.pool.query('UPDATE kv_seq SET next_version = GREATEST(next_version, ?) WHERE id = 1', [next]);
  await setRules(set, () => HASH_TAGS);
  return result;
}

/** Slot -> owning shard index; refuses a store with a slot move unfinished (its rows are on two shards). */
async function ownersAtRest(set: ShardSet): Promise<Int32Array> {
  const owner = new Int32Array(SLOT_COUNT).fill(-1);
  for (const r of await set.slotRows()) {
    if (r.state !== SLOT_OWNED && r.state !== SLOT_MOVED) {
      throw new Error(`slot ${r.slot} is ${STATE_NAMES[r.state]} on shard ${r.shard}: a slot move is unfinished; run \`kvsql rebalance\` first`);
    }
    if (r.state === SLOT_OWNED) owner[r.slot] = r.shard;
  }
  const orphan = owner.indexOf(-1);
  if (orphan !== -1) throw new Error(`no shard owns slot ${orphan}: run \`kvsql rebalance\` first`);
  return owner;
}

async function setRules(set: ShardSet, rule: (index: number) => number): Promise<void> {
  for (const m of set.members.values()) await m.pool.query('UPDATE kv_shard SET hash_rule = ? WHERE id = 1', [rule(m.index)]);
}

/**
 * Sessions on any node of any member whose current database is the shard's, other than this
 * command's own; waits up to SESSIONS_GONE_MS for them to leave (a gateway just stopped). Without
 * the PROCESS privilege a user sees only its own sessions: run it as the gateways' user.
 */
/** Throws unless this user holds PROCESS (or all privileges) on every node: see enableHashTags. */
async function assertSeesAllSessions(set: ShardSet): Promise<void> {
  for (const m of set.members.values()) {
    for (const node of shardNodes(m.url)) {
      const conn = await openConnection(node, set.opts);
      try {
        const [rows] = await conn.query<RowDataPacket[]>('SHOW GRANTS');
        const global = rows.map((r) => String(Object.values(r)[0])).filter((g) => / ON \*\.\* TO /.test(g));
        if (!global.some((g) => /^GRANT (ALL PRIVILEGES|.*\bPROCESS\b)/.test(g)))
          throw new Error(
            `shard ${m.index} ${redact(node)}: this MySQL user lacks the PROCESS privilege, so it cannot see whether a gateway is still connected; ` +
              'run this as a user that has it (root, or GRANT PROCESS ON *.* TO the user). Nothing was changed.',
          );
      } finally {
        await conn.end().catch(() => conn.destroy());
      }
    }
  }
}

export async function foreignSessions(set: ShardSet): Promise<ForeignSession[]> {
  const deadline = Date.now() + SESSIONS_GONE_MS;
  for (;;) {
    const found: ForeignSession[] = [];
    for (const m of set.members.values()) {
      for (const node of shardNodes(m.url)) {
        const conn = await openConnection(node, set.opts);
        try {
          const [rows] = await conn.query<RowDataPacket[]>(
            'SELECT ID, USER, HOST FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID()',
          );
          const own = node === m.node ? set.ownThreads(node) : new Set<number>();
          for (const r of rows) if (!own.has(Number(r.ID))) found.push({ shard: m.index, node, id: Number(r.ID), user: String(r.USER), host: String(r.HOST) });
        } finally {
          await conn.end().catch(() => conn.destroy());
        }
      }
    }
    if (found.length === 0 || Date.now() >= deadline) return found;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Move, re-slot or drop the braced rows of one shard whose slot changes (see the table above). */
async function migrateShard(set: ShardSet, index: number, owner: Int32Array, result: EnableResult): Promise<void> {
  const m = set.member(index);
  let after: Buffer = Buffer.alloc(0);
  for (;;) {
    // LOCATE finds '{' in the bytes (k is VARBINARY): every key with a tag has one.
    const [rows] = await m.pool.query<RowDataPacket[]>("SELECT k, slot FROM kv FORCE INDEX (PRIMARY) WHERE k > ? AND LOCATE('{', k) > 0 ORDER BY k LIMIT ?", [
      after,
      PAGE,
    ]);
    if (rows.length === 0) return;
    after = rows[rows.length - 1].k as Buffer;
    for (const r of rows) {
      const k = r.k as Buffer;
      const c = Number(r.slot);
      result.examined++;
      if (!tagChangesSlot(k)) continue;
      const old = slotOf(k, false);
      const neu = slotOf(k, true);
      if (c !== old) continue; // c = new: moved here by an earlier run
      if (owner[old] !== index) {
        await m.pool.query('DELETE FROM kv WHERE k = ? AND slot = ?', [k, old]);
        result.dropped++;
      } else if (owner[neu] === index) {
        await m.pool.query('UPDATE kv SET slot = ? WHERE k = ? AND slot = ?', [neu, k, old]);
        result.reslotted++;
      } else {
        const [full] = await m.pool.query<RowDataPacket[]>('SELECT v, version, expires_at FROM kv WHERE k = ? AND slot = ?', [k, old]);
        if (full.length === 0) continue;
        const row = full[0];
        await set
          .member(owner[neu])
          .pool.query(
            'INSERT INTO kv (k, v, version, expires_at, slot) VALUES (?, ?, ?, ?, ?) ' +
              'ON DUPLICATE KEY UPDATE v = VALUES(v), version = VALUES(version), expires_at = VALUES(expires_at), slot = VALUES(slot)',
            [k, row.v, row.version, row.expires_at, neu],
          );
        await m.pool.query('DELETE FROM kv WHERE k = ? AND slot = ?', [k, old]);
        result.moved++;
      }
    }
  }
}
