import { Job } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';
import { keyspace } from '../../src/store/keys.js';
import { deliveryQueueName } from '../../src/queue/queues.js';
import { DeliveryProducer } from '../../src/queue/producer.js';
import { connectionSchema } from '../../src/config/connection-schema.js';

process.env.TEST_CRM_TOKEN = 'crm-token-ledger-reference';

const HOUR = 3_600_000;

/**
 * Delivery jobs refer to their unsubscribe's ledger entry instead of carrying it. An API-only engine
 * queues deliveries with no worker to take them, so the test can look at (and tamper with) what is
 * stored before a worker engine on the same prefix delivers it.
 */
let crm: FakeCrm;
let api: TestEngine;
let worker: TestEngine | undefined;
const prefix = uniquePrefix('ledger-reference');
const keys = keyspace(prefix);
const connections = () => [
  crmConnection('crm-ok', crm.url, { account: 'acme' }),
  crmConnection('crm-refuses', crm.url, {
    account: 'refuses',
    retry: { attempts: 1, backoff: 'fixed', delay: '50ms', jitter: false },
  }),
];
const env = { RETENTION_FAILED: '1h', RETENTION_UNSUBSCRIBES: '1h' };

beforeAll(async () => {
  crm = await startFakeCrm();
  crm.respond((request) =>
    request.headers['x-campaign'] === 'refused'
      ? { status: 400, body: '{"error":"invalid list"}' }
      : { status: 200, body: '{}' },
  );
  api = await startTestEngine(prefix, connections(), { ...env, ROLES: 'api' });
});

afterAll(async () => {
  await worker?.close();
  await api?.close();
  await crm?.close();
});

async function queued(account: string, email: string, campaign = 'spring') {
  const response = await api.unsubscribe(account, { email, campaign });
  expect(response.status).toBe(201);
  return response.body.id as string;
}

async function startWorker(): Promise<TestEngine> {
  worker ??= await startTestEngine(prefix, connections(), { ...env, ROLES: 'worker' });
  return worker;
}

const failed = (id: string) =>
  eventually(`${id} failed`, async () => {
    const detail = await api.records.get(id);
    return detail.status === 'failed' ? detail : undefined;
  });

describe('delivery jobs refer to the ledger', () => {
  it('stores the unsubscribe once, in the ledger; its buffer entry and a job of its own hold no copy', async () => {
    const id = await queued('acme', 'Only.Once@example.com');
    const delivery = `${id}:crm-ok`;
    // Fresh, it waits in its connection's buffer as its id alone.
    expect(await api.redis.lrange(keys.batchBuffer('crm-ok'), 0, -1)).toContain(delivery);
    // A job of its own (a retry handed over by its batch job, a backfill, a move) refers to the
    // ledger too. Taken out of the buffer first, so it is not there twice.
    await api.redis.lrem(keys.batchBuffer('crm-ok'), 1, delivery);
    const producer = new DeliveryProducer(api.redis, api.queues, keys, {
      failedMs: HOUR,
      unsubscribesMs: HOUR,
    });
    expect(await producer.enqueueExisting(id, connectionSchema.parse(connections()[0]))).toBe(true);
    const jobKey = `${keys.bullPrefix}:${deliveryQueueName('crm-ok')}:${delivery}`;
    const job = await api.redis.hgetall(jobKey);
    expect(job.data).toBe('{}');
    expect(Object.values(job).join(' ')).not.toContain('Only.Once');
    // Every value under 64 bytes: Redis keeps the hash compact (docs/performance.md, "Memory").
    expect(await api.redis.object('ENCODING', jobKey)).toBe('listpack');
    const ledger = JSON.parse((await api.redis.get(keys.unsubscribe(id)))!) as Record<string, unknown>;
    expect(ledger).toMatchObject({
      unsubscribe: { id, email: 'Only.Once@example.com', account: 'acme' },
      connections: ['crm-ok'],
    });
  });

  it('fails a delivery whose ledger entry is gone, visibly, as UNSUBSCRIBE_EXPIRED', async () => {
    const id = await queued('acme', 'expired@example.com');
    await api.redis.del(keys.unsubscribe(id));
    await startWorker();
    const detail = await failed(`${id}:crm-ok`);
    expect(detail.failedReason).toMatch(/^UNSUBSCRIBE_EXPIRED: unsubscribe .* is no longer in the ledger/);
    expect(detail.attempts.at(-1)).toMatchObject({ verdict: 'fail', errorCode: 'UNSUBSCRIBE_EXPIRED' });
    expect(crm.received.some((r) => r.path.includes('expired'))).toBe(false);
  });

  it('delivers a job queued by an earlier version, which carries its whole unsubscribe', async () => {
    await startWorker();
    const id = '6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b';
    const unsubscribe = {
      id,
      account: 'acme',
      email: 'legacy@example.com',
      campaign: 'spring',
      receivedAt: new Date().toISOString(),
      attributes: {},
    };
    const queue = api.queues.for('crm-ok');
    const multi = (await api.queues.transactions()).multi();
    await new Job(
      queue,
      'crm-ok',
      { unsubscribe, connectionId: 'crm-ok' },
      { attempts: 3, backoff: { type: 'connection' }, removeOnComplete: { age: 3600 } },
      `${id}:crm-ok`,
    ).addJob(multi);
    await multi.exec();
    await eventually('legacy delivery', async () =>
      (await api.records.get(`${id}:crm-ok`)).status === 'succeeded' ? true : undefined,
    );
    expect(crm.received.filter((r) => r.path === '/v3/suppressions/legacy@example.com')).toHaveLength(1);
  });

  it('keeps the ledger entry as long as a failed delivery is kept, and again when it is replayed', async () => {
    await startWorker();
    // Held while its ledger entry is cut short, as if it had waited out most of its retention.
    const queue = api.queues.for('crm-refuses');
    await queue.pause();
    const id = await queued('refuses', 'refused@example.com', 'refused');
    const delivery = `${id}:crm-refuses`;
    await api.redis.pexpire(keys.unsubscribe(id), 60_000);
    await queue.resume();
    await failed(delivery);
    // Failing kept the entry for RETENTION_FAILED from then; cut it short again and replay.
    expect(await api.redis.pttl(keys.unsubscribe(id))).toBeGreaterThan(HOUR - 60_000);
    await api.redis.pexpire(keys.unsubscribe(id), 60_000);
    crm.respond(() => ({ status: 400, body: '{"error":"still refused"}' }));
    await api.records.replay(delivery);
    expect(await api.redis.pttl(keys.unsubscribe(id))).toBeGreaterThan(HOUR - 60_000);
  });
});
