/**
 * Owns writing token files for tests: makes real tokens (random, the production format) and the
 * file lines that hold their hashes, as `kvsql token create` would. Relies on protocol/access.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { formatToken, tokenLine, type GrantJson } from '../../src/protocol/access';

export interface TestToken {
  name: string;
  id: string;
  token: string;
  line: string;
}

export function makeToken(name: string, grants: GrantJson[]): TestToken {
  const idBytes = randomBytes(4);
  const token = formatToken(idBytes, randomBytes(32));
  const id = idBytes.toString('hex');
  const line = tokenLine(id, name, createHash('sha256').update(token).digest('hex'), grants, new Date().toISOString());
  return { name, id, token, line };
}

/** Writes the file holding exactly `tokens` (atomically: temp file + rename). */
export function writeTokenFile(file: string, tokens: TestToken[]): void {
  fs.writeFileSync(`${file}.tmp`, `# test tokens\n${tokens.map((t) => t.line).join('\n')}\n`, { mode: 0o600 });
  fs.renameSync(`${file}.tmp`, file);
}

export const bearer = (t: TestToken | string): Record<string, string> => ({ Authorization: `Bearer ${typeof t === 'string' ? t : t.token}` });
