/**
 * Tests src/cli-help through the real `kvsql` command: `kvsql --help` lists every command and
 * every setting without a flag running into its variable; `kvsql help [words]` and `kvsql <words>
 * --help` / `-h` answer every command and subcommand with its usage, exit 0, and contact no shard
 * (no MySQL runs here: a command that tried would fail); an unknown command is a usage error (2).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { COMMANDS, COMMAND_GROUPS } from '../src/cli-help';
import { pickFreePort } from '../src/embedded/local-mysqld';
import { cliEnv, runCli } from './helpers/cli';

// Nothing listens there: a help request that reached for the shards would fail, not hang.
let env: NodeJS.ProcessEnv;
before(async () => {
  env = cliEnv({ KVSQL_EMBEDDED_BASE_PORT: String(await pickFreePort()) });
});

test('kvsql --help lists every command and subcommand, and a flag never runs into its variable', async () => {
  const r = await runCli(['--help'], env);
  assert.equal(r.code, 0, r.out);
  for (const c of COMMANDS)
    assert.match(r.out, new RegExp(`^  ${c.words.join(' ')} +${c.summary.replace(/[()]/g, '\\$&')}$`, 'm'), `--help lists "${c.words.join(' ')}"`);
  for (const g of ['token', 'slots', 'shards', 'rebalance', 'slot', 'help']) assert.ok(COMMAND_GROUPS.has(g), g);
  const settings = r.out.split('\n').filter((l) => /^ {2}--[a-z-]+=<value>/.test(l));
  assert.ok(settings.length > 30, 'the settings are listed too');
  for (const l of settings) assert.match(l, /^ {2}--[a-z-]+=<value> {2,}KVSQL_[A-Z_]+, default /, `a space between flag and variable: ${l}`);
  assert.match(r.out, /--auth-failures-per-minute=<value> {2,}KVSQL_AUTH_FAILURES_PER_MINUTE/);
});

test('kvsql help is kvsql --help; kvsql help help answers too', async () => {
  const [help, dashed, helpHelp] = await Promise.all([runCli(['help'], env), runCli(['--help'], env), runCli(['help', 'help'], env)]);
  assert.equal(help.code, 0, help.out);
  assert.equal(help.out, dashed.out);
  assert.equal(helpHelp.code, 0);
  assert.match(helpHelp.out, /^usage: kvsql help \[<command> \[<subcommand>\]\]\n/);
});

test('every command and subcommand answers --help, -h and kvsql help <words> with its usage, exit 0', async () => {
  for (const c of COMMANDS.filter((x) => x.words[0] !== 'help')) {
    const usage = new RegExp(`^usage: kvsql ${c.usage.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\n`);
    for (const args of [
      [...c.words, '--help'],
      [...c.words, '-h'],
      ['help', ...c.words],
    ]) {
      const r = await runCli(args, env);
      assert.equal(r.code, 0, `kvsql ${args.join(' ')}: ${r.out}`);
      assert.match(r.out, usage, `kvsql ${args.join(' ')}`);
      assert.doesNotMatch(r.out, /resolveConfig|needs a value|ECONNREFUSED/, `kvsql ${args.join(' ')}`);
    }
  }
  // With arguments or options before --help, as a user types it when unsure.
  const late = await runCli(['token', 'create', '--name', 'x', '--help'], env);
  assert.equal(late.code, 0, late.out);
  assert.match(late.out, /^usage: kvsql token create --name=NAME/);
  const slotKey = await runCli(['slot', 'user:42', '--help'], env);
  assert.equal(slotKey.code, 0, slotKey.out);
  assert.match(slotKey.out, /^usage: kvsql slot <key> \[--hex\]/);
});

test('a command group answers --help with each of its subcommands', async () => {
  for (const group of ['token', 'slots', 'shards']) {
    for (const args of [
      [group, '--help'],
      ['help', group],
    ]) {
      const r = await runCli(args, env);
      assert.equal(r.code, 0, `kvsql ${args.join(' ')}: ${r.out}`);
      for (const c of COMMANDS.filter((x) => x.words[0] === group)) assert.ok(r.out.includes(`kvsql ${c.usage}\n`), `kvsql ${args.join(' ')} shows ${c.usage}`);
    }
  }
});

test('an unknown command or subcommand is a usage error (exit 2) that lists the commands', async () => {
  for (const args of [
    ['help', 'nosuch'],
    ['slots', 'nosuch', '--help'],
    ['help', 'token', 'nosuch'],
  ]) {
    const r = await runCli(args, env);
    assert.equal(r.code, 2, `kvsql ${args.join(' ')}: ${r.out}`);
    assert.match(r.out, /no command ".*nosuch"; the commands are:\n {2}kvsql token create/);
  }
  const r = await runCli(['nosuch'], env);
  assert.equal(r.code, 2, r.out);
  assert.match(r.out, /unknown command "nosuch" \(commands: token, slots, shards, rebalance, slot, hashtags, backup, restore, binlog, help;/);
  // Refused before any shard is contacted: no connection error, the usage instead.
  const sub = await runCli(['slots', 'nosuch'], env);
  assert.equal(sub.code, 2, sub.out);
  assert.match(sub.out, /unknown command "slots nosuch"\nusage:\n {2}kvsql slots status\n/);
  assert.doesNotMatch(sub.out, /ECONNREFUSED/);
});
