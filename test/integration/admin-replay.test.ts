import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionSchema } from '../../src/config/connection-schema.js';
import { ConnectionStore } from '../../src/store/connection-store.js';
import { keyspace } from '../../src/store/keys.js';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';

process.env.TEST_CRM_TOKEN ??= 'admin-replay-token';
const ADMIN_TOKEN = 'admin-token-for-tests-0123456789';

let engine: TestEngine;
let crm: FakeCrm;
const ids: string[] = [];

const admin = (path: string, init: RequestInit = {}, headers: Record<string, string> = {}) =>
  fetch(`${engine.url}/admin/v1${path}`, {
    ...init,
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      ...(init.body ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
  });
const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  admin(path, { method: 'POST', body: JSON.stringify(body) }, headers);

const connection = (source: string) =>
  crmConnection('replay-crm', crm.url, {
    request: {
      ...crmConnection('replay-crm', crm.url).request,
      body: { json: { recipient_emails: ['{{email}}'], source } },
    },
  });

const failedCount = async () => (await engine.records.list({ status: 'failed' })).length;

beforeAll(async () => {
  // The issue's scenario: the CRM rejects what version 1 sends (400) and accepts version 2's.
  crm = await startFakeCrm((request) =>
    request.body.includes('"source":"v2"')
      ? { status: 200, body: '{"ok":true}' }
      : { status: 400, body: '{"error":"bad source"}' },
  );
  engine = await startTestEngine(uniquePrefix('admin-replay'), [connection('v1')], { ADMIN_TOKEN });
  for (const [email, campaign] of [
    ['a@example.com', 'spring'],
    ['b@example.com', 'spring'],
    ['c@example.com', 'autumn'],
  ] as const) {
    const { body } = await engine.unsubscribe('acme', { email, campaign });
    ids.push(`${body.id as string}:replay-crm`);
  }
  await eventually('all three deliveries failed', async () => (await failedCount()) === 3);
});
afterAll(async () => {
  await engine?.close();
  await crm?.close();
});

describe('bulk replay', () => {
  it('validates the body', async () => {
    expect((await post('/replays', {})).status).toBe(400);
    expect((await post('/replays', { filter: { status: 'succeeded' } })).status).toBe(400);
    expect((await post('/replays', { filter: {}, perSecond: 0 })).status).toBe(400);
    expect((await post('/replays', { filter: {}, mode: 'sideways' })).status).toBe(400);
    expect((await post('/replays', { filter: { since: 'yesterday' } })).status).toBe(400);
  });

  it('previews without confirm and replays nothing', async () => {
    const response = await post('/replays', { filter: { connection: 'replay-crm' } });
    expect(response.status).toBe(200);
    const preview = (await response.json()) as { wouldReplay: number; sample: string[] };
    expect(preview.wouldReplay).toBe(3);
    expect(preview.sample.sort()).toEqual([...ids].sort());
    const filtered = (await (
      await post('/replays', { filter: { campaign: 'autumn', errorCode: 'HTTP_STATUS' } })
    ).json()) as { wouldReplay: number };
    expect(filtered.wouldReplay).toBe(1);
    expect(await failedCount()).toBe(3);
    expect(((await (await admin('/replays')).json()) as { replays: unknown[] }).replays).toEqual([]);
  });

  it('original vs re-render: the old request after the fix, then the new one', async () => {
    const store = new ConnectionStore(engine.redis, keyspace(engine.prefix));
    const { version } = await store.put(connectionSchema.parse(connection('v2')));
    expect(version).toBe(2);
    const target = ids[2]!;
    const sent = crm.received.length;
    const original = await post('/replays/one', { id: target, mode: 'original' });
    expect(original.status).toBe(202);
    await eventually('the original request was resent', () => crm.received.length > sent);
    expect(crm.received[sent]!.body).toContain('"source":"v1"');
    await eventually('it failed again', async () => (await engine.records.get(target)).status === 'failed');
    const detail = await engine.records.get(target);
    expect(detail.attempts.at(-1)!.connectionVersion).toBe(1);
    // Replaying while nothing is failed is refused: no second delivery beside a pending one.
    const again = await post('/replays/one', { id: 'nope:replay-crm' });
    expect(again.status).toBe(404);
  });

  it('confirm replays at the capped rate, re-rendered, and records who, when, filter and count', async () => {
    const sent = crm.received.length;
    const response = await post(
      '/replays',
      { filter: { connection: 'replay-crm', status: 'failed' }, confirm: true, perSecond: 2 },
      { 'X-Operator': 'alice' },
    );
    expect(response.status).toBe(202);
    const record = (await response.json()) as {
      who: string;
      count: number;
      ids: string[];
      mode: string;
      perSecond: number;
      filter: Record<string, string>;
    };
    expect(record).toMatchObject({ who: 'alice', count: 3, mode: 'rerender', perSecond: 2 });
    expect(record.filter).toEqual({ connection: 'replay-crm', status: 'failed' });
    expect(record.ids.sort()).toEqual([...ids].sort());
    await eventually(
      'all delivered',
      async () => (await engine.records.list({ status: 'succeeded' })).length === 3,
    );
    const resent = crm.received.slice(sent);
    expect(resent).toHaveLength(3);
    for (const request of resent) expect(request.body).toContain('"source":"v2"');

    // Nothing failed any more: a second confirm replays nothing (never a second delivery).
    const second = (await (
      await post('/replays', { filter: { connection: 'replay-crm' }, confirm: true })
    ).json()) as { count: number; who: string };
    expect(second).toMatchObject({ count: 0, who: 'admin-api' });
    const { replays } = (await (await admin('/replays')).json()) as { replays: Array<{ who: string }> };
    expect(replays.map((r) => r.who)).toEqual(['admin-api', 'alice']);
  });

  it('refuses a single replay of a delivery that is not failed', async () => {
    expect((await post('/replays/one', { id: ids[0] })).status).toBe(409);
  });
});
