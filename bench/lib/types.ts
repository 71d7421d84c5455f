import type { BenchContext } from './context.js';

export interface BenchOptions {
  /** Smoke size: a few hundred deliveries, 2 s durations, one run, fan-out 1 and 10. */
  quick: boolean;
  runs: number;
  /** Scenario ids to run (all when undefined). */
  only?: string[];
  /** Where results go (default bench/results; docs/performance.md is only rewritten without --out). */
  out?: string;
  /** Profile the engine worker during one extra drain (node --cpu-prof) and summarise it. */
  cpuProf: boolean;
  /** Keep the .cpuprofile files here (implies cpuProf); otherwise they go with the temp dir. */
  cpuProfDir?: string;
  /** WORKER_CONCURRENCY for the engine and the baselines. */
  concurrency: number;
  /** Keep-alive connections of the ingest load generator. */
  ingestConnections: number;
  redisUrl: string;
  /** The whole harness gives up (and cleans up) after this long. */
  timeoutMs: number;
}

/** One measured quantity over the runs of a scenario: the median and the spread. */
export interface Metric {
  key: string;
  label: string;
  unit: string;
  median: number;
  min: number;
  max: number;
  values: number[];
}

/** A goal a metric is reported against (never asserted). */
export interface Target {
  label: string;
  metric: string;
  op: '>=' | '<=' | '<';
  threshold: number;
  value: number;
  met: boolean;
}

/** A correctness check (every delivery arrived, no failures...). */
export interface Check {
  label: string;
  ok: boolean;
  detail?: string;
}

export interface ChartData {
  latency?: Array<{ label: string; p50: number; p95: number; p99: number }>;
  throughput?: Array<{ label: string; value: number }>;
}

export interface ScenarioResult {
  id: string;
  title: string;
  description: string;
  params: Record<string, unknown>;
  metrics: Metric[];
  targets: Target[];
  checks: Check[];
  /** Raw per-run measurements. */
  runs: unknown[];
  chart?: ChartData;
  notes: string[];
  /** Extra material (a CPU profile summary, a memory breakdown...). */
  extra?: Record<string, unknown>;
  durationMs?: number;
  error?: string;
}

/**
 * A benchmark scenario: one module in bench/scenarios/ exporting one of these, listed in
 * bench/scenarios/index.ts. `run` does all of its runs (ctx.options.runs) and cleans up after itself.
 */
export interface Scenario {
  id: string;
  title: string;
  run(ctx: BenchContext): Promise<ScenarioResult>;
}
