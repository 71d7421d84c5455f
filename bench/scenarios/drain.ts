import { mkdir, mkdtemp, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { deliveredCount, deliveryQueueName, fillBacklog, jobCounts } from '../lib/backlog.js';
import { BENCH_CRM_KEY, BODY_TEMPLATE, benchConnection } from '../lib/connections.js';
import type { BenchContext, CrmStats } from '../lib/context.js';
import { spawnScript, type Child } from '../lib/processes.js';
import { check, metric, target } from '../lib/result.js';
import { Sampler, windowStats } from '../lib/sampler.js';
import type { Scenario } from '../lib/types.js';
import { summarizeProfile } from '../profile-summary.js';

const CONNECTION_ID = 'bench-drain';

export interface DrainRun {
  who: 'engine' | 'baseline';
  deliveries: number;
  fillMs: number;
  arrived: number;
  received: number;
  authFailures: number;
  /** First → last delivery at the CRM. */
  spanMs: number;
  deliveriesPerSecond: number;
  cpuMsPerDelivery: number;
  redisCpuMsPerDelivery: number;
  rssMaxMiB: number;
  rssMedianMiB: number;
  jobs: Record<string, number>;
  /** The engine's deliveries recorded as delivered (their last attempt); the baseline keeps no records. */
  delivered?: number;
}

/**
 * Fills a backlog, starts a consumer (the engine's worker role, or the bare baseline worker), and
 * times it at the CRM from the first delivery received to the last, so process start-up is left out.
 * Also samples the consumer's RSS and CPU (and Redis's CPU) over that window.
 */
export async function drainOnce(
  ctx: BenchContext,
  who: 'engine' | 'baseline',
  deliveries: number,
  tag: string,
  options: {
    cpuProfDir?: string;
    batch?: { maxSize: number; maxWait: string };
    /** The CRM answers each request this long after it arrives (default: at once). */
    crmLatencyMs?: number;
  } = {},
): Promise<DrainRun & { spawnedAt: number; first: number; last: number }> {
  const prefix = ctx.prefix(`drain-${who}`);
  const latency = options.crmLatencyMs ? `?latencyMs=${options.crmLatencyMs}` : '';
  const plain = benchConnection(CONNECTION_ID, `${ctx.crm.url}/ok/${tag}/unsubscribes${latency}`);
  // Batched: the same body per unsubscribe, listed in one request (the CRM counts the items).
  const connection = options.batch
    ? {
        ...plain,
        batch: options.batch,
        request: { ...plain.request, body: { json: { items: [{ $each: BODY_TEMPLATE }] } } },
      }
    : plain;
  let consumer: Child | undefined;
  try {
    // The engine takes the backlog as ingest leaves it; the bare worker, one BullMQ job per delivery.
    const fill = await fillBacklog(ctx.redis, prefix, [connection], deliveries, {
      emailPrefix: tag,
      oneJobEach: who === 'baseline',
    });
    consumer =
      who === 'engine'
        ? await ctx.startEngine({
            prefix,
            connections: [connection],
            roles: 'worker',
            ...(options.cpuProfDir ? { cpuProfDir: options.cpuProfDir } : {}),
          })
        : spawnScript('baseline-worker', 'baseline-worker.ts', {
            BENCH_REDIS_URL: ctx.options.redisUrl,
            BENCH_PREFIX: prefix,
            BENCH_QUEUE: deliveryQueueName(CONNECTION_ID),
            BENCH_TARGET_URL: connection.request.url,
            BENCH_CRM_KEY,
            WORKER_CONCURRENCY: String(ctx.options.concurrency),
          });
    const sampler = new Sampler(consumer.pid, ctx.redis);
    let stats: CrmStats;
    try {
      stats = await ctx.crm.waitFor(tag, deliveries, 60_000 + deliveries * 10, consumer);
    } finally {
      await sampler.stop();
    }
    // BullMQ marks a job completed just after its POST is answered, and the engine records the
    // attempt then: give the last ones a moment. The engine's deliveries travel in batch jobs, with
    // no job of their own, so they are counted by their attempt records.
    const settled = async () => {
      const jobs = await jobCounts(ctx.redis, prefix, CONNECTION_ID);
      const delivered = who === 'engine' ? await deliveredCount(ctx.redis, prefix) : undefined;
      const finished = (delivered ?? jobs.completed ?? 0) + (jobs.failed ?? 0);
      return { jobs, delivered, done: finished >= deliveries };
    };
    let { jobs, delivered, done } = await settled();
    for (let i = 0; i < 20 && !done; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      ({ jobs, delivered, done } = await settled());
    }
    await consumer.stop();
    const first = stats.first!;
    const last = stats.last!;
    const window = windowStats(sampler.samples, first, last);
    const spanMs = last - first;
    return {
      who,
      deliveries,
      fillMs: fill.ms,
      arrived: stats.unique,
      received: stats.count,
      authFailures: stats.authFailures,
      spanMs,
      deliveriesPerSecond: ((deliveries - 1) * 1000) / spanMs,
      cpuMsPerDelivery: window.cpuMs / deliveries,
      redisCpuMsPerDelivery: window.redisCpuMs / deliveries,
      rssMaxMiB: window.rssMaxMiB,
      rssMedianMiB: window.rssMedianMiB,
      jobs,
      ...(delivered === undefined ? {} : { delivered }),
      spawnedAt: consumer.spawnedAt,
      first,
      last,
    };
  } finally {
    await consumer?.stop();
    await ctx.cleanPrefix(prefix);
  }
}

/**
 * One more engine drain, not measured, under `node --cpu-prof` (profiling slows the process down),
 * summarised over the window the CRM was receiving deliveries.
 */
export async function profileDrain(
  ctx: BenchContext,
  deliveries: number,
  tag: string,
  options: { batch?: { maxSize: number; maxWait: string } } = {},
): Promise<Record<string, unknown>> {
  const parent = ctx.options.cpuProfDir ?? ctx.tmpDir;
  await mkdir(parent, { recursive: true });
  const dir = await mkdtemp(path.join(parent, `${tag}-`));
  ctx.log(`${tag}: profiling one more engine drain (node --cpu-prof) into ${dir}`);
  const profiled = await drainOnce(ctx, 'engine', deliveries, tag, { ...options, cpuProfDir: dir });
  // Worker threads (tsx's loader) write profiles too: the main thread's is the biggest.
  const files = (await readdir(dir)).filter((name) => name.endsWith('.cpuprofile'));
  const sized = await Promise.all(
    files.map(async (name) => ({ name, size: (await stat(path.join(dir, name))).size })),
  );
  const file = sized.sort((a, b) => b.size - a.size)[0]?.name;
  if (!file) return { error: 'the engine wrote no .cpuprofile' };
  const summary = await summarizeProfile(path.join(dir, file), {
    fromMs: profiled.first - profiled.spawnedAt,
    toMs: profiled.last - profiled.spawnedAt,
    top: 20,
  });
  return { deliveriesPerSecondWhileProfiled: profiled.deliveriesPerSecond, ...summary };
}

export const drain: Scenario = {
  id: 'drain',
  title: 'Drain a backlog (engine vs bare BullMQ + undici)',
  async run(ctx) {
    const deliveries = ctx.options.quick ? 300 : 20_000;
    const runs: Array<{ engine: DrainRun; baseline: DrainRun; ratio: number }> = [];
    for (let run = 0; run < ctx.options.runs; run++) {
      // Alternate who goes first, so drift over the run (warm Redis, page cache) favours neither.
      const order = run % 2 === 0 ? (['engine', 'baseline'] as const) : (['baseline', 'engine'] as const);
      const got: Partial<Record<'engine' | 'baseline', DrainRun>> = {};
      for (const who of order) {
        ctx.log(`drain run ${run + 1}/${ctx.options.runs}: ${who}, ${deliveries} deliveries`);
        const {
          spawnedAt: _s,
          first: _f,
          last: _l,
          ...result
        } = await drainOnce(ctx, who, deliveries, `drain-${who}-${run}`);
        got[who] = result;
        ctx.log(`  ${who}: ${result.deliveriesPerSecond.toFixed(0)} deliveries/s`);
      }
      runs.push({
        engine: got.engine!,
        baseline: got.baseline!,
        ratio: got.engine!.deliveriesPerSecond / got.baseline!.deliveriesPerSecond,
      });
    }

    const extra = ctx.options.cpuProf
      ? { profile: await profileDrain(ctx, deliveries, 'drain-profiled') }
      : undefined;

    const ratio = metric(
      'ratio',
      'engine / baseline',
      '×',
      runs.map((r) => r.ratio),
    );
    const engineRate = metric(
      'engine_rate',
      'engine',
      'deliveries/s',
      runs.map((r) => r.engine.deliveriesPerSecond),
    );
    const baselineRate = metric(
      'baseline_rate',
      'baseline (BullMQ Worker + undici)',
      'deliveries/s',
      runs.map((r) => r.baseline.deliveriesPerSecond),
    );
    const all = runs.flatMap((r) => [r.engine, r.baseline]);
    const missing = all.filter((r) => r.arrived < r.deliveries);
    const failed = all.filter(
      (r) => (r.jobs.failed ?? 0) > 0 || (r.delivered ?? r.jobs.completed ?? 0) < r.deliveries,
    );
    return {
      id: 'drain',
      title: this.title,
      description: `A backlog of ${deliveries.toLocaleString('en-US')} deliveries to one connection (JSON body template, api_key auth from a secret, default rules, attempt records), queued with the engine's DeliveryProducer, drained by one ROLES=worker engine process, where the deliveries travel up to 100 to a BullMQ batch job, each in a request of its own; the baseline drains the same backlog queued the bare stack's way, one BullMQ job per delivery, with a bare BullMQ Worker POSTing the same body with undici. Both at concurrency ${ctx.options.concurrency}. Timed at the CRM from the first delivery received to the last (process start-up excluded).`,
      params: {
        deliveries,
        concurrency: ctx.options.concurrency,
        backlog: 'DeliveryProducer (in the harness); for the baseline, one BullMQ job per delivery',
      },
      metrics: [
        engineRate,
        baselineRate,
        ratio,
        metric(
          'engine_cpu',
          'engine worker CPU per delivery',
          'ms',
          runs.map((r) => r.engine.cpuMsPerDelivery),
        ),
        metric(
          'baseline_cpu',
          'baseline worker CPU per delivery',
          'ms',
          runs.map((r) => r.baseline.cpuMsPerDelivery),
        ),
        metric(
          'engine_redis_cpu',
          'Redis CPU per delivery (engine)',
          'ms',
          runs.map((r) => r.engine.redisCpuMsPerDelivery),
        ),
        metric(
          'baseline_redis_cpu',
          'Redis CPU per delivery (baseline)',
          'ms',
          runs.map((r) => r.baseline.redisCpuMsPerDelivery),
        ),
        metric(
          'engine_rss_max',
          'engine RSS during drain, max',
          'MiB',
          runs.map((r) => r.engine.rssMaxMiB),
        ),
        metric(
          'engine_rss_median',
          'engine RSS during drain, median',
          'MiB',
          runs.map((r) => r.engine.rssMedianMiB),
        ),
        metric(
          'baseline_rss_max',
          'baseline RSS during drain, max',
          'MiB',
          runs.map((r) => r.baseline.rssMaxMiB),
        ),
      ],
      targets: [target('drain ≥ 0.9× the bare baseline', ratio, '>=', 0.9)],
      checks: [
        check(
          'every delivery arrived at the CRM (engine and baseline, every run)',
          missing.length === 0,
          missing.map((r) => `${r.who}: ${r.arrived}/${r.deliveries}`).join('; ') || undefined,
        ),
        check(
          'every delivery delivered (engine: by its attempt record; baseline: its job completed), none failed',
          failed.length === 0,
          failed.map((r) => `${r.who}: ${JSON.stringify(r.jobs)}`).join('; ') || undefined,
        ),
        check(
          'the CRM accepted every request (API key rendered from the secret)',
          all.every((r) => r.authFailures === 0),
        ),
      ],
      runs,
      chart: {
        throughput: [
          { label: 'drain: engine', value: engineRate.median },
          { label: 'drain: baseline', value: baselineRate.median },
        ],
      },
      notes: [
        `Duplicates at the CRM (at-least-once re-sends): ${all.map((r) => r.received - r.arrived).reduce((a, b) => a + b, 0)}.`,
        "The engine's HTTP sender keeps at most WORKER_CONCURRENCY sockets per CRM origin (src/http/sender.ts); the baseline uses undici's default Agent (no per-origin cap).",
      ],
      ...(extra ? { extra } : {}),
    };
  },
};
