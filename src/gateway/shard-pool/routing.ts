/**
 * Owns the gateway's routing table (slot -> shard), read from the shards themselves (their
 * kv_slots and kv_peers rows), and keeping it fresh: on demand (a redirect, a shard back up), while
 * slots move (every PROGRESS_REFRESH_MS) and otherwise every IDLE_REFRESH_MS. Relies on
 * ShardHandle, ControlCalls (the ownership request) and protocol/slot-map. Must not send ops: it
 * only says where they go. A shard named in kv_peers that this gateway does not run yet is handed
 * to `join` (the pool starts its actor).
 *
 *   route: Int32Array[SLOT_COUNT]   handle position serving each slot; -1 = unknown (refresh pending)
 *
 * The map is a cache: a stale one costs a redirect, never a wrong answer, because every shard
 * checks ownership in the statement that reads or writes the rows.
 *
 * The key -> slot rule (hash tags or whole keys) is the store's, read with the same rows
 * (kv_shard.hash_rule): fixed at the first refresh that hears from a member, as each actor fixes
 * its own at init. Shards that disagree (or are switching: `kvsql hashtags enable`) route
 * nothing: the pool refuses to start, and a running gateway answers 503 until they agree again.
 */
import { HASH_RULE_NAMES, HASH_TAGS, HASH_WHOLE_KEY, SLOT_COUNT, resolveOwners, slotOf, type MoveProgress, type ShardOwnership } from '../../protocol/slot-map';
import type { ControlCalls } from './control';
import type { PoolLogger } from './pool';
import type { ShardHandle } from './worker-handle';

/** While slots move, how often the map (and the mover's progress) is re-read. */
const PROGRESS_REFRESH_MS = 5000;
/**
 * And otherwise this often: routing never needs it (a stale route costs a redirect, which
 * refreshes), but /v1/slots, /metrics and the first sight of a mover running elsewhere do.
 */
const IDLE_REFRESH_MS = 30_000;

/** Starts an actor for a shard found in kv_peers (at position `shards.length`); resolves when it is ready. */
export type JoinShard = (url: string) => Promise<ShardHandle>;

export class SlotRouter {
  /** Handle position (in `shards`) serving each slot; -1 = unknown (refresh pending). */
  readonly route = new Int32Array(SLOT_COUNT).fill(-1);
  /** Highest slot epoch seen, and slots seen mid-move, at the last refresh. */
  epoch = 0;
  movingSlots = 0;
  /** Map refreshes done (metrics). */
  refreshes = 0;
  /** The newest mover progress any shard reported at the last refresh. */
  moveProgress: MoveProgress | null = null;
  /** The store hashes {tags} (kv_shard.hash_rule), else whole keys; known once `hashRuleKnown`. */
  hashTags = true;
  hashRuleKnown = false;
  /** Why the shards' rules cannot be served (they differ, or are switching); null when they agree. */
  hashRuleConflict: string | null = null;
  private progressTimer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  private refreshAgain = false;
  /** Why each shard (by position) last failed to report its ownership; cleared when it answers. */
  private readonly ownershipErrors = new Map<number, string>();
  private readonly idleRefresh: NodeJS.Timeout;

  constructor(
    private readonly shards: ShardHandle[],
    private readonly control: ControlCalls,
    private readonly join: JoinShard,
    private readonly log: PoolLogger,
  ) {
    this.idleRefresh = setInterval(() => void this.refreshMap(), IDLE_REFRESH_MS);
    this.idleRefresh.unref();
  }

  /** No more refreshes on a timer (the pool is stopping). */
  stop(): void {
    clearInterval(this.idleRefresh);
    if (this.progressTimer !== null) clearInterval(this.progressTimer);
    this.progressTimer = null;
  }

  /**
   * Read every shard's kv_slots and kv_peers and rebuild the routing table. One refresh at a
   * time; a request for one while it runs makes it run once more after. A shard that does not
   * answer keeps its slots routed as before (its ops get 503 while it is down anyway).
   */
  refreshMap(): Promise<void> {
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.refreshAgain = false;
        await this.refreshOnce().catch((err) => this.log.warn({ err: (err as Error).message }, 'slot map refresh failed'));
      } while (this.refreshAgain);
      this.refreshing = null;
    })();
    return this.refreshing;
  }

  private async refreshOnce(): Promise<void> {
    const seen: ShardOwnership[] = [];
    const ask = async (s: ShardHandle): Promise<void> => {
      if (s.exited || s.stopping) return;
      const m = await this.control.ownership(s);
      if ('why' in m) {
        // Its slots keep their old routes. Logged once per distinct reason, not once per refresh.
        if (this.ownershipErrors.get(s.index) !== m.why)
          this.log.warn({ shard: s.index, err: m.why }, 'slot map refresh: shard did not say which slots it owns');
        this.ownershipErrors.set(s.index, m.why);
        return;
      }
      if (this.ownershipErrors.delete(s.index)) this.log.info({ shard: s.index }, 'slot map refresh: shard answers again');
      s.shardIndex = m.ownership.shardIndex;
      seen.push(m.ownership);
    };
    await Promise.all(this.shards.map(ask));
    // Shards added after this gateway started: learn their URL from the others' kv_peers.
    const known = new Set(this.shards.map((s) => s.shardIndex).filter((x) => x !== null));
    const knownUrls = new Set(this.shards.map((s) => s.url));
    for (const o of seen) {
      for (const [index, url] of o.peers) {
        if (known.has(index) || knownUrls.has(url)) continue;
        known.add(index);
        knownUrls.add(url);
        const position = this.shards.length;
        this.log.info({ shard: position, shardIndex: index }, 'joining a shard added to the store');
        try {
          await ask(await this.join(url));
        } catch (err) {
          this.log.error({ shard: position, err: (err as Error).message }, 'cannot start an actor for a new shard');
        }
      }
    }
    if (!this.adoptHashRule(seen)) {
      this.route.fill(-1); // keys could be read from the wrong shard: serve none (503)
      return;
    }
    const resolved = resolveOwners(seen);
    const byIndex = new Map<number, number>();
    for (const s of this.shards) if (s.shardIndex !== null) byIndex.set(s.shardIndex, s.index);
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
      const owner = resolved.owner[slot];
      if (owner === -1) continue; // nobody answered for it: keep the old route
      this.route[slot] = byIndex.get(owner) ?? -1;
    }
    this.epoch = resolved.epoch;
    this.movingSlots = resolved.moving;
    this.refreshes++;
    for (const o of seen) if (o.progress && (this.moveProgress === null || o.progress.updatedAt > this.moveProgress.updatedAt)) this.moveProgress = o.progress;
    // While a mover works, re-read every few seconds so /metrics shows its progress.
    const busy = this.movingSlots > 0 || (this.moveProgress?.state === 'running' && Date.now() - this.moveProgress.updatedAt < 60_000);
    if (busy && this.progressTimer === null) {
      this.progressTimer = setInterval(() => void this.refreshMap(), PROGRESS_REFRESH_MS);
      this.progressTimer.unref();
    } else if (!busy && this.progressTimer !== null) {
      clearInterval(this.progressTimer);
      this.progressTimer = null;
    }
  }

  /** The routing table as `[[firstSlot, lastSlot, shardIndex], ...]` (-1: unknown). */
  slotRanges(): Array<[number, number, number]> {
    const out: Array<[number, number, number]> = [];
    const ownerOf = (slot: number) => {
      const h = this.route[slot];
      return h === -1 ? -1 : (this.shards[h].shardIndex ?? -1);
    };
    let start = 0;
    for (let s = 1; s <= SLOT_COUNT; s++) {
      if (s === SLOT_COUNT || ownerOf(s) !== ownerOf(start)) {
        out.push([start, s - 1, ownerOf(start)]);
        start = s;
      }
    }
    return out;
  }

  /**
   * Check the rule every member reports; take it at the first sight. False (and
   * `hashRuleConflict` says why) when they disagree, are switching, or differ from the rule taken.
   */
  private adoptHashRule(seen: ShardOwnership[]): boolean {
    const rules = new Map<number, number[]>();
    for (const o of seen) if (o.shardIndex !== null && o.hashRule !== null) rules.set(o.hashRule, [...(rules.get(o.hashRule) ?? []), o.shardIndex]);
    let conflict: string | null = null;
    const described = () =>
      [...rules]
        .map(([rule, shards]) => [rule, shards.sort((a, b) => a - b)] as const)
        .sort((a, b) => a[1][0] - b[1][0])
        .map(([rule, shards]) => `shard ${shards.join(', ')}: ${HASH_RULE_NAMES[rule] ?? `rule ${rule}`}`)
        .join('; ');
    if (rules.size > 1 || [...rules.keys()].some((r) => r !== HASH_TAGS && r !== HASH_WHOLE_KEY)) {
      conflict = `the shards do not record one key hashing rule (${described()}): finish \`kvsql hashtags enable\``;
    } else if (rules.size === 1) {
      const tags = [...rules.keys()][0] === HASH_TAGS;
      if (!this.hashRuleKnown) {
        this.hashTags = tags;
        this.hashRuleKnown = true;
      } else if (tags !== this.hashTags) {
        conflict = `the shards now record ${described()}, this gateway started with ${HASH_RULE_NAMES[this.hashTags ? HASH_TAGS : HASH_WHOLE_KEY]}: restart it`;
      }
    }
    if (conflict !== null && conflict !== this.hashRuleConflict)
      this.log.error({ reason: conflict }, 'refusing to route: shards disagree on the key hashing rule');
    this.hashRuleConflict = conflict;
    return conflict === null;
  }

  /** The key's slot under the store's rule. */
  slotOf(key: Uint8Array): number {
    return slotOf(key, this.hashTags);
  }

  /** Position (in the shard list) of the shard this gateway routes `key` to now; -1 = unknown. */
  shardOf(key: Uint8Array): number {
    return this.route[slotOf(key, this.hashTags)];
  }

  /** The shard whose kv_shard index is `index` (-1 or unknown: undefined). */
  byShardIndex(index: number): ShardHandle | undefined {
    if (index < 0) return undefined;
    for (const s of this.shards) if (s.shardIndex === index) return s;
    return undefined;
  }
}
