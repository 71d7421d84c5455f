import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Report } from '../../bench/lib/report.js';
import { DOCS_END, DOCS_START } from '../../bench/lib/report.js';
import { ROOT } from '../helpers/processes.js';

/**
 * The benchmark harness in --quick mode on two scenarios, written to a temp dir: the report has its
 * shape and every delivery arrived. Never asserts on time or speed (CI machines vary).
 */
const HARNESS_TIMEOUT_MS = 100_000;

function runHarness(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/run.ts'), ...args], {
      cwd: ROOT,
      env: { ...process.env, BENCH_CPU_PROF: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    // The harness stops its children on SIGTERM; it gets a bounded time to do it.
    const timer = setTimeout(() => child.kill('SIGTERM'), HARNESS_TIMEOUT_MS);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('npm run bench -- --quick', () => {
  let out: string | undefined;
  afterAll(async () => {
    if (out) await rm(out, { recursive: true, force: true });
  });

  it('runs drain and ingest, writes JSON, Markdown, SVG and the docs section, and every delivery arrives', async () => {
    out = await mkdtemp(path.join(tmpdir(), 'unsub-relay-bench-smoke-'));
    const { code, output } = await runHarness(['--quick', '--only', 'drain,ingest', '--out', out]);
    expect(code, output).toBe(0);

    const files = await readdir(out);
    const json = files.find((f) => /^\d{4}-\d{2}-\d{2}\.json$/.test(f));
    expect(json, files.join(', ')).toBeDefined();
    const stem = json!.slice(0, -'.json'.length);
    expect(files).toEqual(expect.arrayContaining([`${stem}.md`, `${stem}.svg`, 'performance.md']));

    const report = JSON.parse(await readFile(path.join(out, json!), 'utf8')) as Report;
    expect(report.machine).toMatchObject({
      cpuCount: expect.any(Number),
      cpuModel: expect.any(String),
      node: process.version,
      redis: expect.stringMatching(/^\d+\./),
    });
    expect(report.options).toMatchObject({ quick: true, runs: 1 });
    expect(report.scenarios.map((s) => s.id)).toEqual(['drain', 'ingest']);
    for (const scenario of report.scenarios) {
      expect(scenario.error, scenario.error).toBeUndefined();
      expect(scenario.metrics.length).toBeGreaterThan(0);
      for (const metric of scenario.metrics) {
        expect(metric).toMatchObject({ key: expect.any(String), unit: expect.any(String) });
        expect(metric.values).toHaveLength(1);
        expect(typeof metric.median).toBe('number');
        expect(metric.min).toBeLessThanOrEqual(metric.max);
      }
      for (const check of scenario.checks)
        expect(check.ok, `${scenario.id}: ${check.label}: ${check.detail}`).toBe(true);
    }

    // Every delivery of the backlog arrived, through the engine and through the baseline.
    const drain = report.scenarios.find((s) => s.id === 'drain')!;
    const drainRuns = drain.runs as Array<
      Record<'engine' | 'baseline', { deliveries: number; arrived: number }>
    >;
    expect(drainRuns).toHaveLength(1);
    for (const who of ['engine', 'baseline'] as const) {
      expect(drainRuns[0]![who].deliveries).toBeGreaterThan(0);
      expect(drainRuns[0]![who].arrived).toBe(drainRuns[0]![who].deliveries);
    }
    expect(drain.targets.map((t) => t.metric)).toEqual(['ratio']);

    // Every ingest request was accepted, by the engine and by the baseline.
    const ingest = report.scenarios.find((s) => s.id === 'ingest')!;
    const ingestRuns = ingest.runs as Array<
      Record<'engine' | 'baseline', { load: { sent: number; accepted: number } }>
    >;
    for (const who of ['engine', 'baseline'] as const) {
      expect(ingestRuns[0]![who].load.sent).toBeGreaterThan(0);
      expect(ingestRuns[0]![who].load.accepted).toBe(ingestRuns[0]![who].load.sent);
    }

    const markdown = await readFile(path.join(out, `${stem}.md`), 'utf8');
    // Prettier pads the columns, so match the header loosely.
    expect(markdown).toMatch(/\|\s*Scenario\s*\|\s*Metric\s*\|\s*Median\s*\|\s*Spread \(min–max\)\s*\|/);
    expect(await readFile(path.join(out, `${stem}.svg`), 'utf8')).toMatch(
      /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/,
    );
    const docs = await readFile(path.join(out, 'performance.md'), 'utf8');
    expect(docs).toContain(DOCS_START);
    expect(docs).toContain(DOCS_END);
    expect(docs).toContain(`${stem}.svg`);
  }, 120_000);
});
