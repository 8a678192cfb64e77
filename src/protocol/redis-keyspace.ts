/**
 * Owns what the Redis door's keyspace commands (SCAN, KEYS) need beyond a listing page: the SCAN
 * cursor's text form and Redis's glob patterns (MATCH, KEYS), with the literal prefix a pattern
 * starts with (it narrows the range scan; the rest is matched here). Relies on nothing. Pure.
 *
 * Cursor: "0" starts and ends an iteration; any other cursor is the last key listed (protocol/
 * listing), written as the decimal integer of the bytes 0x01 + key (the leading 0x01 keeps the
 * key's leading zero bytes). So it holds no server state: any gateway continues it, after
 * restarts and slot moves. Clients treat it as an opaque string (ioredis, node-redis do); it is
 * up to 2,468 digits for a 1,024-byte key.
 *
 * Pattern (as Redis's stringmatchlen, on bytes, case-sensitive): `*` any run, `?` one byte,
 * `[abc]` `[^a-z]` a class (`\` escapes inside; a reversed range is swapped), `\x` the byte x.
 * Compiled to tokens once; matching is the two-pointer walk with one star to return to, so
 * O(pattern x key) at worst, never exponential.
 */

/** The cursor of the key after which SCAN continues (null: from the start). */
export function encodeCursor(key: Uint8Array | null): string {
  if (key === null) return '0';
  return BigInt(`0x01${Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex')}`).toString(10);
}

/** The key a cursor continues after; null for "0"; undefined when it is not a cursor we issued. */
export function decodeCursor(text: string, maxKeyBytes: number): Uint8Array | null | undefined {
  if (text === '0') return null;
  if (!/^[1-9]\d*$/.test(text) || text.length > Math.ceil((maxKeyBytes + 1) * 2.41) + 1) return undefined;
  const hex = BigInt(text).toString(16);
  if (hex.length % 2 !== 1 || hex[0] !== '1') return undefined;
  const key = Buffer.from(hex.slice(1), 'hex');
  return key.length > maxKeyBytes ? undefined : key;
}

type Token = { t: 'star' } | { t: 'any' } | { t: 'byte'; b: number } | { t: 'class'; set: Uint8Array };

export interface Glob {
  /** The bytes every match starts with (up to the first wildcard). */
  readonly prefix: Buffer;
  /** True when the pattern has no wildcard: it matches one key. */
  readonly literal: boolean;
  matches(key: Uint8Array): boolean;
}

/** Compiles a Redis glob pattern (bytes). */
export function compileGlob(pattern: Uint8Array): Glob {
  const tokens: Token[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === 0x2a /* * */) {
      if (tokens.length === 0 || tokens[tokens.length - 1].t !== 'star') tokens.push({ t: 'star' });
    } else if (c === 0x3f /* ? */) {
      tokens.push({ t: 'any' });
    } else if (c === 0x5c /* \ */ && i + 1 < pattern.length) {
      tokens.push({ t: 'byte', b: pattern[++i] });
    } else if (c === 0x5b /* [ */) {
      const set = new Uint8Array(256);
      let j = i + 1;
      const negate = pattern[j] === 0x5e; /* ^ */
      if (negate) j++;
      for (; j < pattern.length && pattern[j] !== 0x5d /* ] */; j++) {
        if (pattern[j] === 0x5c && j + 1 < pattern.length) {
          set[pattern[++j]] = 1;
        } else if (j + 2 < pattern.length && pattern[j + 1] === 0x2d /* - */ && pattern[j + 2] !== 0x5d) {
          let lo = pattern[j];
          let hi = pattern[j + 2];
          if (lo > hi) [lo, hi] = [hi, lo];
          for (let b = lo; b <= hi; b++) set[b] = 1;
          j += 2;
        } else {
          set[pattern[j]] = 1;
        }
      }
      if (negate) for (let b = 0; b < 256; b++) set[b] ^= 1;
      tokens.push({ t: 'class', set });
      i = j; // at the closing ] (or the end: an unclosed class runs to the end, as in Redis)
    } else {
      tokens.push({ t: 'byte', b: c });
    }
  }
  let n = 0;
  while (n < tokens.length && tokens[n].t === 'byte') n++;
  const prefix = Buffer.from(tokens.slice(0, n).map((t) => (t as { b: number }).b));
  return { prefix, literal: n === tokens.length, matches: (key) => match(tokens, key) };
}

function one(tok: Token, b: number): boolean {
  return tok.t === 'any' || (tok.t === 'byte' ? tok.b === b : tok.t === 'class' && tok.set[b] === 1);
}

function match(tokens: readonly Token[], key: Uint8Array): boolean {
  let p = 0;
  let k = 0;
  let starP = -1;
  let starK = 0;
  while (k < key.length) {
    if (p < tokens.length && tokens[p].t === 'star') {
      starP = p++;
      starK = k;
    } else if (p < tokens.length && one(tokens[p], key[k])) {
      p++;
      k++;
    } else if (starP >= 0) {
      p = starP + 1;
      k = ++starK;
    } else {
      return false;
    }
  }
  while (p < tokens.length && tokens[p].t === 'star') p++;
  return p === tokens.length;
}
