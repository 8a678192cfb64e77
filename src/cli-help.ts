/**
 * Owns the help of the `kvsql` command: one row per command and subcommand (its usage line and
 * what it does), the overview that `kvsql --help` prints, and which text answers `kvsql help
 * <words>` or `kvsql <words> --help`. Relies on config/config for the server's settings. Pure
 * text: no I/O. The token and admin commands print the same rows in their usage errors, so the
 * help and the errors cannot drift apart.
 *
 *   kvsql [--name=value ...]          the server (the overview ends with every setting)
 *   kvsql <group> [<sub>] [args]      a row below; a group's help is its rows
 */
import { usage as settingsUsage } from './config/config';

export interface CommandHelp {
  /** The words that name it: ['slots', 'status'], or ['rebalance'] for a command without subcommands. */
  readonly words: readonly string[];
  /** Its usage line, without the leading `kvsql `. */
  readonly usage: string;
  /** One line for the overview. */
  readonly summary: string;
  /** More lines for its own help (arguments, options, what to do next). */
  readonly details: readonly string[];
}

/** What every admin command (slots, shards, rebalance, slot, hashtags) accepts besides its arguments. */
const ADMIN_OPTIONS = [
  "It reaches the shards with the server's settings: KVSQL_SHARDS / --shards=... for external shards,",
  'else the embedded shards on 127.0.0.1 (--embedded-shards, --embedded-base-port, --replicas), which',
  'run only while `kvsql` runs. KVSQL_MYSQL_TLS applies as for the gateways.',
];

const TOKEN_FILE = ['PATH defaults to $KVSQL_AUTH_FILE. Running gateways load the change on SIGHUP: kill -HUP <gateway pid>.'];

export const COMMANDS: readonly CommandHelp[] = [
  {
    words: ['token', 'create'],
    usage: 'token create --name=NAME --rights=read,write[,admin] [--prefix=P]... [--prefix-hex=HEX]... [--file=PATH]',
    summary: 'add a token to the token file and print it once',
    details: [
      'NAME: 1 to 64 of A-Z a-z 0-9 . _ : @ / -, unique in the file.',
      'read and write apply to keys starting with a --prefix (UTF-8 text; "" = every key) or a --prefix-hex',
      '(any bytes, e.g. 00ff); admin opens /metrics and /v1/slots and needs no prefix.',
      'The new token is printed once on stdout; the file keeps only its SHA-256.',
      ...TOKEN_FILE,
    ],
  },
  { words: ['token', 'list'], usage: 'token list [--file=PATH]', summary: 'list the tokens: ids, names, rights (never secrets)', details: TOKEN_FILE },
  {
    words: ['token', 'revoke'],
    usage: 'token revoke (--name=NAME | --id=ID) [--file=PATH]',
    summary: 'remove a token from the token file',
    details: TOKEN_FILE,
  },
  {
    words: ['slots', 'status'],
    usage: 'slots status',
    summary: 'the slot map: its epoch, slots per shard, ranges, moves in progress',
    details: ADMIN_OPTIONS,
  },
  {
    words: ['slots', 'move'],
    usage: 'slots move <lo>[-<hi>] <shard> [--slots-per-move=N]',
    summary: 'move a slot range to a shard (or finish an interrupted move)',
    details: [
      'Slots are 0-16383; <shard> is a shard index (kvsql slots status lists them). N defaults to 64.',
      "Safe to interrupt and run again: it resumes where the shards' rows say it stopped.",
      ...ADMIN_OPTIONS,
    ],
  },
  {
    words: ['shards', 'add'],
    usage: 'shards add <url> [--no-rebalance] [--slots-per-move=N]',
    summary: 'join an empty database to the store, then rebalance onto it',
    details: ["<url>: mysql://user:pass@host:3306/db, or a Galera group's node URLs joined by |.", ...ADMIN_OPTIONS],
  },
  {
    words: ['shards', 'drain'],
    usage: 'shards drain <shard> [--slots-per-move=N]',
    summary: 'move every slot off a shard, then forget it',
    details: ['Afterwards remove its URL from KVSQL_SHARDS (and restart gateways that list it) before deleting its database.', ...ADMIN_OPTIONS],
  },
  {
    words: ['rebalance'],
    usage: 'rebalance [--slots-per-move=N]',
    summary: 'even out the slots across the shards; finishes interrupted moves first',
    details: ADMIN_OPTIONS,
  },
  {
    words: ['slot'],
    usage: 'slot <key> [--hex]',
    summary: 'the slot of a key (CRC16 mod 16384, of its {tag} if it has one) and the shard that serves it',
    details: [
      '<key> is the key as UTF-8 text, or with --hex its bytes in hex. The slot of a key without a {tag} needs',
      "nothing; a tagged key's depends on the store's hashing rule (kvsql hashtags status), read from the",
      "shards, like the shard, which is read from the store's slot map.",
      ...ADMIN_OPTIONS,
    ],
  },
  {
    words: ['hashtags', 'status'],
    usage: 'hashtags status',
    summary: "each shard's key hashing rule: hash tags, whole key, or switching",
    details: [
      'Stores created by this version hash {tags} as Redis Cluster does; older ones hash whole keys until',
      '`kvsql hashtags enable`.',
      ...ADMIN_OPTIONS,
    ],
  },
  {
    words: ['hashtags', 'enable'],
    usage: 'hashtags enable',
    summary: 'switch a store that hashes whole keys to hash tags (offline: stop every gateway first)',
    details: [
      'Refused while any other session uses a shard database (a gateway: stop them all), without the',
      'PROCESS privilege (other sessions would be invisible) and while a slot move is unfinished. It marks every shard',
      "'switching' (gateways then refuse to start), moves the rows of braced keys whose slot changes to the",
      'shard of their new slot, then records hash tags. Interrupted: run it again, then start the gateways.',
      ...ADMIN_OPTIONS,
    ],
  },
  {
    words: ['backup'],
    usage: 'backup --to DIR',
    summary: 'a consistent online backup of every shard into a new directory DIR/<id>',
    details: [
      'One snapshot transaction per shard (START TRANSACTION WITH CONSISTENT SNAPSHOT), streamed while the',
      'store serves; refused while a slot move runs or was left unfinished (it holds the mover lock, so none',
      "starts meanwhile). Each shard's binlog position is recorded when its server keeps a binlog (the",
      'embedded shards do). backup.json, the manifest, is written last: a backup killed mid-way has none,',
      "and restore and verify refuse it. Prints the backup's directory on stdout.",
      ...ADMIN_OPTIONS,
    ],
  },
  {
    words: ['backup', 'verify'],
    usage: 'backup verify DIR [--scratch]',
    summary: "check a backup: manifest, every file's size and sha256, every row",
    details: [
      'DIR: a backup, or a directory of them (the newest complete one). --scratch also restores it into a',
      'throwaway local MariaDB and compares the row counts.',
    ],
  },
  { words: ['backup', 'list'], usage: 'backup list DIR', summary: 'the backups in DIR, newest first, and the incomplete ones', details: [] },
  {
    words: ['restore'],
    usage: 'restore --from DIR [--at TIME --binlogs ARCHIVE]',
    summary: 'restore a backup into empty shards; with --at, replay the binlog up to TIME',
    details: [
      'DIR: a backup, or a directory of them (the newest complete one). The targets are the shards as configured',
      '(KVSQL_SHARDS, one empty database per backed-up shard, in shard order), else the embedded shards under',
      '--data-dir, started by this command and stopped when it is done (no kvsql may run on that data dir).',
      'Every target must be empty; stop the gateways first. TIME: ISO 8601 with a zone (2026-12-07T18:00:05Z)',
      "or unix ms; binlog times have 1 s resolution, so the restore holds the commits before TIME's second.",
      'ARCHIVE: a directory kept by kvsql binlog archive. Take a new backup after a restore.',
      ...ADMIN_OPTIONS,
    ],
  },
  {
    words: ['binlog', 'archive'],
    usage: 'binlog archive --to ARCHIVE [--every=SECONDS]',
    summary: "copy each shard server's closed binlog files into ARCHIVE (once, or every SECONDS)",
    details: [
      'Each pass closes the current binlog file (FLUSH BINARY LOGS) and copies every closed file not yet there,',
      'over the replication protocol (mariadb-binlog --read-from-remote-server: the user needs REPLICATION SLAVE).',
      'The recovery point of restore --at is the last pass: run it with --every (e.g. 60) beside the store.',
      ...ADMIN_OPTIONS,
    ],
  },
  { words: ['help'], usage: 'help [<command> [<subcommand>]]', summary: "this help, or a command's (as does <command> --help)", details: [] },
];

/** The command groups, in the order of the table: token, slots, shards, rebalance, slot, backup, restore, binlog, help. */
export const COMMAND_GROUPS: ReadonlySet<string> = new Set(COMMANDS.map((c) => c.words[0]));

const line = (c: CommandHelp): string => `  kvsql ${c.usage}`;

/** `kvsql --help` and `kvsql help`: what kvsql is, its commands, then every server setting. */
export function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.words.join(' ').length)) + 2;
  const settings = settingsUsage().split('\n');
  return [
    `${settings[0]}                start the store`,
    '       kvsql <command> [<subcommand>] [arguments]',
    '',
    'Commands (kvsql help <command>, or kvsql <command> --help, for the arguments):',
    ...COMMANDS.map((c) => `  ${c.words.join(' ').padEnd(width)}${c.summary}`),
    ...settings.slice(1),
  ].join('\n');
}

/** The usage lines of a group (`token`, `slots`, ...), for its help and its usage errors. */
export function groupUsage(group: string): string {
  return ['usage:', ...COMMANDS.filter((c) => c.words[0] === group).map(line)].join('\n');
}

/**
 * The help that answers `words` (the command words before any option): the overview for none, a
 * group's rows for a group, one row with its details for a command. null: no such command.
 */
export function helpFor(words: readonly string[]): string | null {
  if (words.length === 0) return overview();
  const rows = COMMANDS.filter((c) => c.words[0] === words[0]);
  if (rows.length === 0) return null;
  if (rows.length === 1 && rows[0].words.length === 1) {
    // A command without subcommands: its arguments follow (kvsql slot <key> --help).
    return commandText(rows[0]);
  }
  const bare = rows.find((r) => r.words.length === 1);
  if (words.length === 1 && bare !== undefined) {
    // A command that also has subcommands (kvsql backup --to DIR; kvsql backup verify DIR): its own
    // text, then the others' usage lines.
    return commandText(bare) + ['', 'also:', ...rows.filter((r) => r !== bare).map((r) => `${line(r)}    ${r.summary}`)].join('\n') + '\n';
  }
  if (words.length === 1) {
    // Each subcommand with its own notes; the notes they all share once, at the end.
    const shared = rows[0].details.filter((d) => rows.every((r) => r.details.includes(d)));
    const own = (r: CommandHelp) => r.details.filter((d) => !shared.includes(d)).map((d) => `      ${d}`);
    return ['usage:', ...rows.flatMap((r) => [line(r), `      ${r.summary}`, ...own(r)]), ...(shared.length > 0 ? ['', ...shared] : [])].join('\n') + '\n';
  }
  const row = rows.find((r) => r.words[1] === words[1]);
  return row === undefined ? null : commandText(row);
}

function commandText(c: CommandHelp): string {
  return (
    [`usage: kvsql ${c.usage}`, '', c.summary[0].toUpperCase() + c.summary.slice(1) + '.', ...(c.details.length > 0 ? ['', ...c.details] : [])].join('\n') +
    '\n'
  );
}
