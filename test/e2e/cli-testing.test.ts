import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionInput } from '../../src/config/connection-schema.js';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, deliveryRecords, writeConnections } from '../helpers/engine.js';
import { cli, spawnEngine, type EngineProcess, cliAsync } from '../helpers/processes.js';
import { cleanPrefix, eventually, uniquePrefix } from '../helpers/redis.js';

describe('test and replay from the CLI', () => {
  const prefix = uniquePrefix('e2e-testing');
  const env = {
    REDIS_PREFIX: prefix,
    ALLOW_PRIVATE_TARGETS: 'true',
    SANDBOX: 'off',
    TEST_CRM_TOKEN: 'e2e-testing-crm-token',
    ADMIN_TOKEN: 'test-admin-token-0123456789',
    UNSUB_RELAY_OPERATOR: 'jo@on-call',
  };
  let crm: FakeCrm;
  let dir: string;
  let engine: EngineProcess | undefined;
  let run: (args: string[]) => ReturnType<typeof cli>;

  const connection = (source: string): ConnectionInput => {
    const base = crmConnection('cli-crm', crm.url, { testing: { email: 'qa@example.com', attributes: {} } });
    return { ...base, request: { ...base.request, body: { json: { email: '{{email}}', source } } } };
  };
  const start = async () => {
    engine = await spawnEngine({ ...env, CONNECTIONS_DIR: dir, LOG_LEVEL: 'warn' });
    run = (args) => cli(args, { ...env, ADMIN_URL: engine!.url });
  };
  const stop = async () => {
    if (!engine) return;
    engine.child.kill('SIGTERM');
    await engine.exited;
    engine = undefined;
  };

  beforeAll(async () => {
    // Rejects whatever version 1 sends; version 2 (the fix) is accepted.
    crm = await startFakeCrm((request) =>
      request.body.includes('"source":"v2"')
        ? { status: 200, body: '{"ok":true}' }
        : { status: 400, body: '{"error":"unknown field source"}' },
    );
    dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-e2e-testing-'));
    await writeConnections(dir, [connection('v1')]);
    await start();
  });
  afterAll(async () => {
    await stop();
    await crm?.close();
    await rm(dir, { recursive: true, force: true });
    await cleanPrefix(prefix);
  });

  it('test --dry-run renders without sending', () => {
    const result = run(['test', 'cli-crm', '--dry-run']);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('dry run: nothing sent');
    expect(result.stdout).toContain(`POST ${crm.url}/v3/suppressions/qa@example.com`);
    expect(result.stdout).not.toContain('e2e-testing-crm-token');
    expect(crm.received).toHaveLength(0);
  });

  it('test sends, shows the response, the rule and the verdict, and fails when the CRM refuses', async () => {
    const runAsync = (args: string[]) => cliAsync(args, { ...env, ADMIN_URL: engine!.url });
    const result = await runAsync(['test', 'cli-crm']);
    expect(result.status).toBe(1);
    expect(result.stdout).toContain('--- response: 400');
    expect(result.stdout).toContain('unknown field source');
    expect(result.stdout).toContain('rule: default');
    expect(result.stdout).toContain('verdict: fail');
    const json = await runAsync(['test', 'cli-crm', '--email', 'other@example.com', '--json']);
    const parsed = JSON.parse(json.stdout) as { email: string; response: { status: number } };
    expect(parsed).toMatchObject({ email: 'other@example.com', response: { status: 400 } });
    expect(run(['test', 'missing-crm']).status).toBe(1);
    // Test runs are not deliveries.
    expect(crm.received).toHaveLength(2);
  });

  it('scenario: failing deliveries, fix the connection, bulk replay with re-render, all delivered', async () => {
    const created = run(['keys', 'create', '--account', 'acme']);
    expect(created.status).toBe(0);
    const key = created.stdout.trim().split('\n').at(-1)!;
    const ids: string[] = [];
    for (const email of ['a@example.com', 'b@example.com']) {
      const response = await fetch(`${engine!.url}/v1/unsubscribes`, {
        method: 'POST',
        headers: { authorization: key, 'content-type': 'application/json' },
        body: JSON.stringify({ email }),
      });
      expect(response.status).toBe(201);
      ids.push(`${((await response.json()) as { id: string }).id}:cli-crm`);
    }
    const { records, close } = deliveryRecords(prefix);
    try {
      await eventually('both failed', async () => (await records.list({ status: 'failed' })).length === 2);

      // The fix: a new version of the connection file, applied to the running engine.
      await writeConnections(dir, [connection('v2')]);
      const applied = run(['apply', dir]);
      expect(applied.stderr).toBe('');
      expect(applied.stdout).toContain('changed    cli-crm (version 1 → 2)');

      const preview = run(['replay', '--connection', 'cli-crm']);
      expect(preview.status).toBe(1);
      expect(preview.stdout).toContain('would replay 2 failed deliveries');
      expect(preview.stderr).toContain('--yes');
      expect((await records.list({ status: 'failed' })).length).toBe(2);

      const done = run(['replay', '--connection', 'cli-crm', '--rate', '5', '--yes', '--json']);
      expect(done.stderr).toBe('');
      expect(done.status).toBe(0);
      const record = JSON.parse(done.stdout) as { count: number; ids: string[]; who: string; mode: string };
      expect(record).toMatchObject({ count: 2, who: 'jo@on-call', mode: 'rerender' });
      expect(record.ids.sort()).toEqual([...ids].sort());
      await eventually(
        'both delivered',
        async () => (await records.list({ status: 'succeeded' })).length === 2,
      );

      // The audit export shows when the CRM acknowledged each, after one refused attempt.
      const audit = run(['audit', '--account', 'acme', '--email', 'a@example.com', '--format', 'json']);
      expect(audit.status).toBe(0);
      const [row, ...others] = JSON.parse(audit.stdout) as Array<Record<string, unknown>>;
      expect(others).toEqual([]);
      expect(row).toMatchObject({
        email: 'a@example.com',
        connectionId: 'cli-crm',
        status: 'succeeded',
        attempts: 2,
      });
      expect(typeof row!.acknowledgedAt).toBe('string');

      const listed = run(['replays', '--json']);
      expect(listed.status).toBe(0);
      expect((JSON.parse(listed.stdout) as unknown[]).length).toBe(1);
      const bad = run(['replay']);
      expect(bad.status).toBe(1);
      expect(bad.stderr).toContain('give exactly one of --id');
    } finally {
      await close();
    }
  });
});
