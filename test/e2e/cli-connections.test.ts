import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, writeConnections } from '../helpers/engine.js';
import { cli, spawnEngine, type EngineProcess } from '../helpers/processes.js';
import { cleanPrefix, uniquePrefix } from '../helpers/redis.js';

describe('connections, apply and campaign links from the CLI', () => {
  const prefix = uniquePrefix('e2e-connections');
  const env = {
    REDIS_PREFIX: prefix,
    ALLOW_PRIVATE_TARGETS: 'true',
    SANDBOX: 'off',
    TEST_CRM_TOKEN: 'e2e-connections-crm-token',
    ADMIN_TOKEN: 'test-admin-token-0123456789',
  };
  let crm: FakeCrm;
  const dirs: string[] = [];
  let engine: EngineProcess;
  let run: (args: string[]) => ReturnType<typeof cli>;
  const tempDir = async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-e2e-connections-'));
    dirs.push(dir);
    return dir;
  };

  beforeAll(async () => {
    crm = await startFakeCrm(() => ({ status: 200, body: '{"ok":true}' }));
    const dir = await tempDir();
    await writeConnections(dir, [crmConnection('acme-crm', crm.url, { campaigns: ['spring'] })]);
    engine = await spawnEngine({ ...env, CONNECTIONS_DIR: dir, LOG_LEVEL: 'warn' });
    run = (args) => cli(args, { ...env, ADMIN_URL: engine.url });
    const created = run(['keys', 'create', '--account', 'acme']);
    expect(created.status).toBe(0);
    const key = created.stdout.trim().split('\n').at(-1)!;
    for (const email of ['a@example.com', 'b@example.com']) {
      const response = await fetch(`${engine.url}/v1/unsubscribes`, {
        method: 'POST',
        headers: { authorization: key, 'content-type': 'application/json' },
        body: JSON.stringify({ email, campaign: 'autumn' }),
      });
      expect(response.status).toBe(201);
    }
  }, 60_000);

  afterAll(async () => {
    engine?.child.kill('SIGTERM');
    await engine?.exited;
    await crm?.close();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    await cleanPrefix(prefix);
  });

  it('applies a directory and prints the diff; refuses an invalid set whole', async () => {
    const dir = await tempDir();
    await writeConnections(dir, [
      crmConnection('acme-crm', crm.url, { campaigns: ['spring'], name: 'Acme renamed' }),
      crmConnection('beta-crm', crm.url, { campaigns: [] }),
    ]);
    const first = run(['apply', dir]);
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    expect(first.stdout).toContain('created    beta-crm (version 1)');
    expect(first.stdout).toContain('changed    acme-crm (version 1 → 2)');
    expect(first.stdout).toContain('1 created, 1 changed, 0 unchanged, 0 removed');
    const again = run(['apply', dir, '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({
      created: [],
      changed: [],
      unchanged: [{ id: 'acme-crm' }, { id: 'beta-crm' }],
    });

    const bad = await tempDir();
    await writeConnections(bad, [crmConnection('gamma-crm', crm.url)]);
    await writeFile(path.join(bad, 'broken.yaml'), 'id: Broken Id\naccount: acme\n');
    const refused = run(['apply', bad]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain('broken.yaml');
    expect(refused.stderr).toContain('nothing was applied');
    const gamma = run(['connections', 'show', 'gamma-crm']);
    expect(gamma.status).toBe(1);
    expect(gamma.stderr).toContain('no connection gamma-crm');

    const list = run(['connections', 'list']);
    expect(list.stdout).toMatch(/acme-crm\s+acme\s+Acme renamed\s+true\s+2\s+spring/);
    const diff = run(['connections', 'diff', 'acme-crm', '--from', '1', '--to', '2']);
    expect(diff.stdout.trim()).toBe('name: "Acme acme-crm" → "Acme renamed"');
    const v1 = run(['connections', 'show', 'acme-crm', '--version', '1', '--json']);
    expect(JSON.parse(v1.stdout)).toMatchObject({ version: 1, connection: { name: 'Acme acme-crm' } });
  }, 120_000);

  it('shows unlinked campaigns, links with a backfill preview then --yes, and unlinks', () => {
    const unlinked = run(['connections', 'unlinked', 'acme-crm']);
    expect(unlinked.status).toBe(0);
    expect(unlinked.stdout).toContain('autumn');

    const preview = run(['link', 'acme-crm', 'autumn', '--backfill']);
    expect(preview.status).toBe(1);
    expect(preview.stdout).toContain('would queue 2 delivery(ies)');
    expect(preview.stderr).toContain('--yes');
    expect(run(['connections', 'unlinked', 'acme-crm']).stdout).toContain('autumn');

    const linked = run(['link', 'acme-crm', 'autumn', '--backfill', '--yes', '--rate', '100']);
    expect(linked.stderr).toBe('');
    expect(linked.status).toBe(0);
    expect(linked.stdout).toContain('acme-crm: linked autumn (version 2 → 3)');
    expect(linked.stdout).toContain('backfill: queued 2, 0 already queued before');
    expect(run(['connections', 'unlinked', 'acme-crm']).stdout).toContain(
      'links every known campaign of acme',
    );

    const campaigns = run(['campaigns', 'list', '--account', 'acme', '--json']);
    expect(JSON.parse(campaigns.stdout)).toEqual([
      expect.objectContaining({ id: 'autumn', via: 'unsubscribe', connections: ['acme-crm'] }),
    ]);
    expect(run(['campaigns', 'add', '--account', 'acme', 'winter']).status).toBe(0);
    expect(run(['accounts', 'list']).stdout).toMatch(/acme\s+2\s+2/);

    const unlink = run(['unlink', 'acme-crm', 'autumn']);
    expect(unlink.status).toBe(0);
    expect(unlink.stdout).toContain('acme-crm: unlinked autumn (version 3 → 4)');
    expect(run(['connections', 'unlinked', 'acme-crm']).stdout).toMatch(/autumn[\s\S]*winter/);
    const versions = run(['connections', 'versions', 'acme-crm', '--json']);
    expect((JSON.parse(versions.stdout) as unknown[]).length).toBe(4);

    const del = run(['connections', 'delete', 'beta-crm']);
    expect(del.status).toBe(1);
    expect(del.stderr).toContain('--yes');
    expect(run(['connections', 'delete', 'beta-crm', '--yes']).stdout).toContain('deleted beta-crm');
  }, 120_000);
});
