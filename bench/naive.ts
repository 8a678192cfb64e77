/**
 * Owns starting and stopping the naive baseline server (bench/naive-server.ts) for the naive-*
 * scenarios: one child process on a free port, pointed at the store's own shards, preloaded with
 * the same key space and value size. Relies on store-processes for ports and the child's
 * lifetime (`setpriv --pdeathsig`). Must not touch the store's `kv` table: it owns `naive_kv`.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { KEY_PREFIX, type BenchContext } from './context';
import { DATA_DIR, freePort, GatewayProcess } from './store-processes';

const SERVER = path.join(__dirname, 'naive-server.js');
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));

export async function ensureNaive(ctx: BenchContext): Promise<{ base: string; pid: number }> {
  if (ctx.naive !== null) return ctx.naive;
  if (ctx.shardUrls.length === 0) throw new Error("the naive baseline needs the shards' URLs (with --url, pass --shard-urls)");
  const port = await freePort();
  fs.mkdirSync(path.join(DATA_DIR, 'logs'), { recursive: true });
  const logFile = path.join(DATA_DIR, 'logs', 'naive-server.log');
  const fd = fs.openSync(logFile, 'a');
  const argv = SETPRIV ? [SETPRIV, '--pdeathsig', 'TERM', process.execPath, SERVER] : [process.execPath, SERVER];
  const child = spawn(argv[0], argv.slice(1), {
    env: {
      ...process.env,
      NAIVE_PORT: String(port),
      NAIVE_SHARDS: ctx.shardUrls.join(','),
      NAIVE_KEYS: String(ctx.opts.keys),
      NAIVE_VALUE_SIZE: String(ctx.opts.valueSize),
      NAIVE_PREFIX: KEY_PREFIX,
    },
    stdio: ['ignore', fd, fd],
  });
  fs.closeSync(fd);
  const proc = new GatewayProcess('naive-server', child, `http://127.0.0.1:${port}`, logFile);
  await proc.waitReady(300_000);
  ctx.naive = { base: proc.base, pid: proc.pid, stop: async () => void (await proc.stop()) };
  return ctx.naive;
}
