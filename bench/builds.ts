/**
 * Owns the builds a comparison runs: this checkout's own `dist/` ("new") and any git ref built
 * once into `bench/.builds/<commit>` ("old"), reused on the next run. Relies on git, tar and the
 * checkout's TypeScript compiler. Must not touch the checkout's work tree or its git state: a ref
 * is exported with `git archive`, never checked out.
 *
 *   bench/.builds/<sha12>/            git archive of the commit
 *     node_modules -> ../../../node_modules   (when its package-lock.json equals ours; else npm ci)
 *     dist/src/cli.js                 tsc of that commit's tsconfig
 *     .kvsql-build-ok                 written last: a half-made build is rebuilt, never used
 *
 * Settings changed their prefix over time (KV_* before KVSQL_*) and some did not exist yet, so a
 * build also carries the setting names its compiled code knows: the harness names settings as
 * KVSQL_*, and `envFor` renames or drops each one for that build.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const REPO = path.resolve(__dirname, '..', '..');
const BUILDS_DIR = path.join(REPO, 'bench', '.builds');
const OK_MARK = '.kvsql-build-ok';

export interface Build {
  /** "new" (this checkout) or "old" (the ref). */
  role: 'new' | 'old';
  /** Short commit, with " (dirty)" for a checkout with uncommitted changes. */
  label: string;
  root: string;
  cli: string;
  /** Setting names (KVSQL_PORT or KV_PORT, ...) its compiled sources mention. */
  knownEnv: ReadonlySet<string>;
  prefix: 'KVSQL_' | 'KV_';
}

const git = (args: string[], cwd = REPO): string => execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

function scanEnv(distSrc: string): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) walk(full);
      else if (e.name.endsWith('.js')) for (const m of fs.readFileSync(full, 'utf8').matchAll(/['"`]((?:KVSQL|KV)_[A-Z0-9_]+)['"`]/g)) names.add(m[1]);
    }
  };
  walk(distSrc);
  return names;
}

function describe(role: Build['role'], label: string, root: string): Build {
  const cli = path.join(root, 'dist', 'src', 'cli.js');
  if (!fs.existsSync(cli)) throw new Error(`${label}: no ${path.relative(REPO, cli)} (build it first)`);
  const knownEnv = scanEnv(path.join(root, 'dist', 'src'));
  return { role, label, root, cli, knownEnv, prefix: knownEnv.has('KVSQL_DATA_DIR') ? 'KVSQL_' : 'KV_' };
}

/** This checkout, as `npm run bench` just built it. */
export function currentBuild(): Build {
  let label = 'unknown';
  try {
    label = git(['rev-parse', '--short=7', 'HEAD']) + (git(['status', '--porcelain', '--untracked-files=no']) !== '' ? ' (dirty)' : '');
  } catch {
    /* not a git checkout: label stays unknown */
  }
  return describe('new', label, REPO);
}

/** `ref` built under bench/.builds (built now when it is not there yet; `log` reports the steps). */
export function buildOf(ref: string, log: (s: string) => void): Build {
  let sha: string;
  try {
    sha = git(['rev-parse', '--verify', `${ref}^{commit}`]);
  } catch {
    throw new Error(`--compare: "${ref}" is not a commit of this repository`);
  }
  const short = sha.slice(0, 12);
  const root = path.join(BUILDS_DIR, short);
  if (!fs.existsSync(path.join(root, OK_MARK))) {
    log(`building ${ref} (${short}) into ${path.relative(REPO, root)} (once; later runs reuse it)`);
    fs.rmSync(root, { recursive: true, force: true });
    fs.mkdirSync(root, { recursive: true });
    execFileSync('/bin/sh', ['-c', 'git archive "$1" | tar -x -C "$2"', 'sh', sha, root], { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] });
    const sameLock = (() => {
      try {
        return fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8') === fs.readFileSync(path.join(REPO, 'package-lock.json'), 'utf8');
      } catch {
        return false;
      }
    })();
    if (sameLock) fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(root, 'node_modules'), 'dir');
    else execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
    execFileSync(process.execPath, [path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    fs.writeFileSync(path.join(root, OK_MARK), `${sha}\n`);
  }
  return describe('old', `${git(['rev-parse', '--short=7', sha])}`, root);
}

/**
 * The environment for one build: `kv` is written with KVSQL_* names; each is renamed to the
 * build's prefix, and dropped when the build does not know it (an older build without a Redis
 * door has no KVSQL_REDIS_PORT and would refuse the unknown name). Returns what was dropped.
 */
export function envFor(build: Build, kv: Record<string, string>): { env: Record<string, string>; dropped: string[] } {
  const env: Record<string, string> = {};
  const dropped: string[] = [];
  for (const [k, v] of Object.entries(kv)) {
    const name = k.startsWith('KVSQL_') ? build.prefix + k.slice('KVSQL_'.length) : k;
    if (name.startsWith(build.prefix) && !build.knownEnv.has(name)) dropped.push(k);
    else env[name] = v;
  }
  return { env, dropped };
}
