/**
 * Owns the compiled-script cache of one VM: sha1 of a body → registry ref of its compiled function
 * and its shebang flags, least recently used dropped first, and the sha1 itself. Relies on nothing
 * but node:crypto. Never touches the Lua state: the runner unrefs what `add` evicts, so a ref is
 * released exactly once.
 *
 *   Map insertion order = recency:  | least recent ... most recent |
 *   use(sha): delete + set (moves it last); add past max: the first entry is evicted
 */

import { createHash } from 'node:crypto';
import type { ScriptFlags } from './lua-sandbox';

export function sha1hex(s: Buffer | string): string {
  return createHash('sha1').update(s).digest('hex');
}

export interface CachedScript {
  ref: number;
  flags: ScriptFlags;
}

export class ScriptCache {
  private readonly scripts = new Map<string, CachedScript>();

  constructor(private readonly maxCached: number) {}

  get size(): number {
    return this.scripts.size;
  }

  /** Looks up without counting as a use (SCRIPT EXISTS, flags). */
  peek(sha: string): CachedScript | undefined {
    return this.scripts.get(sha);
  }

  /** Looks up and marks it most recently used. */
  use(sha: string): CachedScript | undefined {
    const s = this.scripts.get(sha);
    if (s) {
      this.scripts.delete(sha);
      this.scripts.set(sha, s);
    }
    return s;
  }

  /** Adds a newly compiled script; returns the one evicted to make room, if any. */
  add(sha: string, entry: CachedScript): CachedScript | undefined {
    this.scripts.set(sha, entry);
    if (this.scripts.size <= this.maxCached) return undefined;
    const [oldSha, old] = this.scripts.entries().next().value as [string, CachedScript];
    this.scripts.delete(oldSha);
    return old;
  }

  values(): IterableIterator<CachedScript> {
    return this.scripts.values();
  }

  clear(): void {
    this.scripts.clear();
  }
}
