import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, writeConnections } from '../helpers/engine.js';
import { createKey, spawnEngine } from '../helpers/processes.js';
import { cleanPrefix, eventually, uniquePrefix } from '../helpers/redis.js';

const prefix = uniquePrefix('shutdown');
const env = {
  REDIS_PREFIX: prefix,
  ADMIN_TOKEN: 'e2e-admin-token-0123456789',
  ALLOW_PRIVATE_TARGETS: 'true',
  SHUTDOWN_TIMEOUT: '1s',
  WORKER_LOCK_DURATION: '2s',
  TEST_CRM_TOKEN: 'shutdown-token',
};
let crm: FakeCrm;
let dir: string;
let hanging = true;

beforeAll(async () => {
  crm = await startFakeCrm(() => (hanging ? { status: 200, hang: true } : { status: 200, body: '{}' }));
  dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-shutdown-'));
  // The CRM never answers and the connection would wait a minute for it.
  await writeConnections(dir, [
    crmConnection('acme-crm', crm.url, {
      request: { ...crmConnection('x', crm.url).request, timeouts: { headers: '60s' } },
    }),
  ]);
});
afterAll(async () => {
  await crm.close();
  await rm(dir, { recursive: true, force: true });
  await cleanPrefix(prefix);
});

it('stops within its shutdown bound despite a hung CRM and a trickling client, and loses nothing', async () => {
  const engine = await spawnEngine({ ...env, CONNECTIONS_DIR: dir });
  const key = createKey(env, engine.url);
  const response = await fetch(`${engine.url}/v1/unsubscribes`, {
    method: 'POST',
    headers: { authorization: key, 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'in-flight@example.com' }),
  });
  expect(response.status).toBe(201);
  await eventually('the delivery in flight at the CRM', () => crm.received.length === 1);

  // A client that sends half a body and then nothing.
  const { port } = new URL(engine.url);
  const slow = connect(Number(port), '127.0.0.1');
  await new Promise<void>((resolve) => slow.once('connect', () => resolve()));
  slow.write(
    `POST /v1/unsubscribes HTTP/1.1\r\nhost: x\r\nauthorization: ${key}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"email":`,
  );
  slow.on('error', () => undefined);

  engine.child.kill('SIGTERM');
  // Without the bound this would wait for the CRM (60 s) and the client (forever); the test's own
  // 30 s timeout is the failure.
  expect(await engine.exited).toBe(0);
  expect(engine.logs()).toContain('in-flight work did not finish in time');
  slow.destroy();

  // The delivery that was cut short is not lost: the next engine delivers it.
  hanging = false;
  const next = await spawnEngine({ ...env, CONNECTIONS_DIR: dir });
  try {
    await eventually('the cut-short delivery to arrive again', () => crm.received.length >= 2, 20_000);
    expect(JSON.parse(crm.received.at(-1)!.body)).toEqual({
      recipient_emails: ['in-flight@example.com'],
      source: 'unsub-relay',
    });
  } finally {
    next.child.kill('SIGTERM');
    await next.exited;
  }
});
