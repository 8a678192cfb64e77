/**
 * Owns running the real `kvsql` CLI (dist/src/cli.js) from tests: its environment, and a command
 * run to its end. The CLI refuses unknown KVSQL_* variables, so a developer's KVSQL_TEST_* (or any
 * other of ours) must not reach it: the child gets the parent's environment without them, plus
 * the settings the test gives.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { waitFor } from './wait';

export const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli.js');

/** The parent's environment without any KVSQL_*, plus `settings`. */
export function cliEnv(settings: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KVSQL_')) env[k] = v;
  return { ...env, ...settings };
}

/**
 * `kvsql <args>` with `env` (from cliEnv), to its exit (SIGKILLed after timeoutMs): its code, its
 * output (stdout and stderr as they arrived) and its stderr alone (its order across the two pipes
 * is not kept).
 */
export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => {
      out += c.toString();
      err += c.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

export interface CliStore {
  readonly pid: number;
  /** Its stdout and stderr so far. */
  output(): string;
  /** Resolves to the exit code once it exited. */
  readonly exited: Promise<number | null>;
  /** SIGTERM, then its exit code. */
  stop(): Promise<number | null>;
}

/**
 * `kvsql` as a server with `env` (KVSQL_PORT must be set), once GET /readyz on that port answers
 * 200. Rejects with its output when it exits first or is not ready in time (then it is killed).
 */
export async function startCliStore(env: NodeJS.ProcessEnv, readyTimeoutMs = 120_000): Promise<CliStore> {
  const child = spawn(process.execPath, [CLI], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  let code: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve((code = c))));
  const store: CliStore = {
    pid: child.pid!,
    output: () => out,
    exited,
    async stop() {
      if (code === undefined) child.kill('SIGTERM');
      return exited;
    },
  };
  await waitFor(
    async () => {
      if (code !== undefined) throw new Error(`kvsql exited (code ${code}) before it was ready:\n${out.slice(-3000)}`);
      return (
        (await fetch(`http://127.0.0.1:${env.KVSQL_PORT}/readyz`).then(
          (r) => r.status,
          () => 0,
        )) === 200
      );
    },
    { timeoutMs: readyTimeoutMs, intervalMs: 200, message: () => `kvsql ready:\n${out.slice(-3000)}` },
  ).catch(async (err: unknown) => {
    if (code === undefined) {
      child.kill('SIGKILL');
      await exited;
    }
    throw err;
  });
  return store;
}
