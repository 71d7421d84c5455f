import { drainOnce, profileDrain, type DrainRun } from './drain.js';
import { check, metric, target } from '../lib/result.js';
import type { Scenario } from '../lib/types.js';

const BATCH = { maxSize: 100, maxWait: '200ms' };
/** A CRM across a network: each request answered this long after it arrives. */
const NETWORK_LATENCY_MS = 100;

interface Pair {
  unbatched: DrainRun;
  batched: DrainRun;
  ratio: number;
}

/**
 * The drain of one backlog by the engine, unbatched and then with `batch: { maxSize: 100 }` on the
 * same connection (the same body per unsubscribe, listed with `$each`), in the same run, against two
 * CRMs: the loopback one answering at once, and the same answering 100 ms after each request, as
 * CRM APIs across the internet do. Batching saves requests; against an instant CRM a request costs
 * only the engine's CPU, so that pair shows what batching saves of the engine's own work.
 */
export const batchDrain: Scenario = {
  id: 'batch-drain',
  title: 'Batch delivery: drain a backlog unbatched and batched (engine)',
  async run(ctx) {
    const deliveries = ctx.options.quick ? 300 : 20_000;
    // Unbatched against a 100 ms CRM, a process delivers about WORKER_CONCURRENCY per 100 ms.
    const networkedDeliveries = ctx.options.quick ? 200 : 6_000;
    const strip = ({ spawnedAt: _s, first: _f, last: _l, ...rest }: Awaited<ReturnType<typeof drainOnce>>) =>
      rest;
    const pair = async (label: string, count: number, tag: string, crmLatencyMs?: number): Promise<Pair> => {
      const latency = crmLatencyMs ? { crmLatencyMs } : {};
      const unbatched = strip(await drainOnce(ctx, 'engine', count, `${tag}-off`, latency));
      const batched = strip(await drainOnce(ctx, 'engine', count, `${tag}-on`, { batch: BATCH, ...latency }));
      ctx.log(
        `  ${label}: unbatched ${unbatched.deliveriesPerSecond.toFixed(0)}/s, batched ${batched.deliveriesPerSecond.toFixed(0)}/s`,
      );
      return { unbatched, batched, ratio: batched.deliveriesPerSecond / unbatched.deliveriesPerSecond };
    };
    const runs: Array<{ instant: Pair; networked: Pair }> = [];
    for (let run = 0; run < ctx.options.runs; run++) {
      ctx.log(
        `batch-drain run ${run + 1}/${ctx.options.runs}: ${deliveries} deliveries against an instant CRM, ${networkedDeliveries} against a ${NETWORK_LATENCY_MS} ms one; unbatched then batched`,
      );
      runs.push({
        instant: await pair('instant CRM', deliveries, `batch-${run}`),
        networked: await pair(
          `${NETWORK_LATENCY_MS} ms CRM`,
          networkedDeliveries,
          `batch-net-${run}`,
          NETWORK_LATENCY_MS,
        ),
      });
    }
    const ratio = metric(
      'ratio',
      'batched / unbatched, instant CRM',
      '×',
      runs.map((r) => r.instant.ratio),
    );
    const networkedRatio = metric(
      'networked_ratio',
      `batched / unbatched, CRM answering in ${NETWORK_LATENCY_MS} ms`,
      '×',
      runs.map((r) => r.networked.ratio),
    );
    const all = runs.flatMap((r) => [
      r.instant.unbatched,
      r.instant.batched,
      r.networked.unbatched,
      r.networked.batched,
    ]);
    const extra = ctx.options.cpuProf
      ? { profile: await profileDrain(ctx, deliveries, 'batch-drain-profiled', { batch: BATCH }) }
      : undefined;
    const rates = (which: 'instant' | 'networked', kind: 'unbatched' | 'batched') =>
      runs.map((r) => r[which][kind].deliveriesPerSecond);
    return {
      id: 'batch-drain',
      title: this.title,
      description: `A backlog drained by one ROLES=worker engine process twice, as is and with batch ${JSON.stringify(BATCH)} (the same body per unsubscribe, in a list), against two CRMs: the loopback one answering at once (${deliveries.toLocaleString('en-US')} deliveries), and the same answering ${NETWORK_LATENCY_MS} ms after each request arrives, as a CRM across the internet does (${networkedDeliveries.toLocaleString('en-US')} deliveries). Both with WORKER_CONCURRENCY ${ctx.options.concurrency}, which is also the sender's sockets per CRM. Timed at the CRM from the first delivery received to the last; a batched request counts once per unsubscribe it carries.`,
      params: {
        deliveries,
        networkedDeliveries,
        networkLatencyMs: NETWORK_LATENCY_MS,
        batch: BATCH,
        concurrency: ctx.options.concurrency,
      },
      metrics: [
        metric('unbatched_rate', 'unbatched, instant CRM', 'deliveries/s', rates('instant', 'unbatched')),
        metric(
          'batched_rate',
          'batched (maxSize 100), instant CRM',
          'deliveries/s',
          rates('instant', 'batched'),
        ),
        ratio,
        metric(
          'networked_unbatched_rate',
          `unbatched, ${NETWORK_LATENCY_MS} ms CRM`,
          'deliveries/s',
          rates('networked', 'unbatched'),
        ),
        metric(
          'networked_batched_rate',
          `batched (maxSize 100), ${NETWORK_LATENCY_MS} ms CRM`,
          'deliveries/s',
          rates('networked', 'batched'),
        ),
        networkedRatio,
        metric(
          'batched_cpu',
          'engine CPU per delivery, batched, instant CRM',
          'ms',
          runs.map((r) => r.instant.batched.cpuMsPerDelivery),
        ),
        metric(
          'batched_rss_max',
          'engine RSS, batched, max',
          'MiB',
          runs.map((r) => Math.max(r.instant.batched.rssMaxMiB, r.networked.batched.rssMaxMiB)),
        ),
      ],
      targets: [
        target(
          `batched ≥ 10× the unbatched drain, CRM answering in ${NETWORK_LATENCY_MS} ms`,
          networkedRatio,
          '>=',
          10,
        ),
        target('batched ≥ 10× the unbatched drain, CRM answering at once', ratio, '>=', 10),
      ],
      checks: [
        check(
          'every delivery arrived at the CRM, batched and not',
          all.every((r) => r.arrived >= r.deliveries),
        ),
        check(
          'every delivery recorded as delivered (its attempt), no job failed',
          all.every((r) => (r.jobs.failed ?? 0) === 0 && (r.delivered ?? 0) >= r.deliveries),
        ),
      ],
      runs,
      chart: {
        throughput: [
          { label: 'drain: unbatched', value: median(rates('instant', 'unbatched')) },
          { label: 'drain: batched', value: median(rates('instant', 'batched')) },
          {
            label: `drain, ${NETWORK_LATENCY_MS} ms CRM: unbatched`,
            value: median(rates('networked', 'unbatched')),
          },
          {
            label: `drain, ${NETWORK_LATENCY_MS} ms CRM: batched`,
            value: median(rates('networked', 'batched')),
          },
        ],
      },
      notes: [
        `Both ways, deliveries travel many to one BullMQ job (src/queue/batch-jobs.ts): up to 100 unbatched, each sent in a request of its own (src/queue/each-delivery.ts), or ${BATCH.maxSize} batched, sent in one request. Batched, the request's admission, rendering around the items, send and answer are paid once per batch; each delivery still gets its own attempt record, verdict and metrics.`,
        'Against the instant CRM a request costs the engine only CPU, so the ratio is the engine CPU an unbatched delivery costs over what a batched one costs; the engine process is then busy on one core (see engine CPU per delivery).',
        `Against the ${NETWORK_LATENCY_MS} ms CRM, unbatched deliveries wait for answers: a process has WORKER_CONCURRENCY (${ctx.options.concurrency}) requests in flight to one CRM, so about ${ctx.options.concurrency} per ${NETWORK_LATENCY_MS} ms; batched, up to 8 batches of ${BATCH.maxSize} are in flight (limits.concurrency when set).`,
      ],
      ...(extra ? { extra } : {}),
    };
  },
};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}
