import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';

const TOKEN = 'crm-token-5e1c7e7-do-not-log';
process.env.TEST_CRM_TOKEN = TOKEN;

/** One fake CRM per scenario, each behind its own connection of one engine. */
const scenarios = ['ok', 'flaky', 'limited', 'rejects', 'slow', 'down'] as const;
type Scenario = (typeof scenarios)[number];

let engine: TestEngine;
const crms = {} as Record<Scenario, FakeCrm>;

beforeAll(async () => {
  for (const name of scenarios) crms[name] = await startFakeCrm();
  crms.flaky.respond((_r, i) =>
    i === 0 ? { status: 503, body: 'try later' } : { status: 200, body: '{"ok":true}' },
  );
  crms.limited.respond((_r, i) =>
    i === 0 ? { status: 429, headers: { 'retry-after': '1' }, body: '{}' } : { status: 202, body: '{}' },
  );
  crms.rejects.respond(() => ({ status: 400, body: `{"error":"invalid list","echo":"Bearer ${TOKEN}"}` }));
  crms.slow.respond(() => ({ status: 200, hang: true }));
  await crms.down.close(); // nothing listens there any more: connection refused
  engine = await startTestEngine(
    uniquePrefix('delivery'),
    scenarios.map((name) => ({
      ...crmConnection(`crm-${name}`, crms[name].url),
      account: name,
    })),
  );
});

afterAll(async () => {
  await engine?.close();
  for (const name of scenarios) if (name !== 'down') await crms[name].close();
});

async function deliver(account: Scenario, email: string) {
  const response = await engine.unsubscribe(account, { email, campaign: 'spring-sale' });
  expect(response.status).toBe(201);
  return `${response.body.id as string}:crm-${account}`;
}

const settled = (id: string, status: 'succeeded' | 'failed') =>
  eventually(`${id} ${status}`, async () => {
    const detail = await engine.records.get(id);
    return detail.status === status ? detail : undefined;
  });

describe('delivery against loopback CRMs', () => {
  it('delivers the rendered request and records one successful attempt', async () => {
    const id = await deliver('ok', 'Jane+news@Example.com');
    const detail = await settled(id, 'succeeded');
    expect(crms.ok.received).toHaveLength(1);
    const [request] = crms.ok.received;
    expect(request!.method).toBe('POST');
    expect(request!.path).toBe('/v3/suppressions/Jane%2Bnews@Example.com');
    expect(request!.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(request!.headers['x-campaign']).toBe('spring-sale');
    expect(JSON.parse(request!.body)).toEqual({
      recipient_emails: ['Jane+news@Example.com'],
      source: 'unsub-relay',
    });
    expect(detail.attempts).toHaveLength(1);
    expect(detail.attempts[0]).toMatchObject({
      number: 1,
      status: 200,
      verdict: 'success',
      connectionVersion: 1,
    });
    expect(detail.attempts[0]!.request!.headers.authorization).toBe('[redacted]');
  });

  it('retries a 503 and then succeeds', async () => {
    const id = await deliver('flaky', 'flaky@example.com');
    const detail = await settled(id, 'succeeded');
    expect(crms.flaky.received).toHaveLength(2);
    expect(detail.attempts.map((a) => [a.status, a.verdict, a.errorCode])).toEqual([
      [503, 'retry', 'HTTP_STATUS'],
      [200, 'success', undefined],
    ]);
  });

  it('waits as long as Retry-After asks on a 429', async () => {
    const id = await deliver('limited', 'limited@example.com');
    const detail = await settled(id, 'succeeded');
    const [first, second] = detail.attempts;
    // Throttling is waited out without spending one of the 3 attempts.
    expect(first).toMatchObject({ status: 429, verdict: 'rate_limited', errorCode: 'RATE_LIMITED' });
    const planned = Date.parse(first!.nextAttemptAt!) - Date.parse(first!.startedAt);
    expect(planned).toBeGreaterThanOrEqual(1_000);
    // The CRM saw the second request no earlier than Retry-After allowed.
    expect(crms.limited.received[1]!.at - crms.limited.received[0]!.at).toBeGreaterThanOrEqual(1_000 - 50);
    expect(second).toMatchObject({ status: 202, verdict: 'success' });
  });

  it('fails a 400 at once, keeps it with its attempt, and replays it once the CRM is fixed', async () => {
    const id = await deliver('rejects', 'rejected@example.com');
    const failed = await settled(id, 'failed');
    expect(crms.rejects.received).toHaveLength(1);
    expect(failed.attempts).toHaveLength(1);
    expect(failed.attempts[0]).toMatchObject({ status: 400, verdict: 'fail', errorCode: 'HTTP_STATUS' });
    expect(failed.attempts[0]!.responseExcerpt).toContain('invalid list');
    expect(JSON.stringify(failed)).not.toContain(TOKEN);
    expect(
      (await engine.records.list({ status: 'failed', connection: 'crm-rejects' })).map((d) => d.id),
    ).toEqual([id]);

    crms.rejects.respond(() => ({ status: 200, body: '{}' }));
    await engine.records.replay(id);
    const replayed = await settled(id, 'succeeded');
    expect(replayed.attempts.map((a) => [a.number, a.verdict])).toEqual([
      [1, 'fail'],
      [2, 'success'],
    ]);
    expect(crms.rejects.received).toHaveLength(2);
  });

  it('records a headers timeout and gives up after the last attempt', async () => {
    const id = await deliver('slow', 'slow@example.com');
    const detail = await settled(id, 'failed');
    expect(detail.attempts.map((a) => [a.verdict, a.errorCode])).toEqual([
      ['retry', 'HEADERS_TIMEOUT'],
      ['retry', 'HEADERS_TIMEOUT'],
      ['fail', 'HEADERS_TIMEOUT'],
    ]);
    expect(detail.attempts[2]!.reason).toMatch(
      /^gave up: used all 3 attempts the retry policy allows; last answer: /,
    );
  });

  it('records connection refused as a network error and keeps the delivery replayable', async () => {
    const id = await deliver('down', 'down@example.com');
    const detail = await settled(id, 'failed');
    expect(detail.attempts).toHaveLength(3);
    expect(detail.attempts.every((a) => a.errorCode === 'NETWORK' && a.status === undefined)).toBe(true);
    expect(detail.attempts[0]!.reason).toContain('ECONNREFUSED');
    await expect(engine.records.replay(id)).resolves.toBeUndefined();
    await expect(engine.records.replay(id)).rejects.toThrow(/not failed/);
  });
});
