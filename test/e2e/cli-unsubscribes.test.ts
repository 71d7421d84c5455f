import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, deliveryRecords, writeConnections } from '../helpers/engine.js';
import { cli, spawnEngine, type EngineProcess } from '../helpers/processes.js';
import { cleanPrefix, eventually, uniquePrefix } from '../helpers/redis.js';

describe('unsubscribes, suppressions and audit from the CLI', () => {
  const prefix = uniquePrefix('e2e-unsubs');
  const env = {
    REDIS_PREFIX: prefix,
    ALLOW_PRIVATE_TARGETS: 'true',
    SANDBOX: 'off',
    TEST_CRM_TOKEN: 'e2e-unsubs-crm-token',
    ADMIN_TOKEN: 'test-admin-token-0123456789',
  };
  let crm: FakeCrm;
  let dir: string;
  let engine: EngineProcess;
  let run: (args: string[]) => ReturnType<typeof cli>;
  /** ann@ (delivered), then bad@ (refused by the CRM with 404). */
  const ids: string[] = [];
  const received: string[] = [];
  let ack: string;

  beforeAll(async () => {
    crm = await startFakeCrm((request) =>
      request.path.includes('bad') ? { status: 404, body: '{}' } : { status: 200, body: '{"ok":true}' },
    );
    dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-e2e-unsubs-'));
    await writeConnections(dir, [crmConnection('acme-crm', crm.url)]);
    engine = await spawnEngine({ ...env, CONNECTIONS_DIR: dir, LOG_LEVEL: 'warn' });
    run = (args) => cli(args, { ...env, ADMIN_URL: engine.url });
    const created = run(['keys', 'create', '--account', 'acme']);
    expect(created.status).toBe(0);
    const key = created.stdout.trim().split('\n').at(-1)!;
    for (const body of [
      { email: 'Ann@Example.com', campaign: 'spring' },
      { email: 'bad@example.com', campaign: 'spring' },
    ]) {
      const response = await fetch(`${engine.url}/v1/unsubscribes`, {
        method: 'POST',
        headers: { authorization: key, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(response.status).toBe(201);
      ids.push(((await response.json()) as { id: string }).id);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const { records, close } = deliveryRecords(prefix);
    try {
      await eventually('both deliveries finished', async () => {
        const [a, b] = [await records.get(`${ids[0]}:acme-crm`), await records.get(`${ids[1]}:acme-crm`)];
        return a.status === 'succeeded' && b.status === 'failed';
      });
      const ok = (await records.get(`${ids[0]}:acme-crm`)).attempts.find((a) => a.verdict === 'success')!;
      ack = new Date(Date.parse(ok.startedAt) + Math.round(ok.durationMs)).toISOString();
    } finally {
      await close();
    }
  });

  afterAll(async () => {
    if (engine && engine.child.exitCode === null) {
      engine.child.kill('SIGTERM');
      await engine.exited;
    }
    await crm?.close();
    await rm(dir, { recursive: true, force: true });
    await cleanPrefix(prefix);
  });

  it('lists an account’s unsubscribes with each delivery’s status', () => {
    const listed = run(['unsubscribes', 'list', '--account', 'acme', '--json']);
    expect(listed.stderr).toBe('');
    expect(listed.status).toBe(0);
    const page = JSON.parse(listed.stdout) as {
      unsubscribes: Array<{ id: string; email: string; receivedAt: string; deliveries: unknown[] }>;
    };
    expect(page.unsubscribes.map((u) => [u.id, u.email, u.deliveries])).toEqual([
      [ids[1], 'bad@example.com', [{ id: `${ids[1]}:acme-crm`, connectionId: 'acme-crm', status: 'failed' }]],
      [
        ids[0],
        'Ann@Example.com',
        [{ id: `${ids[0]}:acme-crm`, connectionId: 'acme-crm', status: 'succeeded' }],
      ],
    ]);
    received.push(page.unsubscribes[1]!.receivedAt, page.unsubscribes[0]!.receivedAt);

    const human = run(['unsubscribes', 'list', '--account', 'acme', '--email', 'ann@example.COM']);
    expect(human.status).toBe(0);
    expect(human.stdout.split('\n')[1]).toBe(
      `${ids[0]}  ${received[0]}  Ann@Example.com  spring    acme-crm=succeeded`,
    );

    const paged = run(['unsubscribes', 'list', '--account', 'acme', '--limit', '1']);
    expect(paged.stdout.trim().split('\n').at(-1)).toBe(
      `more: --cursor ${Date.parse(received[1]!)}:${ids[1]}`,
    );
  });

  it('checks a suppression', () => {
    const human = run(['suppressions', 'check', '--account', 'acme', 'ANN@example.com']);
    expect(human.status).toBe(0);
    expect(human.stdout).toBe(
      `ANN@example.com is suppressed for acme since ${received[0]} (unsubscribes: ${ids[0]})\n`,
    );
    const json = run(['suppressions', 'check', '--account', 'acme', 'nobody@example.com', '--json']);
    expect(JSON.parse(json.stdout)).toEqual({ suppressed: false, unsubscribeIds: [] });
  });

  it('exports the audit CSV for an email and for a time range', async () => {
    const header =
      'unsubscribeId,email,campaign,receivedAt,connectionId,status,acknowledgedAt,attempts,lastErrorCode\r\n';
    const byEmail = run(['audit', '--account', 'acme', '--email', 'ann@example.com']);
    expect(byEmail.status).toBe(0);
    expect(byEmail.stdout).toBe(
      `${header}${ids[0]},Ann@Example.com,spring,${received[0]},acme-crm,succeeded,${ack},1,\r\n`,
    );

    const file = path.join(dir, 'audit.csv');
    const byRange = run(['audit', '--account', 'acme', '--since', received[0]!, '--output', file]);
    expect(byRange.status).toBe(0);
    expect(byRange.stderr).toBe(`wrote 2 row(s) to ${file}\n`);
    expect(await readFile(file, 'utf8')).toBe(
      header +
        `${ids[1]},bad@example.com,spring,${received[1]},acme-crm,failed,,1,HTTP_STATUS\r\n` +
        `${ids[0]},Ann@Example.com,spring,${received[0]},acme-crm,succeeded,${ack},1,\r\n`,
    );

    const neither = run(['audit', '--account', 'acme']);
    expect(neither.status).toBe(1);
    expect(neither.stderr).toBe(
      'error: give --email <email>, or a time range with --since <time> [--until <time>]\n',
    );
  });

  it('filters deliveries by error code and campaign', () => {
    const listed = run([
      'deliveries',
      'list',
      '--error-code',
      'HTTP_STATUS',
      '--campaign',
      'spring',
      '--json',
    ]);
    expect(listed.status).toBe(0);
    expect((JSON.parse(listed.stdout) as Array<{ id: string }>).map((d) => d.id)).toEqual([
      `${ids[1]}:acme-crm`,
    ]);
  });
});
