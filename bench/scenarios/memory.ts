import type { Redis } from 'ioredis';
import { deliveryQueueName, fillBacklog, queuedCount } from '../lib/backlog.js';
import { benchConnection } from '../lib/connections.js';
import { usedMemory } from '../lib/redis.js';
import { partsOfDeliveryId } from '../../src/domain/delivery.js';
import { keyspace } from '../../src/store/keys.js';
import { check, metric, target } from '../lib/result.js';
import { sleep } from '../lib/stats.js';
import type { Scenario } from '../lib/types.js';

const CONNECTION_ID = 'bench-memory';

/** used_memory once it stops moving (lazy frees of an earlier cleanup, other clients' buffers). */
async function settledMemory(redis: Redis): Promise<number> {
  let last = await usedMemory(redis);
  for (let i = 0; i < 10; i++) {
    await sleep(200);
    const now = await usedMemory(redis);
    if (Math.abs(now - last) < 16 * 1024) return now;
    last = now;
  }
  return last;
}

/** What kind of key this is, for the per-key breakdown. */
function kindOf(key: string, prefix: string): string {
  const rest = key.slice(prefix.length + 1);
  if (rest.startsWith('bull:')) {
    const queueKey = rest.slice(`bull:${deliveryQueueName(CONNECTION_ID)}:`.length);
    return /^[0-9a-f-]{36}:/.test(queueKey) ? 'job hash' : `bull ${queueKey}`;
  }
  if (rest.startsWith('unsub:')) return 'ledger entry';
  if (/^account:[^:]+:email:/.test(rest)) return 'email index';
  return rest;
}

/** MEMORY USAGE of every key under `prefix`, summed by kind (counted only for this prefix, unlike INFO). */
async function usageByKind(
  redis: Redis,
  prefix: string,
): Promise<Record<string, { keys: number; bytes: number }>> {
  const kinds: Record<string, { keys: number; bytes: number }> = {};
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length === 0) continue;
    const pipeline = redis.pipeline();
    for (const key of keys) pipeline.call('MEMORY', 'USAGE', key, 'SAMPLES', '0');
    const results = (await pipeline.exec()) ?? [];
    keys.forEach((key, i) => {
      const bytes = Number(results[i]?.[1] ?? 0);
      const kind = kindOf(key, prefix);
      const entry = (kinds[kind] ??= { keys: 0, bytes: 0 });
      entry.keys += 1;
      entry.bytes += bytes;
    });
  } while (cursor !== '0');
  return kinds;
}

export const memory: Scenario = {
  id: 'memory',
  title: 'Redis memory per queued delivery',
  async run(ctx) {
    const pending = ctx.options.quick ? 500 : 100_000;
    const runs: Array<Record<string, unknown>> = [];
    const gross: number[] = [];
    const beyond: number[] = [];
    const payloads: number[] = [];
    const scopedGross: number[] = [];
    const scopedBeyond: number[] = [];
    let breakdown: Record<string, { keys: number; bytesPerDelivery: number }> = {};
    const counts: number[] = [];
    for (let run = 0; run < ctx.options.runs; run++) {
      const prefix = ctx.shortPrefix();
      const connection = benchConnection(CONNECTION_ID, `${ctx.crm.url}/ok/memory/unsubscribes`);
      try {
        ctx.log(`memory run ${run + 1}/${ctx.options.runs}: ${pending} pending deliveries, no worker`);
        const before = await settledMemory(ctx.redis);
        const fill = await fillBacklog(ctx.redis, prefix, [connection], pending, {
          emailPrefix: `memory-${run}`,
        });
        const after = await settledMemory(ctx.redis);
        const queued = await queuedCount(ctx.redis, prefix, CONNECTION_ID);
        counts.push(queued);
        // The payload: the unsubscribe as JSON, as its ledger entry holds it (the one copy: each
        // delivery refers to it by id), averaged over a sample of queued deliveries.
        const ids = await ctx.redis.lrange(keyspace(prefix).batchBuffer(CONNECTION_ID), 0, 199);
        let payloadBytes = 0;
        for (const id of ids) {
          const raw = await ctx.redis.get(keyspace(prefix).unsubscribe(partsOfDeliveryId(id).unsubscribeId));
          const unsubscribe = raw ? (JSON.parse(raw) as { unsubscribe: unknown }).unsubscribe : undefined;
          payloadBytes += unsubscribe ? Buffer.byteLength(JSON.stringify(unsubscribe)) : 0;
        }
        const payload = payloadBytes / Math.max(1, ids.length);
        const kinds = await usageByKind(ctx.redis, prefix);
        const scoped = Object.values(kinds).reduce((sum, k) => sum + k.bytes, 0) / pending;
        const perDelivery = (after - before) / pending;
        gross.push(perDelivery);
        beyond.push(perDelivery - payload);
        payloads.push(payload);
        scopedGross.push(scoped);
        scopedBeyond.push(scoped - payload);
        breakdown = Object.fromEntries(
          Object.entries(kinds)
            .sort((a, b) => b[1].bytes - a[1].bytes)
            .map(([kind, k]) => [kind, { keys: k.keys, bytesPerDelivery: k.bytes / pending }]),
        );
        runs.push({ pending, fillMs: fill.ms, before, after, perDelivery, payload, scoped, queued });
        ctx.log(`  ${perDelivery.toFixed(0)} B/delivery gross (INFO), payload ${payload.toFixed(0)} B`);
      } finally {
        await ctx.cleanPrefix(prefix);
      }
    }
    const beyondMetric = metric('beyond_payload', 'beyond its payload (INFO delta − payload)', 'B', beyond);
    return {
      id: 'memory',
      title: this.title,
      description: `${pending.toLocaleString('en-US')} unsubscribes queued with the engine's DeliveryProducer (one connection, so one delivery each) and no worker running: Redis used_memory (INFO memory) after minus before, per delivery. The payload is the unsubscribe as JSON, stored once in its ledger entry (a delivery refers to it by id); "beyond payload" is the rest: the delivery's entry in its connection's buffer (its id: fresh deliveries wait there until a batch job takes them), the ledger entry's key and wrapper, the account and email indexes, key and expiry overhead. The keys are under a 6-character prefix, about as short as an install's (REDIS_PREFIX defaults to \`ur\`): each prefix character adds about 3 B per delivery.`,
      params: { pending },
      metrics: [
        metric('gross', 'gross (INFO used_memory delta)', 'B', gross),
        metric('payload', 'payload (the unsubscribe as JSON)', 'B', payloads),
        beyondMetric,
        metric('scoped_gross', 'gross, by MEMORY USAGE of the prefix keys', 'B', scopedGross),
        metric('scoped_beyond', 'beyond payload, by MEMORY USAGE', 'B', scopedBeyond),
      ],
      targets: [target('≤ 1 KiB of Redis per queued delivery beyond its payload', beyondMetric, '<=', 1024)],
      checks: [
        check(
          "every delivery was pending (in its connection's buffer)",
          counts.every((c) => c === pending),
          counts.join(', '),
        ),
      ],
      runs,
      notes: [
        "INFO used_memory is for the whole Redis: another client writing at the same time shows up in it; the MEMORY USAGE figure counts only this run's keys (but not the allocator's and the main dictionary's overhead).",
      ],
      extra: { breakdown },
    };
  },
};
