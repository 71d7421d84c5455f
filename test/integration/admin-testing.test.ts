import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { uniquePrefix } from '../helpers/redis.js';
import { keyspace } from '../../src/store/keys.js';

const SECRET = 'admin-testing-crm-token-9f8e7d';
process.env.TEST_CRM_TOKEN = SECRET;
const ADMIN_TOKEN = 'admin-token-for-tests-0123456789';

let engine: TestEngine;
let crm: FakeCrm;

const admin = (path: string, init: RequestInit = {}) =>
  fetch(`${engine.url}/admin/v1${path}`, {
    ...init,
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      ...(init.body ? { 'content-type': 'application/json' } : {}),
    },
  });
const post = (path: string, body: unknown) => admin(path, { method: 'POST', body: JSON.stringify(body) });

interface Run {
  request: { method: string; url: string; headers: Record<string, string>; body?: string };
  response?: { status: number; headers: Record<string, string>; body: string };
  verdict?: string;
  rule?: number | 'default';
  durationMs: number;
  connectionVersion: number;
  dryRun: boolean;
}

beforeAll(async () => {
  // The CRM echoes the request's Authorization back: the test run must scrub it.
  crm = await startFakeCrm((request) => ({
    status: 202,
    headers: { 'x-echo': String(request.headers.authorization) },
    body: JSON.stringify({ accepted: true, auth: request.headers.authorization }),
  }));
  engine = await startTestEngine(
    uniquePrefix('admin-testing'),
    [
      crmConnection('tested-crm', crm.url, {
        testing: { email: 'qa@example.com', campaign: 'spring', attributes: { plan: 'gold' } },
        response: { rules: [{ when: { status: 202 }, then: 'success', reason: 'accepted' }] },
      }),
      crmConnection('untested-crm', crm.url),
      crmConnection('unset-secret-crm', crm.url, {
        testing: { email: 'qa@example.com' },
        request: {
          ...crmConnection('x', crm.url).request,
          auth: { type: 'bearer', token: "{{secret 'ADMIN_TESTING_UNSET_SECRET'}}" },
        },
      }),
    ],
    { ADMIN_TOKEN },
  );
});
afterAll(async () => {
  await engine?.close();
  await crm?.close();
});

describe('connection test runs', () => {
  it('sends the testing settings through the exchange and reports request, response, rule and verdict', async () => {
    const response = await post('/connections/tested-crm/test', {});
    expect(response.status).toBe(200);
    const run = (await response.json()) as Run;
    expect(run.request.method).toBe('POST');
    expect(run.request.url).toBe(`${crm.url}/v3/suppressions/qa@example.com`);
    expect(
      Object.entries(run.request.headers).find(([name]) => name.toLowerCase() === 'x-campaign')?.[1],
    ).toBe('spring');
    expect(JSON.stringify(run.request)).not.toContain(SECRET);
    expect(run.response!.status).toBe(202);
    expect(JSON.stringify(run.response)).not.toContain(SECRET);
    expect(run.response!.body).toContain('[redacted]');
    expect(run.verdict).toBe('success');
    // Numbered from 1, as validate, the docs and the reason ("rule 1 (success) ...") count.
    expect(run.rule).toBe(1);
    expect(run.connectionVersion).toBe(1);
    expect(typeof run.durationMs).toBe('number');
    expect(crm.received.at(-1)!.headers.authorization).toBe(`Bearer ${SECRET}`);
  });

  it('a dry run renders only: nothing reaches the CRM', async () => {
    const before = crm.received.length;
    const response = await post('/connections/tested-crm/test', { dryRun: true, email: 'other@example.com' });
    expect(response.status).toBe(200);
    const run = (await response.json()) as Run;
    expect(run.dryRun).toBe(true);
    expect(run.request.url).toContain('other@example.com');
    expect(run.response).toBeUndefined();
    expect(crm.received.length).toBe(before);
  });

  it('test runs are recorded and never count as deliveries', async () => {
    const { tests } = (await (await admin('/connections/tested-crm/tests')).json()) as { tests: Run[] };
    expect(tests).toHaveLength(2);
    expect(tests[0]!.dryRun).toBe(true);
    expect(await engine.records.list()).toEqual([]);
    const keys = keyspace(engine.prefix);
    expect(await engine.redis.exists(keys.accountUnsubscribes('acme'))).toBe(0);
    expect(await engine.redis.keys(`${keys.prefix}:attempts:*`)).toEqual([]);
  });

  it('keeps only the last 20 test runs', async () => {
    for (let i = 0; i < 21; i += 1) await post('/connections/tested-crm/test', { dryRun: true });
    const { tests } = (await (await admin('/connections/tested-crm/tests')).json()) as { tests: Run[] };
    expect(tests).toHaveLength(20);
  });

  it('asks for testing settings when a connection has none and no email is given', async () => {
    const response = await post('/connections/untested-crm/test', { dryRun: true });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { message: string }).message).toContain('testing: { email: ... }');
    const withEmail = await post('/connections/untested-crm/test', { dryRun: true, email: 'x@example.com' });
    expect(withEmail.status).toBe(200);
  });

  it('answers a dry run of a connection whose secret is not set with 422 naming connection and field', async () => {
    const response = await post('/connections/unset-secret-crm/test', { dryRun: true });
    expect(response.status).toBe(422);
    const body = (await response.json()) as {
      error: string;
      message: string;
      fields: Record<string, string>;
    };
    expect(body.error).toBe('connection_misconfigured');
    expect(body.message).toContain('connection unset-secret-crm: request.auth.token:');
    expect(body.message).toContain('ADMIN_TESTING_UNSET_SECRET');
    expect(body.fields['request.auth.token']).toContain('ADMIN_TESTING_UNSET_SECRET');
    // Sent for real, the same problem is a failed test run, recorded, still no 500.
    const sent = await post('/connections/unset-secret-crm/test', {});
    expect(sent.status).toBe(200);
    expect(((await sent.json()) as { error: { code: string } }).error.code).toBe('TEMPLATE_ERROR');
  });

  it('validates the body and the connection', async () => {
    expect((await post('/connections/tested-crm/test', { dryRun: 'yes' })).status).toBe(400);
    expect((await post('/connections/tested-crm/test', { unknown: 1 })).status).toBe(400);
    expect((await post('/connections/nope/test', {})).status).toBe(404);
  });
});
