/**
 * Tests src/token-cli: a mistake in the arguments of `kvsql token create` is a usage error that
 * names the argument (exit 2, the file untouched), while a token file that does not load is still
 * blamed on the file (exit 1). Through tokenCommand, and once through the real `kvsql` command.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tokenCommand } from '../src/token-cli';
import { cliEnv, runCli } from './helpers/cli';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvsql-token-cli-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function run(...args: string[]): { code: number; out: string; err: string } {
  let out = '';
  let err = '';
  const code = tokenCommand(
    args,
    {},
    (s) => (out += s),
    (s) => (err += s),
  );
  return { code, out, err };
}

test('a bad argument to token create is named, exit 2, and nothing is written', () => {
  const file = path.join(dir, 'args.jsonl');
  const cases: Array<[string[], RegExp]> = [
    [['--name', 'x', '--rights', 'reed', '--prefix', 'a/'], /^kvsql token: --rights: unknown right "reed" \(read, write, admin\)\n/],
    [['--name', 'x', '--rights', 'read,admn', '--prefix', 'a/'], /^kvsql token: --rights: unknown right "admn"/],
    [['--name', 'x', '--rights', 'read'], /^kvsql token: --rights read needs at least one --prefix or --prefix-hex \(--prefix "" for every key\)\n/],
    [['--name', 'x', '--rights', 'write', '--prefix-hex', 'zz'], /^kvsql token: --prefix-hex "zz" is not hex bytes/],
    [['--name', 'x', '--rights', 'write', '--prefix-hex', 'abc'], /^kvsql token: --prefix-hex "abc" is not hex bytes/],
    [['--name', 'a b', '--rights', 'admin'], /^kvsql token: --name "a b": 1 to 64 of A-Z a-z 0-9 \. _ : @ \/ -\n/],
    [['--name', 'n'.repeat(65), '--rights', 'admin'], /^kvsql token: --name "n{65}": 1 to 64/],
  ];
  for (const [args, message] of cases) {
    const r = run('create', `--file=${file}`, ...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, message);
    assert.doesNotMatch(r.err, /token file is not valid/);
    assert.match(r.err, /\nusage:\n {2}kvsql token create /, 'the usage follows');
    assert.equal(r.out, '', 'no token printed');
    assert.equal(fs.existsSync(file), false, 'nothing written');
  }
  // The same arguments, right, do create a token.
  const ok = run('create', `--file=${file}`, '--name', 'x', '--rights', 'read,admin', '--prefix-hex', '00ff');
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /^kvsql_[0-9a-f]{8}_/);
});

test("a token file that does not load is still the file's fault (exit 1)", () => {
  const file = path.join(dir, 'broken.jsonl');
  fs.writeFileSync(file, '{"id":"zz"}\n');
  const r = run('create', `--file=${file}`, '--name', 'x', '--rights', 'admin');
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, /^kvsql token: the token file is not valid: line 1: "id" must be 8 lowercase hex digits\n$/);
  assert.equal(fs.readFileSync(file, 'utf8'), '{"id":"zz"}\n');
});

test('kvsql token create with a misspelt right: the argument is named, exit 2', async () => {
  const file = path.join(dir, 'cli.jsonl');
  const r = await runCli(['token', 'create', '--name', 'svc', '--rights', 'reed', '--prefix', 'a/'], cliEnv({ KVSQL_AUTH_FILE: file }));
  assert.equal(r.code, 2, r.out);
  assert.match(r.out, /^kvsql token: --rights: unknown right "reed"/);
  assert.equal(fs.existsSync(file), false);
});
