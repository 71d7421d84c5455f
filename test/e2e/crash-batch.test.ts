import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { AttemptStore } from '../../src/store/attempt-store.js';
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
  // Unanswered requests keep batches in flight when the worker dies. (Answers after a delay did
  // not: on a loaded machine the 60 POSTs took longer than the delay, and the first batches were
  // delivered before the kill.)
  crm = await startFakeCrm(() => ({ status: 202, body: '{}', hang: true }));
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
  const { records, close } = deliveryRecords(prefix);
  const redis = testRedis();
  const attempts = new AttemptStore(redis, keyspace(prefix));
  // Killed before the CRM answered anything: no delivery was recorded as delivered.
  expect((await attempts.lastOf(ids)).filter((a) => a?.verdict === 'success')).toHaveLength(0);
  // The restarted engine's first request is refused with a 503: its deliveries are handed over to
  // jobs of their own and retried.
  const firstAfter = crm.received.length;
  crm.respond((_request, index) => ({ status: index === firstAfter ? 503 : 202, body: '{}', delayMs: 300 }));

  const second = await spawnEngine({ ...env, CONNECTIONS_DIR: dir });
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
    // The refused request's deliveries were retried: each has a retry, then a success.
    expect(
      settled.filter((d) => d.attempts.some((a) => a.verdict === 'retry' && a.status === 503)).length,
    ).toBeGreaterThan(0);
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
