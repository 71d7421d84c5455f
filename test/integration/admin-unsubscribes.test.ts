import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliveryId } from '../../src/domain/delivery.js';
import { keyspace } from '../../src/store/keys.js';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';

process.env.TEST_CRM_TOKEN ??= 'admin-unsubscribes-crm-token';
const ADMIN_TOKEN = 'test-admin-token-0123456789';

interface View {
  id: string;
  email: string;
  campaign?: string;
  receivedAt: string;
  deliveries: Array<{ id: string; connectionId: string; status: string }>;
}

let engine: TestEngine;
let crm: FakeCrm;
/** In the order they were sent: 0 a@ spring, 1 B@ no campaign, 2 a@ `other, "q"`, 3 bad@ (rejected). */
const sent: Array<{ id: string; receivedAt: string }> = [];
let otherId: string;

const admin = (path: string, token = ADMIN_TOKEN) =>
  fetch(`${engine.url}/admin/v1${path}`, { headers: { authorization: `Bearer ${token}` } });
const json = async <T>(path: string): Promise<T> => {
  const response = await admin(path);
  expect(response.status).toBe(200);
  return (await response.json()) as T;
};
const ledger = async (id: string) =>
  JSON.parse((await engine.redis.get(keyspace(engine.prefix).unsubscribe(id)))!) as {
    unsubscribe: { receivedAt: string };
  };

beforeAll(async () => {
  crm = await startFakeCrm((request) =>
    request.path.includes('bad%40') || request.path.includes('bad@')
      ? { status: 404, body: '{"title":"Resource Not Found"}' }
      : { status: 200, body: '{"ok":true}' },
  );
  engine = await startTestEngine(uniquePrefix('admin-unsubs'), [
    crmConnection('acme-crm', crm.url),
    crmConnection('acme-spring', crm.url, { campaigns: ['spring'] }),
  ]);
  const bodies = [
    { email: 'a@example.com', campaign: 'spring' },
    { email: 'B@Example.com' },
    { email: 'a@example.com', campaign: 'other, "q"' },
    { email: 'bad@example.com' },
  ];
  for (const body of bodies) {
    const { status, body: answer } = await engine.unsubscribe('acme', body);
    expect(status).toBe(201);
    const id = answer.id as string;
    sent.push({ id, receivedAt: (await ledger(id)).unsubscribe.receivedAt });
    await new Promise((resolve) => setTimeout(resolve, 5)); // distinct receivedAt ms
  }
  otherId = (await engine.unsubscribe('other', { email: 'a@example.com' })).body.id as string;
  await eventually('every delivery finished', async () => {
    const done = await engine.records.list({ limit: 1000 });
    return done.length === 5 && done.every((d) => d.status === 'succeeded' || d.status === 'failed');
  });
});
afterAll(async () => {
  await engine?.close();
  await crm?.close();
});

describe('GET /accounts/:account/unsubscribes', () => {
  it('refuses requests without the admin token', async () => {
    expect((await admin('/accounts/acme/unsubscribes', 'wrong')).status).toBe(401);
  });

  it('lists newest first, each with its deliveries per connection', async () => {
    const { unsubscribes, nextCursor } = await json<{ unsubscribes: View[]; nextCursor?: string }>(
      '/accounts/acme/unsubscribes',
    );
    expect(nextCursor).toBeUndefined();
    expect(unsubscribes.map((u) => u.id)).toEqual([sent[3]!.id, sent[2]!.id, sent[1]!.id, sent[0]!.id]);
    expect(unsubscribes.map((u) => u.deliveries)).toEqual([
      [{ id: deliveryId(sent[3]!.id, 'acme-crm'), connectionId: 'acme-crm', status: 'failed' }],
      [{ id: deliveryId(sent[2]!.id, 'acme-crm'), connectionId: 'acme-crm', status: 'succeeded' }],
      [{ id: deliveryId(sent[1]!.id, 'acme-crm'), connectionId: 'acme-crm', status: 'succeeded' }],
      [
        { id: deliveryId(sent[0]!.id, 'acme-crm'), connectionId: 'acme-crm', status: 'succeeded' },
        { id: deliveryId(sent[0]!.id, 'acme-spring'), connectionId: 'acme-spring', status: 'succeeded' },
      ],
    ]);
    expect(unsubscribes[3]).toMatchObject({
      account: 'acme',
      email: 'a@example.com',
      campaign: 'spring',
      receivedAt: sent[0]!.receivedAt,
    });
  });

  it('pages with a cursor, never repeating or skipping', async () => {
    const first = await json<{ unsubscribes: View[]; nextCursor?: string }>(
      '/accounts/acme/unsubscribes?limit=3',
    );
    expect(first.unsubscribes.map((u) => u.id)).toEqual([sent[3]!.id, sent[2]!.id, sent[1]!.id]);
    expect(first.nextCursor).toBe(`${Date.parse(sent[1]!.receivedAt)}:${sent[1]!.id}`);
    const second = await json<{ unsubscribes: View[]; nextCursor?: string }>(
      `/accounts/acme/unsubscribes?limit=3&cursor=${encodeURIComponent(first.nextCursor!)}`,
    );
    expect(second.unsubscribes.map((u) => u.id)).toEqual([sent[0]!.id]);
    expect(second.nextCursor).toBeUndefined();
  });

  it('filters by email (case-insensitive), campaign and time range', async () => {
    const ids = async (q: string) =>
      (await json<{ unsubscribes: View[] }>(`/accounts/acme/unsubscribes?${q}`)).unsubscribes.map(
        (u) => u.id,
      );
    expect(await ids('email=A%40EXAMPLE.COM')).toEqual([sent[2]!.id, sent[0]!.id]);
    expect(await ids('email=b%40example.com')).toEqual([sent[1]!.id]);
    expect(await ids('campaign=spring')).toEqual([sent[0]!.id]);
    expect(await ids(`email=a%40example.com&campaign=${encodeURIComponent('other, "q"')}`)).toEqual([
      sent[2]!.id,
    ]);
    expect(await ids(`since=${sent[1]!.receivedAt}&until=${sent[2]!.receivedAt}`)).toEqual([
      sent[2]!.id,
      sent[1]!.id,
    ]);
    expect(await ids('email=nobody%40example.com')).toEqual([]);
    // Accounts are separate: `other` sees only its own.
    expect(
      (await json<{ unsubscribes: View[] }>('/accounts/other/unsubscribes')).unsubscribes.map((u) => u.id),
    ).toEqual([otherId]);
  });

  it('names bad query fields', async () => {
    const response = await admin('/accounts/acme/unsubscribes?limit=0&since=yesterday&cursor=nope&x=1');
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: string; fields: Record<string, string> };
    expect(body.error).toBe('invalid_request');
    expect(Object.keys(body.fields).sort()).toEqual(['cursor', 'limit', 'since', 'querystring'].sort());
  });

  it('shows one unsubscribe, and 404 for an unknown one or another account’s', async () => {
    const one = await json<View>(`/accounts/acme/unsubscribes/${sent[1]!.id}`);
    expect(one).toMatchObject({ id: sent[1]!.id, email: 'B@Example.com' });
    expect(one.deliveries).toEqual([
      { id: deliveryId(sent[1]!.id, 'acme-crm'), connectionId: 'acme-crm', status: 'succeeded' },
    ]);
    const missing = await admin('/accounts/acme/unsubscribes/00000000-0000-4000-8000-000000000000');
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toBe('not_found');
    expect((await admin(`/accounts/acme/unsubscribes/${otherId}`)).status).toBe(404);
  });
});

describe('GET /accounts/:account/suppressions/:email', () => {
  it('says whether and since when an email is unsubscribed, case-insensitively', async () => {
    const expected = {
      suppressed: true,
      since: sent[0]!.receivedAt,
      unsubscribeIds: [sent[0]!.id, sent[2]!.id],
    };
    expect(await json('/accounts/acme/suppressions/a%40example.com')).toEqual(expected);
    expect(await json('/accounts/acme/suppressions/A%40Example.COM')).toEqual(expected);
    expect(await json('/accounts/acme/suppressions/b%40example.com')).toEqual({
      suppressed: true,
      since: sent[1]!.receivedAt,
      unsubscribeIds: [sent[1]!.id],
    });
    expect(await json('/accounts/acme/suppressions/nobody%40example.com')).toEqual({
      suppressed: false,
      unsubscribeIds: [],
    });
    expect(await json('/accounts/nobody/suppressions/a%40example.com')).toEqual({
      suppressed: false,
      unsubscribeIds: [],
    });
  });

  it('keeps the email index bounded by the unsubscribe retention', async () => {
    const key = `${engine.prefix}:account:acme:email:a@example.com`;
    const ttl = await engine.redis.pttl(key);
    expect(ttl).toBeGreaterThan(89 * 86_400_000);
    expect(ttl).toBeLessThanOrEqual(90 * 86_400_000);
  });

  it('refuses a blank email', async () => {
    expect((await admin('/accounts/acme/suppressions/%20')).status).toBe(400);
    expect((await admin('/accounts/acme/suppressions/a@example.com', 'wrong')).status).toBe(401);
  });
});

describe('GET /accounts/:account/audit', () => {
  const ackOf = async (id: string) => {
    const { attempts } = await engine.records.get(id);
    // A repeat of an email already delivered is merged into that delivery (acknowledged as already done).
    const ok = attempts.find((a) => a.verdict === 'success' || a.verdict === 'success_already_done')!;
    return new Date(Date.parse(ok.startedAt) + Math.round(ok.durationMs)).toISOString();
  };

  it('exports an email’s acknowledgements as JSON', async () => {
    const { rows } = await json<{ rows: unknown[] }>('/accounts/acme/audit?email=A%40example.com');
    expect(rows).toEqual([
      {
        unsubscribeId: sent[2]!.id,
        email: 'a@example.com',
        campaign: 'other, "q"',
        receivedAt: sent[2]!.receivedAt,
        connectionId: 'acme-crm',
        status: 'succeeded',
        acknowledgedAt: await ackOf(deliveryId(sent[2]!.id, 'acme-crm')),
        attempts: 1,
        lastErrorCode: '',
      },
      {
        unsubscribeId: sent[0]!.id,
        email: 'a@example.com',
        campaign: 'spring',
        receivedAt: sent[0]!.receivedAt,
        connectionId: 'acme-crm',
        status: 'succeeded',
        acknowledgedAt: await ackOf(deliveryId(sent[0]!.id, 'acme-crm')),
        attempts: 1,
        lastErrorCode: '',
      },
      {
        unsubscribeId: sent[0]!.id,
        email: 'a@example.com',
        campaign: 'spring',
        receivedAt: sent[0]!.receivedAt,
        connectionId: 'acme-spring',
        status: 'succeeded',
        acknowledgedAt: await ackOf(deliveryId(sent[0]!.id, 'acme-spring')),
        attempts: 1,
        lastErrorCode: '',
      },
    ]);
  });

  it('exports a time range as RFC 4180 CSV', async () => {
    const response = await admin(
      `/accounts/acme/audit?format=csv&since=${sent[2]!.receivedAt}&until=${sent[3]!.receivedAt}`,
    );
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    const ack = await ackOf(deliveryId(sent[2]!.id, 'acme-crm'));
    expect(await response.text()).toBe(
      'unsubscribeId,email,campaign,receivedAt,connectionId,status,acknowledgedAt,attempts,lastErrorCode\r\n' +
        `${sent[3]!.id},bad@example.com,,${sent[3]!.receivedAt},acme-crm,failed,,1,HTTP_STATUS\r\n` +
        `${sent[2]!.id},a@example.com,"other, ""q""",${sent[2]!.receivedAt},acme-crm,succeeded,${ack},1,\r\n`,
    );
  });

  it('needs an email or a time range, and a known format', async () => {
    const neither = await admin('/accounts/acme/audit');
    expect(neither.status).toBe(400);
    expect(await neither.json()).toEqual({
      error: 'invalid_request',
      message: 'give an email, or a time range (since, and optionally until)',
      fields: { email: 'give email=... or since=...' },
    });
    const format = await admin('/accounts/acme/audit?email=a%40example.com&format=xml');
    expect(format.status).toBe(400);
    expect(Object.keys(((await format.json()) as { fields: object }).fields)).toEqual(['format']);
  });
});

describe('GET /deliveries filters', () => {
  const ids = async (q: string) =>
    (await json<{ deliveries: Array<{ id: string }> }>(`/deliveries?${q}`)).deliveries
      .map((d) => d.id)
      .sort();

  it('filters by error code, campaign and time range', async () => {
    expect(await ids('errorCode=HTTP_STATUS')).toEqual([deliveryId(sent[3]!.id, 'acme-crm')]);
    expect(await ids('errorCode=NETWORK')).toEqual([]);
    expect(await ids('campaign=spring')).toEqual(
      [deliveryId(sent[0]!.id, 'acme-crm'), deliveryId(sent[0]!.id, 'acme-spring')].sort(),
    );
    expect(await ids(`until=${new Date(Date.parse(sent[0]!.receivedAt) - 60_000).toISOString()}`)).toEqual(
      [],
    );
    // A delivery's time is its job's creation, a moment after the unsubscribe's receivedAt.
    const { createdAt } = await engine.records.get(deliveryId(sent[3]!.id, 'acme-crm'));
    expect(await ids(`since=${createdAt}&until=${createdAt}`)).toEqual([deliveryId(sent[3]!.id, 'acme-crm')]);
    const bad = await admin('/deliveries?errorCode=http&until=soon');
    expect(bad.status).toBe(400);
    expect(Object.keys(((await bad.json()) as { fields: object }).fields).sort()).toEqual([
      'errorCode',
      'until',
    ]);
  });
});

describe('expired deliveries', () => {
  it('shows a delivery whose job and attempts were removed by retention as expired', async () => {
    const id = deliveryId(sent[1]!.id, 'acme-crm');
    // Retention takes both: the job (removeOnComplete) and its attempts (their TTL, the same age).
    await engine.queues.for('acme-crm').remove(id);
    await engine.redis.del(keyspace(engine.prefix).attempts(id), `${keyspace(engine.prefix).attempts(id)}:n`);
    const one = await json<View>(`/accounts/acme/unsubscribes/${sent[1]!.id}`);
    expect(one.deliveries).toEqual([
      { id: deliveryId(sent[1]!.id, 'acme-crm'), connectionId: 'acme-crm', status: 'expired' },
    ]);
  });
});

describe('OpenAPI', () => {
  it('documents every route added here', async () => {
    const doc = await json<{ paths: Record<string, object> }>('/openapi.json');
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/admin/v1/accounts/{account}/unsubscribes',
        '/admin/v1/accounts/{account}/unsubscribes/{id}',
        '/admin/v1/accounts/{account}/suppressions/{email}',
        '/admin/v1/accounts/{account}/audit',
      ]),
    );
  });
});
