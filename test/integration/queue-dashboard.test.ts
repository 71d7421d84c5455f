import swagger from '@fastify/swagger';
import { Queue } from 'bullmq';
import Fastify, { type FastifyInstance } from 'fastify';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerQueueDashboard } from '../../src/api/admin/queue-dashboard.js';
import { cleanPrefix, testRedis, uniquePrefix } from '../helpers/redis.js';

const TOKEN = 'dashboard-token-for-tests-0123456789';
const REFRESH_MS = 1_000;
const prefix = uniquePrefix('queue-dashboard');

let redis: Redis;
let app: FastifyInstance;
let alpha: Queue;
let beta: Queue;
let gamma: Queue;
// What the engine would report as its current connections' queues; tests change it.
let current: Queue[];
let listed = 0;
let clock = 0;

const bearer = { authorization: `Bearer ${TOKEN}` };
const basic = (password: string) => ({
  authorization: `Basic ${Buffer.from(`operator:${password}`).toString('base64')}`,
});

async function boardQueues() {
  const response = await app.inject({ url: '/admin/queues/api/queues', headers: bearer });
  expect(response.statusCode).toBe(200);
  return (
    response.json() as {
      queues: Array<{ name: string; displayName: string; counts: Record<string, number> }>;
    }
  ).queues;
}

beforeAll(async () => {
  redis = testRedis();
  const queue = (name: string) => new Queue(name, { connection: redis, prefix });
  [alpha, beta, gamma] = [queue('deliveries.alpha'), queue('deliveries.beta'), queue('deliveries.gamma')];
  current = [alpha, beta];

  app = Fastify();
  // As registerAdmin does: swagger on the root, the admin API in a prefixed plugin with its own hook.
  await app.register(swagger, {
    openapi: { info: { title: 't', version: '1' } },
    transform: jsonSchemaTransform,
  });
  await app.register(async (admin) => admin.get('/ping', async () => ({ ok: true })), {
    prefix: '/admin/v1',
  });
  app.get('/healthz', async () => ({ ok: true }));
  await registerQueueDashboard(app, {
    adminToken: TOKEN,
    queues: async () => {
      listed += 1;
      return [...current];
    },
    refreshMs: REFRESH_MS,
    now: () => clock,
  });
  await app.ready();
});

afterAll(async () => {
  await app?.close();
  await Promise.all([alpha, beta, gamma].map((queue) => queue?.close()));
  await redis?.quit();
  await cleanPrefix(prefix);
});

describe('queue dashboard: admin token', () => {
  it.each([
    ['/admin/queues'],
    ['/admin/queues/'],
    ['/admin/queues/api/queues'],
    ['/admin/queues/static/favicon-32x32.png'],
    ['/admin/queues/no-such-page/deep'],
  ])('answers 401 with a Basic challenge and no dashboard content: %s', async (url) => {
    const response = await app.inject({ url });
    expect(response.statusCode).toBe(401);
    expect(response.headers['www-authenticate']).toBe('Basic realm="unsub-relay admin"');
    expect(response.headers['content-type']).toMatch(/^application\/json/);
    expect(response.json()).toEqual({
      error: 'unauthorized',
      message: 'send Authorization: Bearer <admin token> (or Basic, the token as password)',
    });
  });

  it('answers 401 to a wrong token, as Bearer, raw or Basic password', async () => {
    for (const headers of [
      { authorization: 'Bearer wrong-token' },
      { authorization: 'wrong-token' },
      basic('wrong-token'),
      { authorization: `Basic ${Buffer.from(TOKEN).toString('base64')}` }, // no "user:" part
      { authorization: 'Basic' },
    ]) {
      const response = await app.inject({ url: '/admin/queues/api/queues', headers });
      expect(response.statusCode).toBe(401);
      expect(response.body).not.toContain(TOKEN);
    }
  });

  it('serves the UI and its assets with Bearer and with Basic (any username)', async () => {
    for (const headers of [bearer, basic(TOKEN)]) {
      const page = await app.inject({ url: '/admin/queues', headers });
      expect(page.statusCode).toBe(200);
      expect(page.headers['content-type']).toMatch(/^text\/html/);
      expect(page.body).toContain('<base href="/admin/queues/"');
      const script = /src="(static\/js\/main\.[^"]+\.js)"/.exec(page.body)![1]!;
      const asset = await app.inject({ url: `/admin/queues/${script}`, headers });
      expect(asset.statusCode).toBe(200);
      expect(asset.headers['content-type']).toMatch(/javascript/);
    }
  });

  it('refuses cross-site writes even with the token (browsers replay Basic credentials)', async () => {
    const response = await app.inject({
      method: 'PUT',
      url: `/admin/queues/api/queues/${alpha.name}/pause`,
      headers: { ...basic(TOKEN), 'sec-fetch-site': 'cross-site' },
    });
    expect(response.statusCode).toBe(403);
    expect(await alpha.isPaused()).toBe(false);
  });

  it('leaves the other routes and the OpenAPI document alone', async () => {
    expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
    expect((await app.inject({ url: '/admin/v1/ping' })).statusCode).toBe(200);
    const paths = Object.keys((app.swagger() as { paths: Record<string, unknown> }).paths);
    expect(paths).toContain('/admin/v1/ping');
    expect(paths.filter((path) => path.startsWith('/admin/queues'))).toEqual([]);
  });
});

describe('queue dashboard: queues', () => {
  it('lists every queue under its name, with job counts', async () => {
    await alpha.add('deliver', { id: 'u1' });
    const queues = await boardQueues();
    expect(queues.map((queue) => queue.name).sort()).toEqual([alpha.name, beta.name]);
    const byName = Object.fromEntries(queues.map((queue) => [queue.name, queue]));
    expect(byName[alpha.name]!.displayName).toBe(alpha.name);
    expect(byName[alpha.name]!.counts.waiting).toBe(1);
    expect(byName[beta.name]!.counts.waiting).toBe(0);
  });

  it('follows queues added and removed at runtime, at most once per refresh interval', async () => {
    current = [alpha, beta, gamma];
    const before = listed;
    expect((await boardQueues()).map((queue) => queue.name)).not.toContain(gamma.name);
    expect(listed).toBe(before); // within the interval: the cached list, no Redis round trip

    clock += REFRESH_MS;
    expect((await boardQueues()).map((queue) => queue.name).sort()).toEqual([
      alpha.name,
      beta.name,
      gamma.name,
    ]);
    expect(listed).toBe(before + 1);

    current = [alpha, gamma];
    clock += REFRESH_MS;
    expect((await boardQueues()).map((queue) => queue.name).sort()).toEqual([alpha.name, gamma.name]);
  });
});
