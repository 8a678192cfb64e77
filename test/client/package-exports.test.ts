/**
 * Tests the package's `exports`: `kvsql/client` loads the TypeScript client alone, without the
 * server, uWebSockets.js, MySQL, pino or testcontainers (an application that only talks to kvsql
 * must not pull those in), from CommonJS and ESM.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const ROOT = path.join(__dirname, '..', '..', '..');
const SERVER_SIDE = /uWebSockets|testcontainers|mysql2|pino|[\\/]gateway[\\/]|[\\/]shard-actor[\\/]|[\\/]embedded[\\/]/;

test('require("kvsql/client") gives the client and loads nothing of the server', async () => {
  const script = `
    const c = require('kvsql/client');
    const loaded = Object.keys(require.cache).filter((f) => ${SERVER_SIDE}.test(f));
    console.log(JSON.stringify({ createClient: typeof c.createClient, KvClientError: typeof c.KvClientError, loaded }));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], { cwd: ROOT });
  const out = JSON.parse(stdout);
  assert.equal(out.createClient, 'function');
  assert.equal(out.KvClientError, 'function');
  assert.deepEqual(out.loaded, [], 'server-side modules were loaded');
});

test('import("kvsql/client") works from ESM; the types are where package.json says', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--input-type=module', '-e', "const c = await import('kvsql/client'); console.log(typeof c.createClient);"],
    { cwd: ROOT },
  );
  assert.equal(stdout.trim(), 'function');
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  assert.ok(fs.existsSync(path.join(ROOT, pkg.exports['./client'].types)));
  assert.equal(pkg.dependencies.testcontainers, undefined, 'testcontainers is a devDependency');
  assert.equal(pkg.dependencies['@types/ws'], undefined, '@types/ws is a devDependency');
});
