/**
 * unsub-relay benchmark harness (issue 7): `npm run bench [-- options]`.
 *
 *   --quick                  smoke sizes: a few hundred deliveries, 2 s durations, 1 run, fan-out 1 and 10
 *   --only drain,ingest,...  run a subset (ids: see bench/scenarios/index.ts)
 *   --runs N                 runs per scenario (default 3; 1 with --quick)
 *   --out DIR                write results (and performance.md) to DIR instead of bench/results and docs/
 *   --cpu-prof               profile the engine worker during one extra drain (or BENCH_CPU_PROF=1)
 *   --cpu-prof-dir DIR       ... and keep its .cpuprofile files in DIR
 *   --concurrency N          WORKER_CONCURRENCY of the engine and the baselines (default 50)
 *   --ingest-connections N   keep-alive connections of the ingest load generator (default 32)
 *   --redis-url URL          default redis://127.0.0.1:6379
 *   --timeout-s N            give up (and clean up) after N seconds (default 3600)
 *   --rerender FILE.json     rewrite the .md, .svg (and docs, for bench/results) of an earlier run; runs nothing
 *
 * Starts its own CRM, engine and load generator processes on loopback, uses a unique Redis prefix
 * per run and deletes it, and stops every child on exit, error, SIGINT and SIGTERM.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { BenchContext } from './lib/context.js';
import { machine } from './lib/machine.js';
import { killAllNow, ROOT } from './lib/processes.js';
import { DEFAULT_REDIS_URL, newRunId } from './lib/redis.js';
import { resultsTable, writeReport, type Report } from './lib/report.js';
import type { BenchOptions, ScenarioResult } from './lib/types.js';
import { scenarios } from './scenarios/index.js';

function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      runs: { type: 'string' },
      out: { type: 'string' },
      'cpu-prof': { type: 'boolean', default: false },
      'cpu-prof-dir': { type: 'string' },
      concurrency: { type: 'string' },
      'ingest-connections': { type: 'string' },
      'redis-url': { type: 'string' },
      'timeout-s': { type: 'string' },
      rerender: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: npm run bench -- [--quick] [--only drain,ingest,latency,memory,fanout,isolation] [--runs N] [--out DIR] [--cpu-prof] [--cpu-prof-dir DIR] [--concurrency N] [--ingest-connections N] [--redis-url URL] [--timeout-s N] [--rerender FILE.json]\n',
    );
    process.exit(0);
  }
  if (values.rerender) {
    rerender = path.resolve(values.rerender);
    values.out ??= path.dirname(rerender);
  }
  const int = (text: string | undefined, fallback: number, name: string) => {
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${name} must be a positive integer`);
    return value;
  };
  const only = values.only
    ?.split(',')
    .map((id) => id.trim())
    .filter(Boolean);
  const unknown = only?.filter((id) => !scenarios.some((s) => s.id === id)) ?? [];
  if (unknown.length)
    throw new Error(
      `unknown scenario(s) ${unknown.join(', ')}; known: ${scenarios.map((s) => s.id).join(', ')}`,
    );
  return {
    quick: values.quick,
    runs: int(values.runs, values.quick ? 1 : 3, 'runs'),
    ...(only ? { only } : {}),
    ...(values.out ? { out: path.resolve(values.out) } : {}),
    cpuProf: values['cpu-prof'] || !!values['cpu-prof-dir'] || process.env.BENCH_CPU_PROF === '1',
    ...(values['cpu-prof-dir'] ? { cpuProfDir: path.resolve(values['cpu-prof-dir']) } : {}),
    concurrency: int(values.concurrency, Number(process.env.WORKER_CONCURRENCY ?? 50), 'concurrency'),
    ingestConnections: int(values['ingest-connections'], 32, 'ingest-connections'),
    redisUrl: values['redis-url'] ?? DEFAULT_REDIS_URL,
    timeoutMs: int(values['timeout-s'], 3_600, 'timeout-s') * 1000,
  };
}

/** Set once the context exists, so a signal before then has nothing to clean. */
const running: { context?: BenchContext } = {};
let exiting = false;
/** Set by --rerender: the report to write again. */
let rerender: string | undefined;

/** Stops everything (bounded) and exits; a second call exits at once. */
async function abort(code: number, reason: string): Promise<void> {
  process.stderr.write(`[bench] ${reason}: stopping\n`);
  if (exiting) {
    killAllNow();
    process.exit(code);
  }
  exiting = true;
  await Promise.race([running.context?.close(), new Promise((resolve) => setTimeout(resolve, 15_000))]).catch(
    () => undefined,
  );
  killAllNow();
  process.exit(code);
}

process.on('SIGINT', () => void abort(130, 'interrupted'));
process.on('SIGTERM', () => void abort(143, 'terminated'));
process.on('uncaughtException', (error) => void abort(1, `uncaught ${error.stack ?? String(error)}`));
process.on('unhandledRejection', (error) => void abort(1, `unhandled ${String(error)}`));
// An exit handler cannot wait: whatever is still running is killed.
process.on('exit', () => killAllNow());

const options = parseOptions(process.argv.slice(2));
if (rerender) {
  const report = JSON.parse(await readFile(rerender, 'utf8')) as Report;
  const outDir = path.dirname(rerender);
  const ofFullRun =
    outDir === path.join(ROOT, 'bench/results') && !report.options.quick && !report.options.only;
  const written = await writeReport(
    report,
    outDir,
    ofFullRun ? path.join(ROOT, 'docs/performance.md') : undefined,
  );
  for (const [kind, file] of Object.entries(written)) process.stdout.write(`${kind}: ${file}\n`);
  process.exit(0);
}
setTimeout(
  () => void abort(2, `time limit of ${options.timeoutMs / 1000} s reached`),
  options.timeoutMs,
).unref();

const runId = newRunId();
const loadAtStart = os.loadavg()[0]!;
const selected = scenarios.filter((s) => !options.only || options.only.includes(s.id));
const ctx = await BenchContext.create(options, runId);
running.context = ctx;
ctx.log(
  `run ${runId}: ${selected.map((s) => s.id).join(', ')}; ${options.runs} run(s) each${options.quick ? ', quick' : ''}`,
);
const results: ScenarioResult[] = [];
let failed = 0;
try {
  for (const scenario of selected) {
    if (exiting) break;
    const started = Date.now();
    try {
      const result = await scenario.run(ctx);
      results.push({ ...result, durationMs: Date.now() - started });
    } catch (error) {
      failed += 1;
      ctx.log(`scenario ${scenario.id} failed: ${(error as Error).stack ?? String(error)}`);
      results.push({
        id: scenario.id,
        title: scenario.title,
        description: '',
        params: {},
        metrics: [],
        targets: [],
        checks: [],
        runs: [],
        notes: [],
        durationMs: Date.now() - started,
        error: (error as Error).message ?? String(error),
      });
    }
  }
  const { out, ...reportOptions } = options;
  const report: Report = {
    generatedAt: new Date().toISOString(),
    date: new Date().toISOString().slice(0, 10),
    machine: await machine(ctx.redis, loadAtStart),
    options: reportOptions,
    scenarios: results,
    targets: results.flatMap((s) => s.targets.map((t) => ({ ...t, scenario: s.id }))),
  };
  // docs/performance.md shows full runs only; with --out it goes to <out>/performance.md instead.
  const full = !options.quick && !options.only;
  const docs = out
    ? path.join(out, 'performance.md')
    : full
      ? path.join(ROOT, 'docs/performance.md')
      : undefined;
  const written = await writeReport(report, out ?? path.join(ROOT, 'bench/results'), docs);
  process.stdout.write(`\n${resultsTable(results)}\n\n`);
  for (const [kind, file] of Object.entries(written)) process.stdout.write(`${kind}: ${file}\n`);
  if (!docs) process.stdout.write('docs/performance.md left as it is (only a full run rewrites it)\n');
} finally {
  await ctx.close();
}
process.exit(failed ? 1 : 0);
