import type { ChartData } from './types.js';

const esc = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const COLORS = { p50: '#9ecae1', p95: '#4292c6', p99: '#08519c', bar: '#41ab5d' };

function niceMax(value: number): number {
  if (!Number.isFinite(value) || value <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function fmt(value: number): string {
  if (!Number.isFinite(value)) return '–';
  if (value >= 10_000) return `${Math.round(value / 1000)}k`;
  if (value >= 1_000) return `${(value / 1000).toFixed(1)}k`;
  if (value >= 100) return Math.round(value).toLocaleString('en-US');
  return value.toFixed(1);
}

/**
 * Two small panels: latency percentiles (grouped bars, ms) and throughput (horizontal bars, per
 * second). Hand-written SVG, no dependency, readable at its natural size.
 */
export function chartSvg(data: Required<ChartData>, title: string): string {
  const width = 960;
  const height = 320;
  const parts: string[] = [];
  const text = (x: number, y: number, s: string, attrs = '') =>
    parts.push(`<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${esc(s)}</text>`);

  // Left: latency. A log scale when the values span more than ~1.5 decades (a backlog next to a few ms).
  const lx = 60;
  const ly = 50;
  const lw = 520;
  const lh = 200;
  const values = data.latency
    .flatMap((g) => [g.p50, g.p95, g.p99])
    .filter((v) => Number.isFinite(v) && v > 0);
  const top = Math.max(...values, 1);
  const bottom = Math.min(...values, top);
  const log = top / bottom > 30;
  const lo = log ? 10 ** Math.floor(Math.log10(bottom)) : 0;
  const hi = log ? 10 ** Math.ceil(Math.log10(top)) : niceMax(top);
  const scale = (v: number) => {
    if (!Number.isFinite(v) || v <= 0) return 0;
    if (!log) return (lh * Math.min(v, hi)) / hi;
    return (lh * (Math.log10(Math.max(v, lo)) - Math.log10(lo))) / (Math.log10(hi) - Math.log10(lo));
  };
  text(lx, 36, `Latency, scheduled → CRM received (ms${log ? ', log scale' : ''})`, 'class="h"');
  const ticks = log
    ? Array.from({ length: Math.round(Math.log10(hi / lo)) + 1 }, (_, i) => lo * 10 ** i)
    : [0, 1, 2, 3, 4].map((i) => (hi * i) / 4);
  for (const tick of ticks) {
    const y = ly + lh - (log ? scale(tick) : (lh * tick) / hi);
    parts.push(`<line x1="${lx}" y1="${y.toFixed(1)}" x2="${lx + lw}" y2="${y.toFixed(1)}" class="grid"/>`);
    text(lx - 6, y + 4, fmt(tick), 'text-anchor="end"');
  }
  const groups = Math.max(1, data.latency.length);
  const gw = lw / groups;
  const bw = Math.min(28, (gw - 16) / 3);
  data.latency.forEach((group, g) => {
    const x0 = lx + g * gw + (gw - bw * 3) / 2;
    (['p50', 'p95', 'p99'] as const).forEach((p, k) => {
      const value = group[p];
      const h = scale(value);
      const x = x0 + k * bw;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${(ly + lh - h).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[p]}"/>`,
      );
      text(x + bw / 2 - 1, ly + lh - h - 3, fmt(value), 'text-anchor="middle" class="v"');
    });
    // Labels wrap at ", " so several groups fit side by side.
    group.label
      .split(', ')
      .forEach((line, n) =>
        text(lx + g * gw + gw / 2, ly + lh + 14 + n * 11, line, 'text-anchor="middle" class="g"'),
      );
  });
  (['p50', 'p95', 'p99'] as const).forEach((p, k) => {
    const x = lx + k * 70;
    parts.push(`<rect x="${x}" y="${ly + lh + 36}" width="12" height="12" fill="${COLORS[p]}"/>`);
    text(x + 16, ly + lh + 46, p);
  });

  // Right: throughput.
  const rx = 760;
  const ry = 50;
  const rw = 150;
  const rowH = Math.min(40, 200 / Math.max(1, data.throughput.length));
  const tMax = niceMax(Math.max(...data.throughput.map((t) => t.value).filter(Number.isFinite), 1));
  text(rx - 130, 36, 'Throughput (per second)', 'class="h"');
  data.throughput.forEach((row, i) => {
    const y = ry + i * rowH;
    const w = Number.isFinite(row.value) ? (rw * row.value) / tMax : 0;
    text(rx - 6, y + rowH / 2 + 4, row.label, 'text-anchor="end"');
    parts.push(
      `<rect x="${rx}" y="${(y + 4).toFixed(1)}" width="${w.toFixed(1)}" height="${(rowH - 8).toFixed(1)}" fill="${COLORS.bar}"/>`,
    );
    text(rx + w + 4, y + rowH / 2 + 4, fmt(row.value), 'class="v"');
  });

  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    '<style>.h{font-size:13px;font-weight:bold}.v{font-size:9px;fill:#333}.g{font-size:10px}.grid{stroke:#ddd;stroke-width:1}</style>',
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${width / 2}" y="16" text-anchor="middle" class="h">${esc(title)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
