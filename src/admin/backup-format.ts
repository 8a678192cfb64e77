/**
 * Owns the on-disk form of a backup: the manifest (what was backed up, from where, at which
 * binlog position, with which checksums), the row file of each shard's `kv` table, the JSON of its
 * other tables, and writing the manifest so that only a finished backup ever has one. Pure file
 * I/O: no MySQL, no clock beyond what callers pass in. backup.ts writes these, restore.ts and
 * `kvsql backup verify|list` read them.
 *
 *   <parent>/<id>/                  one backup (id = UTC start time + 4 random hex digits)
 *     shard-<i>.rows                the kv rows of shard i (format below), streamed
 *     shard-<i>.tables.json         its other tables (kv_seq, kv_shard, kv_slots, ...), whole
 *     backup.json                   the manifest: written LAST, to a temporary name, fsynced,
 *                                   then renamed; no manifest = not a backup (killed mid-way)
 *
 * Row file: the magic line, then records, then an end record; the end record and the manifest's
 * sha256 both catch a truncated or damaged file.
 *
 *   "KVSQLBK1\n"
 *   | 0x01 | klen u16 | vlen u32 | version u64 | has_exp u8 | expires_at i64 | slot u16 | k | v |  (26 B + k + v)
 *   | 0x00 | rows u64 |                                                                            end
 *   (big-endian; expires_at is 0 when has_exp is 0)
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const MANIFEST = 'backup.json';
export const FORMAT = 'kvsql-backup/1';
const MAGIC = Buffer.from('KVSQLBK1\n');
const ROW = 0x01;
const END = 0x00;
const ROW_HEADER = 26;

export interface BinlogPosition {
  /** binlog file name on the server, e.g. binlog.000003 */
  file: string;
  /** byte offset in `file` of the first event after the snapshot */
  position: number;
  /** MariaDB @@gtid_binlog_pos when the snapshot was taken (informational: not snapshot-exact) */
  gtid: string | null;
}

export interface BackupFile {
  name: string;
  bytes: number;
  sha256: string;
}

export interface ShardManifest {
  index: number;
  /** The shard entry the backup read, password redacted. */
  url: string;
  /** The node the snapshot was taken on (host:port), and its database. */
  node: string;
  database: string;
  /** Where its binlog lives: the directory name `kvsql binlog archive` uses for this server. */
  serverKey: string;
  serverVersion: string;
  /** Unix ms on the shard's clock right after its snapshot began (expiry is judged on that clock). */
  snapshotAt: number;
  /** null: the server keeps no binlog (PITR impossible from this backup for this shard). */
  binlog: BinlogPosition | null;
  rows: number;
  files: BackupFile[];
}

export interface Manifest {
  format: typeof FORMAT;
  id: string;
  startedAt: number;
  endedAt: number;
  tools: Record<string, string>;
  /** The slot map the backup saw (it held the mover lock throughout: no move could run). */
  slotMap: { epoch: number; ranges: Array<[number, number, number]> };
  shards: ShardManifest[];
}

export class BackupFormatError extends Error {
  readonly code = 'KVSQL_BACKUP_INVALID';
}

export interface KvRow {
  k: Buffer;
  v: Buffer;
  /** BIGINT UNSIGNED, as its decimal text (exact beyond 2^53). */
  version: string;
  /** BIGINT, as decimal text; null = no TTL. */
  expiresAt: string | null;
  slot: number;
}

/** Streams rows into a row file, hashing as it goes. */
export class RowFileWriter {
  private readonly hash = crypto.createHash('sha256');
  private readonly out: fs.WriteStream;
  private bytesOut = 0;
  rows = 0;

  constructor(readonly file: string) {
    this.out = fs.createWriteStream(file, { flags: 'wx' });
    this.push(MAGIC);
  }

  get bytes(): number {
    return this.bytesOut;
  }

  private push(buf: Buffer): boolean {
    this.hash.update(buf);
    this.bytesOut += buf.length;
    return this.out.write(buf);
  }

  /**
   * A page of rows as one buffer and one write; resolves at once, or when the file stream has
   * drained (backpressure). Rows as the driver returns them: [k, v, version, expires_at, slot],
   * BIGINTs as numbers, or as decimal strings beyond 2^53.
   */
  async writePage(rows: readonly (readonly unknown[])[]): Promise<void> {
    let size = 0;
    for (const r of rows) size += ROW_HEADER + (r[0] as Buffer).length + (r[1] as Buffer).length;
    const page = Buffer.allocUnsafe(size);
    let at = 0;
    for (const r of rows) {
      const k = r[0] as Buffer;
      const v = r[1] as Buffer;
      page.writeUInt8(ROW, at);
      page.writeUInt16BE(k.length, at + 1);
      page.writeUInt32BE(v.length, at + 3);
      page.writeBigUInt64BE(BigInt(r[2] as number | string), at + 7);
      page.writeUInt8(r[3] === null ? 0 : 1, at + 15);
      page.writeBigInt64BE(r[3] === null ? 0n : BigInt(r[3] as number | string), at + 16);
      page.writeUInt16BE(Number(r[4]), at + 24);
      at += ROW_HEADER;
      at += k.copy(page, at);
      at += v.copy(page, at);
    }
    this.rows += rows.length;
    if (!this.push(page)) await new Promise<void>((resolve) => this.out.once('drain', resolve));
  }

  /** Writes the end record, flushes and fsyncs; the file's size and sha256. */
  async finish(): Promise<BackupFile> {
    const end = Buffer.allocUnsafe(9);
    end.writeUInt8(END, 0);
    end.writeBigUInt64BE(BigInt(this.rows), 1);
    this.push(end);
    await new Promise<void>((resolve, reject) => {
      this.out.once('error', reject);
      this.out.end(resolve);
    });
    fsyncPath(this.file);
    return { name: path.basename(this.file), bytes: this.bytesOut, sha256: this.hash.digest('hex') };
  }

  /** Closes without the end record (a failed backup); the file stays incomplete. */
  abort(): void {
    this.out.destroy();
  }
}

/** Reads a row file from start to end record; throws BackupFormatError on anything malformed or cut short. */
export async function* readRows(file: string): AsyncGenerator<KvRow> {
  const fh = await fs.promises.open(file, 'r');
  try {
    let buf = Buffer.alloc(0);
    let eof = false;
    const need = async (n: number): Promise<void> => {
      while (buf.length < n && !eof) {
        const chunk = Buffer.allocUnsafe(Math.max(1 << 20, n - buf.length));
        const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
        if (bytesRead === 0) eof = true;
        else buf = buf.length === 0 ? chunk.subarray(0, bytesRead) : Buffer.concat([buf, chunk.subarray(0, bytesRead)]);
      }
      if (buf.length < n) throw new BackupFormatError(`${path.basename(file)} ends in the middle of a record: the backup was cut short or the file damaged`);
    };
    await need(MAGIC.length);
    if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) throw new BackupFormatError(`${path.basename(file)} is not a kvsql row file`);
    buf = buf.subarray(MAGIC.length);
    let rows = 0;
    for (;;) {
      await need(1);
      const tag = buf[0];
      if (tag === END) {
        await need(9);
        const declared = Number(buf.readBigUInt64BE(1));
        if (declared !== rows) throw new BackupFormatError(`${path.basename(file)}: end record says ${declared} rows, the file holds ${rows}`);
        buf = buf.subarray(9);
        let trailing = buf.length > 0;
        if (!trailing) {
          try {
            await need(1);
            trailing = true;
          } catch (err) {
            if (!(err instanceof BackupFormatError)) throw err;
          }
        }
        if (trailing) throw new BackupFormatError(`${path.basename(file)} has bytes after its end record`);
        return;
      }
      if (tag !== ROW) throw new BackupFormatError(`${path.basename(file)}: unknown record type ${tag} after ${rows} rows`);
      await need(ROW_HEADER);
      const klen = buf.readUInt16BE(1);
      const vlen = buf.readUInt32BE(3);
      const version = buf.readBigUInt64BE(7).toString();
      const hasExp = buf.readUInt8(15) === 1;
      const exp = buf.readBigInt64BE(16).toString();
      const slot = buf.readUInt16BE(24);
      await need(ROW_HEADER + klen + vlen);
      // Copies: the rows outlive `buf`, which the next read replaces.
      const k = Buffer.from(buf.subarray(ROW_HEADER, ROW_HEADER + klen));
      const v = Buffer.from(buf.subarray(ROW_HEADER + klen, ROW_HEADER + klen + vlen));
      buf = buf.subarray(ROW_HEADER + klen + vlen);
      rows++;
      yield { k, v, version, expiresAt: hasExp ? exp : null, slot };
    }
  } finally {
    await fh.close();
  }
}

/** A table's rows as JSON: Buffers as {"b64": ...}; BIGINTs arrive as strings and stay exact. */
export interface TableDump {
  columns: string[];
  rows: unknown[][];
}

export function encodeCell(v: unknown): unknown {
  return Buffer.isBuffer(v) ? { b64: v.toString('base64') } : v;
}

export function decodeCell(v: unknown): unknown {
  return v !== null && typeof v === 'object' && typeof (v as { b64?: unknown }).b64 === 'string' ? Buffer.from((v as { b64: string }).b64, 'base64') : v;
}

export function writeJsonFile(file: string, value: unknown): BackupFile {
  const data = Buffer.from(JSON.stringify(value));
  fs.writeFileSync(file, data, { flag: 'wx' });
  fsyncPath(file);
  return { name: path.basename(file), bytes: data.length, sha256: crypto.createHash('sha256').update(data).digest('hex') };
}

export async function sha256File(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function fsyncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The manifest, atomically: a temporary file, fsynced, renamed to backup.json, the directory
 * fsynced. A process killed at any point leaves either no backup.json or a whole one.
 */
export function writeManifest(dir: string, m: Manifest): void {
  const tmp = path.join(dir, `.${MANIFEST}.tmp`);
  fs.writeFileSync(tmp, JSON.stringify(m, null, 2) + '\n');
  fsyncPath(tmp);
  fs.renameSync(tmp, path.join(dir, MANIFEST));
  fsyncPath(dir);
}

/** The manifest of the backup in `dir`; BackupFormatError when there is none (an interrupted backup) or it is not ours. */
export function readManifest(dir: string): Manifest {
  const file = path.join(dir, MANIFEST);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new BackupFormatError(`${dir} has no ${MANIFEST}: not a complete backup (one interrupted before its end leaves none)`);
    }
    throw err;
  }
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch {
    throw new BackupFormatError(`${file} is not valid JSON`);
  }
  if (m.format !== FORMAT || !Array.isArray(m.shards) || m.shards.length === 0) throw new BackupFormatError(`${file} is not a ${FORMAT} manifest`);
  return m;
}

/** Backups under `parent` (or `parent` itself when it is one), newest first; incomplete ones have no manifest. */
export function listBackups(parent: string): Array<{ dir: string; manifest: Manifest | null; error: string | null }> {
  if (fs.existsSync(path.join(parent, MANIFEST))) return [entryOf(parent)];
  const dirs = fs
    .readdirSync(parent, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => path.join(parent, e.name))
    .sort()
    .reverse();
  return dirs.map(entryOf);
}

function entryOf(dir: string): { dir: string; manifest: Manifest | null; error: string | null } {
  try {
    return { dir, manifest: readManifest(dir), error: null };
  } catch (err) {
    return { dir, manifest: null, error: (err as Error).message };
  }
}

/** `dir` itself when it holds a manifest, else its newest complete backup; BackupFormatError when neither. */
export function resolveBackupDir(dir: string): string {
  if (!fs.existsSync(dir)) throw new BackupFormatError(`${dir} does not exist`);
  if (fs.existsSync(path.join(dir, MANIFEST))) return dir;
  const complete = fs.statSync(dir).isDirectory() ? listBackups(dir).find((b) => b.manifest !== null) : undefined;
  if (complete === undefined) throw new BackupFormatError(`${dir} holds no complete backup (no ${MANIFEST} in it or in a directory below it)`);
  return complete.dir;
}
