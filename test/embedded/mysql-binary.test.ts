/**
 * Tests aptInstall (src/embedded/mysql-binary.ts), the one apt-get install of the project, against
 * a stand-in `apt-get` script first on PATH (a real install would change this machine): it waits
 * and retries while the apt/dpkg lock is held, updates the package lists and tries again when the
 * install does not provide the package, lets the caller's probe decide over the exit code, gives
 * up on a lock held past its wait, and leaves /usr/sbin/policy-rc.d as it found it.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { aptInstall, aptUnavailable } from '../../src/embedded/mysql-binary';

const POLICY_RC_D = '/usr/sbin/policy-rc.d';
const asRoot = process.getuid?.() === 0;

let dir: string;
let originalPath: string | undefined;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-apt-'));
  originalPath = process.env.PATH;
  process.env.PATH = `${dir}${path.delimiter}${originalPath ?? ''}`;
});
after(() => {
  process.env.PATH = originalPath;
  fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * Writes the stand-in apt-get: it appends `$1 DEBIAN_FRONTEND` to calls.log, then runs `body`
 * (bash; $STATE is a directory it may keep files in). The package counts as installed when
 * $STATE/installed exists.
 */
function fakeAptGet(name: string, body: string): { installed: () => boolean; calls: () => string[] } {
  const state = path.join(dir, name);
  fs.mkdirSync(state);
  fs.writeFileSync(
    path.join(dir, 'apt-get'),
    `#!/bin/bash\nSTATE=${state}\necho "$1 $DEBIAN_FRONTEND" >> $STATE/calls.log\nn=$(wc -l < $STATE/calls.log)\n${body}\n`,
    { mode: 0o755 },
  );
  return {
    installed: () => fs.existsSync(path.join(state, 'installed')),
    calls: () => (fs.existsSync(path.join(state, 'calls.log')) ? fs.readFileSync(path.join(state, 'calls.log'), 'utf8').trim().split('\n') : []),
  };
}

const LOCKED = 'echo "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)" >&2; exit 100';

function policyRcD(): string | null {
  return fs.existsSync(POLICY_RC_D) ? fs.readFileSync(POLICY_RC_D, 'utf8') : null;
}

test('without root, apt is unavailable and aptInstall refuses', { skip: asRoot && 'runs as root' }, async () => {
  assert.equal(aptUnavailable(), 'not running as root');
  await assert.rejects(
    aptInstall(
      ['x'],
      () => false,
      () => {},
    ),
    /cannot apt-get install x: not running as root/,
  );
});

test('an installed package runs no apt-get at all', { skip: !asRoot && 'needs root' }, async () => {
  const apt = fakeAptGet('present', 'exit 0');
  assert.equal(
    await aptInstall(
      ['x'],
      () => true,
      () => {},
    ),
    true,
  );
  assert.deepEqual(apt.calls(), []);
});

test('while another process holds the dpkg lock, the install waits and retries, then installs', { skip: !asRoot && 'needs root' }, async () => {
  assert.equal(aptUnavailable(), null);
  const policy = policyRcD();
  const apt = fakeAptGet('locked', `if [ "$n" -le 2 ]; then ${LOCKED}; fi; touch $STATE/installed`);
  const logged: string[] = [];
  assert.equal(await aptInstall(['fakepkg'], apt.installed, (m) => logged.push(m), { lockRetryMs: 20 }), true);
  assert.deepEqual(apt.calls(), ['install noninteractive', 'install noninteractive', 'install noninteractive']);
  assert.equal(logged.filter((l) => /another process holds the apt\/dpkg lock; retrying/.test(l)).length, 2, logged.join('\n'));
  assert.ok(
    logged.some((l) => l.startsWith('apt-get: E: Could not get lock')),
    'apt-get output is logged line by line',
  );
  assert.equal(policyRcD(), policy, 'policy-rc.d is left as it was');
});

test('an install that does not provide the package updates the package lists and tries again', { skip: !asRoot && 'needs root' }, async () => {
  const apt = fakeAptGet(
    'no-lists',
    'if [ "$1" = update ]; then touch $STATE/lists; exit 0; fi; if [ ! -e $STATE/lists ]; then echo "E: Unable to locate package fakepkg" >&2; exit 100; fi; touch $STATE/installed',
  );
  const logged: string[] = [];
  assert.equal(await aptInstall(['fakepkg'], apt.installed, (m) => logged.push(m)), true);
  assert.deepEqual(apt.calls(), ['install noninteractive', 'update noninteractive', 'install noninteractive']);
  assert.ok(
    logged.some((l) => /apt-get install exited with 100; updating the package lists/.test(l)),
    logged.join('\n'),
  );
});

test('the probe decides, not the exit code: a failed postinst that leaves the binary is not retried', { skip: !asRoot && 'needs root' }, async () => {
  const apt = fakeAptGet('postinst', 'touch $STATE/installed; echo "invoke-rc.d: could not start service" >&2; exit 1');
  assert.equal(await aptInstall(['fakepkg'], apt.installed, () => {}), true);
  assert.deepEqual(apt.calls(), ['install noninteractive']);
});

test('a lock held longer than lockWaitMs gives up and says the package is not installed', { skip: !asRoot && 'needs root' }, async () => {
  const apt = fakeAptGet('held', LOCKED);
  const logged: string[] = [];
  assert.equal(await aptInstall(['fakepkg'], apt.installed, (m) => logged.push(m), { lockWaitMs: 150, lockRetryMs: 30 }), false);
  const calls = apt.calls();
  assert.ok(calls.length >= 4, `retried: ${calls.join(', ')}`);
  assert.ok(calls.includes('update noninteractive'));
  assert.ok(
    logged.some((l) => /apt-get install fakepkg exited with 100/.test(l)),
    logged.join('\n'),
  );
});
