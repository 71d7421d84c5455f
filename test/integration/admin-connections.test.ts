import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';

process.env.TEST_CRM_TOKEN ??= 'admin-connections-crm-token';
const ADMIN_TOKEN = 'test-admin-token-0123456789';

let engine: TestEngine;
let crm: FakeCrm;

type Json = Record<string, unknown>;
async function call(method: string, path: string, body?: unknown, token = ADMIN_TOKEN) {
  const response = await fetch(`${engine.url}/admin/v1${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : undefined) as Json };
}

beforeAll(async () => {
  crm = await startFakeCrm(() => ({ status: 200, body: '{"ok":true}' }));
  engine = await startTestEngine(uniquePrefix('admin-connections'), [
    crmConnection('acme-crm', crm.url, { campaigns: ['spring'] }),
  ]);
});
afterAll(async () => {
  await engine?.close();
  await crm?.close();
});

describe('connections admin API', () => {
  it('needs the admin token', async () => {
    expect((await call('GET', '/connections', undefined, 'wrong')).status).toBe(401);
  });

  it('documents the routes in the OpenAPI document', async () => {
    const { body } = await call('GET', '/openapi.json');
    expect(Object.keys(body.paths as Json)).toEqual(
      expect.arrayContaining([
        '/admin/v1/connections/{id}/diff',
        '/admin/v1/apply',
        '/admin/v1/connections/{id}/links',
        '/admin/v1/accounts/{account}/campaigns',
      ]),
    );
  });

  it('lists and shows connections with version and linked campaigns', async () => {
    const list = await call('GET', '/connections');
    expect(list.status).toBe(200);
    expect(list.body.connections).toEqual([
      expect.objectContaining({
        id: 'acme-crm',
        account: 'acme',
        enabled: true,
        version: 1,
        campaigns: ['spring'],
      }),
    ]);
    const show = await call('GET', '/connections/acme-crm');
    expect(show.status).toBe(200);
    expect(show.body).toMatchObject({ version: 1, campaigns: ['spring'], connection: { id: 'acme-crm' } });
    expect((await call('GET', '/connections/nope')).status).toBe(404);
  });

  it('creates, refuses invalid or duplicate connections, replaces, disables and diffs versions', async () => {
    const input = crmConnection('beta-crm', crm.url, { campaigns: [] });
    const bad = await call('POST', '/connections', { ...input, name: '', retry: { attemptz: 3 } });
    expect(bad.status).toBe(400);
    expect(bad.body.fields).toMatchObject({ name: expect.any(String), 'retry.attemptz': expect.any(String) });
    const badTemplate = await call('POST', '/connections', {
      ...input,
      request: { ...input.request, url: `${crm.url}/{{#if}}` },
    });
    expect(badTemplate.status).toBe(400);
    expect(Object.keys(badTemplate.body.fields as Json).join()).toContain('request.url');

    const created = await call('POST', '/connections', input);
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ id: 'beta-crm', version: 1 });
    expect((await call('POST', '/connections', input)).status).toBe(409);

    const replaced = await call('PUT', '/connections/beta-crm', { ...input, name: 'Beta renamed' });
    expect(replaced.body).toMatchObject({ version: 2, changed: true, previousVersion: 1 });
    expect((await call('PUT', '/connections/beta-crm', { ...input, id: 'other' })).status).toBe(400);
    expect((await call('PUT', '/connections/nope', crmConnection('nope', crm.url))).status).toBe(404);

    const disabled = await call('POST', '/connections/beta-crm/disable');
    expect(disabled.body).toMatchObject({ version: 3, changed: true });
    const enabled = await call('POST', '/connections/beta-crm/enable');
    expect(enabled.body).toMatchObject({ version: 4 });

    const versions = await call('GET', '/connections/beta-crm/versions');
    expect((versions.body.versions as Json[]).map((v) => [v.version, v.enabled])).toEqual([
      [1, true],
      [2, true],
      [3, false],
      [4, true],
    ]);
    const v1 = await call('GET', '/connections/beta-crm/versions/1');
    expect(v1.body).toMatchObject({ version: 1, connection: { name: 'Acme beta-crm' } });
    expect((await call('GET', '/connections/beta-crm/versions/9')).status).toBe(404);

    const diff = await call('GET', '/connections/beta-crm/diff?from=1&to=3');
    expect(diff.body.changes).toEqual([
      { path: 'enabled', from: true, to: false },
      { path: 'name', from: 'Acme beta-crm', to: 'Beta renamed' },
    ]);
    expect((await call('GET', '/connections/beta-crm/diff?from=x&to=2')).status).toBe(400);

    expect((await call('DELETE', '/connections/beta-crm')).status).toBe(204);
    expect((await call('DELETE', '/connections/beta-crm')).status).toBe(404);
    expect((await call('GET', '/connections/beta-crm')).status).toBe(404);
    // History outlives the delete.
    expect((await call('GET', '/connections/beta-crm/versions/4')).status).toBe(200);
  });

  it('applies a set all or nothing and answers the diff', async () => {
    const current = (await call('GET', '/connections/acme-crm')).body.connection as Json;
    const refused = await call('POST', '/apply', {
      connections: [crmConnection('gamma-crm', crm.url), { id: 'Bad Id' }],
      prune: true,
    });
    expect(refused.status).toBe(400);
    expect(refused.body.fields).toMatchObject({
      'connections[1].id': expect.any(String),
      'connections[1].name': expect.any(String),
    });
    expect((await call('GET', '/connections/gamma-crm')).status).toBe(404);

    const dup = await call('POST', '/apply', {
      connections: [crmConnection('gamma-crm', crm.url), crmConnection('gamma-crm', crm.url)],
    });
    expect(dup.status).toBe(400);

    await call('POST', '/connections', crmConnection('api-crm', crm.url));
    const applied = await call('POST', '/apply', {
      connections: [current, { ...current, id: 'gamma-crm' }, { ...current, id: 'old-crm' }],
    });
    expect(applied.status).toBe(200);
    expect(applied.body).toEqual({
      created: [
        { id: 'gamma-crm', version: 1 },
        { id: 'old-crm', version: 1 },
      ],
      changed: [],
      unchanged: [{ id: 'acme-crm', version: 1 }],
      removed: [],
      conflicts: [],
      deleted: [],
    });
    // Prune deletes what an apply made and this one leaves out, never what the API created.
    const pruned = await call('POST', '/apply', {
      connections: [current, { ...current, id: 'gamma-crm', name: 'Gamma' }],
      prune: true,
    });
    expect(pruned.body).toEqual({
      created: [],
      changed: [{ id: 'gamma-crm', from: 1, to: 2, fields: ['name'] }],
      unchanged: [{ id: 'acme-crm', version: 1 }],
      removed: [{ id: 'old-crm', version: 1 }],
      conflicts: [],
      deleted: [],
    });
    expect((await call('GET', '/connections/api-crm')).status).toBe(200);
    await call('DELETE', '/connections/gamma-crm');
    await call('DELETE', '/connections/api-crm');
  });
});

describe('accounts, campaigns and links', () => {
  const ids: string[] = [];

  beforeAll(async () => {
    for (const [email, campaign] of [
      ['a@example.com', 'spring'],
      ['b@example.com', 'autumn'],
      ['c@example.com', 'autumn'],
    ] as const) {
      const { status, body } = await engine.unsubscribe('acme', { email, campaign });
      expect(status).toBe(201);
      ids.push(body.id as string);
    }
  });

  it('registers campaigns seen on unsubscribes and by the API, and lists accounts', async () => {
    const bad = await call('POST', '/accounts/acme/campaigns', { id: 'Not A Slug' });
    expect(bad.status).toBe(400);
    const created = await call('POST', '/accounts/acme/campaigns', { id: 'winter', name: 'Winter sale' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ id: 'winter', name: 'Winter sale', via: 'api' });
    expect((await call('POST', '/accounts/acme/campaigns', { id: 'winter' })).status).toBe(200);

    const campaigns = await call('GET', '/accounts/acme/campaigns');
    expect((campaigns.body.campaigns as Json[]).map((c) => [c.id, c.via, c.connections])).toEqual([
      ['autumn', 'unsubscribe', []],
      ['spring', 'unsubscribe', ['acme-crm']],
      ['winter', 'api', []],
    ]);
    const accounts = await call('GET', '/accounts');
    expect(accounts.body.accounts).toEqual([{ id: 'acme', campaigns: 3, connections: 1 }]);

    const unlinked = await call('GET', '/connections/acme-crm/unlinked');
    expect((unlinked.body.unlinked as Json[]).map((c) => c.id)).toEqual(['autumn', 'winter']);
    expect((await call('GET', '/connections/nope/unlinked')).status).toBe(404);
  });

  it('links with a backfill preview, then confirm queues each unsubscribe once, and unlinks', async () => {
    const preview = await call('POST', '/connections/acme-crm/links', { campaign: 'autumn', backfill: {} });
    expect(preview.status).toBe(200);
    expect(preview.body).toMatchObject({ wouldQueue: 2, changed: false, version: 1 });
    expect((await call('GET', '/connections/acme-crm')).body.campaigns).toEqual(['spring']);

    const confirmed = await call('POST', '/connections/acme-crm/links', {
      campaign: 'autumn',
      backfill: { confirm: true, perSecond: 100 },
    });
    expect(confirmed.body).toMatchObject({ version: 2, changed: true, queued: 2, alreadyQueued: 0 });
    expect((await call('GET', '/connections/acme-crm')).body.campaigns).toEqual(['autumn', 'spring']);
    await eventually('backfilled deliveries succeeded', async () => {
      const done = await engine.records.list({ status: 'succeeded' });
      return ids.slice(1).every((id) => done.some((d) => d.id === `${id}:acme-crm`));
    });
    const again = await call('POST', '/connections/acme-crm/links', {
      campaign: 'autumn',
      backfill: { confirm: true },
    });
    expect(again.body).toMatchObject({ changed: false, queued: 0, alreadyQueued: 2 });

    expect((await call('POST', '/connections/acme-crm/links', { campaign: 'BAD' })).status).toBe(400);
    expect((await call('POST', '/connections/nope/links', { campaign: 'x' })).status).toBe(404);

    const unlinked = await call('DELETE', '/connections/acme-crm/links/autumn');
    expect(unlinked.body).toMatchObject({ version: 3, changed: true, campaign: 'autumn' });
    expect((await call('DELETE', '/connections/acme-crm/links/autumn')).status).toBe(404);
    const diff = await call('GET', '/connections/acme-crm/diff?from=1&to=2');
    expect(diff.body.changes).toEqual([{ path: 'campaigns', from: ['spring'], to: ['autumn', 'spring'] }]);
  });
});
