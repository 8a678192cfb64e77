/**
 * Owns the harness's command line: every flag, its default and its check, resolved once and
 * frozen (the same habits as src/config/config.ts). Relies on nothing else in bench/.
 */

export const ALL_SCENARIOS = [
  'noop',
  'http-get',
  'http-put',
  'http-mixed',
  'naive-get',
  'naive-put',
  'ws-get',
  'ws-put',
  'ws-mixed',
  'ablation',
  'security',
  'latency-at-half-load',
  'concurrency',
  'redis',
  'list',
  'overload',
  'expiry',
] as const;
export type ScenarioName = (typeof ALL_SCENARIOS)[number];

/** What `npm run bench` runs with no --scenarios: everything that finishes in minutes. */
export const DEFAULT_SCENARIOS: readonly ScenarioName[] = ALL_SCENARIOS;

export interface BenchOptions {
  scenarios: ScenarioName[];
  /** Seconds of measured load per scenario (and per sub-scenario phase). */
  duration: number;
  /** HTTP keep-alive connections (autocannon) for http-* and noop. */
  connections: number;
  /** WebSocket connections for ws-*. */
  wsConnections: number;
  /** Ops in flight per WebSocket connection (pipeline depth). */
  depth: number;
  valueSize: number;
  keys: number;
  /** Fraction of GETs in the mixed scenarios, 0..1. */
  readRatio: number;
  runs: number;
  /** Target an existing store instead of starting one. */
  url: string | null;
  /** With --url: the store's Redis-protocol port (else the redis scenario is skipped). */
  redisPort: number | null;
  /** redis-benchmark's -t list for the redis scenario. */
  redisTests: string;
  /** redis-benchmark's -c (connections) for the redis scenario. */
  redisClients: number;
  /** With --url: a batching-off gateway for the ablation (otherwise ablation is skipped). */
  ablationUrl: string | null;
  /** With --url: shard mysql:// URLs for row counts (otherwise counts are skipped). */
  shardUrls: string[];
  /** With --url: the gateway's pid for RSS (otherwise RSS is skipped). */
  gatewayPid: number | null;
  expiryKeys: number;
  memoryKeys: number;
  /** Seconds the steady/storm sub-scenarios wait for physical deletion before giving up. */
  expiryTimeout: number;
  wsConcurrency: number;
  httpConcurrency: number;
  /** WebSocket connections per child load-generator process in the concurrency scenario. */
  connectionsPerProcess: number;
  /** Fraction of the measured peak used by latency-at-half-load. */
  loadFraction: number;
  /** overload: offered rate as a multiple of the measured PUT peak, connections, value size. */
  overloadFactor: number;
  overloadConnections: number;
  overloadValueSize: number;
  /** Keep the store's existing rows (default: empty the kv table of our own store at start). */
  keepData: boolean;
  /** Skip writing bench/results/. */
  noSave: boolean;
  /** A change-feed watcher on every key of the (new) gateway during the run (feed-probe.ts). */
  watch: boolean;
  /** A git ref whose build runs against this checkout's, alternating, in one run (compare.ts). */
  compare: string | null;
}

/** What --compare runs when --scenarios is not given: the four rows every data-path change quotes. */
export const COMPARE_SCENARIOS: readonly ScenarioName[] = ['http-get', 'http-put', 'ws-get', 'ws-put'];

export class OptionsError extends Error {
  override name = 'OptionsError';
}

interface Flag {
  name: string;
  doc: string;
  apply(o: BenchOptions, raw: string): void;
}

const int =
  (min: number, max: number) =>
  (raw: string, name: string): number => {
    const n = Number(raw.replace(/_/g, ''));
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new OptionsError(`--${name} must be an integer in ${min}..${max}, got "${raw}"`);
    return n;
  };
const num =
  (min: number, max: number) =>
  (raw: string, name: string): number => {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min || n > max) throw new OptionsError(`--${name} must be a number in ${min}..${max}, got "${raw}"`);
    return n;
  };
const httpUrl = (raw: string, name: string): string => {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new OptionsError(`--${name} must be a URL like http://127.0.0.1:8080, got "${raw}"`);
  }
  if (u.protocol !== 'http:') throw new OptionsError(`--${name} must start with http://`);
  return `${u.protocol}//${u.host}`;
};

const FLAGS: Flag[] = [
  {
    name: 'scenarios',
    doc: `comma-separated, default all; always run in this order: ${ALL_SCENARIOS.join(',')}`,
    apply(o, raw) {
      const list = raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      for (const s of list) {
        if (!(ALL_SCENARIOS as readonly string[]).includes(s)) throw new OptionsError(`unknown scenario "${s}" (known: ${ALL_SCENARIOS.join(', ')})`);
      }
      if (list.length === 0) throw new OptionsError('--scenarios names no scenario');
      o.scenarios = list as ScenarioName[];
    },
  },
  { name: 'duration', doc: 'seconds per scenario (default 10)', apply: (o, r) => (o.duration = num(0.5, 3600)(r, 'duration')) },
  { name: 'connections', doc: 'HTTP connections (default 64)', apply: (o, r) => (o.connections = int(1, 15000)(r, 'connections')) },
  { name: 'ws-connections', doc: 'WebSocket connections for ws-* (default 16)', apply: (o, r) => (o.wsConnections = int(1, 15000)(r, 'ws-connections')) },
  { name: 'depth', doc: 'WebSocket ops in flight per connection (default 256)', apply: (o, r) => (o.depth = int(1, 100000)(r, 'depth')) },
  { name: 'value-size', doc: 'value bytes (default 100)', apply: (o, r) => (o.valueSize = int(1, 16 * 1024 * 1024)(r, 'value-size')) },
  { name: 'keys', doc: 'key space (default 100000)', apply: (o, r) => (o.keys = int(1, 100_000_000)(r, 'keys')) },
  { name: 'read-ratio', doc: 'GET fraction in *-mixed (default 0.9)', apply: (o, r) => (o.readRatio = num(0, 1)(r, 'read-ratio')) },
  { name: 'runs', doc: 'repeat each scenario N times, report the median (default 1)', apply: (o, r) => (o.runs = int(1, 100)(r, 'runs')) },
  { name: 'url', doc: 'target an existing store, e.g. http://127.0.0.1:8080', apply: (o, r) => (o.url = httpUrl(r, 'url')) },
  { name: 'ablation-url', doc: 'with --url: a gateway started with KVSQL_BATCHING=false', apply: (o, r) => (o.ablationUrl = httpUrl(r, 'ablation-url')) },
  {
    name: 'shard-urls',
    doc: 'with --url: comma-separated mysql:// shard URLs (for row counts)',
    apply(o, raw) {
      o.shardUrls = raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      for (const u of o.shardUrls) if (!u.startsWith('mysql://')) throw new OptionsError(`--shard-urls: "${u}" must start with mysql://`);
    },
  },
  {
    name: 'redis-tests',
    doc: 'redis-benchmark tests of the redis scenario (default set,get,incr; set,get against builds before INCR); also evalsha (EVALSHA of a small script) and multi (MULTI/INCR/INCR/EXEC by ioredis), for builds that have them',
    apply(o, raw) {
      if (!/^[a-z]+(,[a-z]+)*$/.test(raw)) throw new OptionsError(`--redis-tests must be a comma-separated list of redis-benchmark tests, got "${raw}"`);
      o.redisTests = raw;
    },
  },
  {
    name: 'redis-clients',
    doc: 'redis-benchmark connections of the redis scenario (default 50)',
    apply: (o, r) => (o.redisClients = int(1, 10000)(r, 'redis-clients')),
  },
  {
    name: 'redis-port',
    doc: "with --url: the store's Redis-protocol port (KVSQL_REDIS_PORT) for the redis scenario",
    apply: (o, r) => (o.redisPort = int(1, 65535)(r, 'redis-port')),
  },
  { name: 'gateway-pid', doc: 'with --url: the gateway pid (for RSS)', apply: (o, r) => (o.gatewayPid = int(1, 2 ** 31)(r, 'gateway-pid')) },
  { name: 'expiry-keys', doc: 'keys for expiry steady and storm (default 1000000)', apply: (o, r) => (o.expiryKeys = int(1, 100_000_000)(r, 'expiry-keys')) },
  { name: 'memory-keys', doc: 'keys for expiry memory (default 5000000)', apply: (o, r) => (o.memoryKeys = int(1, 100_000_000)(r, 'memory-keys')) },
  {
    name: 'expiry-timeout',
    doc: 'seconds to wait for expired rows to be deleted (default 300)',
    apply: (o, r) => (o.expiryTimeout = num(1, 86400)(r, 'expiry-timeout')),
  },
  {
    name: 'ws-concurrency',
    doc: 'WebSocket connections in concurrency (default 10000)',
    apply: (o, r) => (o.wsConcurrency = int(0, 1_000_000)(r, 'ws-concurrency')),
  },
  {
    name: 'http-concurrency',
    doc: 'HTTP connections in concurrency (default 5000)',
    apply: (o, r) => (o.httpConcurrency = int(0, 15000)(r, 'http-concurrency')),
  },
  {
    name: 'connections-per-process',
    doc: 'WebSockets per load-generator child (default 5000)',
    apply: (o, r) => (o.connectionsPerProcess = int(1, 15000)(r, 'connections-per-process')),
  },
  {
    name: 'load-fraction',
    doc: 'fraction of peak for latency-at-half-load (default 0.5)',
    apply: (o, r) => (o.loadFraction = num(0.01, 1)(r, 'load-fraction')),
  },
  {
    name: 'overload-factor',
    doc: 'overload: offered PUT rate as a multiple of the measured peak (default 2)',
    apply: (o, r) => (o.overloadFactor = num(0.1, 100)(r, 'overload-factor')),
  },
  {
    name: 'overload-connections',
    doc: 'overload: HTTP connections for the open loop (default 4000)',
    apply: (o, r) => (o.overloadConnections = int(1, 15000)(r, 'overload-connections')),
  },
  {
    name: 'overload-value-size',
    doc: 'overload: PUT value bytes (default 65536)',
    apply: (o, r) => (o.overloadValueSize = int(1, 16 * 1024 * 1024)(r, 'overload-value-size')),
  },
  { name: 'keep-data', doc: "do not empty our own store's kv table at start", apply: (o) => (o.keepData = true) },
  { name: 'no-save', doc: 'do not write bench/results/', apply: (o) => (o.noSave = true) },
  {
    name: 'watch',
    doc: "keep a change-feed watcher on every key of the new build's gateway during the run, and report event delays",
    apply: (o) => (o.watch = true),
  },
  {
    name: 'compare',
    doc: `a git ref (commit, branch, HEAD~1): build it under bench/.builds and run it against this checkout, alternating, --runs rounds; default scenarios ${COMPARE_SCENARIOS.join(',')}`,
    apply(o, raw) {
      if (!/^[\w./~^@{}-]+$/.test(raw)) throw new OptionsError(`--compare must name a git ref, got "${raw}"`);
      o.compare = raw;
    },
  },
];

export function usage(): string {
  const lines = ['Usage: npm run bench -- [--flag=value ...]', ''];
  for (const f of FLAGS) lines.push(`  --${f.name.padEnd(24)} ${f.doc}`);
  return lines.join('\n');
}

export function parseOptions(argv: string[]): Readonly<BenchOptions> {
  const o: BenchOptions = {
    scenarios: [...DEFAULT_SCENARIOS],
    duration: 10,
    connections: 64,
    wsConnections: 16,
    // 16 x 256 = 4096 in flight: what the store's write pipeline holds at its defaults
    // (KVSQL_MAX_BATCH_OPS 512 x KVSQL_WRITES_IN_FLIGHT 4 x 2 shards). Fewer leaves it latency-bound:
    // 16 x 64 measured about half the ops/s.
    depth: 256,
    valueSize: 100,
    keys: 100_000,
    readRatio: 0.9,
    runs: 1,
    url: null,
    redisPort: null,
    redisTests: 'set,get,incr',
    redisClients: 50,
    ablationUrl: null,
    shardUrls: [],
    gatewayPid: null,
    expiryKeys: 1_000_000,
    memoryKeys: 5_000_000,
    expiryTimeout: 300,
    wsConcurrency: 10_000,
    httpConcurrency: 5_000,
    connectionsPerProcess: 5_000,
    loadFraction: 0.5,
    overloadFactor: 2,
    overloadConnections: 4000,
    overloadValueSize: 64 * 1024,
    keepData: false,
    noSave: false,
    watch: false,
    compare: null,
  };
  let scenariosGiven = false;
  for (const arg of argv) {
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(arg);
    const flag = m ? FLAGS.find((f) => f.name === m[1]) : undefined;
    if (!m || !flag) throw new OptionsError(`unknown argument "${arg}"\n\n${usage()}`);
    const boolean = flag.name === 'keep-data' || flag.name === 'no-save' || flag.name === 'watch';
    if (m[2] === undefined && !boolean) throw new OptionsError(`--${flag.name} needs a value (--${flag.name}=...)`);
    flag.apply(o, m[2] ?? '');
    if (flag.name === 'scenarios') scenariosGiven = true;
  }
  if (o.compare !== null) {
    if (o.url !== null) throw new OptionsError('--compare starts both stores itself: it does not take --url');
    if (!scenariosGiven) o.scenarios = [...COMPARE_SCENARIOS];
    const refused = o.scenarios.filter((s) => s === 'ablation' || s === 'security');
    if (refused.length > 0) throw new OptionsError(`--compare cannot run ${refused.join(', ')} (each needs a second gateway of one build on the same shards)`);
  }
  if (o.url === null && (o.ablationUrl !== null || o.shardUrls.length > 0 || o.gatewayPid !== null || o.redisPort !== null)) {
    throw new OptionsError('--ablation-url, --shard-urls and --gateway-pid describe an existing store: use them with --url');
  }
  return Object.freeze(o);
}

/**
 * A `--name=N` flag of a standalone bench script (galera-*, measure/*), else `def`: those scripts
 * take a few numbers and no scenario options, so they do not go through parseOptions.
 */
export function numberFlag(name: string, def: number, argv: readonly string[] = process.argv): number {
  const m = argv.find((a) => a.startsWith(`--${name}=`));
  return m ? Number(m.split('=')[1]) : def;
}

/** Runs a standalone bench script's `main`, then exits: 0 when it resolves, 1 (printing the error) when it throws. */
export function runScript(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
