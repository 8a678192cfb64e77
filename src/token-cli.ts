/**
 * Owns `kvsql token create|list|revoke`: editing the token file (KVSQL_AUTH_FILE or --file) and
 * printing a new token exactly once. Relies on protocol/access for the formats. Never writes a
 * token in clear: the file gets its SHA-256, stdout gets the token, nothing else sees it.
 * Running gateways pick changes up on SIGHUP (`kill -HUP <pid>`).
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync, appendFileSync, chmodSync } from 'node:fs';
import { formatToken, parseTokenFile, tokenLine, TokenFileError, type GrantJson, type Right } from './protocol/access';
import { groupUsage } from './cli-help';

const USAGE = `${groupUsage('token')}\n(kvsql help token says more)`;

class UsageError extends Error {}

const RIGHTS: readonly string[] = ['read', 'write', 'admin'] satisfies Right[];

function parseArgs(args: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 0; i < args.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(args[i]);
    if (!m) throw new UsageError(`unexpected argument "${args[i]}"`);
    let v = m[2];
    if (v === undefined) {
      if (i + 1 >= args.length) throw new UsageError(`--${m[1]} needs a value`);
      v = args[++i];
    }
    out.set(m[1], [...(out.get(m[1]) ?? []), v]);
  }
  return out;
}

function one(a: Map<string, string[]>, name: string): string | undefined {
  const v = a.get(name);
  if (v !== undefined && v.length > 1) throw new UsageError(`--${name} given twice`);
  return v?.[0];
}

function only(a: Map<string, string[]>, allowed: string[]): void {
  for (const k of a.keys()) if (!allowed.includes(k)) throw new UsageError(`unknown option --${k}`);
}

function fileOf(a: Map<string, string[]>, env: NodeJS.ProcessEnv): string {
  const f = one(a, 'file') ?? env.KVSQL_AUTH_FILE ?? '';
  if (f === '') throw new UsageError('no token file: pass --file=PATH or set KVSQL_AUTH_FILE');
  return f;
}

function readFile(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

/** Runs the command; returns the exit code. `out` gets the token (stdout), `err` the messages. */
export function tokenCommand(args: string[], env: NodeJS.ProcessEnv, out: (s: string) => void, err: (s: string) => void): number {
  try {
    const [sub, ...rest] = args;
    const a = parseArgs(rest);
    if (sub === 'create') {
      only(a, ['file', 'name', 'rights', 'prefix', 'prefix-hex']);
      const file = fileOf(a, env);
      const name = one(a, 'name');
      if (name === undefined) throw new UsageError('--name is required');
      const rights = (one(a, 'rights') ?? '')
        .split(',')
        .map((r) => r.trim())
        .filter((r) => r !== '') as Right[];
      if (rights.length === 0) throw new UsageError('--rights is required (read, write, admin; comma-separated)');
      // The arguments are checked here, by name, before the file is read: a mistake in them is a
      // usage error (exit 2), not a fault of the token file.
      for (const r of rights) if (!RIGHTS.includes(r)) throw new UsageError(`--rights: unknown right "${r.slice(0, 20)}" (read, write, admin)`);
      for (const hex of a.get('prefix-hex') ?? []) {
        if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex))
          throw new UsageError(`--prefix-hex "${hex.slice(0, 40)}" is not hex bytes (an even number of 0-9 a-f digits, e.g. 00ff)`);
      }
      const prefixes: GrantJson['prefixes'] = [...(a.get('prefix') ?? []), ...(a.get('prefix-hex') ?? []).map((hex) => ({ hex }))];
      if (prefixes.length === 0 && rights.some((r) => r !== 'admin')) {
        throw new UsageError(`--rights ${rights.join(',')} needs at least one --prefix or --prefix-hex (--prefix "" for every key)`);
      }
      const existing = parseTokenFile(readFile(file)); // refuse to append to a file that would not load
      if (existing.some((t) => t.name === name))
        throw new UsageError(`a token named "${name}" exists already in ${file}; revoke it first or pick another name`);
      let id: string;
      do id = randomBytes(4).toString('hex');
      while (existing.some((t) => t.id === id));
      const token = formatToken(Buffer.from(id, 'hex'), randomBytes(32));
      let line: string;
      try {
        line = tokenLine(id, name, createHash('sha256').update(token).digest('hex'), [{ rights, prefixes }], new Date().toISOString());
      } catch (e) {
        // Only the arguments are new in this line (the id and hash are ours): name them.
        if (!(e instanceof TokenFileError)) throw e;
        if (/^name must match/.test(e.message)) throw new UsageError(`--name "${name.slice(0, 70)}": 1 to 64 of A-Z a-z 0-9 . _ : @ / -`);
        throw new UsageError(`the token's arguments: ${e.message.replace(/^line \d+: /, '')}`);
      }
      const before = readFile(file);
      appendFileSync(file, (before.length > 0 && !before.endsWith('\n') ? '\n' : '') + line + '\n', { mode: 0o600 });
      out(token + '\n');
      err(
        `token "${name}" (id ${id}) added to ${file}. It is shown only this once; the file keeps its SHA-256.\nRunning gateways load it on SIGHUP: kill -HUP <pid>\n`,
      );
      return 0;
    }
    if (sub === 'list') {
      only(a, ['file']);
      const file = fileOf(a, env);
      for (const line of readFile(file).split('\n')) {
        const t = line.trim();
        if (t === '' || t.startsWith('#')) continue;
        const j = JSON.parse(t) as { id: string; name: string; grants: GrantJson[]; created?: string };
        out(`${j.id}  ${j.name}  ${JSON.stringify(j.grants)}${j.created ? `  created ${j.created}` : ''}\n`);
      }
      parseTokenFile(readFile(file)); // say so if the file would not load
      return 0;
    }
    if (sub === 'revoke') {
      only(a, ['file', 'name', 'id']);
      const file = fileOf(a, env);
      const name = one(a, 'name');
      const id = one(a, 'id');
      if ((name === undefined) === (id === undefined)) throw new UsageError('pass exactly one of --name or --id');
      const lines = readFile(file).split('\n');
      let removed = 0;
      const kept = lines.filter((line) => {
        const t = line.trim();
        if (t === '' || t.startsWith('#')) return true;
        const j = JSON.parse(t) as { id?: string; name?: string };
        const hit = name !== undefined ? j.name === name : j.id === id;
        if (hit) removed++;
        return !hit;
      });
      if (removed === 0) throw new UsageError(`no token with ${name !== undefined ? `name "${name}"` : `id ${id}`} in ${file}`);
      const tmp = `${file}.tmp-${process.pid}`;
      writeFileSync(tmp, kept.join('\n'), { mode: 0o600 });
      chmodSync(tmp, 0o600);
      renameSync(tmp, file); // atomic: a gateway reloading meanwhile sees the old or the new file
      err(`revoked ${removed} token(s) in ${file}. Running gateways drop it on SIGHUP: kill -HUP <pid>\n`);
      return 0;
    }
    throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`);
  } catch (e) {
    if (e instanceof UsageError) {
      err(`kvsql token: ${e.message}\n${USAGE}\n`);
      return 2;
    }
    if (e instanceof TokenFileError || e instanceof SyntaxError) {
      err(`kvsql token: the token file is not valid: ${e.message}\n`);
      return 1;
    }
    err(`kvsql token: ${(e as Error).message}\n`);
    return 1;
  }
}
