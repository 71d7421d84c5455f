import { Worker } from 'bullmq';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { connectionSchema, type Connection } from '../../src/config/connection-schema.js';
import { ConnectionOperations } from '../../src/queue/connection-operations.js';
import { DeliveryProducer } from '../../src/queue/producer.js';
import { DeliveryQueues, deliveryQueueName } from '../../src/queue/queues.js';
import { AttemptStore } from '../../src/store/attempt-store.js';
import { BatchBuffer } from '../../src/store/batch-buffer.js';
import { ConnectionControl } from '../../src/store/connection-control.js';
import { ConnectionStore } from '../../src/store/connection-store.js';
import { DeliveryRecords } from '../../src/store/delivery-records.js';
import { keyspace } from '../../src/store/keys.js';
import { LedgerRecords } from '../../src/store/ledger.js';
import { testFormer } from '../helpers/batch.js';
import { crmConnection } from '../helpers/engine.js';
import { cleanPrefix, testRedis, uniquePrefix } from '../helpers/redis.js';

// A backlog move or discard races the batch formers of worker processes that have not yet heard
// that the connection was disabled or paused (pub/sub lag, or the 10 s resync).
const prefix = uniquePrefix('batch-backlog-races');
const redis = testRedis();
const keys = keyspace(prefix);
const queues = new DeliveryQueues(redis, keys);
const buffer = new BatchBuffer(redis, keys);
const attempts = new AttemptStore(redis, keys);
const store = new ConnectionStore(redis, keys);
const control = new ConnectionControl(redis, keys);
const producer = new DeliveryProducer(redis, queues, keys, { failedMs: 60_000, unsubscribesMs: 60_000 });
const records = new DeliveryRecords(
  queues,
  attempts,
  new LedgerRecords(redis, keys),
  { failedMs: 60_000 },
  buffer,
);
const ops = new ConnectionOperations({
  queues,
  store,
  control,
  attempts,
  producer,
  buffer,
  events: { emit: () => undefined },
  retention: { failedMs: 60_000 },
});
let now = Date.now();

function batched(id: string): Connection {
  const base = crmConnection(id, 'http://127.0.0.1:9', { campaigns: [id] });
  return connectionSchema.parse({
    ...base,
    batch: { maxSize: 10, maxWait: '1s' },
    request: { ...base.request, body: { json: { emails: [{ $each: '{{email}}' }] } } },
  });
}

/** A former holding `connection` as it last synced it: enabled. */
const laggingFormer = (connection: Connection) =>
  testFormer({ buffer, queues, producer, attempts }, connection, () => now);

async function accept(connection: Connection, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const accepted = await producer.accept(
      { account: 'acme', email: `m${i}@example.com`, campaign: connection.id, attributes: {} },
      [connection],
    );
    ids.push(`${accepted.id}:${connection.id}`);
  }
  return ids;
}

/** A worker that takes jobs only when asked (`getNextJob`), as one whose process runs or died does. */
function manualWorker(connectionId: string) {
  const client = testRedis();
  const worker = new Worker(deliveryQueueName(connectionId), null, {
    connection: client,
    prefix: keys.bullPrefix,
    autorun: false,
  });
  return {
    worker,
    stop: async () => {
      await worker.close(true);
      client.disconnect();
    },
  };
}

/** What a batch job records for a delivery it delivered. */
function recordDelivered(deliveryId: string): Promise<number> {
  return attempts.append(
    {
      deliveryId,
      startedAt: new Date(now).toISOString(),
      durationMs: 5,
      connectionVersion: 1,
      verdict: 'success',
      reason: 'status 200',
    },
    60_000,
  );
}

/** Runs `during` right after the operation lists the buffer, before it takes anything out. */
function afterListing(during: () => Promise<unknown>): () => void {
  const waiting = buffer.waiting.bind(buffer);
  buffer.waiting = async (...args: Parameters<BatchBuffer['waiting']>) => {
    const listed = await waiting(...args);
    await during();
    return listed;
  };
  return () => {
    buffer.waiting = waiting;
  };
}

beforeEach(() => cleanPrefix(prefix));
afterAll(async () => {
  await queues.close();
  await cleanPrefix(prefix);
  redis.disconnect();
});

describe('a held backlog taken while other processes are not done with it', () => {
  it('a move of a disabled connection pauses its queue first, so no batch forms from what it moves', async () => {
    const src = batched('src');
    const dst = {
      ...batched('dst'),
      batch: undefined,
      request: crmConnection('dst', 'http://127.0.0.1:9').request,
    };
    await store.put(src);
    await store.put(connectionSchema.parse(dst));
    const ids = await accept(src, 4);
    await store.put({ ...src, enabled: false });
    const former = laggingFormer(src);
    await former.formWhatIsDue(); // it has seen them waiting: maxWait counts from here
    now += 2_000;

    const restore = afterListing(() => former.formWhatIsDue());
    const result = await ops.move('src', 'dst', 'ops').finally(restore);

    expect(result.moved.sort()).toEqual([...ids].sort());
    expect(await queues.for('src').isPaused()).toBe(true);
    expect(await buffer.inOpenBatches('src')).toEqual([]);
    expect(await buffer.length('src')).toBe(0);
    for (const id of ids) {
      expect(await queues.for('dst').getJob(id.replace(/:src$/, ':dst'))).toBeTruthy();
      expect((await attempts.list(id)).at(-1)).toMatchObject({ errorCode: 'MOVED' });
      await expect(records.get(id)).rejects.toThrow(/is gone: moved by ops to connection dst/);
    }
  });

  it('no batch forms on a paused queue, whatever the former last heard', async () => {
    const src = batched('paused');
    await store.put(src);
    await accept(src, 3);
    await queues.for('paused').pause(); // by another process, say: this former still runs
    const former = laggingFormer(src);
    await former.formWhatIsDue();
    now += 2_000;
    expect(await buffer.form('paused', 'batch-on-paused', 10, now)).toBe(0);
    await former.formWhatIsDue();
    expect(await buffer.openCount('paused')).toBe(0);
    expect(await buffer.length('paused')).toBe(3);
  });

  it('a discard leaves out a batch member already delivered, and notes only what it took', async () => {
    const src = batched('part');
    await store.put(src);
    const ids = await accept(src, 3);
    const former = laggingFormer(src);
    await former.formWhatIsDue();
    now += 2_000;
    await former.formWhatIsDue(); // one batch of three, its job waiting
    const [batch] = await buffer.inOpenBatches('part');
    expect(batch?.deliveryIds).toHaveLength(3);
    // The batch job stopped after delivering the first (its record says so), before it settled the rest.
    await recordDelivered(ids[0]!);
    await store.put({ ...src, enabled: false });

    const { discarded, sendingNow } = await ops.discard('part', 'ops', 'CRM contract ended');

    expect(sendingNow).toBe(0);
    expect(discarded.sort()).toEqual([ids[1]!, ids[2]!].sort());
    expect((await attempts.list(ids[0]!)).map((a) => a.verdict)).toEqual(['success']);
    expect((await attempts.list(ids[1]!)).at(-1)).toMatchObject({ errorCode: 'DISCARDED' });
    // The delivered one stays with its batch, whose job settles it from its record when it runs again.
    expect((await buffer.inOpenBatches('part')).map((b) => b.deliveryIds)).toEqual([[ids[0]]]);
  });

  it('a discard of a deleted connection takes a job its dead worker left active, not one a worker holds', async () => {
    const gone = connectionSchema.parse(crmConnection('gone', 'http://127.0.0.1:9', { campaigns: ['gone'] }));
    await store.put(gone);
    // Deliveries with jobs of their own (handed over by their batch jobs to retry, say).
    const [stalled, running] = await accept(gone, 2);
    await redis.del(keys.batchBuffer('gone'));
    for (const id of [stalled!, running!]) await producer.handOver(id, gone, {});
    const { worker, stop } = manualWorker('gone');
    try {
      // Two workers took one each; the first died (its lock ran out), the second still runs its job.
      const taken = [await worker.getNextJob('dead-worker'), await worker.getNextJob('live-worker')];
      expect(taken.map((job) => job?.id).sort()).toEqual([stalled, running].sort());
      await redis.del(`${queues.for('gone').toKey(stalled!)}:lock`);
      await store.remove('gone');

      expect(await ops.discard('gone', 'ops', 'advertiser left')).toEqual({
        discarded: [stalled],
        sendingNow: 1,
      });
      expect(await queues.for('gone').getJob(stalled!)).toBeUndefined();
      expect(await queues.for('gone').getJobState(running!)).toBe('active');
      expect((await attempts.list(stalled!)).at(-1)).toMatchObject({ errorCode: 'DISCARDED' });
    } finally {
      await stop();
    }
  });

  it('a move leaves a batch a worker is running and says so; moved again, it takes what that batch put back', async () => {
    const src = batched('busy');
    await store.put(src);
    await store.put(connectionSchema.parse(crmConnection('busy-dst', 'http://127.0.0.1:9')));
    const ids = await accept(src, 3);
    const former = laggingFormer(src);
    await former.formWhatIsDue();
    now += 2_000;
    await former.formWhatIsDue(); // one batch of three
    const [batch] = await buffer.inOpenBatches('busy');
    const { worker, stop } = manualWorker('busy');
    try {
      const job = await worker.getNextJob('live-worker');
      expect(job?.id).toBe(batch!.batchId);
      await queues.for('busy').pause();

      expect(await ops.preview('busy')).toMatchObject({ count: 0, sendingNow: 3 });
      expect(await ops.move('busy', 'busy-dst', 'ops')).toEqual({
        moved: [],
        alreadyThere: 0,
        sendingNow: 3,
      });
      expect(await buffer.inOpenBatches('busy')).toEqual([batch]);

      // The batch delivered the first; the connection said not now to the others, which went back
      // to the buffer after the move had listed it.
      await recordDelivered(ids[0]!);
      await buffer.putBack('busy', batch!.batchId, [ids[1]!, ids[2]!]);
      await buffer.close('busy', batch!.batchId, { deliveryIds: [ids[0]!], now, keepMs: 60_000 });
      await job!.moveToCompleted({}, 'live-worker', false);

      const again = await ops.move('busy', 'busy-dst', 'ops');
      expect(again.sendingNow).toBe(0);
      expect(again.moved.sort()).toEqual([ids[1]!, ids[2]!].sort());
      expect(await buffer.length('busy')).toBe(0);
      expect((await attempts.list(ids[0]!)).map((a) => a.verdict)).toEqual(['success']);
      for (const id of [ids[1]!, ids[2]!])
        expect(await queues.for('busy-dst').getJob(id.replace(/:busy$/, ':busy-dst'))).toBeTruthy();
    } finally {
      await stop();
    }
  });
});
