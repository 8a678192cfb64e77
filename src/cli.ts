#!/usr/bin/env node
/**
 * Owns the `kvsql` command: resolve config, bring up the shards (external URLs, or the embedded
 * cluster when none are configured), start the gateway, and stop everything it started on
 * SIGTERM/SIGINT with exit code 0; SIGHUP reloads the token file and TLS certificate without
 * dropping connections. `kvsql token ...` edits the token file instead (token-cli); `kvsql slots|shards|rebalance|slot`
 * runs the admin commands (admin/commands); `kvsql backup|restore|binlog` the backup commands
 * (admin/backup-commands); `kvsql help` and every command's `--help` are
 * answered from cli-help. Relies on config, embedded-cluster, server, token-cli and cli-help.
 */
import { resolveConfig, ConfigError, parseArgv } from './config/config';
import { COMMAND_GROUPS, COMMANDS, helpFor, overview } from './cli-help';
import { createLogger, startServer } from './gateway/server';
import { UwsFallbackError } from './gateway/uws';
import { startEmbeddedCluster, type EmbeddedCluster } from './embedded/embedded-cluster';
import { ADMIN_COMMANDS, rebalanceSet, runAdmin, UsageError } from './admin/commands';
import { ShardSet } from './admin/shard-set';
import { BACKUP_COMMANDS, runBackupCommand } from './admin/backup-commands';
import { tokenCommand } from './token-cli';
import { checkExposure } from './gateway/auth';
import { serverTls } from './gateway/tls';
import { probePort } from './gateway/port-probe';

/**
 * `kvsql help [words]`, and `kvsql <command> ... --help` (or -h) for every command: its usage on
 * stdout, exit 0; an unknown command or subcommand is a usage error (exit 2). False: not a help
 * request, run the command.
 */
function answerHelp(args: string[]): boolean {
  const first = args[0];
  const asked = first === 'help' || (first !== undefined && COMMAND_GROUPS.has(first) && args.some((a) => a === '--help' || a === '-h'));
  if (!asked) return false;
  const words = (first === 'help' ? args.slice(1) : args).filter((a) => !a.startsWith('-'));
  const text = helpFor(words);
  if (text === null) {
    process.stderr.write(`kvsql: no command "${words.slice(0, 2).join(' ')}"; the commands are:\n${COMMANDS.map((c) => `  kvsql ${c.usage}`).join('\n')}\n`);
    process.exitCode = 2;
  } else process.stdout.write(text);
  return true;
}

async function main(): Promise<void> {
  const first = process.argv[2];
  if (answerHelp(process.argv.slice(2))) return;
  if (first !== undefined && !first.startsWith('-') && !COMMAND_GROUPS.has(first)) {
    process.stderr.write(
      `kvsql: unknown command "${first}" (commands: ${[...COMMAND_GROUPS].join(', ')}; kvsql --help lists them, and the server's --name=value settings)\n`,
    );
    process.exitCode = 2;
    return;
  }
  if (first === 'token') {
    process.exitCode = tokenCommand(
      process.argv.slice(3),
      process.env,
      (s) => process.stdout.write(s),
      (s) => process.stderr.write(s),
    );
    return;
  }
  if (first !== undefined && (ADMIN_COMMANDS.has(first) || BACKUP_COMMANDS.has(first))) {
    try {
      process.exitCode = ADMIN_COMMANDS.has(first) ? await runAdmin(process.argv.slice(2)) : await runBackupCommand(process.argv.slice(2));
    } catch (err) {
      process.stderr.write(`kvsql: ${(err as Error).message}\n`);
      process.exitCode = err instanceof UsageError || err instanceof ConfigError ? 2 : 1;
    }
    return;
  }
  // Until the server is up a SIGHUP must not kill the process (Node's default for it).
  let reload: () => void = () => undefined;
  process.on('SIGHUP', () => reload());
  let config;
  try {
    const argv = parseArgv(process.argv.slice(2));
    if (argv.help) {
      process.stdout.write(overview());
      return;
    }
    if (argv.version) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      process.stdout.write(`kvsql ${(require('../../package.json') as { version: string }).version}\n`);
      return;
    }
    config = resolveConfig(process.argv.slice(2));
    if (config.mysqlTls && config.shards.length === 0) {
      throw new ConfigError('KVSQL_MYSQL_TLS applies to external shards (KVSQL_SHARDS); the embedded cluster listens on loopback only, in clear');
    }
    // Before the embedded cluster starts: these refusals should come at once.
    checkExposure(config, config.host, config.redisPort === null ? 'HTTP/WebSocket' : 'HTTP/WebSocket and Redis');
    serverTls(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`kvsql: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  // Busy ports are refused before the embedded shards take seconds to start (startServer checks
  // the HTTP port again right before it listens; the Redis door's own listen refuses a busy port).
  try {
    await probePort(config.host, config.port, 'KVSQL_PORT', '--port');
    if (config.redisPort !== null) await probePort(config.host, config.redisPort, 'KVSQL_REDIS_PORT', '--redis-port');
  } catch (err) {
    process.stderr.write(`kvsql: ${(err as Error).message}\n`);
    process.exit(1);
  }
  const log = createLogger(config.logLevel);
  let cluster: EmbeddedCluster | null = null;
  let urls = config.shards;
  if (urls.length === 0) {
    log.info({ shards: config.embeddedShards, replicas: config.replicas, dataDir: config.dataDir }, 'starting embedded MySQL shards');
    try {
      cluster = await startEmbeddedCluster({
        shards: config.embeddedShards,
        dataDir: config.dataDir,
        basePort: config.embeddedBasePort,
        replicas: config.replicas,
        binlog: config.embeddedBinlog,
        log: (msg) => log.info({}, msg),
      });
    } catch (err) {
      startFailed('the embedded MySQL shards did not start', err);
      return;
    }
    urls = cluster.urls;
    log.info({ urls }, 'embedded MySQL shards ready');
  }
  // Embedded, more shards than the data dir had: the new local databases join the store, and
  // the slots are rebalanced in the background once the server serves.
  let joined: number[] = [];
  try {
    if (cluster) joined = await joinNewEmbeddedShards(urls, (msg) => log.info({}, msg));
  } catch (err) {
    log.error({ err: (err as Error).message }, 'kvsql failed to add the new embedded shards');
    await cluster?.stop();
    process.exitCode = 1;
    return;
  }
  let server;
  try {
    server = await startServer(config, urls, log);
  } catch (err) {
    log.error({ err }, 'kvsql failed to start');
    startFailed('the gateway did not start', err);
    if (cluster) await cluster.stop();
    process.exitCode = 1;
    return;
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    void (async () => {
      try {
        await server.close();
        if (cluster) await cluster.stop();
        process.exit(0);
      } catch (err) {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      }
    })();
  };
  if (joined.length > 0) {
    log.info({ joined }, 'rebalancing slots onto the new embedded shards in the background (kvsql slots status shows progress)');
    rebalanceInBackground(urls, log, () => void server.pool.refreshMap()).catch((err) =>
      log.error({ err: (err as Error).message }, 'background rebalance stopped; run `kvsql rebalance` to finish it'),
    );
  }
  reload = () => {
    log.info({ signal: 'SIGHUP' }, 'reloading tokens and TLS certificate');
    void server.reload().then((errors) => {
      if (errors.length === 0) log.info({}, 'reload done');
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/**
 * A failed start on stderr, exit code 1: what failed and the error's first line (which says what
 * to do) come first, then any detail (a server's log tail), then the same line again, so that
 * neither the head nor the tail of the output buries it. No stack: these are expected failures.
 */
function startFailed(what: string, err: unknown): void {
  const [first, ...detail] = ((err as Error)?.message ?? String(err)).trim().split('\n');
  const summary = `kvsql: ${what}: ${first}\n`;
  process.stderr.write(detail.length === 0 ? summary : `${summary}${detail.join('\n')}\n${summary}`);
  process.exitCode = 1;
}

/** Databases of the embedded cluster that are empty while others hold the store join it. */
async function joinNewEmbeddedShards(urls: string[], log: (msg: string) => void): Promise<number[]> {
  const set = await ShardSet.open(urls).catch(() => null); // a brand-new data dir: nothing to join
  if (set === null) return [];
  try {
    const memberUrls = new Set([...set.members.values()].map((m) => m.url));
    const fresh = urls.filter((u) => !memberUrls.has(u));
    if (fresh.length === 0) return [];
    await set.lockMovers();
    const joined: number[] = [];
    for (const url of fresh) {
      const index = await set.addShard(url);
      log(`embedded shard at ${url} joined the store as shard ${index}`);
      joined.push(index);
    }
    await set.publishPeers();
    return joined;
  } finally {
    await set.close();
  }
}

/** Moves slots onto the joined shards; `moved` after each range (this process's gateway re-reads the map). */
async function rebalanceInBackground(urls: string[], log: ReturnType<typeof createLogger>, moved: () => void): Promise<void> {
  const set = await ShardSet.open(urls);
  try {
    let last = 0;
    const p = await rebalanceSet(set, new Set(), 64, (pr) => {
      moved();
      if (Date.now() - last > 5000 || pr.unitsDone === pr.unitsTotal) {
        last = Date.now();
        log.info({ slotsDone: pr.slotsDone, slotsTotal: pr.slotsTotal, rows: pr.rows }, 'rebalance progress');
      }
    });
    if (p !== null) log.info({ slots: p.slotsTotal, rows: p.rows }, 'rebalance done');
  } finally {
    await set.close();
  }
}

main().catch((err) => {
  if (err instanceof UwsFallbackError) process.stderr.write(`kvsql: ${err.message}\n`);
  else process.stderr.write(`kvsql: ${(err as Error)?.stack ?? err}\n`);
  process.exit(1);
});
