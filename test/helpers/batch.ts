import type { Redis } from 'ioredis';
import { expect } from 'vitest';
import type { Connection, ConnectionInput } from '../../src/config/connection-schema.js';
import { createLogger } from '../../src/logging.js';
import { BatchFormer } from '../../src/queue/batch-jobs.js';
import type { DeliveryProducer } from '../../src/queue/producer.js';
import type { DeliveryQueues } from '../../src/queue/queues.js';
import type { AttemptStore } from '../../src/store/attempt-store.js';
import type { BatchBuffer } from '../../src/store/batch-buffer.js';
import type { DeliveryDetail } from '../../src/store/delivery-records.js';
import type { Keyspace } from '../../src/store/keys.js';
import { crmConnection, type TestEngine } from './engine.js';
import { eventually } from './redis.js';

/** The addresses a batched request to `batchedConnection` carries. */
export const emailsIn = (body: string) => (JSON.parse(body) as { emails: string[] }).emails;

/**
 * A batched connection to a test CRM, for the campaign of its own name: `{"emails": [...]}` to
 * `/v3/suppressions`, batches of up to 10, no duplicate window, three quick attempts.
 */
export function batchedConnection(
  id: string,
  crmUrl: string,
  overrides: Partial<ConnectionInput> = {},
  maxWait = '300ms',
): ConnectionInput {
  const base = crmConnection(id, crmUrl, { campaigns: [id], dedupe: { window: 0 } });
  return {
    ...base,
    batch: { maxSize: 10, maxWait },
    request: {
      ...base.request,
      headers: {},
      url: `${crmUrl}/v3/suppressions`,
      body: { json: { emails: [{ $each: '{{email}}' }] } },
    },
    retry: { attempts: 3, backoff: 'fixed', delay: '50ms', jitter: false },
    ...overrides,
  };
}

/**
 * Response rules of a CRM that answers 200 with the addresses it rejected listed in `invalid`: those
 * fail, the rest of the request succeeded (a plain 202 succeeds every one).
 */
export const rejectsListed: ConnectionInput['response'] = {
  rules: [
    {
      when: { status: 200, json: { path: '$.invalid', contains: '{{email}}' } },
      then: 'fail',
      reason: 'the CRM rejected this address',
    },
    { when: { status: 200 }, then: 'success' },
    { when: { status: 202 }, then: 'success' },
  ],
};

/** Sends one unsubscribe per address for `campaign` (account acme); answers the delivery ids to the connection of that name. */
export async function sendTo(engine: TestEngine, campaign: string, emails: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const email of emails) {
    const { status, body } = await engine.unsubscribe('acme', { email, campaign });
    expect(status).toBe(201);
    ids.push(`${body.id as string}:${campaign}`);
  }
  return ids;
}

/** Waits until every delivery has succeeded or failed; answers their records. */
export function settledAll(engine: TestEngine, ids: string[]): Promise<DeliveryDetail[]> {
  return eventually('every delivery settled', async () => {
    const all = await Promise.all(ids.map((id) => engine.records.get(id)));
    return all.every((d) => d.status === 'succeeded' || d.status === 'failed') ? all : undefined;
  });
}

/**
 * Stages a batch formed just before its queue was paused (no former forms one after): up to `max`
 * of the connection's waiting deliveries moved into batch `batchId`, registered open; answers how many.
 */
export async function formedBeforePause(
  redis: Redis,
  keys: Keyspace,
  connectionId: string,
  batchId: string,
  max: number,
): Promise<number> {
  const ids = (await redis.lpop(keys.batchBuffer(connectionId), max)) ?? [];
  if (ids.length === 0) return 0;
  await redis
    .multi()
    .rpush(keys.batch(batchId), ...ids)
    .zadd(keys.openBatches(connectionId), Date.now(), batchId)
    .exec();
  return ids.length;
}

/** What a batch former works with, on one Redis and keyspace. */
export interface FormerParts {
  buffer: BatchBuffer;
  queues: DeliveryQueues;
  producer: DeliveryProducer;
  attempts: AttemptStore;
}

/** A batch former for `connection` as it last synced it, on the test's clock, logging nothing. */
export function testFormer(parts: FormerParts, connection: Connection, clock: () => number): BatchFormer {
  return new BatchFormer(
    {
      buffer: parts.buffer,
      queues: parts.queues,
      handOver: (id, c, data, delayMs) => parts.producer.handOver(id, c, data, delayMs),
      attempts: parts.attempts,
      retention: { succeededMs: 60_000 },
      logger: createLogger('silent'),
      clock,
    },
    connection,
  );
}
