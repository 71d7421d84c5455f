import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { freePort } from '../helpers/processes.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';

process.env.TEST_CRM_TOKEN ??= 'sandbox-target-crm-token';
const ADMIN_TOKEN = 'test-admin-token-0123456789';
let engine: TestEngine;
let port: number;

const testRun = async (id: string) => {
  const response = await fetch(`${engine.url}/admin/v1/connections/${id}/test`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'qa@example.com' }),
  });
  expect(response.status).toBe(200);
  return (await response.json()) as {
    verdict: string;
    error?: { code: string; message: string };
    response?: { status: number };
  };
};

beforeAll(async () => {
  const to = (id: string, url: string) => {
    const base = crmConnection(id, 'http://unused.invalid');
    return { ...base, campaigns: '*' as const, request: { ...base.request, url } };
  };
  // The engine must know its port before it listens (the sandbox URL names it): a free port can be
  // taken by another test file in between, so try another one then.
  for (let attempt = 1; ; attempt += 1) {
    port = await freePort();
    try {
      engine = await startTestEngine(
        uniquePrefix('sandbox-target'),
        [
          to('to-sandbox', '{{engine.sandboxUrl}}/unsubscribes'),
          // A connection aimed at the engine's own admin API, on the port the sandbox opens.
          to('to-admin', `http://127.0.0.1:${port}/admin/v1/connections`),
          to('to-admin-dotted', `http://127.0.0.1:${port}/sandbox/crm/../../admin/v1/keys`),
        ],
        { PORT: String(port), SANDBOX: 'on', ALLOW_PRIVATE_TARGETS: 'false' },
      );
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt === 3) throw error;
    }
  }
});
afterAll(async () => {
  await engine?.close();
});

describe('with the sandbox on, the engine’s own port is reachable at /sandbox/crm only', () => {
  it('delivers to /sandbox/crm/…', async () => {
    const run = await testRun('to-sandbox');
    expect(run.error).toBeUndefined();
    expect(run).toMatchObject({ verdict: 'success', response: { status: 200 } });
  });

  it('refuses any other path of that port as a permanent error naming the rule', async () => {
    for (const id of ['to-admin', 'to-admin-dotted']) {
      const run = await testRun(id);
      expect(run.verdict).toBe('fail');
      expect(run.error?.code).toBe('TARGET_REFUSED');
      expect(run.error?.message).toContain(`on 127.0.0.1:${port} only /sandbox/crm/… may be reached`);
    }
  });

  it('fails a real delivery to the admin API at its first attempt, without retrying', async () => {
    expect((await engine.unsubscribe('acme', { email: 'jane@example.com' })).status).toBe(201);
    const failed = await eventually('the delivery to the admin API failed', async () => {
      const [delivery] = await engine.records.list({ connection: 'to-admin' });
      return delivery?.status === 'failed' ? delivery : undefined;
    });
    expect(failed.attemptsMade).toBe(1);
    expect(failed.failedReason).toContain('only /sandbox/crm/… may be reached');
    await eventually('the sandbox delivery', async () => {
      const [delivery] = await engine.records.list({ connection: 'to-sandbox' });
      return delivery?.status === 'succeeded';
    });
  });
});
