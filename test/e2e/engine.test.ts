import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { deliveryRecords, writeConnections } from '../helpers/engine.js';
import { cli, createKey, spawnEngine, type EngineProcess } from '../helpers/processes.js';
import { cleanPrefix, eventually, uniquePrefix } from '../helpers/redis.js';

const SECRET = 'e2e-crm-secret-0f9a8b7c';

describe('the engine as a process, driven like an operator would', () => {
  const prefix = uniquePrefix('e2e');
  const env = {
    REDIS_PREFIX: prefix,
    ALLOW_PRIVATE_TARGETS: 'true',
    SANDBOX: 'off',
    E2E_CRM_KEY: SECRET,
    ADMIN_TOKEN: 'e2e-admin-token-0123456789',
  };
  let crm: FakeCrm;
  let dir: string;
  let engine: EngineProcess;
  let key: string;
  let rejecting = true;

  beforeAll(async () => {
    crm = await startFakeCrm((request) =>
      request.path.startsWith('/reject') && rejecting
        ? { status: 400, body: '{"detail":"list is archived"}' }
        : { status: 200, body: '{"result":"ok"}' },
    );
    dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-e2e-'));
    await writeConnections(dir, [
      {
        id: 'acme-crm',
        account: 'acme',
        name: 'Acme CRM',
        campaigns: ['spring-sale'],
        request: {
          method: 'PUT',
          url: `${crm.url}/lists/{{settings.listId}}/members/{{md5 (lowercase email)}}`,
          auth: { type: 'api_key', header: 'X-Api-Key', value: "{{secret 'E2E_CRM_KEY'}}" },
          body: { json: { email_address: '{{email}}', status: 'unsubscribed', campaign: '{{campaign}}' } },
        },
        settings: { listId: 'list-1' },
      },
      {
        id: 'acme-archive',
        account: 'acme',
        name: 'Acme archived list',
        campaigns: ['archive'],
        request: { url: `${crm.url}/reject/{{email}}`, body: { json: { email: '{{email}}' } } },
      },
    ]);
    engine = await spawnEngine({ ...env, CONNECTIONS_DIR: dir });
    const created = cli(['keys', 'create', '--account', 'acme'], { ...env, ADMIN_URL: engine.url });
    expect(created.status).toBe(0);
    key = created.stdout.trim().split('\n').at(-1)!;
  });

  afterAll(async () => {
    if (engine && engine.child.exitCode === null) engine.child.kill('SIGKILL');
    await crm?.close();
    await rm(dir, { recursive: true, force: true });
    await cleanPrefix(prefix);
  });

  it('logs one line per loaded connection', () => {
    expect(engine.logs()).toContain('connection acme-crm loaded (version 1): Acme CRM');
  });

  it('creates a key once and lists only its id and prefix', () => {
    expect(key).toMatch(/^urk_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
    const list = cli(['keys', 'list', '--json'], { ...env, ADMIN_URL: engine.url });
    expect(list.status).toBe(0);
    const keys = JSON.parse(list.stdout) as Array<Record<string, string>>;
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ account: 'acme', prefix: key.slice(0, 16) });
    expect(list.stdout).not.toContain(key.slice(17));
  });

  it('delivers exactly the rendered request for every accepted unsubscribe', async () => {
    const emails = ['Ann@Example.com', 'bob+promo@example.com', 'chloé@example.fr'];
    for (const email of emails) {
      const response = await fetch(`${engine.url}/v1/unsubscribes`, {
        method: 'POST',
        headers: { authorization: key, 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ email, campaign: 'spring-sale' }),
      });
      expect(response.status).toBe(201);
    }
    await eventually('3 requests at the CRM', () => crm.received.length >= 3);
    const { createHash } = await import('node:crypto');
    const expected = emails.map((email) => ({
      method: 'PUT',
      path: `/lists/list-1/members/${createHash('md5').update(email.toLowerCase()).digest('hex')}`,
      apiKey: SECRET,
      contentType: 'application/json',
      body: { email_address: email, status: 'unsubscribed', campaign: 'spring-sale' },
    }));
    const seen = crm.received.map((r) => ({
      method: r.method,
      path: r.path,
      apiKey: r.headers['x-api-key'],
      contentType: r.headers['content-type'],
      body: JSON.parse(r.body) as unknown,
    }));
    expect(seen.sort((a, b) => a.path.localeCompare(b.path))).toEqual(
      expected.sort((a, b) => a.path.localeCompare(b.path)),
    );

    const listed = cli(['deliveries', 'list', '--status', 'succeeded', '--json'], {
      ...env,
      ADMIN_URL: engine.url,
    });
    expect(listed.status).toBe(0);
    expect(JSON.parse(listed.stdout)).toHaveLength(3);
  });

  it('lists, shows and replays a failed delivery from the CLI', async () => {
    const response = await fetch(`${engine.url}/v1/unsubscribes`, {
      method: 'POST',
      headers: { authorization: key, 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'dora@example.com', campaign: 'archive' }),
    });
    const id = `${((await response.json()) as { id: string }).id}:acme-archive`;
    const { records, close } = deliveryRecords(prefix);
    await eventually('the delivery to fail', async () => (await records.get(id)).status === 'failed');
    const list = cli(['deliveries', 'list', '--status', 'failed', '--connection', 'acme-archive', '--json'], {
      ...env,
      ADMIN_URL: engine.url,
    });
    const failed = JSON.parse(list.stdout) as Array<{ id: string; failedReason: string }>;
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ id, failedReason: 'HTTP_STATUS: status 400 is permanent' });

    const shown = cli(['deliveries', 'show', id], { ...env, ADMIN_URL: engine.url });
    expect(shown.status).toBe(0);
    expect(shown.stdout).toContain('status: failed');
    expect(shown.stdout).toMatch(
      /1\s+\S+\s+POST http:\/\/127\.0\.0\.1:\d+\/reject\/dora@example\.com\s+400\s+\d+\s+fail\s+HTTP_STATUS/,
    );

    rejecting = false;
    const replay = cli(['replay', '--connection', 'acme-archive', '--yes'], {
      ...env,
      ADMIN_URL: engine.url,
    });
    expect(replay).toMatchObject({ status: 0, stdout: `replayed 1 delivery:\n${id}\n` });
    await eventually(
      'the replayed delivery to succeed',
      async () => (await records.get(id)).status === 'succeeded',
    );
    await close();
    expect(
      JSON.parse(cli(['deliveries', 'show', id, '--json'], { ...env, ADMIN_URL: engine.url }).stdout),
    ).toMatchObject({
      id,
      status: 'succeeded',
    });
    expect(cli(['replay', '--id', id], { ...env, ADMIN_URL: engine.url })).toMatchObject({
      status: 1,
      stderr: expect.stringContaining('is succeeded, not failed'),
    });
    expect(cli(['replay'], { ...env, ADMIN_URL: engine.url })).toMatchObject({
      status: 1,
      stderr: expect.stringContaining('give exactly one of --id'),
    });
  });

  it('never writes the connection secret or the API key to its logs', () => {
    expect(engine.logs()).not.toContain(SECRET);
    expect(engine.logs()).not.toContain(key);
  });

  it('refuses a revoked key at once', async () => {
    const id = key.slice(4, 16);
    expect(cli(['keys', 'revoke', id], { ...env, ADMIN_URL: engine.url }).status).toBe(0);
    const response = await fetch(`${engine.url}/v1/unsubscribes`, {
      method: 'POST',
      headers: { authorization: key, 'content-type': 'application/json' },
      body: '{"email":"late@example.com"}',
    });
    expect(response.status).toBe(401);
    expect(cli(['keys', 'revoke', id], { ...env, ADMIN_URL: engine.url })).toMatchObject({
      status: 1,
      stderr: expect.stringContaining(`no API key ${id}`),
    });
  });

  it('stops cleanly on SIGTERM', async () => {
    engine.child.kill('SIGTERM');
    expect(await engine.exited).toBe(0);
    expect(engine.logs()).toContain('stopped cleanly');
  });
});

describe('unsub-relay validate', () => {
  it('names the file, field and reason of every problem and exits non-zero', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-validate-'));
    await writeFile(
      path.join(dir, 'broken.yaml'),
      'id: Broken!\naccount: acme\nname: x\nrequest:\n  url: "{{nope"\n  methd: POST\n',
    );
    const result = cli(['validate', dir], {});
    await rm(dir, { recursive: true, force: true });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/broken\.yaml:1: id: use 1-63 lowercase letters/);
    expect(result.stderr).toMatch(/broken\.yaml:6: request\.methd: unknown field/);
    expect(result.stderr).toContain('nothing was applied');
  });

  it('passes the committed example connections', () => {
    const result = cli(['validate', 'connections'], {});
    // The examples' secrets are not set here: warnings (stderr), not problems.
    for (const line of result.stderr.split('\n').filter(Boolean)) expect(line).toMatch(/^warning: /);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('ok  demo-sandbox');
  });
});

describe('the newcomer\u2019s first minute (committed connections, built-in sandbox)', () => {
  it('delivers a curl-style unsubscribe to the sandbox receiver with private targets still refused', async () => {
    const prefix = uniquePrefix('demo');
    const env = {
      REDIS_PREFIX: prefix,
      CONNECTIONS_DIR: 'connections',
      ADMIN_TOKEN: 'demo-admin-token-0123456789',
    };
    const engine = await spawnEngine(env);
    try {
      // Logged just after the server starts listening, so possibly after /readyz first answers.
      await eventually('the try-it hint', () =>
        engine.logs().includes('try it: npx unsub-relay keys create --account demo'),
      );
      const key = createKey(env, engine.url, 'demo');
      const response = await fetch(`${engine.url}/v1/unsubscribes`, {
        method: 'POST',
        headers: { authorization: key, 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'Jane@Example.com', campaign: 'welcome' }),
      });
      expect(response.status).toBe(201);
      const received = await eventually('the sandbox to receive it', async () => {
        const sandbox = (await (await fetch(`${engine.url}/sandbox/crm/unsubscribes`)).json()) as {
          received: Array<{ body: unknown; headers: Record<string, string> }>;
        };
        return sandbox.received.length > 0 ? sandbox.received : undefined;
      });
      expect(received[0]!.body).toMatchObject({
        email: 'jane@example.com',
        campaign: 'welcome',
        source: 'unsub-relay',
      });
      expect(received[0]!.headers['x-demo-list']).toBe('demo-list');
    } finally {
      engine.child.kill('SIGTERM');
      await engine.exited;
      await cleanPrefix(prefix);
    }
  });
});
