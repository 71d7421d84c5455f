import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectionSchema } from '../../src/config/connection-schema.js';
import { parseEnv } from '../../src/config/env.js';
import { mergePatch } from '../../src/config/environment-overlays.js';
import { loadConnections } from '../../src/config/load-connections.js';
import { resolveSettingSources } from '../../src/config/setting-sources.js';
import { ConnectionConfigError, type ConfigIssue } from '../../src/errors.js';

const base = `id: acme-sendgrid
account: acme
name: Acme - SendGrid
settings:
  baseUrl: https://api.sendgrid.com
  listId: { env: ACME_LIST_ID, default: prod-list }
request:
  url: '{{settings.baseUrl}}/v3/asm/groups/{{settings.listId}}/suppressions'
  body:
    json: { recipient_emails: ['{{email}}'] }
response:
  rules:
    - { when: { status: 201 }, then: success }
    - { otherwise: fail }
`;

const sandbox = `# the sandbox account: same API, another host and list
overlay: { connection: acme-sendgrid, environment: sandbox }
settings:
  baseUrl: http://127.0.0.1:4010
  listId: sandbox-list
`;

let dir: string;
const saved = { ...process.env };
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-environments-'));
  delete process.env.ACME_LIST_ID;
  delete process.env.CONNECTIONS_ENV;
});
afterEach(async () => {
  process.env = { ...saved };
  await rm(dir, { recursive: true, force: true });
});

async function files(entries: Record<string, string>): Promise<void> {
  for (const [name, text] of Object.entries(entries)) await writeFile(path.join(dir, name), text);
}

async function issuesOf(load: Promise<unknown>): Promise<ConfigIssue[]> {
  const error = await load.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(ConnectionConfigError);
  return [...(error as ConnectionConfigError).issues].map((issue) => ({
    ...issue,
    file: issue.file && path.basename(issue.file),
  }));
}

describe('settings from the environment', () => {
  it('takes the variable, or the default when it is unset or empty', () => {
    const settings = { a: { env: 'ACME_A' }, b: { env: 'ACME_B', default: 7 }, c: 'plain' };
    expect(resolveSettingSources(settings, { ACME_A: 'x', ACME_B: '' })).toEqual({
      settings: { a: 'x', b: 7, c: 'plain' },
      issues: [],
    });
  });

  it('names the setting of an unset variable, and refuses the engine’s own variables', () => {
    const { issues } = resolveSettingSources(
      { listId: { env: 'ACME_LIST_ID' }, token: { env: 'ADMIN_TOKEN' } },
      { ADMIN_TOKEN: 'x'.repeat(32) },
    );
    expect(issues).toEqual([
      {
        field: 'settings.listId',
        reason: 'environment variable ACME_LIST_ID is not set (set it, or give a default)',
      },
      {
        field: 'settings.token',
        reason: expect.stringMatching(/ADMIN_TOKEN is the engine's .* own variable/),
      },
    ]);
  });

  it('names what is wrong in a reference', () => {
    const { issues } = resolveSettingSources(
      { a: { env: 'lower-case' }, b: { env: 'ACME_B', defualt: 1 } },
      { ACME_B: 'x' },
    );
    expect(issues).toEqual([
      { field: 'settings.a.env', reason: 'an environment variable name: letters, digits and "_"' },
      { field: 'settings.b.defualt', reason: expect.stringContaining('unknown field') },
    ]);
  });

  it('is refused where no file is loaded (the admin API gets values)', () => {
    const result = connectionSchema.safeParse({
      id: 'x',
      account: 'a',
      name: 'x',
      settings: { listId: { env: 'ACME_LIST_ID' } },
      request: { url: 'https://example.com/' },
    });
    expect(result.success).toBe(false);
    expect(result.error!.issues[0]).toMatchObject({
      path: ['settings', 'listId'],
      message: expect.stringContaining('send the value itself'),
    });
  });
});

describe('overlays', () => {
  it('merge as JSON Merge Patch: maps by key, lists replace, null removes', () => {
    expect(mergePatch({ a: { b: 1, c: 2 }, l: [1, 2], d: 1 }, { a: { c: 3 }, l: [9], d: null })).toEqual({
      a: { b: 1, c: 3 },
      l: [9],
    });
  });

  it('CONNECTIONS_ENV is checked at start', () => {
    expect(() => parseEnv({ CONNECTIONS_ENV: 'Sand Box' })).toThrow(/CONNECTIONS_ENV/);
    expect(parseEnv({ CONNECTIONS_ENV: '' }).CONNECTIONS_ENV).toBeUndefined();
    expect(parseEnv({ CONNECTIONS_ENV: 'sandbox' }).CONNECTIONS_ENV).toBe('sandbox');
  });
});

describe('loadConnections with environments', () => {
  it('uses the base without CONNECTIONS_ENV, and the overlay with it', async () => {
    await files({ 'acme.yaml': base, 'acme.sandbox.yaml': sandbox });
    const [production] = await loadConnections(dir);
    expect(production!.connection.settings).toEqual({
      baseUrl: 'https://api.sendgrid.com',
      listId: 'prod-list',
    });
    expect(production!.overlay).toBeUndefined();

    process.env.CONNECTIONS_ENV = 'sandbox';
    const [inSandbox] = await loadConnections(dir);
    expect(inSandbox!.connection.settings).toEqual({
      baseUrl: 'http://127.0.0.1:4010',
      listId: 'sandbox-list',
    });
    expect(inSandbox!.connection.request.body).toEqual({
      json: { recipient_emails: ['{{email}}'] },
    });
    expect(path.basename(inSandbox!.file)).toBe('acme.yaml');
    expect(path.basename(inSandbox!.overlay!)).toBe('acme.sandbox.yaml');
  });

  it('reads a setting from the environment of the loading process', async () => {
    await files({ 'acme.yaml': base });
    process.env.ACME_LIST_ID = 'from-env';
    const [loaded] = await loadConnections(dir);
    expect(loaded!.connection.settings.listId).toBe('from-env');
  });

  it('reports an unset variable at its file and line', async () => {
    await files({
      'acme.yaml': base.replace(
        'listId: { env: ACME_LIST_ID, default: prod-list }',
        'listId: { env: ACME_LIST_ID }',
      ),
    });
    expect(await issuesOf(loadConnections(dir))).toEqual([
      {
        file: 'acme.yaml',
        line: 6,
        field: 'settings.listId',
        reason: 'environment variable ACME_LIST_ID is not set (set it, or give a default)',
      },
    ]);
  });

  it('reports what an overlay sets wrong at the overlay’s line, and the rest at the base’s', async () => {
    const broken = `${sandbox}  extra: [not, a, value]\nlimitz: 3\nretry: { attempts: 0 }\nrequest: { url: null }\n`;
    await files({ 'acme.yaml': base, 'acme.sandbox.yaml': broken });
    expect(await issuesOf(loadConnections(dir, 'sandbox'))).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ file: 'acme.sandbox.yaml', line: 6, field: 'settings.extra' }),
        expect.objectContaining({ file: 'acme.sandbox.yaml', line: 7, field: 'limitz' }),
        expect.objectContaining({ file: 'acme.sandbox.yaml', line: 8, field: 'retry.attempts' }),
        // Removed by the overlay (null): the line that removed it.
        expect.objectContaining({ file: 'acme.sandbox.yaml', line: 9, field: 'request.url' }),
      ]),
    );
    // Another environment does not validate it (its header and target are still checked).
    expect(await loadConnections(dir, 'staging')).toHaveLength(1);
    // A field the overlay does not touch is reported at the base's line.
    await files({ 'acme.yaml': base.replace('name: Acme - SendGrid', "name: ''") });
    expect(await issuesOf(loadConnections(dir, 'sandbox'))).toEqual(
      expect.arrayContaining([expect.objectContaining({ file: 'acme.yaml', line: 3, field: 'name' })]),
    );
  });

  it('refuses an overlay for an unknown connection, or one that renames it', async () => {
    await files({
      'acme.yaml': base,
      'other.sandbox.yaml': sandbox.replace('connection: acme-sendgrid', 'connection: acme-sendgird'),
      'rename.sandbox.yaml': `${sandbox}id: acme-two\n`,
      'header.yaml': 'overlay: { connection: acme-sendgrid, env: sandbox }\n',
    });
    const issues = await issuesOf(loadConnections(dir));
    expect(issues).toEqual(
      expect.arrayContaining([
        {
          file: 'other.sandbox.yaml',
          line: 2,
          field: 'overlay.connection',
          reason: 'no connection file has id "acme-sendgird": the connections here are acme-sendgrid',
        },
        expect.objectContaining({ file: 'rename.sandbox.yaml', line: 6, field: 'id' }),
        expect.objectContaining({ file: 'header.yaml', line: 1, field: 'overlay' }),
      ]),
    );
  });

  it('refuses two overlays for one connection and environment', async () => {
    await files({ 'acme.yaml': base, 'acme.sandbox.yaml': sandbox, 'acme.sandbox-2.yaml': sandbox });
    const issues = await issuesOf(loadConnections(dir, 'sandbox'));
    expect(issues).toEqual([
      expect.objectContaining({
        file: 'acme.sandbox.yaml',
        field: 'overlay',
        reason: expect.stringContaining(
          'acme.sandbox-2.yaml is already the sandbox overlay of acme-sendgrid',
        ),
      }),
    ]);
  });

  it('refuses a malformed CONNECTIONS_ENV from the CLI too', async () => {
    await files({ 'acme.yaml': base });
    expect(await issuesOf(loadConnections(dir, 'Sandbox'))).toEqual([
      expect.objectContaining({ field: 'CONNECTIONS_ENV' }),
    ]);
  });
});
