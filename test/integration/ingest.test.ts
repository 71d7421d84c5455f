import { DeliveryQueues } from '../../src/queue/queues.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/api/app.js';
import { createLogger } from '../../src/logging.js';
import { DeliveryProducer } from '../../src/queue/producer.js';
import { ApiKeyStore } from '../../src/store/api-keys.js';
import { keyspace } from '../../src/store/keys.js';
import { createRedis, waitReady } from '../../src/store/redis.js';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { cleanPrefix, uniquePrefix } from '../helpers/redis.js';

process.env.TEST_CRM_TOKEN ??= 'ingest-test-token';

let engine: TestEngine;
let crm: FakeCrm;
let key: string;

beforeAll(async () => {
  crm = await startFakeCrm();
  engine = await startTestEngine(uniquePrefix('ingest'), [
    crmConnection('acme-all', crm.url),
    crmConnection('acme-spring', crm.url, { campaigns: ['spring-sale'] }),
    crmConnection('other-account', crm.url, { account: 'globex' }),
    crmConnection('acme-echo', crm.url, { campaigns: ['echo-campaign'], echo: true }),
  ]);
  key = (await engine.apiKeys.create('acme')).key;
});
afterAll(async () => {
  await engine?.close();
  await crm.close();
});

async function post(body: string | undefined, headers: Record<string, string> = {}) {
  const response = await fetch(`${engine.url}/v1/unsubscribes`, {
    method: 'POST',
    headers: { authorization: key, 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body }),
  });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
  };
}

describe('POST /v1/unsubscribes: accepted', () => {
  it('answers 201 with an id only once the unsubscribe and its deliveries are in Redis', async () => {
    const response = await post(
      JSON.stringify({
        email: '  Jane@Example.com ',
        campaign: 'spring-sale',
        occurredAt: '2026-11-23T10:00:00Z',
      }),
    );
    expect(response.status).toBe(201);
    const id = response.body.id as string;
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const ledger = JSON.parse((await engine.redis.get(`${engine.prefix}:unsub:${id}`))!);
    expect(ledger.unsubscribe).toMatchObject({
      id,
      account: 'acme',
      email: 'Jane@Example.com',
      campaign: 'spring-sale',
    });
    expect(ledger.connections.sort()).toEqual(['acme-all', 'acme-spring']);
    // Fan-out: one delivery per linked connection of the account, never another account's, each
    // a record of its own connection's (waiting in its buffer, in a batch job, or delivered by now).
    for (const connectionId of ['acme-all', 'acme-spring'])
      expect(await engine.records.get(`${id}:${connectionId}`)).toMatchObject({ connectionId });
    await expect(engine.records.get(`${id}:other-account`)).rejects.toThrow(/no delivery/);
    expect(await engine.queues.connectionIds()).toEqual(expect.arrayContaining(['acme-all', 'acme-spring']));
    expect(await engine.queues.connectionIds()).not.toContain('other-account');
  });

  it('fans an unsubscribe without a campaign out only to connections linked to every campaign', async () => {
    const response = await post(JSON.stringify({ email: 'nocampaign@example.com' }));
    expect(response.status).toBe(201);
    const ledger = JSON.parse(
      (await engine.redis.get(`${engine.prefix}:unsub:${response.body.id as string}`))!,
    );
    expect(ledger.connections).toEqual(['acme-all']);
  });

  it("does not send an advertiser's own unsubscribes back to its connections unless they ask (echo)", async () => {
    const { key: advertiserKey } = await engine.apiKeys.create('acme', 'advertiser');
    const body = JSON.stringify({ email: 'echo@example.com', campaign: 'echo-campaign' });
    const fromAdvertiser = await post(body, { authorization: advertiserKey });
    const fromPlatform = await post(body);
    const fannedOut = async (id: unknown) =>
      (
        JSON.parse((await engine.redis.get(`${engine.prefix}:unsub:${id as string}`))!) as {
          connections: string[];
        }
      ).connections.sort();
    expect(await fannedOut(fromAdvertiser.body.id)).toEqual(['acme-echo']);
    expect(await fannedOut(fromPlatform.body.id)).toEqual(['acme-all', 'acme-echo']);
  });

  it('takes the key as "Bearer <key>" too, and Accept: */*', async () => {
    const response = await post(JSON.stringify({ email: 'bearer@example.com' }), {
      authorization: `Bearer ${key}`,
      accept: '*/*',
    });
    expect(response.status).toBe(201);
  });

  it('keeps a few unknown scalar fields as attributes', async () => {
    const response = await post(
      JSON.stringify({
        email: 'extra@example.com',
        firstName: 'Ann',
        attributes: { tier: 'gold' },
        score: 3,
      }),
    );
    expect(response.status).toBe(201);
    const ledger = JSON.parse(
      (await engine.redis.get(`${engine.prefix}:unsub:${response.body.id as string}`))!,
    );
    expect(ledger.unsubscribe.attributes).toEqual({ firstName: 'Ann', tier: 'gold', score: '3' });
  });

  it('returns the same id for a retried request with the same Idempotency-Key, without a second unsubscribe', async () => {
    const body = JSON.stringify({ email: 'retry@example.com', campaign: 'spring-sale' });
    const first = await post(body, { 'idempotency-key': 'order-42' });
    const second = await post(body, { 'idempotency-key': 'order-42' });
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.body.id).toBe(first.body.id);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    const index = await engine.redis.zrange(`${engine.prefix}:account:acme:unsubs`, 0, -1);
    expect(index.filter((id) => id === first.body.id)).toHaveLength(1);
    const conflict = await post(JSON.stringify({ email: 'someone-else@example.com' }), {
      'idempotency-key': 'order-42',
    });
    expect(conflict.status).toBe(422);
    expect(conflict.body.error).toBe('idempotency_conflict');
  });
});

describe('POST /v1/unsubscribes: refused', () => {
  const cases: Array<
    [string, string | undefined, Record<string, string>, number, string, Record<string, string>?]
  > = [
    ['no Authorization', '{"email":"a@example.com"}', { authorization: '' }, 401, 'unauthorized'],
    [
      'an unknown key',
      '{"email":"a@example.com"}',
      { authorization: 'urk_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' },
      401,
      'unauthorized',
    ],
    ['a malformed key', '{"email":"a@example.com"}', { authorization: 'hunter2' }, 401, 'unauthorized'],
    [
      'Accept that excludes JSON',
      '{"email":"a@example.com"}',
      { accept: 'text/html' },
      406,
      'not_acceptable',
    ],
    [
      'a text/plain body',
      '{"email":"a@example.com"}',
      { 'content-type': 'text/plain' },
      415,
      'unsupported_media_type',
    ],
    ['no Content-Type', '{"email":"a@example.com"}', { 'content-type': '' }, 415, 'unsupported_media_type'],
    ['a body that is not JSON', '{"email":', {}, 400, 'invalid_json'],
    ['an empty body', undefined, {}, 400, 'invalid_json'],
    [
      'a JSON array',
      '[{"email":"a@example.com"}]',
      {},
      400,
      'invalid_request',
      { body: 'must be a JSON map (object), e.g. {"email":"jane@example.com"}' },
    ],
    [
      'a JSON string',
      '"a@example.com"',
      {},
      400,
      'invalid_request',
      { body: 'must be a JSON map (object), e.g. {"email":"jane@example.com"}' },
    ],
    ['a missing email', '{"campaign":"x"}', {}, 400, 'invalid_request', { email: 'is required' }],
    [
      'two addresses',
      '{"email":"a@example.com, b@example.com"}',
      {},
      400,
      'invalid_request',
      { email: 'must be a single valid email address' },
    ],
    [
      'a display name',
      '{"email":"Jane <jane@example.com>"}',
      {},
      400,
      'invalid_request',
      { email: 'must be a single valid email address' },
    ],
    [
      'an email over 254 characters',
      JSON.stringify({ email: `${'a'.repeat(64)}@${'b'.repeat(190)}.com` }),
      {},
      400,
      'invalid_request',
      { email: 'must be at most 254 characters' },
    ],
    ['a number as email', '{"email":42}', {}, 400, 'invalid_request', { email: 'must be a string' }],
    [
      'a bad occurredAt',
      '{"email":"a@example.com","occurredAt":"yesterday"}',
      {},
      400,
      'invalid_request',
      { occurredAt: 'must be an ISO 8601 date-time, e.g. 2026-11-23T10:00:00Z' },
    ],
    [
      'nested attributes',
      '{"email":"a@example.com","attributes":{"a":{"b":1}}}',
      {},
      400,
      'invalid_request',
      { 'attributes.a': 'values must be strings' },
    ],
    [
      'an unknown object field',
      '{"email":"a@example.com","profile":{"x":1}}',
      {},
      400,
      'invalid_request',
      { profile: 'unknown field (only scalar extra fields are accepted)' },
    ],
    [
      'a prototype-polluting body',
      '{"email":"a@example.com","__proto__":{"admin":true}}',
      {},
      400,
      'invalid_json',
    ],
  ];

  it.each(cases)('refuses %s', async (_name, body, headers, status, error, fields) => {
    const response = await post(body, headers);
    expect(response.status).toBe(status);
    expect(response.body.error).toBe(error);
    expect(typeof response.body.message).toBe('string');
    if (fields) expect(response.body.fields).toEqual(fields);
  });

  it('refuses more extra fields than the allowance, naming each', async () => {
    const body = Object.fromEntries([
      ['email', 'a@example.com'],
      ...Array.from({ length: 11 }, (_, i) => [`x${i}`, 'v']),
    ]);
    const response = await post(JSON.stringify(body));
    expect(response.status).toBe(400);
    expect(Object.keys(response.body.fields as object)).toHaveLength(11);
  });

  it('refuses a body over 16 KiB with 413', async () => {
    const response = await post(JSON.stringify({ email: 'a@example.com', source: 'x'.repeat(17_000) }));
    expect(response.status).toBe(413);
    expect(response.body.error).toBe('payload_too_large');
  });

  it('stops accepting a revoked key at once', async () => {
    const { info, key: revoked } = await engine.apiKeys.create('acme');
    expect((await post('{"email":"a@example.com"}', { authorization: revoked })).status).toBe(201);
    await engine.apiKeys.revoke(info.id);
    expect((await post('{"email":"a@example.com"}', { authorization: revoked })).status).toBe(401);
  });
});

describe('POST /v1/unsubscribes: protocol edges', () => {
  it('answers other methods with 405 and Allow: POST', async () => {
    for (const method of ['GET', 'PUT', 'DELETE']) {
      const response = await fetch(`${engine.url}/v1/unsubscribes`, { method });
      expect(response.status).toBe(405);
      expect(response.headers.get('allow')).toBe('POST');
    }
    const head = await fetch(`${engine.url}/v1/unsubscribes`, { method: 'HEAD' });
    expect(head.status).toBe(405);
  });

  it('refuses other charsets and compressed bodies with 415', async () => {
    const latin1 = await post('{"email":"a@example.com"}', {
      'content-type': 'application/json; charset=latin1',
    });
    expect(latin1.status).toBe(415);
    expect(latin1.body.message).toContain('charset=latin1');
    expect(
      (await post('{"email":"a@example.com"}', { 'content-type': 'application/json; charset=UTF-8' })).status,
    ).toBe(201);
    const gzip = await post('{"email":"a@example.com"}', { 'content-encoding': 'gzip' });
    expect(gzip.status).toBe(415);
    expect(gzip.body.message).toContain('Content-Encoding: gzip');
  });

  it('honours q=0 in Accept', async () => {
    expect(
      (await post('{"email":"a@example.com"}', { accept: 'application/json;q=0, text/html' })).status,
    ).toBe(406);
    expect(
      (await post('{"email":"a@example.com"}', { accept: 'text/html, application/json;q=0.5' })).status,
    ).toBe(201);
  });

  it('answers a malformed URL and oversized headers in the API error shape', async () => {
    const badUrl = await fetch(`${engine.url}/v1/unsubscribes%zz`, { method: 'POST' });
    expect(badUrl.status).toBe(400);
    expect(await badUrl.json()).toMatchObject({ error: 'invalid_request' });
    const huge = await fetch(`${engine.url}/v1/unsubscribes`, {
      method: 'POST',
      headers: { 'x-filler': 'x'.repeat(20_000) },
    });
    expect(huge.status).toBe(431);
    expect(await huge.json()).toEqual({
      error: 'headers_too_large',
      message: 'request headers are too large',
    });
  });

  it('gives concurrent requests with one Idempotency-Key one unsubscribe, and refuses different bodies', async () => {
    const same = JSON.stringify({ email: 'racer@example.com' });
    const answers = await Promise.all([
      ...Array.from({ length: 10 }, () => post(same, { 'idempotency-key': 'race-1' })),
      ...Array.from({ length: 10 }, (_, i) =>
        post(JSON.stringify({ email: `other${i}@example.com` }), { 'idempotency-key': 'race-1' }),
      ),
    ]);
    const accepted = answers.filter((a) => a.status === 201);
    expect(new Set(accepted.map((a) => a.body.id)).size).toBe(1);
    const id = accepted[0]!.body.id as string;
    const ledger = JSON.parse((await engine.redis.get(`${engine.prefix}:unsub:${id}`))!);
    // Whichever body claimed the key first is the unsubscribe; every other body is refused.
    const winnerSentTenTimes = ledger.unsubscribe.email === 'racer@example.com';
    expect(accepted).toHaveLength(winnerSentTenTimes ? 10 : 1);
    expect(answers.filter((a) => a.status === 422)).toHaveLength(winnerSentTenTimes ? 10 : 19);
    expect(await engine.redis.zscore(`${engine.prefix}:account:acme:unsubs`, id)).not.toBeNull();
  });

  it('treats the same body with its keys in another order as the same request', async () => {
    const a = await post(JSON.stringify({ email: 'order@example.com', attributes: { a: '1', b: '2' } }), {
      'idempotency-key': 'order-1',
    });
    const b = await post(JSON.stringify({ attributes: { b: '2', a: '1' }, email: 'order@example.com' }), {
      'idempotency-key': 'order-1',
    });
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(b.body.id).toBe(a.body.id);
  });
});

describe('POST /v1/unsubscribes on an API-only process', () => {
  it('accepts the first unsubscribe for a connection whose queue this process never opened', async () => {
    // No worker here touches the queues first: the producer must ready each queue before its MULTI.
    const apiOnly = await startTestEngine(
      uniquePrefix('ingest-api-only'),
      [crmConnection('fresh', 'http://127.0.0.1:9', { campaigns: '*' })],
      { ROLES: 'api' },
    );
    try {
      const first = await apiOnly.unsubscribe('acme', { email: 'first@example.com' });
      expect(first.status).toBe(201);
      // No worker here: it waits in its connection's buffer, pending.
      expect(await apiOnly.records.get(`${first.body.id as string}:fresh`)).toMatchObject({
        status: 'pending',
      });
      expect(await apiOnly.redis.lrange(`${apiOnly.prefix}:batch-buffer:fresh`, 0, -1)).toEqual([
        `${first.body.id as string}:fresh`,
      ]);
    } finally {
      await apiOnly.close();
    }
  });
});

describe('POST /v1/unsubscribes with Redis down', () => {
  it('answers 503, never 201, when the unsubscribe cannot be stored', async () => {
    const prefix = uniquePrefix('ingest-down');
    const keys = keyspace(prefix);
    const live = createRedis('redis://127.0.0.1:6379', 'request', 'test-live');
    const dead = createRedis('redis://127.0.0.1:1', 'request', 'test-dead');
    dead.on('error', () => undefined);
    await waitReady(live, 5_000);
    const apiKeys = new ApiKeyStore(live, keys);
    const { key: liveKey } = await apiKeys.create('acme');
    const queues = new DeliveryQueues(dead, keys);
    const app = await buildApp({
      logger: createLogger('silent'),
      apiKeys,
      index: { linked: () => [] } as never,
      producer: new DeliveryProducer(dead, queues, keys, { failedMs: 1000, unsubscribesMs: 1000 }),
      sandbox: false,
      readiness: async () => ({ checks: {} }),
    });
    const response = await app.inject({
      method: 'POST',
      url: '/v1/unsubscribes',
      headers: { authorization: liveKey, 'content-type': 'application/json' },
      payload: { email: 'a@example.com' },
    });
    expect(response.statusCode).toBe(503);
    expect(response.json()).toEqual({
      error: 'unavailable',
      message: 'the unsubscribe was not stored; retry shortly',
    });
    expect(response.headers['retry-after']).toBe('5');
    // Clean up first: closing a queue whose Redis never answered may not return promptly.
    await cleanPrefix(prefix);
    live.disconnect();
    dead.disconnect();
    await app.close();
    void queues.close().catch(() => undefined);
  });
});
