import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as prettier from 'prettier';
import type { ProfileSummary } from '../profile-summary.js';
import type { Machine } from './machine.js';
import { chartSvg } from './svg.js';
import type { BenchOptions, ChartData, Metric, ScenarioResult, Target } from './types.js';

export interface Report {
  generatedAt: string;
  date: string;
  machine: Machine;
  options: Omit<BenchOptions, 'out'>;
  scenarios: ScenarioResult[];
  targets: Array<Target & { scenario: string }>;
}

export const DOCS_START = '<!-- bench:results:start -->';
export const DOCS_END = '<!-- bench:results:end -->';

export function formatValue(value: number, unit: string): string {
  if (!Number.isFinite(value)) return '–';
  const fixed = (digits: number) =>
    value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  switch (unit) {
    case 'ms': {
      const abs = Math.abs(value);
      return fixed(abs < 1 ? 3 : abs < 10 ? 2 : abs < 100 ? 1 : 0);
    }
    case '×':
      return fixed(2);
    case 'MiB':
    case '%':
      return fixed(1);
    default:
      return fixed(0);
  }
}

function withUnit(value: number, unit: string): string {
  const text = formatValue(value, unit);
  if (text === '–') return text;
  return unit === '×' ? `${text}×` : unit === '%' ? `${text}%` : unit === 'count' ? text : `${text} ${unit}`;
}

function spread(m: Metric): string {
  if (m.values.length <= 1) return '–';
  return `${formatValue(m.min, m.unit)}–${formatValue(m.max, m.unit)}`;
}

function targetText(t: Target, unit: string): string {
  const op = t.op === '>=' ? '≥' : t.op === '<=' ? '≤' : '<';
  return `${op} ${withUnit(t.threshold, unit)}`;
}

const cell = (text: string) => text.replace(/\|/g, '\\|');

/** The results table: one row per metric, its target (if any) and whether the median meets it. */
export function resultsTable(scenarios: ScenarioResult[]): string {
  const rows = [
    '| Scenario | Metric | Median | Spread (min–max) | Target | Met |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const scenario of scenarios) {
    if (scenario.error) {
      rows.push(`| ${cell(scenario.title)} | **failed**: ${cell(scenario.error.split('\n')[0]!)} | | | | |`);
      continue;
    }
    scenario.metrics.forEach((m, i) => {
      const t = scenario.targets.find((x) => x.metric === m.key);
      rows.push(
        `| ${i === 0 ? cell(scenario.title) : ''} | ${cell(m.label)} | ${withUnit(m.median, m.unit)} | ${spread(m)} | ${
          t ? targetText(t, m.unit) : ''
        } | ${t ? (t.met ? 'yes' : '**no**') : ''} |`,
      );
    });
    for (const c of scenario.checks)
      rows.push(
        `| | check: ${cell(c.label)} | ${c.ok ? 'ok' : `**failed**${c.detail ? `: ${cell(c.detail)}` : ''}`} | | | |`,
      );
  }
  return rows.join('\n');
}

function machineLine(report: Report): string {
  const m = report.machine;
  return `${m.cpuModel} × ${m.cpuCount} CPUs, ${m.memoryGiB} GiB, ${m.os}; Node ${m.node}; Redis ${m.redis}; ${m.date.slice(0, 16).replace('T', ' ')} UTC; load average ${m.loadAverage.start.toFixed(1)} at the start, ${m.loadAverage.end.toFixed(1)} at the end. ${report.options.runs} run(s) per scenario (median, spread min–max)${report.options.quick ? ', **quick (smoke) sizes**' : ''}.`;
}

function profileSection(profile: ProfileSummary & { deliveriesPerSecondWhileProfiled?: number }): string {
  const table = (title: string, entries: ProfileSummary['functions']) =>
    [
      `| # | ${title} | self ms | % of busy |`,
      '| --- | --- | --- | --- |',
      ...entries.map(
        (e, i) => `| ${i + 1} | \`${cell(e.name)}\` | ${e.selfMs.toFixed(0)} | ${e.percent.toFixed(1)}% |`,
      ),
    ].join('\n');
  return [
    '## CPU profile of the engine worker during a drain',
    '',
    `One extra drain with \`node --cpu-prof\` (not in the figures above; ${Math.round(profile.deliveriesPerSecondWhileProfiled ?? Number.NaN)} deliveries/s while profiled). Window: first to last delivery at the CRM, ${profile.windowMs.toFixed(0)} ms; busy ${profile.busyMs.toFixed(0)} ms (GC ${profile.gcMs.toFixed(0)} ms), idle ${profile.idleMs.toFixed(0)} ms.`,
    '',
    table('function (self time)', profile.functions),
    '',
    table('module (self time)', profile.modules),
    '',
    'The same time charged to the nearest package or source file on the stack (native code and Node internals count for whoever called them):',
    '',
    table('owner', profile.owners),
    '',
    'What drove the top owners (the nearest frame outside them on the stack):',
    '',
    ...(profile.drivers ?? []).map(
      (d) =>
        `- \`${d.name}\`: ${d.callers.map((k) => `${k.percent.toFixed(1)}% from \`${k.name}\``).join('; ')}`,
    ),
    '',
    'Callers of the top functions (nearest three frames that have a script; native frames skipped):',
    '',
    ...profile.callers.flatMap((c) => [
      `- \`${c.name}\`: ${c.callers.map((k) => `${k.percent.toFixed(1)}% from \`${k.name}\``).join('; ')}`,
    ]),
  ].join('\n');
}

/** The results as Markdown (the page bench/results/<date>.md, and the body of docs/performance.md). */
export function resultsMarkdown(report: Report, links: { svg: string; json: string }, heading = '#'): string {
  const parts = [
    `${heading} Benchmark results, ${report.date}`,
    '',
    `Machine: ${machineLine(report)}`,
    '',
    resultsTable(report.scenarios),
    '',
    `![Latency percentiles and throughput](${links.svg})`,
    '',
    `Raw numbers, every run: [${path.basename(links.json)}](${links.json}).`,
    '',
  ];
  for (const scenario of report.scenarios) {
    if (scenario.error) continue;
    parts.push(`${heading}# ${scenario.title}`, '', scenario.description, '');
    for (const note of scenario.notes) parts.push(`- ${note}`);
    if (scenario.notes.length) parts.push('');
    const breakdown = scenario.extra?.breakdown as
      Record<string, { keys: number; bytesPerDelivery: number }> | undefined;
    if (breakdown) {
      parts.push('| key kind | keys | bytes per delivery (MEMORY USAGE) |', '| --- | --- | --- |');
      for (const [kind, k] of Object.entries(breakdown))
        parts.push(
          `| ${cell(kind)} | ${k.keys.toLocaleString('en-US')} | ${k.bytesPerDelivery.toFixed(1)} |`,
        );
      parts.push('');
    }
  }
  const profile = report.scenarios.find((s) => s.id === 'drain')?.extra?.profile as
    (ProfileSummary & { deliveriesPerSecondWhileProfiled?: number }) | undefined;
  if (profile?.functions) parts.push(profileSection(profile).replace(/^## /, `${heading}# `), '');
  return parts.join('\n');
}

export function chartData(scenarios: ScenarioResult[]): Required<ChartData> {
  return {
    latency: scenarios.flatMap((s) => s.chart?.latency ?? []),
    throughput: scenarios.flatMap((s) => s.chart?.throughput ?? []),
  };
}

async function formatted(file: string, text: string): Promise<string> {
  const config = (await prettier.resolveConfig(file)) ?? {};
  return prettier.format(text, { ...config, filepath: file });
}

const DOCS_HEADER = `# Performance

What the engine costs against the bare stack it is built on (BullMQ + undici + Fastify on the same
Redis), measured by the benchmark harness in [\`bench/\`](../bench/) (issue 7). Run it with:

\`\`\`sh
npm run bench                          # every scenario, 3 runs each; rewrites the section below
npm run bench -- --quick               # smoke sizes, 1 run
npm run bench -- --only drain,ingest --runs 5
npm run bench -- --cpu-prof            # also profile the engine worker during one more drain
\`\`\`

The harness starts its own loopback CRM, the engine (\`node bin/unsub-relay.js start\`) and its load
generator as separate processes, on a unique Redis prefix it deletes afterwards. Targets are reported,
never asserted. Everything between the markers below is written by the harness: do not edit it by hand.

`;

/** Writes <out>/<date>.json, .md and .svg, and (when `docsFile` is given) the results part of it. */
export async function writeReport(
  report: Report,
  outDir: string,
  docsFile: string | undefined,
): Promise<{ json: string; md: string; svg: string; docs?: string }> {
  await mkdir(outDir, { recursive: true });
  const json = path.join(outDir, `${report.date}.json`);
  const md = path.join(outDir, `${report.date}.md`);
  const svg = path.join(outDir, `${report.date}.svg`);
  await writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(svg, chartSvg(chartData(report.scenarios), `unsub-relay benchmark, ${report.date}`));
  await writeFile(
    md,
    await formatted(
      md,
      resultsMarkdown(report, { svg: `./${path.basename(svg)}`, json: `./${path.basename(json)}` }),
    ),
  );
  if (!docsFile) return { json, md, svg };
  const rel = (file: string) => path.relative(path.dirname(docsFile), file).split(path.sep).join('/');
  let current: string;
  try {
    current = await readFile(docsFile, 'utf8');
  } catch {
    current = `${DOCS_HEADER}${DOCS_START}\n${DOCS_END}\n`;
  }
  if (!current.includes(DOCS_START) || !current.includes(DOCS_END))
    current = `${current.trimEnd()}\n\n${DOCS_START}\n${DOCS_END}\n`;
  const section = [
    DOCS_START,
    '',
    `_Written by \`npm run bench\` on ${report.machine.date.slice(0, 10)}._`,
    '',
    resultsMarkdown(report, { svg: rel(svg), json: rel(json) }, '##'),
    DOCS_END,
  ].join('\n');
  const next =
    current.slice(0, current.indexOf(DOCS_START)) +
    section +
    current.slice(current.indexOf(DOCS_END) + DOCS_END.length);
  await writeFile(docsFile, await formatted(docsFile, next));
  return { json, md, svg, docs: docsFile };
}
