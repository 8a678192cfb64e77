/**
 * Owns reading msgpack from an untrusted peer, on both sides of the WebSocket: a structural scan
 * of the bytes, then msgpackr's unpack of what passed, and `describe` for messages about what a
 * value decoded as. Relies on msgpackr (decoding only). Pure: no I/O, no timers.
 *
 *   1. scanMsgpack walks the bytes without allocating: every declared length must fit in what is
 *      left, nesting is bounded, ext types and 0xc1 are refused, str must be UTF-8. Without it a
 *      5-byte `array32(2^24)` header makes msgpackr allocate a 128 MiB array before failing.
 *   2. msgpackr unpacks what passed (int64AsType 'auto': a peer that always writes 64-bit ints,
 *      as Go's msgpack does by default, is understood).
 */
import { isUtf8 } from 'node:buffer';
import { Unpackr } from 'msgpackr';

/**
 * Containers may nest this deep: frame > request > options map; a transaction's frame > request >
 * op list > op > options map (and its reply: frame > reply > replies > reply > error map).
 */
export const MAX_NESTING = 5;

/** Items still to read in each open container, innermost last. Reused: the scan is synchronous. */
const scanStack = new Array<number>(MAX_NESTING + 1).fill(0);

const hex = (b: number): string => `0x${b.toString(16).padStart(2, '0')}`;

/**
 * Checks that `b` holds exactly one well-formed msgpack value that kvsql may decode. Returns null
 * when it does, else a message naming the byte offset of the problem.
 */
export function scanMsgpack(b: Uint8Array, maxNesting: number = MAX_NESTING): string | null {
  const n = b.length;
  if (n === 0) return 'frame is empty (0 bytes); expected a msgpack array';
  // A virtual root container holding exactly one value.
  let depth = 1;
  scanStack[0] = 1;
  let p = 0;
  while (depth > 0) {
    if (scanStack[depth - 1] === 0) {
      depth--;
      continue;
    }
    scanStack[depth - 1]--;
    if (p >= n) return `frame is truncated: it ends at byte ${n} inside an array or map that needs more items`;
    const start = p;
    const t = b[p];
    let items = -1; // >= 0: a container with this many items (a map's count twice) follows
    let isMapHeader = false;
    let skip = 0; // a scalar whose payload is this many bytes
    let lenBytes = 0; // a str/bin whose length is in the next lenBytes bytes
    let isStr = false;
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) {
      p++;
      continue;
    } else if (t <= 0x8f) {
      items = (t & 0x0f) * 2;
      isMapHeader = true;
      p++;
    } else if (t <= 0x9f) {
      items = t & 0x0f;
      p++;
    } else if (t <= 0xbf) {
      skip = t & 0x1f;
      isStr = true;
      p++;
    } else {
      switch (t) {
        case 0xc4:
          lenBytes = 1;
          break; // bin 8
        case 0xc5:
          lenBytes = 2;
          break; // bin 16
        case 0xc6:
          lenBytes = 4;
          break; // bin 32
        case 0xd9:
          lenBytes = 1;
          isStr = true;
          break; // str 8
        case 0xda:
          lenBytes = 2;
          isStr = true;
          break; // str 16
        case 0xdb:
          lenBytes = 4;
          isStr = true;
          break; // str 32
        case 0xcc:
        case 0xd0:
          skip = 1;
          break;
        case 0xcd:
        case 0xd1:
          skip = 2;
          break;
        case 0xca:
        case 0xce:
        case 0xd2:
          skip = 4;
          break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
          skip = 8;
          break;
        case 0xdc:
        case 0xdd:
        case 0xde:
        case 0xdf: {
          isMapHeader = t >= 0xde;
          const wide = t === 0xdd || t === 0xdf;
          const head = wide ? 5 : 3;
          if (p + head > n)
            return `frame is truncated: the ${isMapHeader ? 'map' : 'array'} header at byte ${start} needs ${head} bytes, the frame ends at ${n}`;
          const count = wide ? b[p + 1] * 0x1000000 + ((b[p + 2] << 16) | (b[p + 3] << 8) | b[p + 4]) : (b[p + 1] << 8) | b[p + 2];
          items = isMapHeader ? count * 2 : count;
          p += head;
          break;
        }
        case 0xc1:
          return `byte ${hex(t)} at offset ${start} is not valid msgpack`;
        default: // 0xc7-0xc9 ext 8/16/32, 0xd4-0xd8 fixext
          return `msgpack ext type (${hex(t)}) at offset ${start} is not used by this protocol`;
      }
      if (lenBytes > 0) {
        if (p + 1 + lenBytes > n)
          return `frame is truncated: the ${isStr ? 'str' : 'bin'} header at byte ${start} needs ${1 + lenBytes} bytes, the frame ends at ${n}`;
        skip = lenBytes === 1 ? b[p + 1] : lenBytes === 2 ? (b[p + 1] << 8) | b[p + 2] : b[p + 1] * 0x1000000 + ((b[p + 2] << 16) | (b[p + 3] << 8) | b[p + 4]);
        p += 1 + lenBytes;
      } else if (items < 0) {
        p++; // a number: the type byte, then `skip` payload bytes
      }
    }
    if (items >= 0) {
      // Every item takes at least one byte: a count larger than what is left cannot be honest.
      if (items > n - p) {
        const what = isMapHeader ? `map at byte ${start} declares ${items / 2} entries` : `array at byte ${start} declares ${items} items`;
        return `frame is truncated: the ${what}, only ${n - p} bytes follow`;
      }
      if (depth > maxNesting) return `containers nest deeper than ${maxNesting} levels at byte ${start}`;
      scanStack[depth++] = items;
      continue;
    }
    if (p + skip > n)
      return `frame is truncated: the ${isStr ? 'str' : lenBytes > 0 ? 'bin' : 'number'} at byte ${start} needs ${p + skip - start} bytes, the frame ends at ${n}`;
    if (isStr && skip > 0 && !isUtf8(b.subarray(p, p + skip))) {
      return `str at byte ${start} is not valid UTF-8 (send bytes that are not UTF-8 as bin)`;
    }
    p += skip;
  }
  if (p !== n) return `frame has ${n - p} bytes after the end of its value at byte ${p}; send one array per frame`;
  return null;
}

// 'auto' (number when within +-2^53, else bigint) is supported by msgpackr 1.12 but missing from
// its typings.
const unpackr = new Unpackr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'auto' as 'bigint' });

/** Scan, then unpack. Throws a plain Error with a precise message when the bytes are not usable. */
export function unpackChecked(bytes: Uint8Array): unknown {
  const problem = scanMsgpack(bytes);
  if (problem !== null) throw new Error(problem);
  return unpackr.unpack(bytes);
}

/** What a msgpack value decoded as, for messages. */
export function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  switch (typeof v) {
    case 'boolean':
      return 'bool';
    case 'number':
      return Number.isInteger(v) ? `int ${v}` : `float ${v}`;
    case 'bigint':
      return `int ${v} (out of range)`;
    case 'string':
      return `str "${v.length > 40 ? `${v.slice(0, 40)}...` : v}"`;
  }
  if (v instanceof Uint8Array) return `bin (${v.length} bytes)`;
  if (Array.isArray(v)) return `array of ${v.length}`;
  return 'map';
}

/** A msgpack map as msgpackr decodes it (mapsAsObjects): a plain object. */
export const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
