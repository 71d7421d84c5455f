import { createApiKey } from '../lib/backlog.js';
import { benchConnection } from '../lib/connections.js';
import type { BenchContext, Crm, Engine } from '../lib/context.js';
import { arrivalWaitMs, fixedRate, warmUp, type FixedRateRun } from '../lib/fixed-rate.js';
import { check, metric } from '../lib/result.js';
import type { Metric, Scenario } from '../lib/types.js';

const RATE = 200;

interface IsolationRun {
  alone: FixedRateRun;
  withBroken: FixedRateRun & { brokenAttempts: number };
}

async function measure(
  ctx: BenchContext,
  run: number,
  hang: Crm | undefined,
  durationMs: number,
): Promise<FixedRateRun & { brokenAttempts: number }> {
  const name = hang ? 'broken' : 'alone';
  const prefix = ctx.prefix(`isolation-${name}`);
  const tag = `isolation-${name}-${run}`;
  const brokenTag = `isolation-hang-${run}`;
  const connections = [benchConnection('bench-healthy', `${ctx.crm.url}/ok/${tag}/unsubscribes`)];
  if (hang)
    connections.push(
      benchConnection('bench-broken', `${hang.url}/hang/${brokenTag}/unsubscribes`, {
        request: {
          ...connections[0]!.request,
          url: `${hang.url}/hang/${brokenTag}/unsubscribes`,
          timeouts: { connect: '1s', headers: '1s', body: '1s' },
        },
        retry: { attempts: 3, backoff: 'fixed', delay: '1s', jitter: false },
      }),
    );
  let engine: Engine | undefined;
  try {
    engine = await ctx.startEngine({ prefix, connections, roles: 'api,worker' });
    const apiKey = await createApiKey(ctx.redis, prefix);
    await warmUp(ctx, engine, apiKey, tag);
    await hang?.reset();
    const result = await fixedRate(ctx, engine, apiKey, {
      tag,
      rate: RATE,
      durationMs,
      emailPrefix: `${tag}-load`,
    });
    const brokenAttempts = hang ? (await hang.count(brokenTag)).count : 0;
    return { ...result, brokenAttempts };
  } finally {
    await engine?.stop();
    await ctx.cleanPrefix(prefix);
  }
}

export const isolation: Scenario = {
  id: 'isolation',
  title: "Isolation: a healthy connection's latency while another CRM never answers",
  async run(ctx) {
    const durationMs = ctx.options.quick ? 2_000 : 15_000;
    const hang = await ctx.startCrm('crm-hang');
    const runs: IsolationRun[] = [];
    try {
      for (let run = 0; run < ctx.options.runs; run++) {
        const order = run % 2 === 0 ? ['alone', 'broken'] : ['broken', 'alone'];
        const got: Partial<IsolationRun> = {};
        for (const which of order) {
          ctx.log(
            `isolation run ${run + 1}/${ctx.options.runs}: ${which}, ${RATE}/s for ${durationMs / 1000} s`,
          );
          const result = await measure(ctx, run, which === 'broken' ? hang : undefined, durationMs);
          ctx.log(
            `  ${which}: healthy p99 ${result.latency.p99.toFixed(1)} ms, ${result.arrived}/${result.sent} arrived${which === 'broken' ? `, ${result.brokenAttempts} requests hung at the broken CRM` : ''}`,
          );
          if (which === 'alone') got.alone = result;
          else got.withBroken = result;
        }
        runs.push(got as IsolationRun);
      }
    } finally {
      await hang.child.stop();
    }
    // p50/p95/p99 of the healthy connection, alone and beside the hanging CRM.
    const percentiles = (side: 'alone' | 'withBroken', key: string, label: string) =>
      (['p50', 'p95', 'p99'] as const).map((p) =>
        metric(
          `${key}_${p}`,
          `${label} ${p}`,
          'ms',
          runs.map((r) => r[side].latency[p]),
        ),
      );
    const [p50a, p95a, p99a] = percentiles('alone', 'alone', 'healthy alone') as [Metric, Metric, Metric];
    const [p50b, p95b, p99b] = percentiles('withBroken', 'broken', 'healthy beside a hanging CRM') as [
      Metric,
      Metric,
      Metric,
    ];
    const all = runs.flatMap((r) => [r.alone, r.withBroken]);
    const short = all.filter((r) => r.arrived < r.sent);
    return {
      id: 'isolation',
      title: this.title,
      description: `${RATE} unsubscribes/s for ${durationMs / 1000} s to one engine process (ROLES=api,worker). Alone: one healthy connection. Beside a hanging CRM: every unsubscribe also goes to a second connection whose CRM (its own process) never answers (timeouts 1 s, 3 attempts 1 s apart, circuit breaker off, so it keeps its ${ctx.options.concurrency} worker slots busy). Latency is scheduled send → received at the healthy CRM.`,
      params: { rate: RATE, durationMs, brokenTimeouts: '1s', brokenCircuit: 'off' },
      metrics: [
        p50a,
        p95a,
        p99a,
        p50b,
        p95b,
        p99b,
        metric(
          'p99_ratio',
          'p99 beside a hanging CRM / alone',
          '×',
          runs.map((r) => r.withBroken.latency.p99 / r.alone.latency.p99),
        ),
        metric(
          'broken_attempts',
          'requests that hung at the broken CRM',
          'count',
          runs.map((r) => r.withBroken.brokenAttempts),
        ),
      ],
      targets: [],
      checks: [
        check(
          `every unsubscribe reached the healthy CRM, in both cases (within ${arrivalWaitMs(durationMs) / 1000} s of the end of the load)`,
          short.length === 0,
          short.map((r) => `${r.arrived}/${r.sent}`).join('; ') || undefined,
        ),
        check(
          'the broken CRM was really hit',
          runs.every((r) => r.withBroken.brokenAttempts > 0),
        ),
      ],
      runs,
      chart: {
        latency: [
          { label: 'healthy alone', p50: p50a.median, p95: p95a.median, p99: p99a.median },
          { label: 'beside hanging CRM', p50: p50b.median, p95: p95b.median, p99: p99b.median },
        ],
      },
      notes: [],
    };
  },
};
