#!/usr/bin/env node
/**
 * Owns the `kvsql` command: resolve config, bring up the shards (external URLs, or the embedded
 * cluster when none are configured), start the gateway, and stop everything it started on
 * SIGTERM/SIGINT with exit code 0. Relies on config, embedded-cluster and server.
 */
import { resolveConfig, ConfigError } from './gateway/config';
import { createLogger, startServer } from './gateway/server';
import { UwsFallbackError } from './gateway/uws';
import { startEmbeddedCluster, type EmbeddedCluster } from './embedded/embedded-cluster';

async function main(): Promise<void> {
  let config;
  try {
    config = resolveConfig(process.argv.slice(2));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`kvsql: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  let cluster: EmbeddedCluster | null = null;
  let urls = config.shards;
  if (urls.length === 0) {
    log.info({ shards: config.embeddedShards, replicas: config.replicas, dataDir: config.dataDir }, 'starting embedded MySQL shards');
    cluster = await startEmbeddedCluster({
      shards: config.embeddedShards,
      dataDir: config.dataDir,
      basePort: config.embeddedBasePort,
      replicas: config.replicas,
      log: (msg) => log.info({}, msg),
    });
    urls = cluster.urls;
    log.info({ urls }, 'embedded MySQL shards ready');
  }
  let server;
  try {
    server = await startServer(config, urls, log);
  } catch (err) {
    log.error({ err: (err as Error).message }, 'kvsql failed to start');
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
        log.error({ err: (err as Error).message }, 'error while stopping');
        process.exit(1);
      }
    })();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  if (err instanceof UwsFallbackError) process.stderr.write(`kvsql: ${err.message}\n`);
  else process.stderr.write(`kvsql: ${(err as Error)?.stack ?? err}\n`);
  process.exit(1);
});
