/**
 * Owns configuration: every setting, its default, its parser, resolved once (flag, then env, then
 * the KVSQL_CONFIG file, then default), unknown keys rejected, the result frozen. Relies on nothing
 * else in kvsql. Used by the CLI, the gateway and the admin commands, in their own process or main
 * thread; shard workers must not import it: they receive their slice in workerData and never read
 * process.env.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

export interface Config {
  host: string;
  port: number;
  /** RESP (Redis protocol) port; null when turned off. */
  redisPort: number | null;
  redisMaxInflight: number;
  /** notify-keyspace-events at start, Redis's letters ('' = off). */
  redisNotifyKeyspaceEvents: string;
  /** client-output-buffer-limit pubsub: [hard bytes, soft bytes, soft seconds]; 0 turns one off. */
  redisPubsubBufferLimit: readonly [number, number, number];
  /** FLUSHDB and FLUSHALL are allowed on the Redis door (admin tokens only when auth is on). */
  redisFlush: boolean;
  dataDir: string;
  /**
   * External shards, one entry per shard; empty means "run the embedded cluster". An entry is one
   * mysql:// URL, or a Galera cluster's node URLs joined by `|` (see shardNodes).
   */
  shards: string[];
  embeddedShards: number;
  /** Nodes per embedded shard: 1 (a plain server) or an odd number (a Galera cluster). */
  replicas: number;
  embeddedBasePort: number;
  /** The embedded single-server shards keep a binlog (point-in-time recovery; DESIGN.md §8). */
  embeddedBinlog: boolean;
  maxValueBytes: number;
  batching: boolean;
  maxBatchOps: number;
  maxBatchBytes: number;
  readsInFlight: number;
  writesInFlight: number;
  queueLimit: number;
  queueBytes: number;
  queryTimeoutMs: number;
  opDeadlineMs: number;
  queueWaitMs: number;
  maxRetries: number;
  slotHoldMs: number;
  expiry: boolean;
  expiryTickMs: number;
  expiryHorizonMs: number;
  reapBatch: number;
  reapsInFlight: number;
  maxWheelKeys: number;
  expiryLockRetryMs: number;
  wsMaxInflight: number;
  /** The change feed: kv_feed rows written with every change, watchers served (DESIGN.md §16). */
  feed: boolean;
  feedPollMs: number;
  feedRetentionMs: number;
  feedMaxRows: number;
  feedMaxBytes: number;
  feedWatcherBufferBytes: number;
  shutdownTimeoutMs: number;
  logLevel: string;
  /** Token file; '' = auth off. */
  authFile: string;
  authFailuresPerMinute: number;
  allowInsecure: boolean;
  /** Certificate and key (PEM files) for HTTPS/WSS; both '' = clear text. */
  tlsCertFile: string;
  tlsKeyFile: string;
  mysqlTls: boolean;
  mysqlTlsCaFile: string;
  mysqlTlsVerify: boolean;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** The hard key limit: the schema's VARBINARY(1024). Not configurable. */
export const MAX_KEY_BYTES = 1024;
/** The largest value the store supports: tested, and within the embedded max_allowed_packet. */
export const MAX_SUPPORTED_VALUE_BYTES = 16 * 1024 * 1024;

type Parser<T> = (raw: string, name: string) => T;

const int =
  (min: number, max: number): Parser<number> =>
  (raw, name) => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new ConfigError(`${name} must be an integer in ${min}..${max}, got "${raw}"`);
    }
    return n;
  };
const bool: Parser<boolean> = (raw, name) => {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
};
const str: Parser<string> = (raw) => raw;
/** The node URLs of one shard entry: `mysql://a/db` or `mysql://a/db|mysql://b/db|mysql://c/db`. */
export function shardNodes(entry: string): string[] {
  return entry
    .split('|')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** A port, or off ("off", "false", "none", "no" or empty) to turn a listener off. */
const portOrOff: Parser<number | null> = (raw, name) => {
  if (['', 'off', 'false', 'none', 'no', 'null'].includes(raw.trim().toLowerCase())) return null;
  return int(0, 65535)(raw, name);
};
/** Redis's notify-keyspace-events letters (the meaning is checked in protocol/redis-notify). */
const notifyClasses: Parser<string> = (raw, name) => {
  if (!/^[Ag$lshzxeKEtmdn]*$/.test(raw)) throw new ConfigError(`${name}: invalid event class character in "${raw}"; use Redis's letters 'Ag$lshzxeKEtmdn'`);
  return raw;
};
/** Redis's memtoull: digits with an optional unit b, k (1000), kb (1024), m, mb, g, gb; case-insensitive. */
function memBytes(raw: string, name: string): number {
  const m = /^(\d+)(b|k|kb|m|mb|g|gb)?$/i.exec(raw);
  if (m === null) throw new ConfigError(`${name}: "${raw}" is not a size (e.g. 32mb, 8388608)`);
  const unit = { b: 1, k: 1e3, kb: 1024, m: 1e6, mb: 1024 ** 2, g: 1e9, gb: 1024 ** 3 }[(m[2] ?? 'b').toLowerCase() as 'b'];
  return Number(m[1]) * unit;
}
/** `<hard> <soft> <soft seconds>`, as the pubsub class of Redis's client-output-buffer-limit. */
const bufferLimit: Parser<readonly [number, number, number]> = (raw, name) => {
  const parts = raw.trim().split(/\s+/);
  if (parts.length !== 3) throw new ConfigError(`${name} must be "<hard> <soft> <soft seconds>" (e.g. "32mb 8mb 60"), got "${raw}"`);
  const seconds = int(0, 86_400)(parts[2], name);
  return Object.freeze([memBytes(parts[0], name), memBytes(parts[1], name), seconds] as const);
};
const urls: Parser<string[]> = (raw, name) => {
  const list = raw
    .split(',')
    .map((s) => shardNodes(s).join('|'))
    .filter((s) => s.length > 0);
  for (const u of list.flatMap(shardNodes)) {
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      throw new ConfigError(`${name}: "${u}" is not a URL (expected mysql://user:pass@host:3306/db)`);
    }
    if (parsed.protocol !== 'mysql:') throw new ConfigError(`${name}: "${u}" must start with mysql://`);
    if (parsed.pathname.length <= 1) throw new ConfigError(`${name}: "${u}" names no database`);
  }
  return list;
};
const replicaCount: Parser<number> = (raw, name) => {
  const n = int(1, 7)(raw, name);
  // Two nodes cannot lose one and keep a majority (quorum): it buys no availability.
  if (n !== 1 && n % 2 === 0)
    throw new ConfigError(`${name} must be 1 or an odd number (3, 5, 7): a Galera cluster of ${n} cannot keep a majority after losing half`);
  return n;
};
const host: Parser<string> = (raw, name) => {
  if (!/^[A-Za-z0-9.:\-[\]]+$/.test(raw)) throw new ConfigError(`${name}: "${raw}" is not a host name or address`);
  return raw;
};
const level: Parser<string> = (raw, name) => {
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(raw)) throw new ConfigError(`${name}: unknown log level "${raw}"`);
  return raw;
};

interface Setting<K extends keyof Config> {
  key: K;
  env: string;
  parse: Parser<Config[K]>;
  def: Config[K];
  doc: string;
}

const s = <K extends keyof Config>(key: K, env: string, parse: Parser<Config[K]>, def: Config[K], doc: string): Setting<K> => ({ key, env, parse, def, doc });

/** Every setting. README's configuration table states the same facts; keep them in sync by hand. */
export const SETTINGS = [
  s('host', 'KVSQL_HOST', host, '127.0.0.1', 'address to listen on'),
  s('port', 'KVSQL_PORT', int(0, 65535), 8080, 'HTTP/WebSocket port (0 picks a free one)'),
  s('redisPort', 'KVSQL_REDIS_PORT', portOrOff, 6380, 'Redis-protocol (RESP2/RESP3) port on the same host; "off" turns it off (0 picks a free one)'),
  s(
    'redisMaxInflight',
    'KVSQL_REDIS_MAX_INFLIGHT',
    int(1, 1_000_000),
    1024,
    'ops in flight per Redis connection; past it the socket is not read until replies are written',
  ),
  s(
    'redisNotifyKeyspaceEvents',
    'KVSQL_REDIS_NOTIFY_KEYSPACE_EVENTS',
    notifyClasses,
    '',
    "Redis keyspace notifications at start, Redis's letters (e.g. KEA); '' = off; CONFIG SET changes it per gateway",
  ),
  s(
    'redisPubsubBufferLimit',
    'KVSQL_REDIS_PUBSUB_BUFFER_LIMIT',
    bufferLimit,
    Object.freeze([32 * 1024 * 1024, 8 * 1024 * 1024, 60] as const),
    'a Redis subscriber is disconnected when its unsent output passes <hard>, or stays over <soft> longer than <seconds> (Redis client-output-buffer-limit pubsub)',
  ),
  s(
    'redisFlush',
    'KVSQL_REDIS_FLUSH',
    bool,
    false,
    'allow FLUSHDB and FLUSHALL on the Redis door (they delete every key of the store; with auth on, admin tokens only)',
  ),
  s('dataDir', 'KVSQL_DATA_DIR', str, './data', 'where the embedded shards keep their data'),
  s(
    'shards',
    'KVSQL_SHARDS',
    urls,
    [],
    'comma-separated shards, each a mysql:// URL or a Galera cluster as `|`-separated node URLs; empty runs the embedded cluster',
  ),
  s('embeddedShards', 'KVSQL_EMBEDDED_SHARDS', int(1, 64), 2, 'number of embedded MySQL shards'),
  s('replicas', 'KVSQL_REPLICAS', replicaCount, 1, 'nodes per embedded shard: 1, or 3/5/7 for a Galera cluster per shard'),
  s('embeddedBasePort', 'KVSQL_EMBEDDED_BASE_PORT', int(1024, 65000), 13306, 'embedded shard i listens on base+i'),
  s(
    'embeddedBinlog',
    'KVSQL_EMBEDDED_BINLOG',
    bool,
    true,
    'embedded shards keep a binlog for point-in-time recovery (kvsql restore --at); false saves its write cost',
  ),
  s('maxValueBytes', 'KVSQL_MAX_VALUE_BYTES', int(1, MAX_SUPPORTED_VALUE_BYTES), 1024 * 1024, 'largest value accepted'),
  s('batching', 'KVSQL_BATCHING', bool, true, 'gather ops into multi-row statements (false: one op per transaction)'),
  s('maxBatchOps', 'KVSQL_MAX_BATCH_OPS', int(1, 4096), 512, 'ops per batch'),
  s(
    'maxBatchBytes',
    'KVSQL_MAX_BATCH_BYTES',
    int(1024, 64 * 1024 * 1024),
    4 * 1024 * 1024,
    'value bytes per write batch (sent hex-escaped: keep 2x under max_allowed_packet)',
  ),
  s('readsInFlight', 'KVSQL_READS_IN_FLIGHT', int(1, 64), 4, 'read batches in flight per shard'),
  s('writesInFlight', 'KVSQL_WRITES_IN_FLIGHT', int(1, 64), 4, 'write transactions in flight per shard'),
  s('queueLimit', 'KVSQL_QUEUE_LIMIT', int(1, 1_000_000), 50_000, 'ops outstanding per shard before 503'),
  s('queueBytes', 'KVSQL_QUEUE_BYTES', int(1024 * 1024, 64 * 1024 * 1024 * 1024), 256 * 1024 * 1024, 'value bytes of PUTs outstanding per shard before 503'),
  s('queryTimeoutMs', 'KVSQL_QUERY_TIMEOUT_MS', int(100, 600_000), 10_000, 'per-statement timeout (a timed-out connection is destroyed)'),
  s(
    'opDeadlineMs',
    'KVSQL_OP_DEADLINE_MS',
    int(500, 600_000),
    5000,
    'every op is answered within this many ms of arriving, whatever MySQL does (503, or OUTCOME_UNKNOWN for a write whose COMMIT was sent)',
  ),
  s('queueWaitMs', 'KVSQL_QUEUE_WAIT_MS', int(0, 600_000), 500, 'refuse an op (503) when its estimated queue wait on its shard is longer (0: no time bound)'),
  s('maxRetries', 'KVSQL_MAX_RETRIES', int(0, 20), 4, 'retries of a batch after deadlock, lock wait timeout or lost connection'),
  s('slotHoldMs', 'KVSQL_SLOT_HOLD_MS', int(10, 60_000), 5000, 'longest a write to a slot being moved (fenced) is held before a 503'),
  s('expiry', 'KVSQL_EXPIRY', bool, true, 'run the expirer (physical deletion of expired rows)'),
  s(
    'expiryTickMs',
    'KVSQL_EXPIRY_TICK_MS',
    int(10, 10_000),
    100,
    'expiry wheel resolution and tick (the tick fires on slot boundaries; a key is reaped at most about one tick after it is due)',
  ),
  s('expiryHorizonMs', 'KVSQL_EXPIRY_HORIZON_MS', int(1000, 3_600_000), 60_000, 'how far ahead the wheel holds keys'),
  s('reapBatch', 'KVSQL_REAP_BATCH', int(1, 100_000), 2000, 'rows per overdue sweep page'),
  s('reapsInFlight', 'KVSQL_REAPS_IN_FLIGHT', int(1, 1_000_000), 4000, 'reaps in flight per shard (the expiry work budget)'),
  s('maxWheelKeys', 'KVSQL_MAX_WHEEL_KEYS', int(1000, 100_000_000), 2_000_000, 'keys the wheel may hold per shard'),
  s('expiryLockRetryMs', 'KVSQL_EXPIRY_LOCK_RETRY_MS', int(100, 600_000), 2000, 'how often the expirer lease is taken or renewed (it lasts 3x this)'),
  s('wsMaxInflight', 'KVSQL_WS_MAX_INFLIGHT', int(1, 1_000_000), 4096, 'ops in flight per WebSocket; past it, ops are answered KV_ERR_BUSY'),
  s(
    'feed',
    'KVSQL_FEED',
    bool,
    true,
    'change feed: every change also writes a kv_feed row in its transaction, and watchers (WebSocket watch, GET /v1/watch) are served; off: writes cost what they did without it, watch is refused',
  ),
  s(
    'feedPollMs',
    'KVSQL_FEED_POLL_MS',
    int(1, 10_000),
    25,
    "how often a shard's feed is polled while this gateway has watchers (also right after this gateway's own commits)",
  ),
  s(
    'feedRetentionMs',
    'KVSQL_FEED_RETENTION_MS',
    int(1000, 366 * 24 * 3_600_000),
    3_600_000,
    'feed rows older than this are deleted (a cursor older than what is kept gets KV_ERR_CURSOR_EXPIRED)',
  ),
  s('feedMaxRows', 'KVSQL_FEED_MAX_ROWS', int(1000, 1_000_000_000), 1_000_000, 'feed rows kept per shard at most'),
  s(
    'feedMaxBytes',
    'KVSQL_FEED_MAX_BYTES',
    int(1024 * 1024, 1024 * 1024 * 1024 * 1024),
    256 * 1024 * 1024,
    'feed bytes kept per shard at most (estimated from the newest rows: key length + 48 bytes a row)',
  ),
  s(
    'feedWatcherBufferBytes',
    'KVSQL_FEED_WATCHER_BUFFER_BYTES',
    int(64 * 1024, 1024 * 1024 * 1024),
    4 * 1024 * 1024,
    'a watcher with more than this many bytes of events unsent is cut off (KV_ERR_WATCH_TOO_SLOW, with its cursor)',
  ),
  s('shutdownTimeoutMs', 'KVSQL_SHUTDOWN_TIMEOUT_MS', int(0, 600_000), 30_000, 'how long SIGTERM waits for in-flight work'),
  s('logLevel', 'KVSQL_LOG_LEVEL', level, 'info', 'pino log level'),
  s('authFile', 'KVSQL_AUTH_FILE', str, '', 'token file (one JSON line per token, see README); set = auth on, reloaded on SIGHUP'),
  s(
    'authFailuresPerMinute',
    'KVSQL_AUTH_FAILURES_PER_MINUTE',
    int(1, 1_000_000),
    60,
    'failed token checks allowed per source address per minute (burst the same); past it 429',
  ),
  s(
    'allowInsecure',
    'KVSQL_ALLOW_INSECURE',
    bool,
    false,
    'allow listening on a non-loopback address with auth off (anyone who reaches the port can read and write every key)',
  ),
  s('tlsCertFile', 'KVSQL_TLS_CERT_FILE', str, '', 'PEM certificate (chain) for HTTPS/WSS; with KVSQL_TLS_KEY_FILE turns TLS on; reloaded on SIGHUP'),
  s('tlsKeyFile', 'KVSQL_TLS_KEY_FILE', str, '', 'PEM private key for KVSQL_TLS_CERT_FILE'),
  s('mysqlTls', 'KVSQL_MYSQL_TLS', bool, false, 'actors connect to the MySQL shards over TLS'),
  s('mysqlTlsCaFile', 'KVSQL_MYSQL_TLS_CA_FILE', str, '', "PEM CA(s) the shards' certificates must chain to ('' = Node's built-in CAs)"),
  s('mysqlTlsVerify', 'KVSQL_MYSQL_TLS_VERIFY', bool, true, "verify the shard's certificate and host name (false: encrypted but open to a man in the middle)"),
] as const;

const BY_ENV = new Map<string, Setting<keyof Config>>(SETTINGS.map((x) => [x.env, x as Setting<keyof Config>]));
const BY_FLAG = new Map<string, Setting<keyof Config>>(
  SETTINGS.map((x) => [x.env.slice('KVSQL_'.length).toLowerCase().replace(/_/g, '-'), x as Setting<keyof Config>]),
);
/** Env variables we read that are not settings. */
const OTHER_ENV = new Set(['KVSQL_CONFIG']);
/** Variables for the test suite and the benchmark, never settings of the server. */
const OTHER_PREFIXES = ['KVSQL_TEST_', 'KVSQL_BENCH_'];

/**
 * Resolve from `--name=value` flags, then KVSQL_* env, then the JSON file named by KVSQL_CONFIG (keys are
 * env names, e.g. {"KVSQL_SHARDS": "..."}), then defaults. Throws ConfigError naming the bad setting.
 */
export function resolveConfig(argv: string[] = [], env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const raw = new Map<string, string>();
  const file = env.KVSQL_CONFIG;
  if (file) {
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ConfigError(`KVSQL_CONFIG: cannot read ${file}: ${(err as Error).message}`);
    }
    for (const [k, v] of Object.entries(json)) {
      if (!BY_ENV.has(k)) throw new ConfigError(`KVSQL_CONFIG: unknown setting "${k}" (known: ${[...BY_ENV.keys()].join(', ')})`);
      // KVSQL_SHARDS may be a list whose items are URLs or lists of a Galera cluster's node URLs.
      raw.set(k, Array.isArray(v) ? v.map((x) => (Array.isArray(x) ? x.join('|') : String(x))).join(',') : String(v));
    }
  }
  for (const [k, v] of Object.entries(env)) {
    if (!k.startsWith('KVSQL_') || v === undefined || OTHER_ENV.has(k) || OTHER_PREFIXES.some((p) => k.startsWith(p))) continue;
    if (!BY_ENV.has(k)) throw new ConfigError(`unknown setting ${k} (known: ${[...BY_ENV.keys()].join(', ')})`);
    raw.set(k, v);
  }
  const args = parseArgv(argv);
  if (args.help || args.version) throw new ConfigError('--help and --version are answered by the kvsql command, not resolveConfig');
  for (const [env, value] of args.values) raw.set(env, value);
  const out: Record<string, unknown> = {};
  for (const x of SETTINGS) {
    const v = raw.get(x.env);
    out[x.key] = v === undefined ? x.def : x.parse(v, x.env);
  }
  const cfg = out as unknown as Config;
  cfg.dataDir = resolve(cfg.dataDir);
  return Object.freeze(cfg);
}

export interface ParsedArgv {
  help: boolean;
  version: boolean;
  /** [env name, raw value] of each setting given as a flag, in order. */
  values: Array<[string, string]>;
}

/**
 * The command line, with node:util parseArgs: `--name=value` or `--name value` for each setting
 * (the env name without KVSQL_, lower case, dashes), `--help`/`-h`, `--version`/`-v`. Anything else
 * is a ConfigError naming the argument.
 */
export function parseArgv(argv: string[]): ParsedArgv {
  for (const arg of argv) {
    if (arg === '-h' || arg === '-v') continue;
    const m = /^--([^=]+)(=.*)?$/s.exec(arg);
    if (m === null) {
      // A value after `--name`; parseArgs decides whether one was expected.
      if (!arg.startsWith('-')) continue;
    } else if (BY_FLAG.has(m[1]) || m[1] === 'help' || m[1] === 'version') continue;
    throw new ConfigError(`unknown argument "${arg}" (flags are --name=value, e.g. --port=8080; see kvsql --help; known: ${[...BY_FLAG.keys()].join(', ')})`);
  }
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean', short: 'v' },
  };
  for (const flag of BY_FLAG.keys()) options[flag] = { type: 'string' };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: false, tokens: true });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (see kvsql --help)`);
  }
  const values: Array<[string, string]> = [];
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== 'option' || t.name === 'help' || t.name === 'version') continue;
    values.push([BY_FLAG.get(t.name)!.env, t.value ?? '']);
  }
  return { help: parsed.values.help === true, version: parsed.values.version === true, values };
}

/** `kvsql --help`: every setting with its flag, variable, default and meaning. */
export function usage(): string {
  const lines = [
    'Usage: kvsql [--name=value ...]',
    '',
    'A key-value store on sharded MySQL: HTTP and WebSocket on --port, Redis protocol on --redis-port.',
    'Without --shards it starts an embedded cluster of local MySQL/MariaDB shards under --data-dir.',
    'Each setting is a flag, a KVSQL_* environment variable, or a key of the JSON file named by KVSQL_CONFIG',
    '(in that order of precedence).',
    '',
    '  -h, --help       show this help',
    '  -v, --version    show the version',
    '',
  ];
  // Two spaces after the longest flag, so a flag never runs into its variable's name.
  const width = Math.max(...[...BY_FLAG.keys()].map((f) => `  --${f}=<value>`.length)) + 2;
  for (const [flag, x] of BY_FLAG) {
    const def = Array.isArray(x.def) ? x.def.join(',') : x.def === null ? 'off' : String(x.def);
    lines.push(`  --${flag}=<value>`.padEnd(width) + `${x.env}, default ${def === '' ? '(empty)' : def}`);
    lines.push(' '.repeat(width) + x.doc);
  }
  return lines.join('\n') + '\n';
}

const BY_KEY = new Map<string, Setting<keyof Config>>(SETTINGS.map((x) => [x.key, x as Setting<keyof Config>]));

/**
 * Overrides for tests and embedding: defaults, then the given values; same validation rules (each
 * value goes through its setting's parser, as if it came from the environment), so an embedder
 * cannot configure what the CLI would refuse, e.g. maxValueBytes above the supported 16 MiB.
 */
export function configFrom(overrides: Partial<Config>): Readonly<Config> {
  const out: Record<string, unknown> = { ...resolveConfig([], {}) };
  for (const [k, v] of Object.entries(overrides)) {
    const setting = BY_KEY.get(k);
    if (setting === undefined) throw new ConfigError(`unknown setting "${k}"`);
    if (v === undefined) continue;
    out[k] = setting.parse(Array.isArray(v) ? v.join(',') : String(v), k);
  }
  const cfg = out as unknown as Config;
  cfg.dataDir = resolve(cfg.dataDir);
  return Object.freeze(cfg);
}
