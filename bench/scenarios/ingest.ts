import { bullPrefix, createApiKey, deliveryQueueName, queuedCount } from '../lib/backlog.js';
import { benchConnection } from '../lib/connections.js';
import type { BenchContext } from '../lib/context.js';
import { spawnScript, type Child } from '../lib/processes.js';
import { check, metric, target } from '../lib/result.js';
import type { Scenario } from '../lib/types.js';
import type { LoadSummary } from '../load-gen.js';

const CONNECTION_ID = 'bench-ingest';

interface IngestRun {
  who: 'engine' | 'baseline';
  warmup: LoadSummary;
  load: LoadSummary;
  /** Jobs found in Redis afterwards (warm-up included). */
  queued: number;
}

async function ingestOnce(
  ctx: BenchContext,
  who: 'engine' | 'baseline',
  run: number,
  durationMs: number,
  warmupMs: number,
): Promise<IngestRun> {
  const prefix = ctx.prefix(`ingest-${who}`);
  const connection = benchConnection(CONNECTION_ID, `${ctx.crm.url}/ok/ingest-${run}/unsubscribes`);
  let server: Child | undefined;
  try {
    let url: string;
    let apiKey = 'none';
    if (who === 'engine') {
      const engine = await ctx.startEngine({ prefix, connections: [connection], roles: 'api' });
      server = engine;
      url = engine.url!;
      apiKey = await createApiKey(ctx.redis, prefix);
    } else {
      const child = spawnScript('baseline-ingest', 'baseline-ingest.ts', {
        BENCH_REDIS_URL: ctx.options.redisUrl,
        BENCH_BULL_PREFIX: bullPrefix(prefix),
        BENCH_QUEUE: deliveryQueueName(CONNECTION_ID),
      });
      server = child;
      url = `http://127.0.0.1:${(await child.jsonLine<{ port: number }>(20_000)).port}`;
    }
    const config = {
      url: `${url}/v1/unsubscribes`,
      apiKey,
      mode: 'closed' as const,
      connections: ctx.options.ingestConnections,
      emailPrefix: `ingest-${who}-${run}`,
    };
    const warmup = await ctx.loadGen({
      ...config,
      durationMs: warmupMs,
      emailPrefix: `${config.emailPrefix}-w`,
    });
    const load = await ctx.loadGen({ ...config, durationMs });
    // The baseline's queue has the engine's queue name, so one count reads either: the engine's
    // deliveries wait in the connection's buffer, the baseline's are jobs.
    const queued = await queuedCount(ctx.redis, prefix, CONNECTION_ID);
    return { who, warmup, load, queued };
  } finally {
    await server?.stop();
    await ctx.cleanPrefix(prefix);
  }
}

export const ingest: Scenario = {
  id: 'ingest',
  title: 'Ingest at maximum rate (engine vs bare Fastify + queue.add)',
  async run(ctx) {
    const durationMs = ctx.options.quick ? 2_000 : 10_000;
    const warmupMs = ctx.options.quick ? 500 : 2_000;
    const runs: Array<{ engine: IngestRun; baseline: IngestRun }> = [];
    for (let run = 0; run < ctx.options.runs; run++) {
      const order = run % 2 === 0 ? (['engine', 'baseline'] as const) : (['baseline', 'engine'] as const);
      const got: Partial<Record<'engine' | 'baseline', IngestRun>> = {};
      for (const who of order) {
        ctx.log(`ingest run ${run + 1}/${ctx.options.runs}: ${who}, ${durationMs / 1000} s`);
        got[who] = await ingestOnce(ctx, who, run, durationMs, warmupMs);
        const { load } = got[who];
        ctx.log(
          `  ${who}: ${load.acceptedPerSecond.toFixed(0)} accepted/s, p50 ${load.latency.p50.toFixed(1)} ms, p99 ${load.latency.p99.toFixed(1)} ms`,
        );
      }
      runs.push({ engine: got.engine!, baseline: got.baseline! });
    }
    const engineRate = metric(
      'engine_rate',
      'engine accepted',
      'req/s',
      runs.map((r) => r.engine.load.acceptedPerSecond),
    );
    const engineP99 = metric(
      'engine_p99',
      'engine p99',
      'ms',
      runs.map((r) => r.engine.load.latency.p99),
    );
    const baselineRate = metric(
      'baseline_rate',
      'baseline accepted',
      'req/s',
      runs.map((r) => r.baseline.load.acceptedPerSecond),
    );
    const all = runs.flatMap((r) => [r.engine, r.baseline]);
    const refused = all.filter((r) => r.load.accepted !== r.load.sent || r.warmup.accepted !== r.warmup.sent);
    const lost = all.filter((r) => r.queued !== r.load.accepted + r.warmup.accepted);
    return {
      id: 'ingest',
      title: this.title,
      description: `POST /v1/unsubscribes for ${durationMs / 1000} s at maximum rate from ${ctx.options.ingestConnections} keep-alive connections (undici Pool, closed loop, after a ${warmupMs / 1000} s warm-up), against a ROLES=api engine with one linked connection; the baseline is a Fastify route doing only queue.add.`,
      params: { durationMs, warmupMs, connections: ctx.options.ingestConnections },
      metrics: [
        engineRate,
        metric(
          'engine_p50',
          'engine p50',
          'ms',
          runs.map((r) => r.engine.load.latency.p50),
        ),
        engineP99,
        baselineRate,
        metric(
          'baseline_p50',
          'baseline p50',
          'ms',
          runs.map((r) => r.baseline.load.latency.p50),
        ),
        metric(
          'baseline_p99',
          'baseline p99',
          'ms',
          runs.map((r) => r.baseline.load.latency.p99),
        ),
        metric(
          'ratio',
          'engine / baseline (accepted/s)',
          '×',
          runs.map((r) => r.engine.load.acceptedPerSecond / r.baseline.load.acceptedPerSecond),
        ),
      ],
      targets: [
        target('ingest ≥ 3,000 accepted/s', engineRate, '>=', 3_000),
        target('ingest p99 < 50 ms', engineP99, '<', 50),
      ],
      checks: [
        check(
          'every request answered 201',
          refused.length === 0,
          refused
            .map((r) => `${r.who}: ${r.load.accepted}/${r.load.sent} ${JSON.stringify(r.load.statuses)}`)
            .join('; ') || undefined,
        ),
        check(
          'every 201 left a queued delivery in Redis',
          lost.length === 0,
          lost
            .map((r) => `${r.who}: ${r.queued} queued for ${r.load.accepted + r.warmup.accepted}`)
            .join('; ') || undefined,
        ),
      ],
      runs,
      chart: {
        throughput: [
          { label: 'ingest: engine', value: engineRate.median },
          { label: 'ingest: baseline', value: baselineRate.median },
        ],
      },
      notes: [
        'The load generator, the engine and Redis share the same cores, so these are lower bounds for a machine where they do not.',
      ],
    };
  },
};
