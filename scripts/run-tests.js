#!/usr/bin/env node
/**
 * Owns running the compiled test suites: every *.test.js under dist/test, one file at a time.
 * Relies on `npm run build` having produced dist/. Must not build, and must not start servers:
 * each test file gets its own MySQL through test/helpers/mysql.ts.
 *
 * Usage: node scripts/run-tests.js [filter...]   (a file runs if its path contains any filter)
 * Why list files ourselves: Node 20's `node --test` does not expand globs, and with no arguments
 * it would also pick up helpers and anything else matching its default patterns.
 * Why --test-concurrency=1: suites start real servers and the machine has 2 cores; running them
 * side by side makes timing-sensitive tests (expiry, lock waits) flaky.
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

const filters = process.argv.slice(2);
const files = findTests(testRoot)
  .map((f) => path.relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();

if (files.length === 0) {
  console.error(`run-tests: no test files under dist/test${filters.length ? ` matching ${filters.map((s) => JSON.stringify(s)).join(' or ')}` : ''}`);
  process.exit(1);
}

const args = ['--test', '--test-reporter=spec', '--test-concurrency=1', '--test-timeout=600000', ...files];
const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' });
// Forward Ctrl-C/TERM so the runner (and through it each test file's servers) shut down first.
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
