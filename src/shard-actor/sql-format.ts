/**
 * Owns turning a statement template and its parameters into the SQL text sent to the shard, on
 * the hot path (every read batch, write transaction and reap). Pure: no I/O. Relies on nothing.
 * Must not be given a template whose SQL text holds a `?` that is not a placeholder (every
 * STATEMENTS text is plain SQL: no string literal contains one).
 *
 * Why not mysql2's own formatting: it runs a generic escaper over every value (type probes for
 * dates, temporals, objects, then a regular expression scan of the template), ~15% of a shard
 * worker's CPU in the ws-put profile. Here a template is split at its placeholders once and each
 * value takes the one branch its type needs; the text is the same as mysql2 would send
 * (test/shard-actor/sql-format.test.ts compares them).
 *
 *   "SELECT ... IN (?,?)"  ->  parts ["SELECT ... IN (", ",", ")"]  (cached per template)
 *   parts[0] + v0 + parts[1] + v1 + parts[2]
 */

const parts = new Map<string, string[]>();
/** Templates are a fixed set (one per statement and batch size), so this cache stays small. */
const MAX_TEMPLATES = 4096;

function partsOf(template: string): string[] {
  let p = parts.get(template);
  if (p === undefined) {
    p = template.split('?');
    if (parts.size >= MAX_TEMPLATES) parts.clear();
    parts.set(template, p);
  }
  return p;
}

// \x1a (Ctrl-Z) is one of the characters MySQL's own escaping turns into \Z: matching it is the point.
// eslint-disable-next-line no-control-regex
const ESCAPE = /[\0\b\t\n\r\x1a"'\\]/g;
const ESCAPED: Record<string, string> = {
  '\0': '\\0',
  '\b': '\\b',
  '\t': '\\t',
  '\n': '\\n',
  '\r': '\\r',
  '\x1a': '\\Z',
  '"': '\\"',
  "'": "\\'",
  '\\': '\\\\',
};

/** One value as a SQL literal. */
export function literal(v: unknown): string {
  if (v instanceof Uint8Array) return `X'${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}'`;
  switch (typeof v) {
    case 'number':
      if (!Number.isFinite(v)) throw new TypeError(`cannot send ${v} to MySQL`);
      return String(v);
    case 'bigint':
      return String(v);
    case 'string':
      return `'${v.replace(ESCAPE, (c) => ESCAPED[c])}'`;
    case 'boolean':
      return v ? 'true' : 'false';
    case 'undefined':
      return 'NULL';
    default:
      if (v === null) return 'NULL';
      throw new TypeError(`cannot send a ${Object.prototype.toString.call(v)} to MySQL as a statement parameter`);
  }
}

/** `template` with its i-th `?` replaced by params[i] as a literal. Throws when the counts differ. */
export function formatSql(template: string, params: readonly unknown[]): string {
  const p = partsOf(template);
  if (p.length - 1 !== params.length) throw new RangeError(`statement has ${p.length - 1} placeholders, got ${params.length} parameters`);
  let out = p[0];
  for (let i = 0; i < params.length; i++) out += literal(params[i]) + p[i + 1];
  return out;
}
