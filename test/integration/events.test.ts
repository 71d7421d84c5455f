import { execFile } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { MockAgent } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildApp, type AppDeps } from '../../src/api/app.js';
import { EventLog } from '../../src/events/event-log.js';
import { operationalEventSchema, type OperationalEvent } from '../../src/events/operational-event.js';
import { EventWebhookRelay, type EventWebhookRelayOptions } from '../../src/events/webhook-relay.js';
import { keyspace } from '../../src/store/keys.js';
import { startFakeCrm, type FakeCrm, type ReceivedRequest } from '../helpers/crm-server.js';
import { ROOT } from '../helpers/processes.js';
import { cleanPrefix, eventually, REDIS_URL, testRedis, uniquePrefix } from '../helpers/redis.js';

const base = uniquePrefix('events');
let serial = 0;
/** A fresh keyspace (so a fresh stream and consumer group) per test, all under this file's prefix. */
const freshKeys = () => keyspace(`${base}:${++serial}`);

const SECRET = `whsec_${randomBytes(24).toString('base64')}`;
const QUERY_TOKEN = `q-${randomBytes(8).toString('hex')}`;
const ADMIN_TOKEN = 'events-admin-token-0123456789';

const logLines: string[] = [];
const logger = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });

let redis: Redis;
const relays: EventWebhookRelay[] = [];
const crms: FakeCrm[] = [];

beforeAll(() => {
  redis = testRedis();
});
afterEach(async () => {
  await Promise.all(relays.splice(0).map((relay) => relay.stop()));
  await Promise.all(crms.splice(0).map((crm) => crm.close()));
});
afterAll(async () => {
  redis.disconnect();
  await cleanPrefix(base);
  // Whatever else happened, no log line ever held the signing secret or the URL's query token.
  const logs = logLines.join('');
  expect(logs).not.toContain(SECRET);
  expect(logs).not.toContain(SECRET.slice('whsec_'.length));
  expect(logs).not.toContain(QUERY_TOKEN);
  expect(logs).not.toContain('jane.doe@example.com');
});

async function webhook(responder?: Parameters<typeof startFakeCrm>[0]): Promise<FakeCrm> {
  const crm = await startFakeCrm(responder);
  crms.push(crm);
  return crm;
}

function relay(
  keys: ReturnType<typeof keyspace>,
  crm: FakeCrm,
  options: Partial<EventWebhookRelayOptions> = {},
): EventWebhookRelay {
  const started = new EventWebhookRelay({
    connection: testRedis(),
    keys,
    url: `${crm.url}/hooks/events?token=${QUERY_TOKEN}`,
    secret: SECRET,
    logger,
    blockMs: 1_000,
    retryDelayMs: 20,
    maxRetryDelayMs: 200,
    ...options,
  });
  relays.push(started);
  return started;
}

const pendingCount = async (keys: ReturnType<typeof keyspace>) =>
  Number(((await redis.xpending(keys.events, 'webhook')) as [number])[0]);

const idOf = (request: ReceivedRequest) => request.headers['webhook-id'] as string;

/** Resolves with `'settled'` when `promise` settles first, `'deadline'` after `ms`. */
async function within(promise: Promise<unknown>, ms: number): Promise<'settled' | 'deadline'> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), ms)));
  try {
    return await Promise.race([promise.then(() => 'settled' as const), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

describe('EventLog', () => {
  it('logs events durably and lists them newest first, filtered', async () => {
    const keys = freshKeys();
    const log = new EventLog(redis, keys, logger);
    log.emit({
      type: 'connection_failing',
      connectionId: 'acme-crm',
      message: 'acme-crm failed 5 deliveries in a row; check its endpoint and credentials',
      details: { consecutiveFailures: 5 },
    });
    log.emit({ type: 'circuit_opened', connectionId: 'acme-crm', message: 'circuit opened for 30s' });
    log.emit({
      type: 'delivery_exhausted',
      connectionId: 'beta-crm',
      deliveryId: 'u-1:beta-crm',
      unsubscribeId: 'u-1',
      message: 'delivery u-1:beta-crm failed after 10 attempts; replay it once beta-crm is fixed',
    });

    const all = await eventually('three events listed', async () => {
      const events = await log.list();
      return events.length === 3 && events;
    });
    expect(all.map((e) => e.type)).toEqual(['delivery_exhausted', 'circuit_opened', 'connection_failing']);
    expect(operationalEventSchema.array().parse(all)).toEqual(all);
    expect(all[0]).toMatchObject({
      connectionId: 'beta-crm',
      deliveryId: 'u-1:beta-crm',
      unsubscribeId: 'u-1',
      details: {},
    });
    expect(all[2]!.details).toEqual({ consecutiveFailures: 5 });
    expect(all[0]!.id > all[1]!.id && all[1]!.id > all[2]!.id).toBe(true);
    expect(new Date(all[0]!.at).toISOString()).toBe(all[0]!.at);

    expect((await log.list({ connection: 'acme-crm' })).map((e) => e.type)).toEqual([
      'circuit_opened',
      'connection_failing',
    ]);
    expect((await log.list({ type: 'circuit_opened' })).map((e) => e.connectionId)).toEqual(['acme-crm']);
    expect(await log.list({ connection: 'acme-crm', type: 'delivery_exhausted' })).toEqual([]);
    expect((await log.list({ limit: 1 })).map((e) => e.type)).toEqual(['delivery_exhausted']);
    expect(await log.list({ since: new Date(Date.now() + 60_000) })).toEqual([]);
    expect(await log.list({ since: new Date(Date.now() - 60_000) })).toHaveLength(3);
  });

  it('pages through a long stream for a filter that matches little', async () => {
    const keys = freshKeys();
    const log = new EventLog(redis, keys, logger);
    // Written directly (one round trip), then one more through emit(): 1,200 entries, two of them acme's.
    const writes = redis.pipeline();
    for (let i = 0; i < 1_200; i++) {
      const connectionId = i === 10 ? 'acme-crm' : `other-${i}`;
      writes.xadd(
        keys.events,
        '*',
        ...['type', 'rate_limited', 'at', new Date().toISOString(), 'connectionId', connectionId],
        ...['message', 'the CRM asked us to slow down', 'details', '{"retryAfterMs":1000}'],
      );
    }
    await writes.exec();
    log.emit({ type: 'rate_limited', connectionId: 'acme-crm', message: 'the CRM asked us to slow down' });
    const acme = await eventually('acme events', async () => {
      const events = await log.list({ connection: 'acme-crm' });
      return events.length === 2 && events;
    });
    expect(acme[0]!.details).toEqual({});
    expect(acme[1]!.details).toEqual({ retryAfterMs: 1000 });
    expect(await log.list({ limit: 1_000 })).toHaveLength(1_000);
  });

  it('never throws: a bad event is dropped, a Redis failure is logged at warn, addresses are masked', async () => {
    const keys = freshKeys();
    const log = new EventLog(redis, keys, logger);
    expect(() =>
      log.emit({ type: 'not-a-type', connectionId: 'acme-crm', message: 'x' } as never),
    ).not.toThrow();
    expect(() => log.emit(undefined as never)).not.toThrow();

    const closed = testRedis();
    closed.disconnect();
    const offline = new EventLog(closed, keys, logger);
    const before = logLines.length;
    expect(() =>
      offline.emit({ type: 'circuit_closed', connectionId: 'offline-crm', message: 'circuit closed' }),
    ).not.toThrow();
    const warning = await eventually('write failure logged', () =>
      logLines
        .slice(before)
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((line) => line.msg === 'operational event not written to the event log'),
    );
    expect(warning).toMatchObject({ level: 40, eventType: 'circuit_closed', connectionId: 'offline-crm' });

    log.emit({
      type: 'deadline_near',
      connectionId: 'acme-crm',
      deliveryId: 'u-2:acme-crm',
      message: 'the unsubscribe of jane.doe@example.com must reach acme-crm within 1h',
      details: { contact: 'jane.doe@example.com', minutesLeft: 60 },
    });
    const [event] = await eventually('deadline_near listed', async () => {
      const events = await log.list();
      return events.length === 1 && events;
    });
    expect(event!.message).toBe('the unsubscribe of j***@example.com must reach acme-crm within 1h');
    expect(event!.details).toEqual({ contact: 'j***@example.com', minutesLeft: 60 });
    const line = logLines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.eventType === 'deadline_near');
    expect(line).toMatchObject({ level: 40, connectionId: 'acme-crm', deliveryId: 'u-2:acme-crm' });
  });
});

describe('EventWebhookRelay', () => {
  it('POSTs each event as JSON with a valid Standard Webhooks signature, and acknowledges it', async () => {
    const keys = freshKeys();
    const log = new EventLog(redis, keys, logger);
    const crm = await webhook(() => ({ status: 204 }));
    await relay(keys, crm).start();
    log.emit({
      type: 'delivery_exhausted',
      connectionId: 'acme-crm',
      deliveryId: '6dfceccb-16dd-477f-8872-7db247330e33:acme-crm',
      unsubscribeId: '6dfceccb-16dd-477f-8872-7db247330e33',
      message: 'delivery failed after 10 attempts (HTTP_STATUS: status 503); replay it once acme-crm answers',
      details: { attempts: 10, errorCode: 'HTTP_STATUS', lastStatus: 503 },
    });
    const [request] = await eventually('webhook POST', () => crm.received.length > 0 && crm.received);
    const [logged] = await log.list();

    expect(request!.method).toBe('POST');
    expect(request!.path).toBe(`/hooks/events?token=${QUERY_TOKEN}`);
    expect(request!.headers['content-type']).toBe('application/json');
    expect(JSON.parse(request!.body)).toEqual(logged);
    const id = request!.headers['webhook-id'] as string;
    const timestamp = request!.headers['webhook-timestamp'] as string;
    expect(id).toBe(logged!.id);
    expect(timestamp).toMatch(/^\d+$/);
    const expected = createHmac('sha256', Buffer.from(SECRET.slice('whsec_'.length), 'base64'))
      .update(`${id}.${timestamp}.${request!.body}`)
      .digest('base64');
    expect(request!.headers['webhook-signature']).toBe(`v1,${expected}`);

    await eventually('acknowledged', async () => (await pendingCount(keys)) === 0);
  });

  it('sends an event again after a 500 and acknowledges it once it gets a 2xx', async () => {
    const keys = freshKeys();
    const log = new EventLog(redis, keys, logger);
    const tries = new Map<string, number>();
    const crm = await webhook((request) => {
      const count = (tries.get(idOf(request)) ?? 0) + 1;
      tries.set(idOf(request), count);
      return count === 1 ? { status: 500, body: '{"error":"busy"}' } : { status: 200, body: '{}' };
    });
    await relay(keys, crm).start();

    log.emit({ type: 'connection_failing', connectionId: 'acme-crm', message: 'acme-crm is failing' });
    const [first] = await eventually('first event listed', async () => {
      const events = await log.list();
      return events.length === 1 && events;
    });
    await eventually('sent twice', () => tries.get(first!.id) === 2);
    await eventually('acknowledged', async () => (await pendingCount(keys)) === 0);
    const retried = crm.received.filter((r) => idOf(r) === first!.id);
    expect(retried.map((r) => r.body)).toEqual([retried[0]!.body, retried[0]!.body]);

    // The relay has moved on past the first event: a later one goes through, and the first is not sent again.
    log.emit({ type: 'connection_recovered', connectionId: 'acme-crm', message: 'acme-crm recovered' });
    await eventually('second event delivered', () => crm.received.length === 4 && crm.received);
    await eventually('all acknowledged', async () => (await pendingCount(keys)) === 0);
    expect(tries.get(first!.id)).toBe(2);
    expect([...tries.values()]).toEqual([2, 2]);

    const warning = logLines
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((line) => line.eventId === first!.id && line.level === 40);
    expect(warning).toMatchObject({ status: 500, attempt: 1, target: new URL(crm.url).host });
  });

  it('sends through an injected undici dispatcher', async () => {
    const keys = freshKeys();
    const log = new EventLog(redis, keys, logger);
    const dispatcher = new MockAgent();
    dispatcher.disableNetConnect();
    const bodies: string[] = [];
    dispatcher
      .get('https://hooks.example.com')
      .intercept({ path: '/unsub-relay', method: 'POST' })
      .reply(200, (options) => {
        bodies.push(String(options.body));
        return {};
      });
    const crm = { url: 'https://hooks.example.com' } as FakeCrm;
    await relay(keys, crm, { url: 'https://hooks.example.com/unsub-relay', dispatcher }).start();
    log.emit({ type: 'circuit_closed', connectionId: 'acme-crm', message: 'circuit closed' });
    await eventually('acknowledged', async () => bodies.length === 1 && (await pendingCount(keys)) === 0);
    expect(JSON.parse(bodies[0]!)).toMatchObject({ type: 'circuit_closed', connectionId: 'acme-crm' });
    dispatcher.assertNoPendingInterceptors();
    await dispatcher.close();
  });

  it('two relays on one stream deliver each event once in total', async () => {
    const keys = freshKeys();
    const log = new EventLog(redis, keys, logger);
    const crm = await webhook(() => ({ status: 200, body: '{}', delayMs: 5 }));
    await relay(keys, crm, { consumer: 'relay-a' }).start();
    await relay(keys, crm, { consumer: 'relay-b' }).start();
    const total = 30;
    for (let i = 0; i < total; i++) {
      log.emit({ type: 'rate_limited', connectionId: `crm-${i}`, message: 'the CRM asked us to slow down' });
    }
    await eventually('every event received', () => new Set(crm.received.map(idOf)).size === total);
    await eventually('every event acknowledged', async () => (await pendingCount(keys)) === 0);
    expect(crm.received).toHaveLength(total);
    const logged = await log.list({ limit: 1_000 });
    expect(new Set(crm.received.map(idOf))).toEqual(new Set(logged.map((e) => e.id)));
  });

  it('takes over events a dead process left pending', async () => {
    const keys = freshKeys();
    const log = new EventLog(redis, keys, logger);
    await redis.xgroup('CREATE', keys.events, 'webhook', '$', 'MKSTREAM');
    log.emit({ type: 'circuit_opened', connectionId: 'acme-crm', message: 'circuit opened' });
    await eventually('listed', async () => (await log.list()).length === 1);
    // A process reads the event and dies before answering it.
    await redis.xreadgroup('GROUP', 'webhook', 'dead-process', 'COUNT', 10, 'STREAMS', keys.events, '>');
    expect(await pendingCount(keys)).toBe(1);

    const crm = await webhook();
    await relay(keys, crm, { minIdleMs: 100, claimEveryMs: 50, blockMs: 100 }).start();
    await eventually('delivered by the live relay', () => crm.received.length === 1);
    await eventually('acknowledged', async () => (await pendingCount(keys)) === 0);
    expect(idOf(crm.received[0]!)).toBe((await log.list())[0]!.id);
  });

  it('does not send events logged before the webhook was first configured', async () => {
    const keys = freshKeys();
    const log = new EventLog(redis, keys, logger);
    log.emit({
      type: 'connection_paused',
      connectionId: 'old',
      message: 'paused before the webhook existed',
    });
    await eventually('old event listed', async () => (await log.list()).length === 1);
    const crm = await webhook();
    await relay(keys, crm).start();
    log.emit({ type: 'connection_resumed', connectionId: 'new-1', message: 'resumed' });
    log.emit({ type: 'connection_resumed', connectionId: 'new-2', message: 'resumed' });
    await eventually('two new events delivered', () => crm.received.length === 2);
    await eventually('acknowledged', async () => (await pendingCount(keys)) === 0);
    expect(crm.received.map((r) => (JSON.parse(r.body) as OperationalEvent).connectionId)).toEqual([
      'new-1',
      'new-2',
    ]);
  });

  it('stop() ends a blocking read promptly', async () => {
    const keys = freshKeys();
    const crm = await webhook();
    const name = `events-relay-stop-${randomBytes(4).toString('hex')}`;
    const blocked = relay(keys, crm, {
      connection: new Redis(REDIS_URL, { maxRetriesPerRequest: null, connectionName: name }),
      blockMs: 60_000,
    });
    await blocked.start();
    await eventually('relay blocked in XREADGROUP', async () =>
      ((await redis.client('LIST')) as string)
        .split('\n')
        .some((line) => line.includes(`name=${name} `) && line.includes('cmd=xreadgroup')),
    );
    expect(await within(blocked.stop(), 5_000)).toBe('settled');
  });

  it('stop() ends a retry wait and a hung POST promptly; the event stays pending for the next relay', async () => {
    const keys = freshKeys();
    const log = new EventLog(redis, keys, logger);
    let answer: 'fail' | 'hang' | 'ok' = 'fail';
    const crm = await webhook(() =>
      answer === 'fail' ? { status: 503 } : answer === 'hang' ? { status: 200, hang: true } : { status: 200 },
    );
    const waiting = relay(keys, crm, { retryDelayMs: 60_000, maxRetryDelayMs: 60_000 });
    await waiting.start();
    log.emit({ type: 'delivery_exhausted', connectionId: 'acme-crm', message: 'delivery failed' });
    await eventually('first attempt answered 503', () => crm.received.length === 1);
    expect(await within(waiting.stop(), 5_000)).toBe('settled');
    expect(await pendingCount(keys)).toBe(1);

    answer = 'hang';
    const hung = relay(keys, crm, { minIdleMs: 100, claimEveryMs: 50, blockMs: 100, stopGraceMs: 100 });
    await hung.start();
    await eventually('second attempt in flight', () => crm.received.length === 2);
    expect(await within(hung.stop(), 5_000)).toBe('settled');
    expect(await pendingCount(keys)).toBe(1);

    answer = 'ok';
    await relay(keys, crm, { minIdleMs: 100, claimEveryMs: 50, blockMs: 100 }).start();
    await eventually('delivered at last', () => crm.received.length === 3);
    await eventually('acknowledged', async () => (await pendingCount(keys)) === 0);
    expect(new Set(crm.received.map(idOf)).size).toBe(1);
  });

  it('refuses a whsec_ secret that is not base64, without showing it', () => {
    const crm = { url: 'http://127.0.0.1:9' } as FakeCrm;
    expect(
      () =>
        new EventWebhookRelay({
          connection: redis,
          keys: freshKeys(),
          url: crm.url,
          secret: 'whsec_not base64 at all!',
          logger,
        }),
    ).toThrow(/whsec_ secret must be followed by base64 text$/);
    expect(
      () => new EventWebhookRelay({ connection: redis, keys: freshKeys(), url: 'ftp://x', logger }),
    ).toThrow(/http or https/);
    const fastFailing = new Redis(REDIS_URL, { lazyConnect: true, commandTimeout: 5_000 });
    expect(
      () => new EventWebhookRelay({ connection: fastFailing, keys: freshKeys(), url: crm.url, logger }),
    ).toThrow(/without a command timeout/);
  });
});

describe('GET /admin/v1/events and `unsub-relay events`', () => {
  let app: FastifyInstance;
  let log: EventLog;

  beforeAll(async () => {
    log = new EventLog(redis, freshKeys(), logger);
    // Only the events route is exercised: the other admin dependencies are never called.
    app = await buildApp({
      logger: pino({ level: 'silent' }),
      readiness: async () => ({}),
      sandbox: false,
      admin: { adminToken: ADMIN_TOKEN, events: log, connectionAdmin: {} },
    } as unknown as AppDeps);
    log.emit({ type: 'connection_failing', connectionId: 'acme-crm', message: 'acme-crm failed 5 in a row' });
    log.emit({ type: 'circuit_opened', connectionId: 'acme-crm', message: 'circuit opened for 30s' });
    log.emit({ type: 'connection_paused', connectionId: 'beta-crm', message: 'paused by an operator' });
    await eventually('three events listed', async () => (await log.list()).length === 3);
  });
  afterAll(async () => {
    await app?.close();
  });

  const get = (url: string, token = ADMIN_TOKEN) =>
    app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${token}` } });

  it('lists events newest first, filtered by connection, type, since and limit', async () => {
    const all = await get('/admin/v1/events');
    expect(all.statusCode).toBe(200);
    const { events } = all.json<{ events: OperationalEvent[] }>();
    expect(events.map((e) => e.type)).toEqual(['connection_paused', 'circuit_opened', 'connection_failing']);
    expect(events).toEqual(await log.list());

    const acme = (await get('/admin/v1/events?connection=acme-crm&type=circuit_opened')).json<{
      events: OperationalEvent[];
    }>();
    expect(acme.events.map((e) => e.message)).toEqual(['circuit opened for 30s']);
    const later = new Date(Date.now() + 60_000).toISOString();
    expect((await get(`/admin/v1/events?since=${later}`)).json()).toEqual({ events: [] });
    expect((await get('/admin/v1/events?limit=2')).json<{ events: unknown[] }>().events).toHaveLength(2);
  });

  it('names bad query fields, and wants the admin token', async () => {
    const bad = await get('/admin/v1/events?type=exploded&limit=0&since=yesterday');
    expect(bad.statusCode).toBe(400);
    expect(Object.keys(bad.json<{ fields: object }>().fields).sort()).toEqual(['limit', 'since', 'type']);
    expect((await get('/admin/v1/events?limit=1001')).statusCode).toBe(400);
    expect((await get('/admin/v1/events', 'wrong-token-0123456789')).statusCode).toBe(401);
    const openapi = (await get('/admin/v1/openapi.json')).json<{ paths: Record<string, unknown> }>();
    expect(Object.keys(openapi.paths)).toContain('/admin/v1/events');
  });

  it('`unsub-relay events` prints them as a table, or JSON', async () => {
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    const run = (...args: string[]) =>
      promisify(execFile)(
        process.execPath,
        [path.join(ROOT, 'bin/unsub-relay.js'), '--admin-url', url, '--admin-token', ADMIN_TOKEN, ...args],
        { cwd: ROOT, timeout: 30_000 },
      );
    const { stdout } = await run('events', '--connection', 'acme-crm', '--since', '30m');
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^AT\s+TYPE\s+CONNECTIONID\s+DELIVERYID\s+MESSAGE$/);
    expect(lines.slice(1).map((line) => line.split(/\s+/)[1])).toEqual([
      'circuit_opened',
      'connection_failing',
    ]);
    expect(lines[1]).toContain('circuit opened for 30s');

    const json = JSON.parse((await run('events', '--type', 'connection_paused', '--json')).stdout) as unknown;
    expect(json).toEqual(await log.list({ type: 'connection_paused' }));
  });
});
