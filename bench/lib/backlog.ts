import { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  connectionSchema,
  type Connection,
  type ConnectionInput,
} from '../../src/config/connection-schema.js';
import { parseEnv } from '../../src/config/env.js';
import { DeliveryProducer, deliveryJobOptions } from '../../src/queue/producer.js';
import { DeliveryQueues, deliveryQueueName } from '../../src/queue/queues.js';
import { ApiKeyStore } from '../../src/store/api-keys.js';
import { keyspace, type Keyspace } from '../../src/store/keys.js';
import { BENCH_ACCOUNT } from './connections.js';
import { nowMs } from './stats.js';

/** The engine's default retention (RETENTION_* unset), so jobs carry the options ingest gives them. */
function defaultRetention() {
  const env = parseEnv({});
  return {
    failedMs: env.RETENTION_FAILED,
    unsubscribesMs: env.RETENTION_UNSUBSCRIBES,
  };
}

export interface FillResult {
  unsubscribes: number;
  deliveries: number;
  ms: number;
}

/**
 * Queues `unsubscribes` unsubscribes, each fanned out to every one of `connections`, with the
 * engine's own DeliveryProducer (the code behind POST /v1/unsubscribes after the key and body checks:
 * one MULTI per unsubscribe with its ledger entry, indexes and its deliveries in each connection's
 * buffer, which the engine's batch formers put into batch jobs), `inFlight` at a time.
 *
 * `oneJobEach`: the bare stack's layout instead, for the drain baseline: every delivery a BullMQ job
 * of its own (the delivery's id, data `{}`, the engine's job options), referring to the same ledger
 * entry, and nothing in the buffers.
 */
export async function fillBacklog(
  redis: Redis,
  prefix: string,
  connections: ConnectionInput[],
  unsubscribes: number,
  options: { inFlight?: number; emailPrefix?: string; oneJobEach?: boolean } = {},
): Promise<FillResult> {
  const keys = keyspace(prefix);
  const queues = new DeliveryQueues(redis, keys);
  const parsed = connections.map((connection) => connectionSchema.parse(connection));
  const producer = new DeliveryProducer(redis, queues, keys, defaultRetention());
  const emailPrefix = options.emailPrefix ?? 'drain';
  const started = nowMs();
  let next = 0;
  const lanes = Array.from({ length: options.inFlight ?? 64 }, async () => {
    while (next < unsubscribes) {
      const i = next++;
      const result = await producer.accept(
        {
          account: BENCH_ACCOUNT,
          email: `${emailPrefix}-${i}@bench.example`,
          campaign: 'bench',
          source: 'bench',
          attributes: {},
        },
        parsed,
      );
      if (result.outcome !== 'accepted') throw new Error(`backlog: unsubscribe ${i} was ${result.outcome}`);
    }
  });
  try {
    await Promise.all(lanes);
    if (options.oneJobEach) for (const connection of parsed) await asJobs(redis, keys, queues, connection);
  } finally {
    await queues.close();
  }
  return { unsubscribes, deliveries: unsubscribes * connections.length, ms: nowMs() - started };
}

/** Moves a connection's buffered deliveries into BullMQ jobs of their own, oldest first. */
async function asJobs(redis: Redis, keys: Keyspace, queues: DeliveryQueues, connection: Connection) {
  const buffer = keys.batchBuffer(connection.id);
  const ids = await redis.lrange(buffer, 0, -1);
  await redis.del(buffer);
  const queue = queues.for(connection.id);
  const options = deliveryJobOptions(connection);
  // Added as the engine adds a delivery's own job (Job.addJob, which takes `<unsubscribe>:<connection>` ids).
  for (let i = 0; i < ids.length; i += 1_000) {
    const multi = (await queues.transactions()).multi();
    for (const id of ids.slice(i, i + 1_000))
      await new Job(queue, connection.id, {}, options, id).addJob(multi);
    const results = await multi.exec();
    const failed = results?.find(([error]) => error !== null);
    if (!results || failed) throw new Error(`backlog: Redis refused the jobs: ${String(failed?.[0])}`);
  }
}

/** Deliveries of one connection waiting to be taken: in its buffer, or jobs in its wait list. */
export async function queuedCount(redis: Redis, prefix: string, connectionId: string): Promise<number> {
  const [jobs, buffered] = await Promise.all([
    jobCounts(redis, prefix, connectionId),
    redis.llen(keyspace(prefix).batchBuffer(connectionId)),
  ]);
  return (jobs.waiting ?? 0) + buffered;
}

/** BullMQ's job counts of one connection's delivery queue under `prefix`. */
export async function jobCounts(
  redis: Redis,
  prefix: string,
  connectionId: string,
): Promise<Record<string, number>> {
  const queues = new DeliveryQueues(redis, keyspace(prefix));
  try {
    return await queues.for(connectionId).getJobCounts('waiting', 'active', 'delayed', 'completed', 'failed');
  } finally {
    await queues.close();
  }
}

export function bullPrefix(prefix: string): string {
  return keyspace(prefix).bullPrefix;
}

export { deliveryQueueName };

/** A new API key for the bench account, straight into Redis (the engine reads it with one HGET). */
export async function createApiKey(redis: Redis, prefix: string): Promise<string> {
  return (await new ApiKeyStore(redis, keyspace(prefix)).create(BENCH_ACCOUNT)).key;
}

/**
 * Deliveries under `prefix` whose last attempt delivered them, read from their attempt records: a
 * batched connection's deliveries have no BullMQ job of their own to count (issue 7).
 */
export async function deliveredCount(redis: Redis, prefix: string): Promise<number> {
  const match = `${keyspace(prefix).attempts('')}*`;
  let cursor = '0';
  let delivered = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 2_000);
    cursor = next;
    const lists = keys.filter((key) => !key.endsWith(':n'));
    if (lists.length === 0) continue;
    const pipeline = redis.pipeline();
    for (const key of lists) pipeline.lindex(key, -1);
    for (const [, last] of (await pipeline.exec()) ?? []) {
      const verdict =
        typeof last === 'string' ? (JSON.parse(last) as { verdict?: string }).verdict : undefined;
      if (verdict === 'success' || verdict === 'success_already_done') delivered += 1;
    }
  } while (cursor !== '0');
  return delivered;
}
