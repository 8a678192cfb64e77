/**
 * Owns the complete check: is one key's history linearizable against a register with versions?
 * Relies on history.ts and anomalies.ts (versions of unknown writes). Pure: no I/O, no clock.
 *
 * The search is Wing & Gong's, with Lowe's memoization, as porcupine (anishathalye/porcupine,
 * checker.go) does it; keys are independent registers, so each key is searched alone
 * (P-compositionality). Events sorted by time in a doubly linked list:
 *
 *   head -> call a -> call b -> ret a -> call c -> ret b -> ... -> ret u (+inf)
 *
 * Walk from the head: a call whose op the model accepts in the current state is "lifted" (its call
 * and return leave the list) and pushed on a stack; reaching a return means that op could not be
 * placed, so the last lifted op is put back and the walk goes on after it. (linearized set, state)
 * pairs already explored are cached (Zobrist hash of the set), which bounds the search.
 *
 * Unknown outcomes: the op may take effect at any point after its invoke, or never. Its return sits
 * at +infinity, so reaching one means every op with a known outcome is placed: success. An unknown
 * write whose value some read returned must have happened before that read completed: its return
 * moves there. Failed ops (certainly not applied) and unknown reads are left out.
 *
 * Model state: the write whose value is current (or absent), the highest version given so far (a
 * key's versions only grow, also across delete and re-create; an unknown write never read raises
 * it by one, since versions are integers), and whether the key has a TTL. TTLs are longer than
 * the run (see anomalies.ts): nothing expires, so a TTL is a flag a GET must agree with.
 */
import { isWrite, type HistoryOp } from './history';
import { knownVersions } from './anomalies';

export interface LinearizabilityResult {
  key: string;
  /** true: linearizable; false: not; null: the search ran out of budget (too large to decide). */
  linearizable: boolean | null;
  ops: number;
  /** Cache entries explored. */
  explored: number;
  /** When not linearizable: the op no extension of the longest partial linearization could place. */
  stuckAt?: HistoryOp;
  /** When not linearizable: the ops of that longest partial linearization, last few first. */
  prefix?: HistoryOp[];
}

interface SearchOp {
  op: HistoryOp;
  /** Known version of a write (answer or reads), NaN if unknown. */
  version: number;
  /** get: index of the write whose value was read; -1 for a 404; -2 for a value no write in the search wrote. */
  reads: number;
  /** Unknown outcome that need not take effect (nothing observed it). */
  optional: boolean;
}

const ABSENT = -1;

export function checkKeyLinearizable(key: string, all: HistoryOp[], budget = 2_000_000): LinearizabilityResult {
  const known = knownVersions(all);
  const included = all.filter((op) => op.outcome === 'ok' || (op.outcome === 'unknown' && op.kind !== 'get'));
  const search: SearchOp[] = included.map((op) => ({ op, version: known.get(op) ?? NaN, reads: ABSENT, optional: op.outcome === 'unknown' }));
  const indexOfValue = new Map<string, number>();
  search.forEach((s, i) => {
    if (isWrite(s.op) && s.op.value !== undefined) indexOfValue.set(s.op.value, i);
  });
  // An unknown write that was read happened before the first read of it completed.
  const returnAt = search.map((s) => (s.optional ? Infinity : s.op.complete));
  search.forEach((s) => {
    if (s.op.kind !== 'get' || !s.op.found) return;
    const w = indexOfValue.get(s.op.readValue!);
    s.reads = w === undefined ? -2 : w;
    if (w !== undefined && search[w].optional) {
      search[w].optional = false;
      returnAt[w] = Math.min(returnAt[w], s.op.complete);
    }
  });
  search.forEach((s, i) => {
    if (!s.optional && s.op.outcome === 'unknown') returnAt[i] = Math.max(returnAt[i], s.op.invoke);
  });

  // ---- the event list: node 0 is the head; op i has call node 2i+1 and return node 2i+2.
  const n = search.length;
  const events: Array<{ node: number; t: number; call: boolean }> = [];
  for (let i = 0; i < n; i++) {
    events.push({ node: 2 * i + 1, t: search[i].op.invoke, call: true });
    events.push({ node: 2 * i + 2, t: returnAt[i], call: false });
  }
  // Calls before returns at equal times: such ops count as concurrent (the lenient reading).
  events.sort((a, b) => a.t - b.t || (a.call === b.call ? 0 : a.call ? -1 : 1));
  const next = new Int32Array(2 * n + 1).fill(-1);
  const prev = new Int32Array(2 * n + 1).fill(-1);
  let last = 0;
  for (const e of events) {
    next[last] = e.node;
    prev[e.node] = last;
    last = e.node;
  }
  const lift = (call: number): void => {
    next[prev[call]] = next[call];
    if (next[call] >= 0) prev[next[call]] = prev[call];
    const ret = call + 1;
    next[prev[ret]] = next[ret];
    if (next[ret] >= 0) prev[next[ret]] = prev[ret];
  };
  const unlift = (call: number): void => {
    const ret = call + 1;
    next[prev[ret]] = ret;
    if (next[ret] >= 0) prev[next[ret]] = ret;
    next[prev[call]] = call;
    if (next[call] >= 0) prev[next[call]] = call;
  };

  // ---- Zobrist hash of the linearized set: two independent 32-bit halves.
  const z1 = new Int32Array(n);
  const z2 = new Int32Array(n);
  let seed = 0x9e3779b9 ^ n;
  const rand = (): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed | 0;
  };
  for (let i = 0; i < n; i++) {
    z1[i] = rand();
    z2[i] = rand();
  }

  // ---- pruning, sound because versions only grow and values are unique:
  // - a write with a known version can be placed only when no unplaced write has a lower known
  //   version (it could never be placed after this one);
  // - the current value can be replaced only when every read of it is placed (none could be later).
  const linearized = new Uint8Array(n);
  const byVersion = search.map((_, i) => i).filter((i) => isWrite(search[i].op) && !Number.isNaN(search[i].version));
  byVersion.sort((a, b) => search[a].version - search[b].version);
  const rankOf = new Int32Array(n).fill(-1);
  byVersion.forEach((i, r) => (rankOf[i] = r));
  let minRank = 0; // every write in byVersion before minRank is placed
  const lowestUnplacedVersion = (): number => {
    while (minRank < byVersion.length && linearized[byVersion[minRank]] === 1) minRank++;
    return minRank < byVersion.length ? search[byVersion[minRank]].version : Infinity;
  };
  const unplacedReads = new Int32Array(n);
  for (const s of search) if (s.op.kind === 'get' && s.reads >= 0) unplacedReads[s.reads]++;
  const place = (i: number): void => {
    linearized[i] = 1;
    if (search[i].op.kind === 'get' && search[i].reads >= 0) unplacedReads[search[i].reads]--;
  };
  const unplace = (i: number): void => {
    linearized[i] = 0;
    if (search[i].op.kind === 'get' && search[i].reads >= 0) unplacedReads[search[i].reads]++;
    if (rankOf[i] >= 0 && rankOf[i] < minRank) minRank = rankOf[i];
  };

  // ---- the model
  let cur = ABSENT;
  let vmax = 0;
  let ttl = false;
  const versionOf = (w: number): number => (w === ABSENT ? NaN : search[w].version);
  /** Applies op i to (cur, vmax, ttl); false when the model refuses it. */
  const step = (i: number): boolean => {
    const s = search[i];
    const op = s.op;
    const live = cur !== ABSENT;
    if (isWrite(op)) {
      const allowed = op.kind === 'cas' ? live && versionOf(cur) === op.ifVersion : op.kind === 'create' ? !live : true;
      if (op.outcome === 'ok' && !op.found) return !allowed; // 412
      if (!allowed) return s.optional; // an unknown conditional write that found its condition false did nothing
      if (op.outcome === 'ok' && op.created !== !live) return false;
      if (live && unplacedReads[cur] > 0) return false;
      if (Number.isNaN(s.version)) {
        if (vmax + 1 >= lowestUnplacedVersion()) return false;
        vmax += 1;
      } else if (s.version > vmax && s.version === lowestUnplacedVersion()) vmax = s.version;
      else return false;
      ttl = op.ttl === true || (op.keepTtl === true && live && ttl);
      cur = i;
      return true;
    }
    switch (op.kind) {
      case 'get':
        if (!op.found) return !live;
        return cur === s.reads && ttl === (op.hasTtl === true) && (Number.isNaN(search[cur].version) || search[cur].version === op.version);
      case 'del':
        if (op.outcome === 'ok' && op.found !== live) return false;
        if (live && unplacedReads[cur] > 0) return false;
        cur = ABSENT;
        ttl = false;
        return true;
      case 'expire':
      case 'persist':
        if (op.outcome === 'ok' && op.found !== live) return false;
        if (live) ttl = op.kind === 'expire';
        return true;
      default:
        return false;
    }
  };

  const seen = new Set<string>();
  interface Frame {
    node: number;
    cur: number;
    vmax: number;
    ttl: boolean;
  }
  const stack: Frame[] = [];
  let h1 = 0;
  let h2 = 0;
  let best = -1;
  let bestStuck = -1;
  let bestPrefix: number[] = [];
  let node = next[0];
  while (node !== -1) {
    const isCall = (node & 1) === 1;
    const i = (node - 1) >> 1;
    if (isCall) {
      const saved: Frame = { node, cur, vmax, ttl };
      if (step(i)) {
        const k = `${h1 ^ z1[i]},${h2 ^ z2[i]},${cur},${vmax},${ttl ? 1 : 0}`;
        if (!seen.has(k)) {
          if (seen.size >= budget) return { key, linearizable: null, ops: n, explored: seen.size };
          seen.add(k);
          stack.push(saved);
          place(i);
          h1 ^= z1[i];
          h2 ^= z2[i];
          lift(node);
          node = next[0];
          continue;
        }
      }
      cur = saved.cur;
      vmax = saved.vmax;
      ttl = saved.ttl;
      node = next[node];
    } else {
      if (returnAt[i] === Infinity) return { key, linearizable: true, ops: n, explored: seen.size };
      if (stack.length > best) {
        best = stack.length;
        bestStuck = i;
        bestPrefix = stack.slice(-5).map((f) => (f.node - 1) >> 1);
      }
      const top = stack.pop();
      if (top === undefined) {
        return { key, linearizable: false, ops: n, explored: seen.size, stuckAt: search[bestStuck].op, prefix: bestPrefix.reverse().map((j) => search[j].op) };
      }
      const j = (top.node - 1) >> 1;
      unplace(j);
      h1 ^= z1[j];
      h2 ^= z2[j];
      cur = top.cur;
      vmax = top.vmax;
      ttl = top.ttl;
      unlift(top.node);
      node = next[top.node];
    }
  }
  return { key, linearizable: true, ops: n, explored: seen.size };
}
