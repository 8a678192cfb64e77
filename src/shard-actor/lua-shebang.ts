/**
 * Owns Redis 7's script shebang: `#!lua [flags=a,b]` on a body's first line, parsed into
 * `ScriptFlags` with Redis's error texts. Pure; relies on nothing. Never compiles the code: the
 * code returned keeps the first line's newline so that line numbers stay the body's.
 */

import type { ScriptFlags } from './lua-sandbox';

const NO_FLAGS: ScriptFlags = Object.freeze({
  noWrites: false,
  allowOom: false,
  allowStale: false,
  noCluster: false,
  allowCrossSlotKeys: false,
});

const SHEBANG_FLAGS: Record<string, keyof ScriptFlags> = {
  'no-writes': 'noWrites',
  'allow-oom': 'allowOom',
  'allow-stale': 'allowStale',
  'no-cluster': 'noCluster',
  'allow-cross-slot-keys': 'allowCrossSlotKeys',
};

/** Redis 7's shebang: `#!lua [flags=a,b]` on the first line; the code keeps that line's newline. */
export function parseShebang(body: Buffer): { code: Buffer; flags: ScriptFlags } | { error: string } {
  if (body[0] !== 0x23 || body[1] !== 0x21) return { code: body, flags: NO_FLAGS };
  let nl = body.indexOf(0x0a);
  if (nl < 0) nl = body.length;
  const parts = body
    .subarray(0, nl)
    .toString('latin1')
    .split(' ')
    .filter((s) => s !== '');
  if (parts.length === 0) return { error: 'ERR Invalid engine in script shebang' };
  if (parts[0] !== '#!lua') return { error: `ERR Unexpected engine in script shebang: ${parts[0]}` };
  const flags: ScriptFlags = { ...NO_FLAGS };
  for (const part of parts.slice(1)) {
    if (!part.startsWith('flags=')) return { error: `ERR Unknown lua shebang option: ${part}` };
    for (const f of part.slice(6).split(',')) {
      if (f === '') continue;
      const key = SHEBANG_FLAGS[f];
      if (!key) return { error: `ERR Unexpected flag in script shebang: ${f}` };
      flags[key] = true;
    }
  }
  return { code: body.subarray(nl), flags };
}
