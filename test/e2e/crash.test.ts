import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, writeConnections } from '../helpers/engine.js';
import { createKey, postUnsubscribes, spawnEngine } from '../helpers/processes.js';
import { cleanPrefix, eventually, uniquePrefix } from '../helpers/redis.js';

const prefix = uniquePrefix('crash');
const CONCURRENCY = 4;
const env = {
  REDIS_PREFIX: prefix,
  ADMIN_TOKEN: 'e2e-admin-token-0123456789',
  ALLOW_PRIVATE_TARGETS: 'true',
  SANDBOX: 'off',
  WORKER_CONCURRENCY: String(CONCURRENCY),
  // A short lock, so a killed worker's deliveries are taken over in seconds, not the default 30 s.
  WORKER_LOCK_DURATION: '2s',
  TEST_CRM_TOKEN: 'crash-token',
};
let crm: FakeCrm;
let dir: string;

beforeAll(async () => {
  // Slow answers keep deliveries in flight when the worker dies.
  crm = await startFakeCrm(() => ({ status: 200, body: '{}', delayMs: 150 }));
  dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-crash-'));
  await writeConnections(dir, [
    crmConnection('acme-crm', crm.url, { retry: { attempts: 5, delay: '100ms', jitter: false } }),
  ]);
});
afterAll(async () => {
  await crm.close();
  await rm(dir, { recursive: true, force: true });
  await cleanPrefix(prefix);
});

it('delivers every accepted unsubscribe after the worker is killed with SIGKILL mid-flight', async () => {
  const first = await spawnEngine({ ...env, CONNECTIONS_DIR: dir });
  const key = createKey(env, first.url);
  const emails = Array.from({ length: 40 }, (_, i) => `user${i}@example.com`);
  const answers = await postUnsubscribes(
    first.url,
    key,
    emails.map((email) => ({ email })),
  );
  expect(answers.map((a) => a.status)).toEqual(emails.map(() => 201));
  await eventually('some deliveries under way', () => crm.received.length >= CONCURRENCY);
  first.child.kill('SIGKILL');
  await first.exited;
  const beforeRestart = crm.received.length;
  expect(beforeRestart).toBeLessThan(emails.length);

  const second = await spawnEngine({ ...env, CONNECTIONS_DIR: dir });
  try {
    const delivered = await eventually(
      'every unsubscribe at the CRM',
      () => {
        const seen = new Set(
          crm.received.map((r) => (JSON.parse(r.body) as { recipient_emails: string[] }).recipient_emails[0]),
        );
        return seen.size === emails.length ? seen : undefined;
      },
      30_000,
    );
    expect([...delivered].sort()).toEqual([...emails].sort());
    // Only the deliveries in flight at the kill may arrive twice.
    expect(crm.received.length - emails.length).toBeLessThanOrEqual(CONCURRENCY);
  } finally {
    second.child.kill('SIGTERM');
    await second.exited;
  }
});
