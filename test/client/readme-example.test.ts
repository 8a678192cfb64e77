/**
 * Tests the README's "Use it from your app" as a newcomer follows it: another project installs
 * this checkout with `npm install /path/to/kvsql`, runs the README's program unchanged (only the
 * store's port differs) against a real store and prints what the README says it prints; the same
 * code type-checks as TypeScript (`.mts`, module node16) against the package's types. Also the
 * README's ways to get the `kvsql` command: `npx kvsql` in the checkout and `npm link`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startTestStore, type TestStore } from '../helpers/store';
import { cliEnv } from '../helpers/cli';

const ROOT = path.join(__dirname, '..', '..', '..');
const run = promisify(execFile);
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-app-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The README's section `## title`, up to the next `## `. */
function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `README has a "${title}" section`);
  const end = README.indexOf('\n## ', start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

/** The fenced blocks of `lang` in `text`, in order. */
function blocks(text: string, lang: string): string[] {
  return [...text.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]);
}

let store: TestStore;
before(async () => {
  store = await startTestStore();
});
after(() => store?.close());

test("the README's client program runs from another project after npm install /path/to/kvsql, and prints what the README shows", async () => {
  const app = section('Use it from your app');
  const [install, shown] = blocks(app, 'sh');
  assert.match(install, /^npm install \/path\/to\/kvsql /);
  const [program] = blocks(app, 'js');
  const url = 'ws://127.0.0.1:8080/v1/ws';
  assert.equal(program.split(url).length, 2, 'the program connects to the default URL once');
  const expected = shown.split('\n');
  assert.equal(expected[0], '$ node app.mjs');

  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'my-app', version: '1.0.0', private: true }));
  await run('npm', ['install', '--no-audit', '--no-fund', '--offline', ROOT], { cwd: dir });
  assert.match(JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).dependencies.kvsql, /^file:/);

  fs.writeFileSync(path.join(dir, 'app.mjs'), program.replace(url, `ws://127.0.0.1:${store.port}/v1/ws`));
  const { stdout, stderr } = await run(process.execPath, ['app.mjs'], { cwd: dir, timeout: 30_000 });
  assert.equal(stderr, '');
  assert.equal(stdout, expected.slice(1).join('\n'));
  assert.equal(await store.rowCount(), 0, 'the program deleted its key');
});

test("the README's client program type-checks as TypeScript (.mts, module node16) in that project", async () => {
  const [program] = blocks(section('Use it from your app'), 'js');
  assert.ok(fs.existsSync(path.join(dir, 'node_modules', 'kvsql')), 'installed by the previous test');
  fs.writeFileSync(path.join(dir, 'app.mts'), program);
  fs.writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'node16',
        moduleResolution: 'node16',
        target: 'es2022',
        strict: true,
        noEmit: true,
        types: ['node'],
        typeRoots: [path.join(ROOT, 'node_modules', '@types')],
      },
      files: ['app.mts'],
    }),
  );
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = await run(process.execPath, [tsc, '-p', dir], { cwd: dir }).catch((e: { stdout: string }) => ({ stdout: e.stdout, failed: true }));
  assert.ok(!('failed' in r), `tsc: ${r.stdout}`);
});

test('the kvsql command: npx kvsql in the checkout, and kvsql on the PATH after npm link', async () => {
  const version = `kvsql ${JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version}\n`;
  assert.ok((fs.statSync(path.join(ROOT, 'dist', 'src', 'cli.js')).mode & 0o111) !== 0, 'npm run build leaves the bin executable');
  // --no: never reach for the registry; the checkout's own bin must answer.
  const npx = await run('npx', ['--no', '--', 'kvsql', '--version'], { cwd: ROOT, env: cliEnv() });
  assert.equal(npx.stdout, version);
  // npm link into a throwaway prefix (not this machine's global one): what `npm link` does.
  const prefix = path.join(dir, 'prefix');
  await run('npm', ['link', '--no-audit', '--no-fund', '--offline'], { cwd: ROOT, env: { ...cliEnv(), npm_config_prefix: prefix } });
  const linked = await run('kvsql', ['help', 'slot'], { env: { ...cliEnv(), PATH: `${path.join(prefix, 'bin')}${path.delimiter}${process.env.PATH}` } });
  assert.match(linked.stdout, /^usage: kvsql slot <key> \[--hex\]\n/);
});
