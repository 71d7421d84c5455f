import { DeliveryQueues } from '../../src/queue/queues.js';
import { keyspace } from '../../src/store/keys.js';
import { fillBacklog } from '../lib/backlog.js';
import { benchConnection } from '../lib/connections.js';
import type { Engine } from '../lib/context.js';
import { until } from '../lib/processes.js';
import { check, metric } from '../lib/result.js';
import { Sampler, windowStats } from '../lib/sampler.js';
import type { Metric, Scenario } from '../lib/types.js';

interface FanoutRun {
  connections: number;
  unsubscribes: number;
  deliveries: number;
  arrived: number;
  enqueueMsPerDelivery: number;
  wallMsPerDelivery: number;
  cpuMsPerDelivery: number;
  redisCpuMsPerDelivery: number;
}

export const fanout: Scenario = {
  id: 'fanout',
  title: 'Fan-out: one unsubscribe to 1, 10, 100 connections',
  async run(ctx) {
    const widths = ctx.options.quick ? [1, 10] : [1, 10, 100];
    const deliveries = ctx.options.quick ? 200 : 10_000;
    const runs: FanoutRun[][] = [];
    for (let run = 0; run < ctx.options.runs; run++) {
      const perWidth: FanoutRun[] = [];
      for (const width of widths) {
        const prefix = ctx.prefix(`fanout-${width}`);
        const tag = `fanout-${run}-${width}`;
        const connections = Array.from({ length: width }, (_, i) => {
          const id = `bench-fan-${String(i + 1).padStart(3, '0')}`;
          return benchConnection(id, `${ctx.crm.url}/ok/${tag}/${id}`);
        });
        const unsubscribes = Math.ceil(deliveries / width);
        let engine: Engine | undefined;
        try {
          ctx.log(
            `fanout run ${run + 1}/${ctx.options.runs}: ${unsubscribes} unsubscribes × ${width} connections`,
          );
          const fill = await fillBacklog(ctx.redis, prefix, connections, unsubscribes, { emailPrefix: tag });
          // Held until every connection's worker runs: a process starts its workers one after another
          // (100 take about 2 s here), which would otherwise fall inside the window being measured.
          const queues = new DeliveryQueues(ctx.redis, keyspace(prefix));
          let sampler: Sampler;
          try {
            await Promise.all(connections.map((c) => queues.for(c.id).pause()));
            engine = await ctx.startEngine({ prefix, connections, roles: 'worker' });
            await until(
              `a worker for each of ${width} connections`,
              async () =>
                (await Promise.all(connections.map((c) => queues.for(c.id).getWorkersCount()))).every(
                  (n) => n > 0,
                ),
              60_000,
              engine,
              50,
            );
            sampler = new Sampler(engine.pid, ctx.redis);
            await Promise.all(connections.map((c) => queues.for(c.id).resume()));
            // As ingest does for a buffer that was empty: each connection's batch former looks at once.
            for (const c of connections) await ctx.redis.publish(keyspace(prefix).deliveriesWaiting, c.id);
          } finally {
            await queues.close();
          }
          const total = unsubscribes * width;
          try {
            await ctx.crm.waitFor(tag, total, 60_000 + total * 10, engine);
          } finally {
            await sampler.stop();
          }
          const stats = await ctx.crm.stats(tag);
          const window = windowStats(sampler.samples, stats.first!, stats.last!);
          const result: FanoutRun = {
            connections: width,
            unsubscribes,
            deliveries: total,
            arrived: stats.unique,
            enqueueMsPerDelivery: fill.ms / total,
            wallMsPerDelivery: (stats.last! - stats.first!) / total,
            cpuMsPerDelivery: window.cpuMs / total,
            redisCpuMsPerDelivery: window.redisCpuMs / total,
          };
          ctx.log(
            `  ${width}: ${result.wallMsPerDelivery.toFixed(3)} wall ms, ${result.cpuMsPerDelivery.toFixed(3)} CPU ms per delivery`,
          );
          perWidth.push(result);
        } finally {
          await engine?.stop();
          await ctx.cleanPrefix(prefix);
        }
      }
      runs.push(perWidth);
    }
    const metrics: Metric[] = [];
    widths.forEach((width, i) => {
      const of = (pick: (r: FanoutRun) => number) => runs.map((perWidth) => pick(perWidth[i]!));
      metrics.push(
        metric(
          `wall_${width}`,
          `×${width}: drain wall time per delivery`,
          'ms',
          of((r) => r.wallMsPerDelivery),
        ),
        metric(
          `cpu_${width}`,
          `×${width}: engine CPU per delivery`,
          'ms',
          of((r) => r.cpuMsPerDelivery),
        ),
        metric(
          `redis_${width}`,
          `×${width}: Redis CPU per delivery`,
          'ms',
          of((r) => r.redisCpuMsPerDelivery),
        ),
        metric(
          `enqueue_${width}`,
          `×${width}: enqueue time per delivery`,
          'ms',
          of((r) => r.enqueueMsPerDelivery),
        ),
      );
    });
    const cpu = (width: number) => metrics.find((m) => m.key === `cpu_${width}`)!.median;
    const widest = widths[widths.length - 1]!;
    const all = runs.flat();
    const missing = all.filter((r) => r.arrived < r.deliveries);
    return {
      id: 'fanout',
      title: this.title,
      description: `About ${deliveries.toLocaleString('en-US')} deliveries per width: unsubscribes each linked to ${widths.join(', ')} connections (queued with DeliveryProducer, one MULTI per unsubscribe), drained by one ROLES=worker engine process (one BullMQ Worker per connection), its queues held (paused) until each connection's worker is running, then released together. Per-delivery cost over the window from the first to the last delivery at the CRM.`,
      params: { widths, deliveries },
      metrics: [
        ...metrics,
        metric(`cpu_growth`, `engine CPU per delivery, ×${widest} / ×1`, '×', [cpu(widest) / cpu(1)]),
      ],
      targets: [],
      checks: [
        check(
          'every delivery arrived at the CRM',
          missing.length === 0,
          missing.map((r) => `×${r.connections}: ${r.arrived}/${r.deliveries}`).join('; ') || undefined,
        ),
      ],
      runs,
      notes: ['Enqueue time is the DeliveryProducer in the harness (no HTTP), 64 unsubscribes in flight.'],
    };
  },
};
