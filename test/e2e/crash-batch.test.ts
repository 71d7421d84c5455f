import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { keyspace } from '../../src/store/keys.js';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, deliveryRecords, writeConnections } from '../helpers/engine.js';
import { createKey, postUnsubscribes, spawnEngine } from '../helpers/processes.js';
import { cleanPrefix, eventually, testRedis, uniquePrefix } from '../helpers/redis.js';

// A batched connection's deliveries travel many to a batch job (issue 7): a worker killed with
// batches in flight loses none of them, and leaves none behind in the buffer or an open batch.
const prefix = uniquePrefix('crash-batch');
const env = {
  REDIS_PREFIX: prefix,
  ADMIN_TOKEN: 'e2e-admin-token-0123456789',
  ALLOW_PRIVATE_TARGETS: 'true',
  SANDBOX: 'off',
  WORKER_LOCK_DURATION: '2s',
  TEST_CRM_TOKEN: 'crash-batch-token',
};
let crm: FakeCrm;
let dir: string;
const emailsIn = (body: string) => (JSON.parse(body) as { emails: string[] }).emails;

beforeAll(async () => {
  // Slow answers keep batches in flight when the worker dies; the first batch is refused with a 503,
  // so its deliveries are retried in jobs of their own, whichever process hands them over.
  crm = await startFakeCrm((_request, index) => ({
    status: index === 0 ? 503 : 202,
    body: '{}',
    delayMs: 300,
  }));
  dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-crash-batch-'));
  const base = crmConnection('acme-batch', crm.url, { dedupe: { window: 0 } });
  await writeConnections(dir, [
    {
      ...base,
      batch: { maxSize: 10, maxWait: '100ms' },
      request: {
        ...base.request,
        headers: {},
        url: `${crm.url}/v3/suppressions`,
        body: { json: { emails: [{ $each: '{{email}}' }] } },
      },
    },
  ]);
});
afterAll(async () => {
  await crm.close();
  await rm(dir, { recursive: true, force: true });
  await cleanPrefix(prefix);
});

it('delivers every accepted unsubscribe to a batched connection after the worker is killed mid-batch', async () => {
  const first = await spawnEngine({ ...env, CONNECTIONS_DIR: dir });
  const key = createKey(env, first.url);
  const emails = Array.from({ length: 60 }, (_, i) => `user${i}@example.com`);
  const answers = await postUnsubscribes(
    first.url,
    key,
    emails.map((email) => ({ email })),
  );
  expect(answers.map((a) => a.status)).toEqual(emails.map(() => 201));
  const ids = answers.map((a) => `${a.id}:acme-batch`);
  await eventually('a batch under way', () => crm.received.length >= 1);
  first.child.kill('SIGKILL');
  await first.exited;
  expect(new Set(crm.received.flatMap((r) => emailsIn(r.body))).size).toBeLessThan(emails.length);

  const second = await spawnEngine({ ...env, CONNECTIONS_DIR: dir });
  const { records, close } = deliveryRecords(prefix);
  const redis = testRedis();
  try {
    await eventually(
      'every unsubscribe at the CRM',
      () => new Set(crm.received.flatMap((r) => emailsIn(r.body))).size === emails.length,
      30_000,
    );
    const settled = await eventually('every delivery recorded as delivered', async () => {
      const all = await Promise.all(ids.map((id) => records.get(id)));
      return all.every((d) => d.status === 'succeeded') ? all : undefined;
    });
    expect(settled).toHaveLength(emails.length);
    const keys = keyspace(prefix);
    expect(await redis.llen(keys.batchBuffer('acme-batch'))).toBe(0);
    await eventually(
      'every batch closed',
      async () => (await redis.zcard(keys.openBatches('acme-batch'))) === 0,
    );
  } finally {
    redis.disconnect();
    await close();
    second.child.kill('SIGTERM');
    await second.exited;
  }
});
