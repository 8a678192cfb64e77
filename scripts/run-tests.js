#!/usr/bin/env node
/**
 * Owns running the compiled test suites: every *.test.js under dist/test, in two tiers.
 * Relies on `npm run build` having produced dist/. Must not build, and must not start servers:
 * each test file gets its own MySQL through test/helpers/mysql.ts.
 *
 * Usage: node scripts/run-tests.js [--fast] [--list] [filter...]
 *   a file runs if its path contains any filter; --fast runs the fast tier only; --list prints
 *   each file's tier and runs nothing.
 *
 * Tiers: a file is "fast" when nothing it requires (followed through dist/, transitively) reaches
 * a database: test/helpers/mysql, test/helpers/galera or src/embedded. Fast files are pure or
 * in-memory; they run first, two at a time, and if one fails the slow tier is skipped, so a broken
 * change fails in seconds. Slow files then run one at a time (--test-concurrency=1): suites start
 * real servers and the machine has 2 cores; side by side, timing-sensitive tests (expiry, lock
 * waits) get flaky.
 * Why list files ourselves: Node 20's `node --test` does not expand globs, and with no arguments
 * it would also pick up helpers and anything else matching its default patterns.
 */
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const testRoot = path.join(root, 'dist', 'test');

function findTests(dir) {
  const found = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...findTests(full));
    else if (entry.isFile() && entry.name.endsWith('.test.js')) found.push(full);
  }
  return found;
}

if (!fs.existsSync(testRoot)) {
  console.error(`run-tests: ${path.relative(root, testRoot)} does not exist; run \`npm run build\` first`);
  process.exit(1);
}

const argv = process.argv.slice(2);
const fastOnly = argv.includes('--fast');
const listOnly = argv.includes('--list');
const filters = argv.filter((a) => a !== '--fast' && a !== '--list');
const files = findTests(testRoot)
  .map((f) => path.relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();

if (files.length === 0) {
  console.error(`run-tests: no test files under dist/test${filters.length ? ` matching ${filters.map((s) => JSON.stringify(s)).join(' or ')}` : ''}`);
  process.exit(1);
}

/** Compiled modules that reach a database: a test file requiring any of them (transitively) is slow. */
const SLOW = [path.join(testRoot, 'helpers', 'mysql.js'), path.join(testRoot, 'helpers', 'galera.js'), path.join(root, 'dist', 'src', 'embedded') + path.sep];
const REQUIRE = /require\("(\.{1,2}\/[^"]+)"\)/g;
const slowMemo = new Map();

/** True when `file` (absolute, compiled) or anything it requires relatively reaches SLOW. */
function reachesDatabase(file, seen = new Set()) {
  if (slowMemo.has(file)) return slowMemo.get(file);
  if (seen.has(file)) return false;
  seen.add(file);
  let slow = SLOW.some((s) => (s.endsWith(path.sep) ? file.startsWith(s) : file === s));
  if (!slow) {
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(REQUIRE)) {
      const base = path.resolve(path.dirname(file), m[1]);
      const target = [base + '.js', path.join(base, 'index.js'), base].find((c) => fs.existsSync(c) && fs.statSync(c).isFile());
      if (target && reachesDatabase(target, seen)) {
        slow = true;
        break;
      }
    }
  }
  slowMemo.set(file, slow);
  return slow;
}

const fast = files.filter((f) => !reachesDatabase(path.join(root, f)));
const slow = fastOnly ? [] : files.filter((f) => !fast.includes(f));

if (listOnly) {
  for (const f of fast) console.log(`fast  ${f}`);
  for (const f of slow) console.log(`slow  ${f}`);
  process.exit(0);
}

function run(tier, list, concurrency) {
  if (list.length === 0) return Promise.resolve(0);
  console.log(`run-tests: ${tier} tier, ${list.length} file(s), ${concurrency} at a time`);
  const args = ['--test', '--test-reporter=spec', `--test-concurrency=${concurrency}`, '--test-timeout=600000', ...list];
  const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' });
  // Forward Ctrl-C/TERM so the runner (and through it each test file's servers) shut down first.
  const forward = (signal) => child.kill(signal);
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, forward);
  return new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      for (const signal of ['SIGINT', 'SIGTERM']) process.off(signal, forward);
      resolve(code ?? (signal ? 1 : 0));
    }),
  );
}

(async () => {
  const fastCode = await run('fast', fast, 2);
  if (fastCode !== 0) {
    if (slow.length > 0) console.error(`run-tests: the fast tier failed; the slow tier (${slow.length} file(s)) was not run`);
    process.exit(fastCode);
  }
  process.exit(await run('slow', slow, 1));
})();
