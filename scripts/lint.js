#!/usr/bin/env node
/**
 * Owns `npm run lint`: ESLint (eslint.config.mjs) and `prettier --check` (.prettierrc.json) over
 * the whole checkout, side by side, each output printed whole once it is done; exits non-zero if
 * either found something. `npm run format` rewrites what Prettier would complain about.
 * Why side by side: each is one single-threaded process of ~20 s CPU here; on 2 cores, in parallel
 * the lint takes the longer of the two, not their sum.
 * Both keep a cache under node_modules/.cache (content-checked, dropped when the config changes),
 * so a second run only reads the files that changed; `npm ci` starts from none.
 */
'use strict';
const { spawn } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const bin = (name) => path.join(root, 'node_modules', '.bin', name);

const steps = [
  ['eslint', ['--cache', '--cache-strategy', 'content', '--cache-location', 'node_modules/.cache/eslint/', '.']],
  ['prettier', ['--check', '--cache', '--log-level', 'warn', '.']],
];

function run([name, args]) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(bin(name), args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    child.stdout.on('data', (c) => out.push(c));
    child.stderr.on('data', (c) => out.push(c));
    child.on('error', (err) => resolve({ name, code: 1, text: `${err.message}\n`, ms: Date.now() - started }));
    child.on('close', (code, signal) => resolve({ name, code: code ?? (signal ? 1 : 0), text: Buffer.concat(out).toString('utf8'), ms: Date.now() - started }));
  });
}

Promise.all(steps.map(run)).then((results) => {
  for (const r of results) {
    if (r.text.trim() !== '') process.stdout.write(r.text.endsWith('\n') ? r.text : `${r.text}\n`);
    const hint = r.name === 'prettier' ? ' (npm run format fixes it)' : '';
    console.log(`lint: ${r.name} ${r.code === 0 ? 'clean' : `failed${hint}`} in ${(r.ms / 1000).toFixed(1)} s`);
  }
  process.exit(results.some((r) => r.code !== 0) ? 1 : 0);
});
