/**
 * Owns running the real `kvsql` CLI (dist/src/cli.js) from tests: its environment, and a command
 * run to its end. The CLI refuses unknown KVSQL_* variables, so a developer's KVSQL_TEST_* (or any
 * other of ours) must not reach it: the child gets the parent's environment without them, plus
 * the settings the test gives.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

export const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli.js');

/** The parent's environment without any KVSQL_*, plus `settings`. */
export function cliEnv(settings: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KVSQL_')) env[k] = v;
  return { ...env, ...settings };
}

/** `kvsql <args>` with `env` (from cliEnv), to its exit (SIGKILLed after timeoutMs): its code and output. */
export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}
