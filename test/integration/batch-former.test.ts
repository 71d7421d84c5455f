import { UnrecoverableError, Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionSchema, type Connection } from '../../src/config/connection-schema.js';
import { DeliveryProducer } from '../../src/queue/producer.js';
import { DeliveryQueues, deliveryQueueName } from '../../src/queue/queues.js';
import { AttemptStore } from '../../src/store/attempt-store.js';
import { Backlogs } from '../../src/store/backlogs.js';
import { BatchBuffer } from '../../src/store/batch-buffer.js';
import { ConnectionControl } from '../../src/store/connection-control.js';
import { ConnectionStore } from '../../src/store/connection-store.js';
import { keyspace } from '../../src/store/keys.js';
import { testFormer } from '../helpers/batch.js';
import { crmConnection } from '../helpers/engine.js';
import { cleanPrefix, eventually, testRedis, uniquePrefix } from '../helpers/redis.js';

// The batch former on the real Redis and BullMQ, with its clock in the test's hands: when batches
// form, how many may be open, and what happens to a batch whose process stopped halfway.
const prefix = uniquePrefix('batch-former');
const redis = testRedis();
const keys = keyspace(prefix);
const queues = new DeliveryQueues(redis, keys);
const buffer = new BatchBuffer(redis, keys);
const producer = new DeliveryProducer(redis, queues, keys, { failedMs: 60_000, unsubscribesMs: 60_000 });
const attempts = new AttemptStore(redis, keys);
const backlogs = new Backlogs(
  queues,
  new ConnectionStore(redis, keys),
  new ConnectionControl(redis, keys),
  buffer,
);
let now = 1_000_000;

function connection(id: string, extra: Record<string, unknown> = {}): Connection {
  const base = crmConnection(id, 'http://127.0.0.1:9', { campaigns: [id] });
  return connectionSchema.parse({
    ...base,
    batch: { maxSize: 10, maxWait: '1s' },
    request: {
      ...base.request,
      url: 'http://127.0.0.1:9/v3/suppressions',
      body: { json: { emails: [{ $each: '{{email}}' }] } },
    },
    ...extra,
  });
}

const former = (c: Connection) => testFormer({ buffer, queues, producer, attempts }, c, () => now);

const deliveries = (connectionId: string, n: number, from = 0) =>
  Array.from(
    { length: n },
    (_, i) => `00000000-0000-4000-8000-${String(from + i).padStart(12, '0')}:${connectionId}`,
  );

async function fill(connectionId: string, ids: string[]): Promise<void> {
  await redis.rpush(keys.batchBuffer(connectionId), ...ids);
}

/** An unsubscribe of account acme to `campaign`, as ingest hands it to the producer. */
const unsubscribeTo = (campaign: string, email: string) => ({
  account: 'acme',
  email,
  campaign,
  source: 'test',
  attributes: {},
});

const batchSizes = async (connectionId: string) =>
  Promise.all((await buffer.open(connectionId)).map(async (b) => (await buffer.members(b.batchId)).length));

beforeAll(async () => {
  await redis.ping();
});

afterAll(async () => {
  await queues.close();
  redis.disconnect();
  await cleanPrefix(prefix);
});

describe('ingest to a batched connection', () => {
  it('appends a delivery to the buffer once, however often its unsubscribe is stored', async () => {
    const c = connection('once');
    const request = unsubscribeTo('once', 'x@example.com');
    const first = await producer.accept(request, [c], 'key-1');
    expect(first.outcome).toBe('accepted');
    // The key's claim is gone (expired, or lost with a Redis failover): the same request is stored
    // again, over a ledger entry that is already there.
    await redis.del(keys.idempotency(first.id));
    const second = await producer.accept(request, [c], 'key-1');
    expect(second.id).toBe(first.id);
    expect(await buffer.waiting('once')).toEqual([`${first.id}:once`]);
  });

  it('queues no second copy of a batched delivery that waits, travels in a batch or was delivered by one', async () => {
    const c = connection('backfill');
    const request = unsubscribeTo('backfill', 'y@example.com');
    const travelling = await producer.accept(request, [c]);
    const waiting = await producer.accept({ ...request, email: 'z@example.com' }, [c]);
    const delivered = await producer.accept({ ...request, email: 'w@example.com' }, [c]);
    // The first goes into a batch; the last is delivered by one (out of the buffer, listed as delivered).
    await buffer.form('backfill', 'batch-backfill', 1, now);
    expect(await buffer.members('batch-backfill')).toEqual([`${travelling.id}:backfill`]);
    await buffer.takeWaiting('backfill', `${delivered.id}:backfill`);
    await buffer.noteDelivered('backfill', [`${delivered.id}:backfill`], now, 60_000);
    expect(await buffer.waiting('backfill')).toEqual([`${waiting.id}:backfill`]);
    for (const existing of [travelling, waiting, delivered])
      expect(await producer.enqueueExisting(existing.id, c)).toBe(false);
    expect(await queues.for('backfill').getJobCounts('waiting')).toEqual({ waiting: 0 });
    // One it has never had gets a job of its own (a backfill of an unsubscribe it was not linked to).
    const other = await producer.accept({ ...request, email: 'v@example.com' }, []);
    expect(await producer.enqueueExisting(other.id, c)).toBe(true);
    expect(await queues.for('backfill').getJob(`${other.id}:backfill`)).toBeDefined();
  });
});

describe('the batch former', () => {
  it('forms full batches at once and a part-filled one only after maxWait', async () => {
    const c = connection('sizes');
    await fill('sizes', deliveries('sizes', 25));
    const f = former(c);
    expect(await f.formWhatIsDue()).toBe(true);
    expect(await batchSizes('sizes')).toEqual([10, 10]);
    now += 999;
    expect(await f.formWhatIsDue()).toBe(true);
    expect(await batchSizes('sizes')).toEqual([10, 10]);
    now += 1;
    expect(await f.formWhatIsDue()).toBe(false);
    expect((await batchSizes('sizes')).sort()).toEqual([10, 10, 5]);
    // Each batch is one BullMQ job on the connection's queue, naming its list.
    for (const { batchId } of await buffer.open('sizes')) {
      const job = await queues.for('sizes').getJob(batchId);
      expect(job?.data).toEqual({ batch: batchId, connectionId: 'sizes' });
    }
    expect(await buffer.length('sizes')).toBe(0);
  });

  it('keeps no more batches open than limits.concurrency, and none while the queue is paused', async () => {
    const c = connection('capped', { limits: { concurrency: 2 } });
    await fill('capped', deliveries('capped', 50));
    const f = former(c);
    await f.formWhatIsDue();
    expect(await buffer.openCount('capped')).toBe(2);
    expect(await buffer.length('capped')).toBe(30);
    const [first] = await buffer.open('capped');
    await buffer.close('capped', first!.batchId);
    await f.formWhatIsDue();
    expect(await buffer.openCount('capped')).toBe(2);
    expect(await buffer.length('capped')).toBe(20);

    await queues.for('capped').pause();
    for (const { batchId } of await buffer.open('capped')) await buffer.close('capped', batchId);
    await f.formWhatIsDue();
    expect(await buffer.openCount('capped')).toBe(0);
    expect(await buffer.length('capped')).toBe(20);
  });

  it("puts an unbatched connection's waiting deliveries into batches of up to 100, as many as may be open", async () => {
    const c = connectionSchema.parse(crmConnection('each', 'http://127.0.0.1:9', { campaigns: ['each'] }));
    await fill('each', deliveries('each', 250));
    await former(c).formWhatIsDue();
    // What waits, taken at once (they go side by side, each in a request of its own).
    const sizes = await Promise.all((await buffer.open('each')).map((b) => buffer.members(b.batchId)));
    expect(sizes.map((m) => m.length).sort((a, b) => b - a)).toEqual([100, 100, 50]);
    expect(await buffer.length('each')).toBe(0);
  });

  it('gives a rate-limited unbatched connection only the batches its rate can fill', async () => {
    // 10/s with a burst of 10: about 30 in flight at once (2 × rate + burst).
    const c = connectionSchema.parse(
      crmConnection('paced', 'http://127.0.0.1:9', { campaigns: ['paced'], limits: { perSecond: 10 } }),
    );
    await fill('paced', deliveries('paced', 250));
    await former(c).formWhatIsDue();
    // Shared over two batches, so two processes can take part.
    const open = await buffer.open('paced');
    const sizes = await Promise.all(open.map((b) => buffer.members(b.batchId)));
    expect(sizes.map((m) => m.length)).toEqual([15, 15]);
    expect(await buffer.length('paced')).toBe(220);
  });

  it('gives a batch formed by a process that stopped before adding its job that job', async () => {
    const c = connection('orphan');
    await fill('orphan', deliveries('orphan', 3));
    expect(await buffer.form('orphan', 'batch-orphaned', 10, now)).toBe(3);
    const f = former(c);
    await f.recover();
    // Too young to be an orphan: its process may be adding the job right now.
    expect(await queues.for('orphan').getJobState('batch-orphaned')).toBe('unknown');
    now += 30_000;
    await f.recover();
    expect(await queues.for('orphan').getJobState('batch-orphaned')).toBe('waiting');
    expect(await buffer.members('batch-orphaned')).toHaveLength(3);
    // Marked to carry on from its deliveries' records: an earlier run may have recorded some.
    expect((await queues.for('orphan').getJob('batch-orphaned'))?.data).toEqual({
      batch: 'batch-orphaned',
      connectionId: 'orphan',
      resumed: true,
    });
  });

  it('hands the deliveries of a batch whose job failed over to jobs of their own, each from its record', async () => {
    const c = connection('failing');
    const ids = deliveries('failing', 7);
    await fill('failing', ids);
    const f = former(c);
    await f.formWhatIsDue();
    now += 1_000;
    await f.formWhatIsDue();
    const [open] = await buffer.open('failing');
    // A batch job that fails for good (BullMQ gave up on it).
    const worker = new Worker(
      deliveryQueueName('failing'),
      async () => {
        throw new UnrecoverableError('Redis went away');
      },
      { connection: redis.duplicate(), prefix: keys.bullPrefix },
    );
    await eventually(
      'the batch job failed',
      async () => (await queues.for('failing').getJobState(open!.batchId)) === 'failed',
    );
    await worker.close();
    // Until the former hands them over, its deliveries are pending: waiting, not failed.
    expect((await backlogs.of('failing')).counts).toMatchObject({ waiting: 7, failed: 0 });
    // What a run of it had recorded before it failed: one delivered, one failed, one to retry.
    const record = (id: string, fields: Record<string, unknown>) =>
      attempts.append(
        {
          deliveryId: id,
          startedAt: new Date(now).toISOString(),
          durationMs: 5,
          connectionVersion: 1,
          reason: 'test',
          verdict: 'success',
          ...fields,
        },
        60_000,
      );
    await record(ids[0]!, {});
    await record(ids[1]!, { verdict: 'fail', errorCode: 'HTTP_STATUS', reason: 'status 404 is permanent' });
    await record(ids[2]!, {
      verdict: 'retry',
      errorCode: 'HTTP_STATUS',
      nextAttemptAt: new Date(now + 30_000 + 60_000).toISOString(),
    });
    // Only the refused exchange before a token refresh: the delivery's own outcome never came.
    await record(ids[4]!, { verdict: 'refresh_auth', errorCode: 'AUTH_REFUSED' });
    // Moved by an operator whose move stopped before taking it out of the batch.
    await record(ids[5]!, {
      verdict: 'fail',
      errorCode: 'MOVED',
      reason: 'moved by ops to connection other',
    });
    // Split from a refused batch of 4 (its record says so), not of this batch's 7.
    await record(ids[6]!, {
      verdict: 'retry',
      errorCode: 'BATCH_SPLIT',
      reason: 'the CRM refused a batch of 4',
      batch: { id: 'batch-earlier', size: 4 },
    });
    now += 30_000;
    await f.recover();
    const [delivered, failed, retried, fresh, refreshed, moved, split] = await Promise.all(
      ids.map((id) => queues.for('failing').getJob(id)),
    );
    // Each goes on from its record, not afresh: the delivered one is not sent again.
    expect(delivered).toBeUndefined();
    expect(await buffer.delivered('failing', 0, -1)).toEqual([{ deliveryId: ids[0], at: now }]);
    expect(failed?.data).toEqual({
      priorAttempts: 1,
      failedAs: { code: 'HTTP_STATUS', reason: 'status 404 is permanent' },
    });
    expect(retried?.data).toEqual({ priorAttempts: 1 });
    expect(await retried?.getState()).toBe('delayed');
    // It waits what is left of the delay its record planned.
    expect(retried?.opts.delay).toBe(60_000);
    expect(fresh?.data).toEqual({});
    expect(refreshed?.data).toEqual({});
    expect(moved).toBeUndefined();
    expect(split?.data).toEqual({ batchSplit: 2 });
    expect(await queues.for('failing').getJob(open!.batchId)).toBeUndefined();
    expect(await buffer.openCount('failing')).toBe(0);
  });
  it('reports a formed batch on a paused queue as old as its oldest delivery, not as its job', async () => {
    const c = connection('aged');
    // Accepted ten minutes ago; the batch forms (and its job is added) now.
    const earlier = new DeliveryProducer(
      redis,
      queues,
      keys,
      { failedMs: 60_000, unsubscribesMs: 60_000 },
      () => new Date(Date.now() - 600_000),
    );
    for (const email of ['a@example.com', 'b@example.com'])
      await earlier.accept(unsubscribeTo('aged', email), [c]);
    const f = former(c);
    await f.formWhatIsDue();
    now += 1_000;
    await f.formWhatIsDue();
    expect(await batchSizes('aged')).toEqual([2]);
    await queues.for('aged').pause();
    const backlog = await backlogs.of('aged');
    expect(backlog.counts).toMatchObject({ paused: 2, waiting: 0 });
    expect(backlog.oldestPendingAgeSeconds).toBeGreaterThanOrEqual(600);
  });
});
