import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BatchBuffer } from '../../src/store/batch-buffer.js';
import { keyspace } from '../../src/store/keys.js';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { eventually, testRedis, uniquePrefix } from '../helpers/redis.js';

process.env.TEST_CRM_TOKEN = 'crm-token-each-delivery';

/**
 * An unbatched connection's fresh deliveries wait in its buffer and travel many to one BullMQ batch
 * job, which sends each in a request of its own (src/queue/each-delivery.ts). An API-only engine
 * queues them with no worker to take them; a worker engine on the same prefix then drains them.
 * Each test has its own prefix (closing an engine cleans its prefix).
 */
const redis = testRedis();

/** A CRM that holds each request until `holdUntil` are open at once (or 3 s passed), then answers all. */
let crm: Server;
let crmUrl: string;
const open: ServerResponse[] = [];
let mostOpen = 0;
let holdUntil = Infinity;
let answerAfterMs = 0;
const bodies: string[] = [];
const release = () => {
  for (const res of open.splice(0)) res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
};

let api: TestEngine | undefined;
let worker: TestEngine | undefined;
let keys: ReturnType<typeof keyspace>;
let buffer: BatchBuffer;
const connections = () => [
  crmConnection('side-by-side', crmUrl, { campaigns: ['side'] }),
  crmConnection('one-by-one', crmUrl, { campaigns: ['one'], limits: { concurrency: 2 } }),
  crmConnection('single-file', crmUrl, { campaigns: ['single'], limits: { concurrency: 1 } }),
];
const env = { WORKER_CONCURRENCY: '20' };
const admin = { authorization: 'Bearer test-admin-token-0123456789' };

/** An API-only engine on a prefix of this test's own. */
async function startApi(name: string): Promise<TestEngine> {
  const prefix = uniquePrefix(`each-delivery-${name}`);
  keys = keyspace(prefix);
  buffer = new BatchBuffer(redis, keys);
  api = await startTestEngine(prefix, connections(), { ...env, ROLES: 'api' });
  return api;
}

async function startWorker(): Promise<void> {
  worker = await startTestEngine(api!.prefix, connections(), { ...env, ROLES: 'worker' });
}

beforeAll(async () => {
  crm = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      bodies.push(Buffer.concat(chunks).toString('utf8'));
      open.push(res);
      mostOpen = Math.max(mostOpen, open.length);
      if (open.length >= holdUntil) release();
      else if (answerAfterMs > 0) setTimeout(release, answerAfterMs);
      else setTimeout(release, 3_000).unref();
    });
  });
  await new Promise<void>((resolve) => crm.listen(0, '127.0.0.1', resolve));
  crmUrl = `http://127.0.0.1:${(crm.address() as AddressInfo).port}`;
});

afterEach(async () => {
  await worker?.close();
  await api?.close();
  worker = undefined;
  api = undefined;
  mostOpen = 0;
  bodies.length = 0;
  holdUntil = Infinity;
  answerAfterMs = 0;
});

afterAll(async () => {
  release();
  crm.closeAllConnections();
  await new Promise((resolve) => crm.close(resolve));
  redis.disconnect();
});

async function queue(campaign: string, count: number, tag: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const response = await api!.unsubscribe('acme', { email: `${tag}-${i}@example.com`, campaign });
    expect(response.status).toBe(201);
    ids.push(response.body.id as string);
  }
  return ids;
}

const allSucceeded = (deliveryIds: string[]) =>
  eventually('every delivery succeeded', async () => {
    const details = await Promise.all(deliveryIds.map((id) => api!.records.get(id)));
    return details.every((d) => d.status === 'succeeded') ? details : undefined;
  });

describe("an unbatched connection's deliveries", () => {
  it('travel many to one batch job and go side by side, each in a request and an attempt of its own', async () => {
    await startApi('side');
    const ids = (await queue('side', 20, 'side')).map((id) => `${id}:side-by-side`);
    // No worker yet: they wait in the connection's buffer, in the order they were accepted.
    expect(await buffer.waiting('side-by-side')).toEqual(ids);
    holdUntil = 20;
    await startWorker();
    const details = await allSucceeded(ids);
    // One batch took all twenty, and sent them all at once (the CRM held each until twenty were open).
    expect(mostOpen).toBe(20);
    expect(bodies).toHaveLength(20);
    for (const body of bodies) expect(JSON.parse(body).recipient_emails).toHaveLength(1);
    for (const d of details) {
      expect(d.attemptsMade).toBe(1);
      expect(d.attempts).toHaveLength(1);
      expect(d.attempts[0]).toMatchObject({ verdict: 'success', status: 200 });
      // Not a batched request: the attempt names none.
      expect(d.attempts[0]!.batch).toBeUndefined();
    }
    expect(await buffer.length('side-by-side')).toBe(0);
    expect(await buffer.openCount('side-by-side')).toBe(0);
  });

  it('go one after another in each batch when limits.concurrency is set, never more open than it allows', async () => {
    await startApi('one');
    const ids = (await queue('one', 6, 'one')).map((id) => `${id}:one-by-one`);
    answerAfterMs = 30;
    await startWorker();
    await allSucceeded(ids);
    expect(bodies).toHaveLength(6);
    expect(mostOpen).toBeLessThanOrEqual(2);
  });

  it('are not started once their worker stops: they go back to the buffer, no attempt spent, for the next worker', async () => {
    await startApi('stopping');
    // One batch of all thirty, sent one after another.
    const ids = (await queue('single', 30, 'stop')).map((id) => `${id}:single-file`);
    answerAfterMs = 50;
    await startWorker();
    await eventually('a few delivered', () => bodies.length >= 3);
    // A graceful stop: the requests in flight finish, nothing more starts.
    await worker!.engine.close();
    worker = undefined;
    const sent = bodies.length;
    expect(sent).toBeLessThan(30);
    const details = await Promise.all(ids.map((id) => api!.records.get(id)));
    const delivered = details.filter((d) => d.status === 'succeeded');
    expect(delivered).toHaveLength(sent);
    // The rest wait, untouched: no attempt, no failure counted against the CRM.
    for (const d of details.filter((d) => d.status !== 'succeeded')) {
      expect(d.status).toBe('pending');
      expect(d.attempts).toEqual([]);
    }
    expect(await buffer.length('single-file')).toBe(30 - sent);
    expect(await buffer.openCount('single-file')).toBe(0);
    const backlog = (await (await fetch(`${api!.url}/admin/v1/backlogs`, { headers: admin })).json()) as {
      backlogs: Array<{ connectionId: string; control: { circuit: string; consecutiveFailures: number } }>;
    };
    expect(backlog.backlogs.find((b) => b.connectionId === 'single-file')!.control).toMatchObject({
      circuit: 'closed',
      consecutiveFailures: 0,
    });

    await startWorker();
    await allSucceeded(ids);
    // Each sent once: none was in flight when the first worker stopped.
    expect(bodies).toHaveLength(30);
  });

  it('are announced when their buffer had nothing waiting, so a worker batches them at once', async () => {
    await startApi('announced');
    const subscriber = testRedis();
    const heard: string[] = [];
    subscriber.on('message', (_channel: string, message: string) => heard.push(message));
    await subscriber.subscribe(keys.deliveriesWaiting);
    try {
      await queue('side', 3, 'announced');
      // The first found the buffer empty; the next two joined it.
      await eventually('the announcement', () => heard.length === 1);
      expect(heard).toEqual(['side-by-side']);
    } finally {
      subscriber.disconnect();
    }
  });
});
