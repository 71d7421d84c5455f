import { createApiKey } from '../lib/backlog.js';
import { benchConnection } from '../lib/connections.js';
import type { BenchContext, Engine } from '../lib/context.js';
import { arrivalWaitMs, fixedRate, warmUp, type FixedRateRun } from '../lib/fixed-rate.js';
import { check, metric, target } from '../lib/result.js';
import type { Metric, Scenario, Target } from '../lib/types.js';

export const RATES = [500, 1_000];

/**
 * How the engine runs: `one`, the default `npm start` (ROLES=api,worker in one process); `split`, a
 * ROLES=api process and a ROLES=worker process on the same prefix (the README's way to scale).
 */
const LAYOUTS = [
  { id: 'one', label: '1 process', title: 'one process (ROLES=api,worker)' },
  { id: 'split', label: 'api + worker', title: 'two processes (ROLES=api, ROLES=worker)' },
] as const;
type Layout = (typeof LAYOUTS)[number];

async function measureLayout(ctx: BenchContext, layout: Layout, run: number, durationMs: number) {
  const prefix = ctx.prefix(`latency-${layout.id}`);
  const tag = `latency-${layout.id}-${run}`;
  const connection = benchConnection('bench-latency', `${ctx.crm.url}/ok/${tag}/unsubscribes`);
  const engines: Engine[] = [];
  try {
    if (layout.id === 'one') {
      engines.push(await ctx.startEngine({ prefix, connections: [connection], roles: 'api,worker' }));
    } else {
      engines.push(await ctx.startEngine({ prefix, connections: [connection], roles: 'worker' }));
      engines.push(await ctx.startEngine({ prefix, connections: [connection], roles: 'api' }));
    }
    const api = engines[engines.length - 1]!;
    const apiKey = await createApiKey(ctx.redis, prefix);
    // Also proves the worker runs: the warm-up waits for its deliveries at the CRM.
    await warmUp(ctx, api, apiKey, tag);
    const perRate: FixedRateRun[] = [];
    for (const rate of RATES) {
      ctx.log(
        `latency run ${run + 1}/${ctx.options.runs}, ${layout.title}: ${rate}/s for ${durationMs / 1000} s`,
      );
      const result = await fixedRate(ctx, api, apiKey, {
        tag,
        rate,
        durationMs,
        emailPrefix: `${tag}-${rate}`,
      });
      ctx.log(
        `  ${rate}/s: p50 ${result.latency.p50.toFixed(1)} ms, p99 ${result.latency.p99.toFixed(1)} ms, ${result.arrived}/${result.sent} arrived; slowest per second: ${result.slowestBySecond.join(' ')}`,
      );
      perRate.push(result);
    }
    return perRate;
  } finally {
    for (const engine of engines) await engine.stop();
    await ctx.cleanPrefix(prefix);
  }
}

export const latency: Scenario = {
  id: 'latency',
  title: 'End-to-end latency at fixed rates',
  async run(ctx) {
    const durationMs = ctx.options.quick ? 2_000 : 30_000;
    const runs: Array<Record<Layout['id'], FixedRateRun[]>> = [];
    for (let run = 0; run < ctx.options.runs; run++) {
      const order = run % 2 === 0 ? LAYOUTS : [...LAYOUTS].reverse();
      const got: Partial<Record<Layout['id'], FixedRateRun[]>> = {};
      for (const layout of order) got[layout.id] = await measureLayout(ctx, layout, run, durationMs);
      runs.push(got as Record<Layout['id'], FixedRateRun[]>);
    }
    const metrics: Metric[] = [];
    const targets: Target[] = [];
    const chart: Array<{ label: string; p50: number; p95: number; p99: number }> = [];
    for (const layout of LAYOUTS) {
      RATES.forEach((rate, i) => {
        const of = (pick: (r: FixedRateRun) => number) => runs.map((r) => pick(r[layout.id][i]!));
        const label = `${rate.toLocaleString('en-US')}/s, ${layout.label}`;
        const key = (name: string) => `${layout.id === 'one' ? '' : `${layout.id}_`}${name}_${rate}`;
        const p50 = metric(
          key('p50'),
          `${label}: p50`,
          'ms',
          of((r) => r.latency.p50),
        );
        const p95 = metric(
          key('p95'),
          `${label}: p95`,
          'ms',
          of((r) => r.latency.p95),
        );
        const p99 = metric(
          key('p99'),
          `${label}: p99`,
          'ms',
          of((r) => r.latency.p99),
        );
        metrics.push(
          p50,
          p95,
          p99,
          metric(
            key('max'),
            `${label}: max`,
            'ms',
            of((r) => r.latency.max),
          ),
          metric(
            key('arrived'),
            `${label}: arrived / sent`,
            '%',
            of((r) => (100 * r.arrived) / r.sent),
          ),
          metric(
            key('delivered'),
            `${label}: delivered at the CRM`,
            'deliveries/s',
            of((r) => r.deliveredPerSecond),
          ),
          metric(
            key('lag'),
            `${label}: generator lag p99`,
            'ms',
            of((r) => r.lag.p99),
          ),
          metric(
            key('ingest_p99'),
            `${label}: POST p99`,
            'ms',
            of((r) => r.ingest.p99),
          ),
        );
        if (rate === 500) targets.push(target(`p99 < 100 ms at 500/s (${layout.title})`, p99, '<', 100));
        chart.push({ label, p50: p50.median, p95: p95.median, p99: p99.median });
      });
    }
    const all = runs.flatMap((r) => [...r.one, ...r.split]);
    const short = all.filter((r) => r.arrived < r.sent || r.accepted < r.sent);
    return {
      id: 'latency',
      title: this.title,
      description: `Unsubscribes sent at ${RATES.join(' and ')}/s (open loop: each has a scheduled send time, carried in its attributes into the delivery body) for ${durationMs / 1000} s each, to the engine with one connection, run two ways: ${LAYOUTS.map((l) => l.title).join(', and ')}. Latency is scheduled send → CRM received, so a lagging generator shows up. A 10 s warm-up at 500/s (not measured) precedes each layout: a cold process runs its first seconds at up to 1.5 s (see slowestBySecond in the JSON).`,
      params: { rates: RATES, durationMs, layouts: LAYOUTS.map((l) => l.title) },
      metrics,
      targets,
      checks: [
        check(
          `every unsubscribe sent was accepted and arrived at the CRM (within ${arrivalWaitMs(durationMs) / 1000} s of the end of the load)`,
          short.length === 0,
          short
            .map((r) => `${r.rate}/s: ${r.accepted} accepted, ${r.arrived} arrived of ${r.sent}`)
            .join('; ') || undefined,
        ),
      ],
      runs,
      chart: { latency: chart },
      notes: [
        'When deliveries come in faster than the worker drains them, the backlog (and so the latency) grows for as long as the load lasts: a p50 in seconds means the engine did not keep up with that rate, not a slow request.',
      ],
    };
  },
};
