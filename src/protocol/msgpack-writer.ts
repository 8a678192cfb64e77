/**
 * Owns writing msgpack, for both sides of the WebSocket: the few types this protocol uses, with
 * integers in the smallest int encoding and uint64/int64 above 32 bits, never as float (msgpackr
 * packs integers above 2^32, every expiresAt, as float64, which typed decoders in other languages
 * refuse for an integer). Relies on node:buffer only. Pure: no I/O.
 */

/**
 * A growable msgpack writer for the few types this protocol uses. Integers are written in the
 * smallest int encoding, uint64/int64 above 32 bits (never as float). The bytes from view() are
 * valid until the next reset().
 */
export class MsgpackWriter {
  private buf: Buffer;
  pos = 0;
  constructor(initial = 64 * 1024) {
    this.buf = Buffer.allocUnsafeSlow(initial);
  }

  reset(): void {
    this.pos = 0;
  }

  view(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafeSlow(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  nil(): void {
    this.room(1);
    this.buf[this.pos++] = 0xc0;
  }

  bool(v: boolean): void {
    this.room(1);
    this.buf[this.pos++] = v ? 0xc3 : 0xc2;
  }

  /** An array header whose count is patched later by patchArray32 (array 32 is valid for any n). */
  reserveArray32(): number {
    this.room(5);
    const at = this.pos;
    this.buf[at] = 0xdd;
    this.pos += 5;
    return at;
  }

  patchArray32(at: number, count: number): void {
    this.buf.writeUInt32BE(count, at + 1);
  }

  arrayHeader(n: number): void {
    this.room(5);
    const b = this.buf;
    if (n < 16) b[this.pos++] = 0x90 | n;
    else if (n < 0x10000) {
      b[this.pos] = 0xdc;
      b.writeUInt16BE(n, this.pos + 1);
      this.pos += 3;
    } else {
      b[this.pos] = 0xdd;
      b.writeUInt32BE(n, this.pos + 1);
      this.pos += 5;
    }
  }

  mapHeader(n: number): void {
    this.room(3);
    if (n < 16) this.buf[this.pos++] = 0x80 | n;
    else {
      this.buf[this.pos] = 0xde;
      this.buf.writeUInt16BE(n, this.pos + 1);
      this.pos += 3;
    }
  }

  number(v: number): void {
    this.room(9);
    const b = this.buf;
    let p = this.pos;
    if (!Number.isInteger(v)) {
      b[p] = 0xcb;
      b.writeDoubleBE(v, p + 1);
      p += 9;
    } else if (v >= 0) {
      if (v < 0x80) b[p++] = v;
      else if (v < 0x100) {
        b[p++] = 0xcc;
        b[p++] = v;
      } else if (v < 0x10000) {
        b[p] = 0xcd;
        b.writeUInt16BE(v, p + 1);
        p += 3;
      } else if (v < 0x100000000) {
        b[p] = 0xce;
        b.writeUInt32BE(v, p + 1);
        p += 5;
      } else {
        b[p] = 0xcf;
        b.writeUInt32BE(Math.floor(v / 0x100000000), p + 1);
        b.writeUInt32BE(v >>> 0, p + 5);
        p += 9;
      }
    } else if (v >= -32) {
      b[p++] = 0x100 + v;
    } else if (v >= -0x80) {
      b[p] = 0xd0;
      b.writeInt8(v, p + 1);
      p += 2;
    } else if (v >= -0x8000) {
      b[p] = 0xd1;
      b.writeInt16BE(v, p + 1);
      p += 3;
    } else if (v >= -0x80000000) {
      b[p] = 0xd2;
      b.writeInt32BE(v, p + 1);
      p += 5;
    } else {
      const hi = Math.floor(v / 0x100000000);
      b[p] = 0xd3;
      b.writeInt32BE(hi, p + 1);
      b.writeUInt32BE(v - hi * 0x100000000, p + 5);
      p += 9;
    }
    this.pos = p;
  }

  bin(v: Uint8Array): void {
    const n = v.length;
    this.room(5 + n);
    this.sizedHeader(n, 0xc4, 0xc5, 0xc6);
    this.buf.set(v, this.pos);
    this.pos += n;
  }

  str(v: string): void {
    const n = Buffer.byteLength(v, 'utf8');
    this.room(5 + n);
    if (n < 32) this.buf[this.pos++] = 0xa0 | n;
    else this.sizedHeader(n, 0xd9, 0xda, 0xdb);
    this.pos += this.buf.write(v, this.pos, n, 'utf8');
  }

  /** The 8/16/32-bit length header of bin and str: the smallest of the three codes that fits. */
  private sizedHeader(n: number, code8: number, code16: number, code32: number): void {
    const b = this.buf;
    if (n < 0x100) {
      b[this.pos] = code8;
      b[this.pos + 1] = n;
      this.pos += 2;
    } else if (n < 0x10000) {
      b[this.pos] = code16;
      b.writeUInt16BE(n, this.pos + 1);
      this.pos += 3;
    } else {
      b[this.pos] = code32;
      b.writeUInt32BE(n, this.pos + 1);
      this.pos += 5;
    }
  }

  /** Any value a reply or request holds: nil, bool, number, str, bin, array, string-keyed map. */
  value(v: unknown): void {
    if (v === null || v === undefined) this.nil();
    else if (typeof v === 'number') this.number(v);
    else if (typeof v === 'string') this.str(v);
    else if (typeof v === 'boolean') this.bool(v);
    else if (v instanceof Uint8Array) this.bin(v);
    else if (Array.isArray(v)) {
      this.arrayHeader(v.length);
      for (let i = 0; i < v.length; i++) this.value(v[i]);
    } else if (typeof v === 'object') {
      const o = v as Record<string, unknown>;
      let n = 0;
      for (const k in o) if (o[k] !== undefined) n++;
      this.mapHeader(n);
      for (const k in o) {
        if (o[k] === undefined) continue;
        this.str(k);
        this.value(o[k]);
      }
    } else {
      throw new TypeError(`cannot encode a ${typeof v} as msgpack`);
    }
  }
}
