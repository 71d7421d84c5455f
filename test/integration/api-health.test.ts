import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { ROOT } from '../helpers/processes.js';
import { uniquePrefix } from '../helpers/redis.js';

const SET_SECRET = 'api-health-set-secret-value-77';
process.env.API_HEALTH_SET_SECRET = SET_SECRET;
delete process.env.API_HEALTH_UNSET_SECRET;
const ADMIN_TOKEN = 'test-admin-token-0123456789';
let engine: TestEngine;

const admin = (route: string, token = ADMIN_TOKEN) =>
  fetch(`${engine.url}/admin/v1${route}`, { headers: { authorization: `Bearer ${token}` } });

/** The real CLI, asynchronously (the engine lives in this process). */
function cli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/unsub-relay.js'), ...args], {
    cwd: ROOT,
    env: { ...process.env, ADMIN_URL: engine.url, ADMIN_TOKEN },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve) => child.once('close', (status) => resolve({ status, stdout, stderr })));
}

const withToken = (id: string, secret: string) =>
  crmConnection(id, 'http://127.0.0.1:9', {
    request: {
      ...crmConnection(id, 'http://127.0.0.1:9').request,
      auth: { type: 'bearer', token: `{{secret '${secret}'}}` },
    },
  });

beforeAll(async () => {
  engine = await startTestEngine(uniquePrefix('api-health'), [
    withToken('health-ok', 'API_HEALTH_SET_SECRET'),
    withToken('health-unset', 'API_HEALTH_UNSET_SECRET'),
  ]);
});
afterAll(async () => {
  await engine?.close();
});

describe('/readyz and the admin health view', () => {
  it('answers /readyz with ready or not only: no connection ids, no check details', async () => {
    const response = await fetch(`${engine.url}/readyz`);
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(JSON.parse(text)).toEqual({ ok: true });
    expect(text).not.toContain('health-ok');
  });

  it('keeps the checks and each connection’s health behind the admin token', async () => {
    expect((await admin('/health', 'wrong-token-0123456789')).status).toBe(401);
    const response = await admin('/health');
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      ok: boolean;
      checks: Record<string, { ok: boolean }>;
      connections: Record<string, { status: string; missingSecrets?: string[] }>;
    };
    expect(body.ok).toBe(true);
    expect(body.checks.redis).toEqual({ ok: true });
    expect(body.connections['health-ok']).toMatchObject({ status: 'healthy' });
    expect(body.connections['health-ok']!.missingSecrets).toBeUndefined();
  });

  it('shows a connection whose secret is not set as misconfigured, naming the secret, never a value', async () => {
    const health = await (await admin('/health')).text();
    expect(JSON.parse(health).connections['health-unset']).toMatchObject({
      status: 'misconfigured',
      missingSecrets: ['API_HEALTH_UNSET_SECRET'],
    });
    expect(health).not.toContain(SET_SECRET);
    const { backlogs } = (await (await admin('/backlogs')).json()) as {
      backlogs: Array<{ connectionId: string; missingSecrets?: string[] }>;
    };
    expect(backlogs.find((b) => b.connectionId === 'health-unset')!.missingSecrets).toEqual([
      'API_HEALTH_UNSET_SECRET',
    ]);
    expect(backlogs.find((b) => b.connectionId === 'health-ok')!.missingSecrets).toBeUndefined();
  });

  it('connections status shows it as misconfigured with the secret names', async () => {
    const all = await cli(['connections', 'status']);
    expect(all.stderr).toBe('');
    expect(all.stdout).toMatch(/health-unset\s+misconfigured/);
    expect(all.stdout).toMatch(/health-ok\s+active/);
    expect(all.stdout).toContain('health-unset: secrets not set: API_HEALTH_UNSET_SECRET');
    const one = await cli(['connections', 'status', 'health-unset']);
    expect(one.stdout).toContain('secrets not set: API_HEALTH_UNSET_SECRET');
    expect(all.stdout + one.stdout).not.toContain(SET_SECRET);
  }, 90_000);
});
