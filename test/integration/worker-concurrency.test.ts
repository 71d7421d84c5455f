import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';

process.env.TEST_CRM_TOKEN = 'crm-token-concurrency';

const CONCURRENCY = 24;

/**
 * A CRM that holds every request until CONCURRENCY of them are open at once (or a few seconds have
 * passed), then answers them all: the most it saw open at once is what the engine really had in
 * flight, whatever its queue said.
 */
let server: ReturnType<typeof createServer>;
let url: string;
let mostOpen = 0;
const held: ServerResponse[] = [];
const release = () => {
  for (const res of held.splice(0)) res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
};
let engine: TestEngine;

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      held.push(res);
      mostOpen = Math.max(mostOpen, held.length);
      if (held.length >= CONCURRENCY) release();
      else setTimeout(release, 3_000).unref();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const connection = crmConnection('held', url);
  // Held answers must not time out first.
  connection.request.timeouts = { connect: '1s', headers: '10s', body: '1s' };
  engine = await startTestEngine(uniquePrefix('worker-concurrency'), [connection], {
    WORKER_CONCURRENCY: String(CONCURRENCY),
  });
});

afterAll(async () => {
  release();
  await engine?.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe('WORKER_CONCURRENCY', () => {
  it('is how many requests one connection has open at its CRM, not only how many jobs it holds', async () => {
    const ids: string[] = [];
    for (let i = 0; i < CONCURRENCY; i++) {
      const response = await engine.unsubscribe('acme', { email: `held-${i}@example.com` });
      expect(response.status).toBe(201);
      ids.push(`${response.body.id as string}:held`);
    }
    await eventually('every delivery succeeded', async () => {
      const details = await Promise.all(ids.map((id) => engine.records.get(id)));
      return details.every((d) => d.status === 'succeeded') ? true : undefined;
    });
    // The sender's sockets per CRM follow WORKER_CONCURRENCY: with a fixed pool of 16, 8 waited.
    expect(mostOpen).toBe(CONCURRENCY);
  });
});
