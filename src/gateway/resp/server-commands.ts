/**
 * Owns the Redis door's connection and server commands, answered without the shards: PING, ECHO,
 * QUIT, SELECT, HELLO, AUTH, CLIENT, INFO, CONFIG (CONFIG SET is pub/sub's: pubsub-commands.ts).
 * Relies on the connection's API (its session fields, the door's guard, connections and port),
 * protocol/resp and errors.ts. Must not touch sockets or the pool; credentials are the guard's to
 * judge (guard.ts).
 */
import { hostname } from 'node:os';
import * as resp from '../../protocol/resp';
import { RespMap, type RespValue } from '../../protocol/resp';
import { intArg, lc } from './args';
import type { RowTuple } from './command-api';
import type { Conn } from './connection';
import { ERR_NOT_INTEGER, unknownSubcommand, wrongArgs } from './errors';
import { configSet, inSubscribedMode, subscribedPing } from './pubsub-commands';

type Handler = (c: Conn, args: Buffer[]) => void;

/** The Redis version kvsql answers as (HELLO, INFO): the command syntax it follows is Redis 7.2's. */
export const REDIS_COMPAT_VERSION = '7.2.0';
// From dist/src/gateway/resp/ to the package root.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const KVSQL_VERSION: string = require('../../../../package.json').version;

const ping: Handler = (c, a) => {
  if (a.length > 2) return c.reply(wrongArgs('ping'));
  if (c.sub !== null && inSubscribedMode(c)) return c.reply(subscribedPing(a));
  c.reply(a.length === 2 ? resp.bulk(a[1]) : resp.PONG);
};

const select: Handler = (c, a) => {
  const n = intArg(a[1]);
  if (n === null) return c.reply(ERR_NOT_INTEGER);
  c.reply(n === 0 ? resp.OK : resp.error('ERR DB index is out of range'));
};

const auth: Handler = (c, a) => {
  if (a.length < 2 || a.length > 3) return c.reply(wrongArgs('auth'));
  const denied = c.srv.guard.authenticate(c, a.length === 3 ? a[1].toString('utf8') : 'default', a[a.length - 1]);
  c.reply(denied === null ? resp.OK : resp.error(denied));
};

const HELLO_FIELDS = (c: Conn): RespMap =>
  new RespMap([
    ['server', 'kvsql'],
    ['version', REDIS_COMPAT_VERSION],
    ['proto', c.proto],
    ['id', c.id],
    ['mode', 'standalone'],
    ['role', 'master'],
    ['modules', []],
  ]);

const hello: Handler = (c, args) => {
  let proto = c.proto;
  if (args.length > 1) {
    const v = intArg(args[1]);
    if (v === null) return c.reply(resp.error('ERR Protocol version is not an integer or out of range'));
    if (v !== 2 && v !== 3) return c.reply(resp.error('NOPROTO unsupported protocol version'));
    proto = v;
  }
  let name: string | null = null;
  for (let i = 2; i < args.length; i++) {
    const opt = lc(args[i]);
    if (opt === 'auth' && i + 2 < args.length) {
      const denied = c.srv.guard.authenticate(c, args[i + 1].toString('utf8'), args[i + 2]);
      if (denied !== null) return c.reply(resp.error(denied));
      i += 2;
    } else if (opt === 'setname' && i + 1 < args.length) {
      name = args[++i].toString('utf8');
      if (!validClientName(name)) return c.reply(resp.error('ERR Client names cannot contain spaces, newlines or special characters.'));
    } else return c.reply(resp.error(`ERR Syntax error in HELLO option '${args[i].toString('utf8', 0, 40)}'`));
  }
  c.proto = proto;
  if (name !== null) c.name = name;
  c.reply(resp.encode(HELLO_FIELDS(c), c.proto));
};

const validClientName = (s: string): boolean => /^[!-~]*$/.test(s);

const client: Handler = (c, args) => {
  const sub = lc(args[1]);
  switch (sub) {
    case 'setname':
      if (args.length !== 3) return c.reply(wrongArgs('client|setname'));
      if (!validClientName(args[2].toString('utf8'))) return c.reply(resp.error('ERR Client names cannot contain spaces, newlines or special characters.'));
      c.name = args[2].length === 0 ? null : args[2].toString('utf8');
      return c.reply(resp.OK);
    case 'getname':
      return c.reply(c.name === null ? resp.nil(c.proto) : resp.bulkText(c.name));
    case 'id':
      return c.reply(resp.integer(c.id));
    case 'setinfo':
      if (args.length !== 4) return c.reply(wrongArgs('client|setinfo'));
      if (!['lib-name', 'lib-ver'].includes(lc(args[2]))) return c.reply(resp.error(`ERR Unrecognized option '${args[2].toString('utf8', 0, 40)}'`));
      return c.reply(resp.OK);
    case 'info':
      return c.reply(resp.bulkText(clientLine(c) + '\n'));
    case 'list':
      return c.reply(resp.bulkText([...c.srv.conns].map((x) => clientLine(x) + '\n').join('')));
    case 'no-evict':
    case 'no-touch':
      return c.reply(resp.OK);
    default:
      return c.reply(unknownSubcommand(args[1], 'CLIENT'));
  }
};

const clientLine = (c: Conn): string =>
  `id=${c.id} addr=${c.remoteAddress} name=${c.name ?? ''} db=0 sub=${c.sub?.channels.size ?? 0} psub=${c.sub?.patterns.size ?? 0} ssub=${c.sub?.shardChannels.size ?? 0} resp=${c.proto} user=${c.user ?? 'default'}`;

const STARTED = Date.now();

const info: Handler = (c, args) => {
  const srv = c.srv;
  const sections: Record<string, string[]> = {
    server: [
      `redis_version:${REDIS_COMPAT_VERSION}`,
      `kvsql_version:${KVSQL_VERSION}`,
      'redis_mode:standalone',
      `os:${process.platform} ${process.arch}`,
      `process_id:${process.pid}`,
      `hostname:${hostname()}`,
      `tcp_port:${srv.port}`,
      `uptime_in_seconds:${Math.floor((Date.now() - STARTED) / 1000)}`,
    ],
    clients: [`connected_clients:${srv.conns.size}`],
    // Every acknowledged write is a committed MySQL transaction: the closest Redis terms are an
    // append-only file with fsync on every write.
    persistence: ['loading:0', 'aof_enabled:1', 'aof_fsync:always'],
    replication: ['role:master', 'connected_slaves:0'],
    keyspace: [],
  };
  const wanted = args.slice(1).map(lc);
  const all = wanted.length === 0 || wanted.some((w) => w === 'all' || w === 'everything' || w === 'default');
  const parts: string[] = [];
  for (const [name, lines] of Object.entries(sections)) {
    if (!all && !wanted.includes(name)) continue;
    parts.push(`# ${name[0].toUpperCase()}${name.slice(1)}\r\n${lines.map((l) => l + '\r\n').join('')}`);
  }
  c.reply(resp.bulkText(parts.join('\r\n')));
};

/** CONFIG GET answers what clients and redis-benchmark ask; kvsql's own settings are KVSQL_*. */
const CONFIG_VALUES: Array<[string, string]> = [
  ['save', ''],
  ['appendonly', 'yes'],
  ['appendfsync', 'always'],
  ['databases', '1'],
  ['maxmemory', '0'],
  ['timeout', '0'],
];

const config: Handler = (c, args) => {
  const sub = lc(args[1]);
  if (sub === 'get') {
    if (args.length < 3) return c.reply(wrongArgs('config|get'));
    const out: Array<[string, RespValue]> = [];
    const values = [...CONFIG_VALUES, ...c.srv.pubsub.configValues()];
    for (const p of args.slice(2)) {
      const re = globToRegExp(lc(p));
      for (const [k, v] of values) if (re.test(k) && !out.some((o) => o[0] === k)) out.push([k, v]);
      if (re.test('port') && !out.some((o) => o[0] === 'port')) out.push(['port', String(c.srv.port)]);
    }
    return c.reply(resp.encode(new RespMap(out), c.proto));
  }
  if (sub === 'resetstat') return c.reply(resp.OK);
  if (sub === 'set') return configSet(c, args);
  if (sub === 'rewrite') return c.reply(resp.error(`ERR CONFIG ${sub.toUpperCase()} is not supported by kvsql; configure it with KVSQL_* settings`));
  c.reply(unknownSubcommand(args[1], 'CONFIG'));
};

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (const ch of glob) re += ch === '*' ? '.*' : ch === '?' ? '.' : ch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${re}$`);
}

/** [name, handler, arity, flags, first key, last key, step, in MULTI] as COMMAND shows them (Redis 7's). */
export const SERVER_COMMANDS: ReadonlyArray<RowTuple<Conn>> = [
  ['ping', ping, -1, ['fast'], 0, 0, 0],
  ['echo', (c, a) => c.reply(resp.bulk(a[1])), 2, ['fast'], 0, 0, 0],
  ['quit', (c) => c.reply(resp.OK, true), -1, ['noscript', 'loading', 'stale', 'fast', 'no_auth', 'allow_busy'], 0, 0, 0, 'control'],
  ['select', select, 2, ['loading', 'stale', 'fast'], 0, 0, 0],
  ['hello', hello, -1, ['noscript', 'loading', 'stale', 'fast', 'no_auth', 'allow_busy'], 0, 0, 0, 'refused'],
  ['auth', auth, -2, ['noscript', 'loading', 'stale', 'fast', 'no_auth', 'allow_busy'], 0, 0, 0, 'refused'],
  ['client', client, -2, ['noscript', 'loading', 'stale'], 0, 0, 0],
  ['info', info, -1, ['loading', 'stale'], 0, 0, 0],
  ['config', config, -2, ['noscript', 'loading', 'stale'], 0, 0, 0],
];
