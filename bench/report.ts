/**
 * Owns presenting results: the terminal table, the JSON document and a self-contained HTML page
 * with inline SVG bar charts, written under bench/results/ with timestamped names plus
 * latest.json / latest.html. Relies on result.ts. Ratios are computed here, once all rows exist.
 */
import fs from 'node:fs';
import path from 'node:path';
import { MACHINE, type CpuUse } from './proc-stats';
import type { Row } from './result';

export interface RunInfo {
  startedAt: string;
  finishedAt: string;
  gitCommit: string;
  node: string;
  cpus: number;
  memoryGiB: number;
  target: string;
  options: Record<string, unknown>;
  log: string[];
}

export interface Report {
  info: RunInfo;
  rows: Row[];
}

/** Fills `ratio`: HTTP rows vs noop and vs the naive server; batching on vs off for PUT. */
export function addRatios(rows: Row[]): void {
  const ops = (n: string) => rows.find((r) => r.name === n && r.skipped === undefined)?.opsPerSec ?? NaN;
  const noop = ops('noop');
  const x = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : undefined);
  for (const r of rows) {
    if (r.skipped !== undefined) continue;
    if (['http-get', 'http-put', 'http-mixed'].includes(r.name)) {
      const v = x(r.opsPerSec, noop);
      if (v) r.ratio = `${v} noop`;
    }
    // security <load> <variant>: vs the plain gateway under the same load (medians of --runs).
    const sec = /^(security \S+) (auth|tls|auth\+tls)$/.exec(r.name);
    if (sec) {
      const v = x(r.opsPerSec, ops(`${sec[1]} plain`));
      if (v) r.ratio = `${v} plain`;
    }
  }
  for (const [ours, naive] of [
    ['http-get', 'naive-get'],
    ['http-put', 'naive-put'],
  ]) {
    const v = x(ops(ours), ops(naive));
    if (!v) continue;
    const row = rows.find((r) => r.name === ours)!;
    row.ratio = row.ratio ? `${row.ratio}; ${v} naive` : `${v} naive`;
  }
  for (const [on, off] of [
    ['http-put', 'ablation http-put (batching off)'],
    ['ws-put', 'ablation ws-put (batching off)'],
    ['http-get', 'ablation http-get (batching off)'],
  ]) {
    const v = x(ops(on), ops(off));
    if (!v) continue;
    const offRow = rows.find((r) => r.name === off)!;
    offRow.ratio = `on/off ${v}`;
    const onRow = rows.find((r) => r.name === on)!;
    onRow.ratio = onRow.ratio ? `${onRow.ratio}; ${v} off` : `${v} batching off`;
  }
}

export function fmtMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '-';
  if (ms < 1) return ms.toFixed(3);
  if (ms < 10) return ms.toFixed(2);
  if (ms < 100) return ms.toFixed(1);
  return Math.round(ms).toLocaleString('en-US');
}

const fmtOps = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');

/**
 * "gw 1.02 (main 0.31) db 0.41 lg 0.55 other 0.01": the gateway and its main thread, the MySQL
 * shards, the load generators, and everything else on the machine (machine-wide busy time from
 * /proc/stat minus ours: e.g. a test suite whose short-lived processes no one could watch).
 */
export function cpuSummary(cpu: CpuUse[]): string {
  if (cpu.length === 0) return '';
  const pick = (pred: (u: CpuUse) => boolean) => cpu.filter(pred).reduce((a, u) => a + (Number.isFinite(u.cores) ? u.cores : 0), 0);
  const gw = cpu.find((u) => u.label === 'gateway');
  const main = gw?.threads?.find((t) => t.name === 'main')?.cores;
  const db = pick((u) => u.label.includes('mysqld'));
  const all = cpu.find((u) => u.label === MACHINE)?.cores;
  const lg = pick((u) => u.label.includes('load generator') || u.label.includes('loadgen'));
  const parts: string[] = [];
  if (gw) parts.push(`gw ${gw.cores.toFixed(2)}${main !== undefined ? ` (main ${main.toFixed(2)})` : ''}`);
  if (cpu.some((u) => u.label.includes('mysqld'))) parts.push(`db ${db.toFixed(2)}`);
  parts.push(`lg ${lg.toFixed(2)}`);
  if (all !== undefined && Number.isFinite(all)) {
    const ours = (gw?.cores ?? 0) + db + lg;
    parts.push(`other ${Math.max(0, all - ours).toFixed(2)}`);
  }
  return parts.join(' ');
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

export function renderTable(rows: Row[]): string {
  const head = ['scenario', 'api', 'ops/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'errors', 'ratio', 'CPU cores: gateway (main thread), mysqld, load gen, other'];
  const body = rows.map((r) =>
    r.skipped !== undefined
      ? [r.name, r.api, 'skipped', '', '', '', '', '', r.skipped]
      : [
          r.name,
          r.api,
          fmtOps(r.opsPerSec),
          fmtMs(r.latency?.p50),
          fmtMs(r.latency?.p99),
          fmtMs(r.latency?.p999),
          fmtOps(r.errors),
          r.ratio ?? '',
          cpuSummary(r.cpu),
        ],
  );
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const numeric = [false, false, true, true, true, true, true, false, false];
  const line = (cells: string[]) =>
    cells
      .map((c, i) => pad(c, widths[i], numeric[i]))
      .join('  ')
      .trimEnd();
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const b of body) out.push(line(b));
  const notes: string[] = [];
  for (const r of rows) {
    const lines = [...r.notes];
    if (r.errors > 0 && r.errorDetail) lines.push(`errors: ${r.errorDetail}`);
    if (r.runs && r.runs.length > 1) lines.push(`runs (ops/s): ${r.runs.map((x) => fmtOps(x.opsPerSec)).join(', ')} -> median`);
    if (lines.length > 0) notes.push(`  ${r.name}: ${lines.join('\n    ')}`);
  }
  if (notes.length > 0) out.push('', 'Notes:', ...notes);
  return out.join('\n');
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Horizontal bar chart; `series` draws one bar per series per row (e.g. p50 and p99). */
function barChart(
  title: string,
  unit: string,
  labels: string[],
  series: Array<{ name: string; color: string; values: number[]; colors?: string[] }>,
  log = false,
): string {
  const rowH = 18 * series.length + 10;
  const left = 300;
  const width = 900;
  const plotW = width - left - 110;
  const top = 40;
  const height = top + labels.length * rowH + 34;
  const all = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v) && v > 0);
  const max = all.length ? Math.max(...all) : 1;
  const min = all.length ? Math.min(...all) : 1;
  // Log scale: from the decade below the smallest value, so the smallest bar is still visible.
  const lo = Math.floor(Math.log10(min) - 1e-9);
  const hi = Math.log10(max);
  const scale = (v: number) => {
    if (!Number.isFinite(v) || v <= 0) return 0;
    if (!log) return (v / max) * plotW;
    return hi <= lo ? plotW : Math.max(1, ((Math.log10(v) - lo) / (hi - lo)) * plotW);
  };
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<text x="10" y="20" font-size="15" font-weight="bold">${esc(title)}</text>`,
  ];
  series.forEach((s, i) => {
    parts.push(`<rect x="${left + i * 110}" y="28" width="10" height="10" fill="${s.color}"/><text x="${left + i * 110 + 14}" y="37">${esc(s.name)}</text>`);
  });
  if (log) {
    for (let d = lo; d <= Math.ceil(hi); d++) {
      const x = left + scale(10 ** d);
      if (10 ** d > max) break;
      parts.push(
        `<line x1="${x.toFixed(1)}" y1="${top}" x2="${x.toFixed(1)}" y2="${height - 24}" stroke="#ddd"/><text x="${x.toFixed(1)}" y="${height - 12}" text-anchor="middle" fill="#666">${(10 ** d).toLocaleString('en-US', { maximumFractionDigits: 3 })}</text>`,
      );
    }
  }
  labels.forEach((label, i) => {
    const y = top + i * rowH + 6;
    parts.push(`<text x="${left - 8}" y="${y + (rowH - 10) / 2 + 4}" text-anchor="end">${esc(label)}</text>`);
    series.forEach((s, j) => {
      const v = s.values[i];
      const w = scale(v);
      const by = y + j * 18;
      parts.push(
        `<rect x="${left}" y="${by}" width="${w.toFixed(1)}" height="14" fill="${s.colors?.[i] ?? s.color}"><title>${esc(label)} ${esc(s.name)}: ${Number.isFinite(v) ? v.toFixed(3) : '-'} ${unit}</title></rect>`,
      );
      parts.push(`<text x="${left + w + 4}" y="${by + 11}">${Number.isFinite(v) ? (unit === 'ops/s' ? fmtOps(v) : fmtMs(v)) : '-'}</text>`);
    });
  });
  parts.push(`<text x="10" y="${height - 12}" fill="#666">${esc(unit)}${log ? ' (log scale)' : ''}</text>`, '</svg>');
  return parts.join('\n');
}

/** Rows left over time (expiry): a line per series, x in seconds, y in rows. */
function lineChart(title: string, series: Array<{ name: string; color: string; points: Array<[number, number]> }>): string {
  const width = 900;
  const height = 260;
  const left = 80;
  const right = 20;
  const top = 40;
  const bottom = 40;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const xMax = Math.max(1, ...xs);
  const yMax = Math.max(1, ...ys);
  const X = (x: number) => left + (x / xMax) * (width - left - right);
  const Y = (y: number) => top + (1 - y / yMax) * (height - top - bottom);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<text x="10" y="20" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<line x1="${left}" y1="${Y(0)}" x2="${width - right}" y2="${Y(0)}" stroke="#999"/><line x1="${left}" y1="${top}" x2="${left}" y2="${Y(0)}" stroke="#999"/>`,
    `<text x="${left - 6}" y="${top + 4}" text-anchor="end">${fmtOps(yMax)}</text><text x="${left - 6}" y="${Y(0) + 4}" text-anchor="end">0</text>`,
    `<text x="${width - right}" y="${height - 12}" text-anchor="end" fill="#666">${xMax.toFixed(0)} s</text><text x="${left}" y="${height - 12}" fill="#666">seconds since the load started; rows left in MySQL</text>`,
  ];
  series.forEach((s, i) => {
    parts.push(
      `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${s.points.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ')}"/>`,
    );
    parts.push(
      `<rect x="${left + 20 + i * 160}" y="28" width="10" height="10" fill="${s.color}"/><text x="${left + 34 + i * 160}" y="37">${esc(s.name)}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export function renderHtml(report: Report): string {
  const live = report.rows.filter((r) => r.skipped === undefined);
  const tput = live.filter((r) => Number.isFinite(r.opsPerSec) && r.api !== '-');
  const lat = live.filter((r) => r.latency && Number.isFinite(r.latency.p99) && r.api !== '-');
  const table = renderTable(report.rows);
  const deletion = live
    .filter((r) => Array.isArray(r.extra.rowsOverTime) && (r.extra.rowsOverTime as unknown[]).length > 1)
    .map((r, i) => ({ name: r.name, color: ['#3b78c2', '#c0504d', '#4a9a5a'][i % 3], points: r.extra.rowsOverTime as Array<[number, number]> }));
  const { info } = report;
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>kvsql bench ${esc(info.startedAt)}</title>
<style>body{font-family:sans-serif;margin:24px;color:#222}pre{background:#f6f6f6;padding:12px;overflow:auto;font-size:12px}td,th{padding:2px 8px;text-align:left}</style>
</head><body>
<h1>kvsql benchmark</h1>
<table>
<tr><th>started</th><td>${esc(info.startedAt)}</td></tr>
<tr><th>commit</th><td>${esc(info.gitCommit)}</td></tr>
<tr><th>machine</th><td>${info.cpus} cores, ${info.memoryGiB} GiB, Node ${esc(info.node)}</td></tr>
<tr><th>target</th><td>${esc(info.target)}</td></tr>
<tr><th>options</th><td><code>${esc(JSON.stringify(info.options))}</code></td></tr>
</table>
${barChart(
  'Throughput (blue: HTTP, green: WebSocket)',
  'ops/s',
  tput.map((r) => r.name),
  [{ name: 'ops/s', color: '#3b78c2', values: tput.map((r) => r.opsPerSec), colors: tput.map((r) => (r.api === 'ws' ? '#4a9a5a' : '#3b78c2')) }],
)}
${barChart(
  'Latency',
  'ms',
  lat.map((r) => r.name),
  [
    { name: 'p50', color: '#7fb77e', values: lat.map((r) => r.latency!.p50) },
    { name: 'p99', color: '#e0a030', values: lat.map((r) => r.latency!.p99) },
    { name: 'p99.9', color: '#c0504d', values: lat.map((r) => r.latency!.p999) },
  ],
  true,
)}
${deletion.length > 0 ? lineChart('Physical deletion of expired rows', deletion) : ''}
<h2>Table</h2>
<pre>${esc(table)}</pre>
<h2>CPU per process (cores) per row</h2>
<pre>${esc(
    live
      .filter((r) => r.cpu.length > 0)
      .map(
        (r) =>
          `${r.name}\n${r.cpu.map((u) => `  ${u.label}: ${Number.isFinite(u.cores) ? u.cores.toFixed(2) : '-'}${u.threads ? '  [' + u.threads.map((t) => `${t.name} ${t.cores.toFixed(2)}`).join(', ') + ']' : ''}`).join('\n')}`,
      )
      .join('\n'),
  )}</pre>
<h2>Log</h2>
<pre>${esc(info.log.join('\n'))}</pre>
</body></html>
`;
}

/**
 * The few kilobytes of a report that DESIGN.md cites: run facts and each row's headline numbers,
 * CPU per process and scalar extras. Meant to be committed (bench/evidence/), unlike the raw
 * report, so a reader can check a quoted figure against the run it came from.
 */
export function summarize(report: Report): object {
  const round = (x: number, digits = 1): number | null => (Number.isFinite(x) ? Number(x.toFixed(digits)) : null);
  return {
    info: {
      startedAt: report.info.startedAt,
      gitCommit: report.info.gitCommit,
      cpus: report.info.cpus,
      memoryGiB: report.info.memoryGiB,
      node: report.info.node,
      target: report.info.target,
      options: report.info.options,
    },
    rows: report.rows.map((r) =>
      r.skipped !== undefined
        ? { name: r.name, skipped: r.skipped }
        : {
            name: r.name,
            opsPerSec: round(r.opsPerSec, 0),
            p50: round(r.latency?.p50 ?? NaN, 2),
            p99: round(r.latency?.p99 ?? NaN, 2),
            p999: round(r.latency?.p999 ?? NaN, 2),
            errors: r.errors,
            ratio: r.ratio,
            runs: r.runs?.map((x) => ({ opsPerSec: round(x.opsPerSec, 0), p99: round(x.p99, 2) })),
            cpu: Object.fromEntries(r.cpu.map((u) => [u.label, round(u.cores, 2)])),
            extra: Object.fromEntries(Object.entries(r.extra).filter(([, v]) => typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean')),
          },
    ),
  };
}

export function saveReport(dir: string, report: Report, evidenceDir?: string): { json: string; html: string; summary?: string } {
  fs.mkdirSync(dir, { recursive: true });
  const stamp = report.info.startedAt.replace(/[:.]/g, '-');
  const finite = (_k: string, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v);
  const json = JSON.stringify(report, finite, 2);
  const html = renderHtml(report);
  const jsonPath = path.join(dir, `bench-${stamp}.json`);
  const htmlPath = path.join(dir, `bench-${stamp}.html`);
  fs.writeFileSync(jsonPath, json);
  fs.writeFileSync(htmlPath, html);
  fs.writeFileSync(path.join(dir, 'latest.json'), json);
  fs.writeFileSync(path.join(dir, 'latest.html'), html);
  if (evidenceDir === undefined) return { json: jsonPath, html: htmlPath };
  fs.mkdirSync(evidenceDir, { recursive: true });
  const summaryPath = path.join(evidenceDir, `bench-${stamp}.summary.json`);
  fs.writeFileSync(summaryPath, JSON.stringify(summarize(report), finite, 1) + '\n');
  return { json: jsonPath, html: htmlPath, summary: summaryPath };
}
