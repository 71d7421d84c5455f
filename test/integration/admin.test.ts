import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';

process.env.TEST_CRM_TOKEN ??= 'admin-test-token';
const ADMIN_TOKEN = 'admin-token-for-tests-0123456789';

let engine: TestEngine;
let crm: FakeCrm;
const failedIds: string[] = [];

const admin = (path: string, init: RequestInit = {}, token = ADMIN_TOKEN) =>
  fetch(`${engine.url}/admin/v1${path}`, {
    ...init,
    headers: {
      authorization: `Bearer ${token}`,
      ...(init.body ? { 'content-type': 'application/json' } : {}),
    },
  });

beforeAll(async () => {
  crm = await startFakeCrm(() => ({ status: 404, body: '{"title":"Resource Not Found"}' }));
  engine = await startTestEngine(uniquePrefix('admin'), [crmConnection('acme-crm', crm.url)], {
    ADMIN_TOKEN,
  });
  for (const email of ['a@example.com', 'b@example.com']) {
    const { body } = await engine.unsubscribe('acme', { email });
    failedIds.push(`${body.id as string}:acme-crm`);
  }
  await eventually(
    'both deliveries failed',
    async () => (await engine.records.list({ status: 'failed' })).length === 2,
  );
});
afterAll(async () => {
  await engine?.close();
  await crm.close();
});

describe('admin API', () => {
  it('refuses requests without the admin token', async () => {
    expect((await admin('/deliveries', {}, 'wrong-token')).status).toBe(401);
    const response = await fetch(`${engine.url}/admin/v1/deliveries`);
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({
      error: 'unauthorized',
      message: 'send Authorization: Bearer <admin token>',
    });
  });

  it('lists failed deliveries of a connection', async () => {
    const response = await admin('/deliveries?status=failed&connection=acme-crm');
    expect(response.status).toBe(200);
    const { deliveries } = (await response.json()) as {
      deliveries: Array<{ id: string; status: string; failedReason: string }>;
    };
    expect(deliveries.map((d) => d.id).sort()).toEqual([...failedIds].sort());
    expect(deliveries[0]!.failedReason).toBe('HTTP_STATUS: status 404 is permanent');
  });

  it('names bad query fields', async () => {
    const response = await admin('/deliveries?status=lost&limit=0');
    expect(response.status).toBe(400);
    expect(Object.keys(((await response.json()) as { fields: object }).fields).sort()).toEqual([
      'limit',
      'status',
    ]);
  });

  it('shows one delivery with its attempts, secrets redacted', async () => {
    const response = await admin(`/deliveries/${encodeURIComponent(failedIds[0]!)}`);
    expect(response.status).toBe(200);
    const detail = (await response.json()) as {
      status: string;
      attempts: Array<{ status: number; request: { headers: Record<string, string> } }>;
    };
    expect(detail.status).toBe('failed');
    expect(detail.attempts).toHaveLength(1);
    expect(detail.attempts[0]!.status).toBe(404);
    expect(detail.attempts[0]!.request.headers.authorization).toBe('[redacted]');
    expect(JSON.stringify(detail)).not.toContain(process.env.TEST_CRM_TOKEN!);
    expect((await admin('/deliveries/nope:acme-crm')).status).toBe(404);
  });

  it('replays one failed delivery, and refuses to replay it again while it is pending', async () => {
    crm.respond(() => ({ status: 200, body: '{}' }));
    const id = encodeURIComponent(failedIds[0]!);
    const first = await admin(`/deliveries/${id}/replay`, { method: 'POST' });
    expect(first.status).toBe(202);
    await eventually(
      'replayed delivery succeeded',
      async () => (await engine.records.get(failedIds[0]!)).status === 'succeeded',
    );
    const again = await admin(`/deliveries/${id}/replay`, { method: 'POST' });
    expect(again.status).toBe(409);
    expect(((await again.json()) as { message: string }).message).toMatch(/is succeeded, not failed/);
  });

  it('replays every failed delivery of a connection', async () => {
    const response = await admin('/replay', {
      method: 'POST',
      body: JSON.stringify({ connection: 'acme-crm' }),
    });
    expect(response.status).toBe(202);
    expect(await response.json()).toEqual({ replayed: [failedIds[1]] });
    await eventually(
      'all delivered',
      async () => (await engine.records.list({ status: 'succeeded' })).length === 2,
    );
    const bad = await admin('/replay', {
      method: 'POST',
      body: JSON.stringify({ connection: 'acme-crm', everything: true }),
    });
    expect(bad.status).toBe(400);
  });
});
