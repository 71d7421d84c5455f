import { drainOnce, profileDrain, type DrainRun } from './drain.js';
import { check, metric, target } from '../lib/result.js';
import type { Scenario } from '../lib/types.js';

const BATCH = { maxSize: 100, maxWait: '200ms' };

/**
 * The drain of one backlog by the engine, unbatched and then with `batch: { maxSize: 100 }` on the
 * same connection (the same body per unsubscribe, listed with `$each`), in the same run.
 */
export const batchDrain: Scenario = {
  id: 'batch-drain',
  title: 'Batch delivery: drain a backlog unbatched and batched (engine)',
  async run(ctx) {
    const deliveries = ctx.options.quick ? 300 : 20_000;
    const runs: Array<{ unbatched: DrainRun; batched: DrainRun; ratio: number }> = [];
    for (let run = 0; run < ctx.options.runs; run++) {
      ctx.log(
        `batch-drain run ${run + 1}/${ctx.options.runs}: ${deliveries} deliveries, unbatched then batched`,
      );
      const strip = ({
        spawnedAt: _s,
        first: _f,
        last: _l,
        ...rest
      }: Awaited<ReturnType<typeof drainOnce>>) => rest;
      const unbatched = strip(await drainOnce(ctx, 'engine', deliveries, `batch-off-${run}`));
      const batched = strip(await drainOnce(ctx, 'engine', deliveries, `batch-on-${run}`, { batch: BATCH }));
      ctx.log(
        `  unbatched ${unbatched.deliveriesPerSecond.toFixed(0)}/s, batched ${batched.deliveriesPerSecond.toFixed(0)}/s`,
      );
      runs.push({ unbatched, batched, ratio: batched.deliveriesPerSecond / unbatched.deliveriesPerSecond });
    }
    const ratio = metric(
      'ratio',
      'batched / unbatched',
      '×',
      runs.map((r) => r.ratio),
    );
    const all = runs.flatMap((r) => [r.unbatched, r.batched]);
    const extra = ctx.options.cpuProf
      ? { profile: await profileDrain(ctx, deliveries, 'batch-drain-profiled', { batch: BATCH }) }
      : undefined;
    return {
      id: 'batch-drain',
      title: this.title,
      description: `The drain scenario's backlog of ${deliveries.toLocaleString('en-US')} deliveries, drained by one ROLES=worker engine process twice: as is, and with batch ${JSON.stringify(BATCH)} (the same body per unsubscribe, in a list). Timed at the CRM from the first delivery received to the last; a batched request counts once per unsubscribe it carries.`,
      params: { deliveries, batch: BATCH, concurrency: ctx.options.concurrency },
      metrics: [
        metric(
          'unbatched_rate',
          'unbatched',
          'deliveries/s',
          runs.map((r) => r.unbatched.deliveriesPerSecond),
        ),
        metric(
          'batched_rate',
          'batched (maxSize 100)',
          'deliveries/s',
          runs.map((r) => r.batched.deliveriesPerSecond),
        ),
        ratio,
        metric(
          'batched_cpu',
          'engine CPU per delivery, batched',
          'ms',
          runs.map((r) => r.batched.cpuMsPerDelivery),
        ),
        metric(
          'batched_rss_max',
          'engine RSS, batched, max',
          'MiB',
          runs.map((r) => r.batched.rssMaxMiB),
        ),
      ],
      targets: [target('batched ≥ 10× the unbatched drain', ratio, '>=', 10)],
      checks: [
        check(
          'every delivery arrived at the CRM, batched and not',
          all.every((r) => r.arrived >= r.deliveries),
        ),
        check(
          'every job completed, none failed',
          all.every((r) => (r.jobs.failed ?? 0) === 0 && (r.jobs.completed ?? 0) >= r.deliveries),
        ),
      ],
      runs,
      chart: {
        throughput: [
          { label: 'drain: unbatched', value: metricMedian(runs, 'unbatched') },
          { label: 'drain: batched', value: metricMedian(runs, 'batched') },
        ],
      },
      notes: [
        'Also the drain of a CPU cost: unbatched, the engine spends about the same per delivery on its own work as on the BullMQ job. Batched, its own work per delivery shrinks, but every delivery is still one BullMQ job (fetched, locked, completed), so the job sets the ceiling; see docs/performance.md.',
      ],
      ...(extra ? { extra } : {}),
    };
  },
};

function metricMedian(
  runs: Array<{ unbatched: DrainRun; batched: DrainRun }>,
  which: 'unbatched' | 'batched',
) {
  const values = runs.map((r) => r[which].deliveriesPerSecond).sort((a, b) => a - b);
  return values[Math.floor(values.length / 2)] ?? 0;
}
