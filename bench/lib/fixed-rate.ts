import type { BenchContext, Crm, CrmStats, Engine } from './context.js';
import { until } from './processes.js';
import type { LoadSummary } from '../load-gen.js';

export interface FixedRateRun {
  rate: number;
  durationMs: number;
  sent: number;
  accepted: number;
  /** Distinct deliveries the CRM received for what was sent. */
  arrived: number;
  received: number;
  /** Deliveries per second at the CRM, first arrival to last: below `rate` means a growing backlog. */
  deliveredPerSecond: number;
  /** Scheduled → received at the CRM. */
  latency: NonNullable<CrmStats['latency']>;
  /** How late the generator sent against its schedule. */
  lag: NonNullable<LoadSummary['lag']>;
  /** HTTP latency of POST /v1/unsubscribes as the generator saw it. */
  ingest: LoadSummary['latency'];
  /** The worst latency in each second of the run (ms): a tail from one stall, or from everywhere. */
  slowestBySecond: number[];
}

/**
 * Sends unsubscribes at a fixed rate (open loop) to an engine that serves the API and delivers, then
 * waits (bounded) until the CRM has received as many as were accepted, and reads the latencies the
 * CRM measured under `tag`. The CRM's counters are reset first.
 */
export async function fixedRate(
  ctx: BenchContext,
  engine: Engine,
  apiKey: string,
  options: { crm?: Crm; tag: string; rate: number; durationMs: number; emailPrefix: string },
): Promise<FixedRateRun> {
  const crm = options.crm ?? ctx.crm;
  await crm.reset();
  const load = await ctx.loadGen({
    url: `${engine.url}/v1/unsubscribes`,
    apiKey,
    mode: 'open',
    rate: options.rate,
    durationMs: options.durationMs,
    connections: 64,
    emailPrefix: options.emailPrefix,
  });
  // A backlog left at the end of the load drains for up to this long; whatever is still missing
  // then is reported as missing, not waited for.
  await until(
    `deliveries at the CRM (${options.tag})`,
    async () => (await crm.count(options.tag)).unique >= load.accepted,
    arrivalWaitMs(options.durationMs),
    engine,
    100,
  ).catch((error: unknown) => ctx.log(`  ${String(error).split('\n')[0]}`));
  const stats = await crm.stats(options.tag);
  const none = {
    count: 0,
    p50: Number.NaN,
    p95: Number.NaN,
    p99: Number.NaN,
    max: Number.NaN,
    mean: Number.NaN,
  };
  return {
    rate: options.rate,
    durationMs: options.durationMs,
    sent: load.sent,
    accepted: load.accepted,
    arrived: stats.unique,
    received: stats.count,
    deliveredPerSecond:
      stats.first !== undefined && stats.last !== undefined && stats.last > stats.first
        ? ((stats.count - 1) * 1000) / (stats.last - stats.first)
        : Number.NaN,
    latency: stats.latency ?? none,
    lag: load.lag ?? none,
    ingest: load.latency,
    slowestBySecond: stats.slowestBySecond ?? [],
  };
}

/** How long after the load ends deliveries may still arrive and count: twice the load, at least 30 s. */
export function arrivalWaitMs(durationMs: number): number {
  return Math.max(30_000, 2 * durationMs);
}

/**
 * A cold engine process delivers its first seconds of load slowly (JIT, heap growth): after a 2 s
 * warm-up at 200/s, the first five seconds at 500/s ran at up to 1.5 s latency and then settled
 * near 50 ms (`slowestBySecond` in the results shows it). Production engines run warm, so the warm-up
 * runs at the first measured rate for long enough to settle, and is not measured.
 */
const WARM_UP_RATE = 500;
const WARM_UP_MS = 10_000;

/** A load at the first measured rate so the engine is warm before anything is measured. */
export async function warmUp(ctx: BenchContext, engine: Engine, apiKey: string, tag: string): Promise<void> {
  await fixedRate(ctx, engine, apiKey, {
    tag,
    rate: WARM_UP_RATE,
    durationMs: ctx.options.quick ? 500 : WARM_UP_MS,
    emailPrefix: `${tag}-warmup`,
  });
}
