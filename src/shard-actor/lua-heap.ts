/**
 * Owns moving bytes across the wasm boundary of one Lua VM: a scratch buffer in the wasm heap
 * (grown, never shrunk) that every string pushed into Lua is copied through, NUL-terminated names
 * kept for the module's life (field names, chunk names), reading Lua strings out as Buffers, and
 * raising a Lua error from JS. Relies on the raw exports of `lua-wasm.ts`. Never creates or closes
 * a lua_State, never decides what a value means (that is `lua-values.ts`).
 *
 *   wasm heap:  | lenPtr (8 B) | scratch (cap ≥ 4 KiB, reused by every put) | names (one each) |
 *
 * What must stay true: a pointer from `put` is valid only until the next `put` (Lua copies the
 * bytes it is given, so a push never keeps it).
 */

import type { EmModule, LuaExports } from './lua-wasm';

export class LuaHeap {
  private readonly lenPtr: number;
  private scratch = 0;
  private scratchCap = 0;
  private readonly names = new Map<string, number>();

  constructor(
    readonly m: EmModule,
    readonly x: LuaExports,
  ) {
    this.lenPtr = x.malloc(8);
  }

  /** Copies b into the scratch buffer (plus room for a NUL) and returns its address. */
  put(b: Uint8Array): number {
    if (b.length + 1 > this.scratchCap) {
      if (this.scratch) this.x.free(this.scratch);
      this.scratchCap = Math.max(4096, (b.length + 1) * 2);
      this.scratch = this.x.malloc(this.scratchCap);
      if (!this.scratch) throw new Error('out of wasm memory');
    }
    this.m.HEAPU8.set(b, this.scratch);
    return this.scratch;
  }

  /** A NUL-terminated name kept for the runner's life (field names, chunk names). */
  name(s: string): number {
    let p = this.names.get(s);
    if (p === undefined) {
      const b = Buffer.from(`${s}\0`);
      p = this.x.malloc(b.length);
      this.m.HEAPU8.set(b, p);
      this.names.set(s, p);
    }
    return p;
  }

  pushBytes(L: number, b: Uint8Array): void {
    this.x.lua_pushlstring(L, this.put(b), b.length);
  }

  pushText(L: number, s: string): void {
    this.pushBytes(L, Buffer.from(s));
  }

  /** The string (or number, converted in place) at i as bytes; undefined for other types. */
  readBytes(L: number, i: number): Buffer | undefined {
    const p = this.x.lua_tolstring(L, i, this.lenPtr);
    if (!p) return undefined;
    const n = this.m.HEAPU32[this.lenPtr >> 2]!;
    return Buffer.from(this.m.HEAPU8.subarray(p, p + n));
  }

  readString(L: number, i: number): string | undefined {
    return this.readBytes(L, i)?.toString();
  }

  /** Raises a Lua error with a string message (longjmps through this JS frame). */
  raiseString(L: number, msg: string): never {
    this.pushText(L, msg);
    this.x.lua_error(L);
    throw new Error('unreachable: lua_error returned');
  }
}
