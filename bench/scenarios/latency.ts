import { createApiKey } from '../lib/backlog.js';
import { benchConnection } from '../lib/connections.js';
import type { Engine } from '../lib/context.js';
import { fixedRate, warmUp, type FixedRateRun } from '../lib/fixed-rate.js';
import { check, metric, target } from '../lib/result.js';
import type { Metric, Scenario, Target } from '../lib/types.js';

export const RATES = [500, 1_000];

export const latency: Scenario = {
  id: 'latency',
  title: 'End-to-end latency at fixed rates',
  async run(ctx) {
    const durationMs = ctx.options.quick ? 2_000 : 30_000;
    const runs: FixedRateRun[][] = [];
    for (let run = 0; run < ctx.options.runs; run++) {
      const prefix = ctx.prefix('latency');
      const tag = `latency-${run}`;
      const connection = benchConnection('bench-latency', `${ctx.crm.url}/ok/${tag}/unsubscribes`);
      let engine: Engine | undefined;
      try {
        engine = await ctx.startEngine({ prefix, connections: [connection], roles: 'api,worker' });
        const apiKey = await createApiKey(ctx.redis, prefix);
        await warmUp(ctx, engine, apiKey, tag);
        const perRate: FixedRateRun[] = [];
        for (const rate of RATES) {
          ctx.log(`latency run ${run + 1}/${ctx.options.runs}: ${rate}/s for ${durationMs / 1000} s`);
          const result = await fixedRate(ctx, engine, apiKey, {
            tag,
            rate,
            durationMs,
            emailPrefix: `${tag}-${rate}`,
          });
          ctx.log(
            `  ${rate}/s: p50 ${result.latency.p50.toFixed(1)} ms, p99 ${result.latency.p99.toFixed(1)} ms, ${result.arrived}/${result.sent} arrived`,
          );
          perRate.push(result);
        }
        runs.push(perRate);
      } finally {
        await engine?.stop();
        await ctx.cleanPrefix(prefix);
      }
    }
    const metrics: Metric[] = [];
    const targets: Target[] = [];
    const chart: Array<{ label: string; p50: number; p95: number; p99: number }> = [];
    RATES.forEach((rate, i) => {
      const of = (pick: (r: FixedRateRun) => number) => runs.map((perRate) => pick(perRate[i]!));
      const label = `${rate.toLocaleString('en-US')}/s`;
      const p50 = metric(`p50_${rate}`, `${label} p50`, 'ms', of((r) => r.latency.p50));
      const p95 = metric(`p95_${rate}`, `${label} p95`, 'ms', of((r) => r.latency.p95));
      const p99 = metric(`p99_${rate}`, `${label} p99`, 'ms', of((r) => r.latency.p99));
      metrics.push(
        p50,
        p95,
        p99,
        metric(`max_${rate}`, `${label} max`, 'ms', of((r) => r.latency.max)),
        metric(`arrived_${rate}`, `${label} arrived / sent`, '%', of((r) => (100 * r.arrived) / r.sent)),
        metric(`lag_${rate}`, `${label} generator lag p99`, 'ms', of((r) => r.lag.p99)),
        metric(`ingest_p99_${rate}`, `${label} POST p99`, 'ms', of((r) => r.ingest.p99)),
      );
      if (rate === 500) targets.push(target('p99 < 100 ms at 500/s', p99, '<', 100));
      chart.push({ label, p50: p50.median, p95: p95.median, p99: p99.median });
    });
    const all = runs.flat();
    const short = all.filter((r) => r.arrived < r.sent || r.accepted < r.sent);
    return {
      id: 'latency',
      title: this.title,
      description: `Unsubscribes sent at ${RATES.join(' and ')}/s (open loop: each has a scheduled send time, carried in its attributes into the delivery body) for ${durationMs / 1000} s to one engine process (ROLES=api,worker, the default) with one connection; latency is scheduled send → CRM received, so a lagging generator shows up.`,
      params: { rates: RATES, durationMs, roles: 'api,worker' },
      metrics,
      targets,
      checks: [
        check(
          'every unsubscribe sent was accepted and arrived at the CRM',
          short.length === 0,
          short.map((r) => `${r.rate}/s: ${r.accepted} accepted, ${r.arrived} arrived of ${r.sent}`).join('; ') ||
            undefined,
        ),
      ],
      runs,
      chart: { latency: chart },
      notes: [],
    };
  },
};
