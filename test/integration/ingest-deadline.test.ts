import { spawn, type ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiKeyStore } from '../../src/store/api-keys.js';
import { keyspace } from '../../src/store/keys.js';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { freePort } from '../helpers/processes.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';

/**
 * Redis hangs (SIGSTOP) under an ingest request. This file's own redis-server on a free loopback
 * port: the shared one on 6379 is never stopped.
 */
let redisServer: ChildProcess;
let redisUrl: string;
let redis: Redis;
let engine: TestEngine;
let key: string;
const prefix = uniquePrefix('ingest-deadline');

const post = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${engine.url}/v1/unsubscribes`, {
    method: 'POST',
    headers: { authorization: key, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

beforeAll(async () => {
  const port = await freePort();
  redisServer = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  redisUrl = `redis://127.0.0.1:${port}`;
  redis = new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: true });
  redis.on('error', () => undefined); // refused until the server is up: `eventually` retries
  await eventually('the test redis-server to answer', async () => (await redis.ping()) === 'PONG');
  engine = await startTestEngine(prefix, [crmConnection('deadline-crm', 'http://127.0.0.1:9')], {
    REDIS_URL: redisUrl,
    ROLES: 'api',
  });
  key = (await new ApiKeyStore(redis, keyspace(prefix)).create('acme')).key;
}, 30_000);
afterAll(async () => {
  redisServer?.kill('SIGCONT');
  await engine?.close();
  redis?.disconnect();
  redisServer?.kill('SIGTERM');
});

/** Calls of one Redis command so far, from the test server's own statistics. */
async function calls(command: string): Promise<number> {
  const info = await redis.info('commandstats');
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
}

/** Answers of a request whose body is sent only after `beforeBody` (the key is checked before the body). */
function postInTwoSteps(
  body: string,
  idempotencyKey: string,
  beforeBody: () => Promise<void>,
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const url = new URL('/v1/unsubscribes', engine.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: 'POST',
        headers: {
          authorization: key,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'idempotency-key': idempotencyKey,
        },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.flushHeaders();
    beforeBody().then(
      () => req.end(body),
      (error: unknown) => reject(error as Error),
    );
  });
}

describe('ingest when Redis hangs', () => {
  it('bounds the whole path, not each command: two stalls under 5 s each still get a 503', async () => {
    const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const before = await calls('hget');
    let resumed: Promise<unknown> = Promise.resolve();
    // First stall: the key lookup waits 3.5 s (under one command's 5 s timeout).
    redisServer.kill('SIGSTOP');
    const answer = postInTwoSteps(JSON.stringify({ email: 'slow@example.com' }), 'slow-1', async () => {
      await pause(3_500);
      redisServer.kill('SIGCONT');
      await eventually('the API key lookup', async () => (await calls('hget')) > before);
      // Second stall, under the ledger write and fan-out: 3.5 s more, again under one command's
      // timeout. Per command, that was a 201 after 7 s; the whole path has 5 s.
      redisServer.kill('SIGSTOP');
      resumed = pause(3_500).then(() => redisServer.kill('SIGCONT'));
    });
    const response = await answer;
    await resumed;
    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBe('5');
    expect(JSON.parse(response.body).message).toContain('retry shortly with the same Idempotency-Key');
    // The abandoned write may land after the 503: the retry with the same key is then a replay,
    // so the unsubscribe is stored once either way.
    const first = await eventually('a 201 for the retry', async () => {
      const again = await post({ email: 'slow@example.com' }, { 'idempotency-key': 'slow-1' });
      return again.status === 201 ? ((await again.json()) as { id: string }) : undefined;
    });
    const second = await post({ email: 'slow@example.com' }, { 'idempotency-key': 'slow-1' });
    expect(((await second.json()) as { id: string }).id).toBe(first.id);
  }, 60_000);

  it('answers 503 with Retry-After while Redis is still stopped, then 201 for the same key once it is back', async () => {
    expect((await post({ email: 'before@example.com' })).status).toBe(201);
    redisServer.kill('SIGSTOP');
    let answer: Response | 'still waiting';
    try {
      // Two commands in a row (key lookup, then the ledger and fan-out) each had their own 5 s
      // timeout: the answer came after Redis was back. It must come while Redis still hangs.
      answer = await Promise.race([
        post({ email: 'hung@example.com' }, { 'idempotency-key': 'hung-1' }),
        new Promise<'still waiting'>((resolve) => setTimeout(() => resolve('still waiting'), 12_000)),
      ]);
    } finally {
      redisServer.kill('SIGCONT');
    }
    expect(answer).not.toBe('still waiting');
    const response = answer as Response;
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('5');
    expect(((await response.json()) as { error: string }).error).toBe('unavailable');
    // Retried with the same key once Redis is back: stored once.
    const retried = await eventually('a 201 after Redis is back', async () => {
      const again = await post({ email: 'hung@example.com' }, { 'idempotency-key': 'hung-1' });
      return again.status === 201 ? ((await again.json()) as { id: string }) : undefined;
    });
    const again = await post({ email: 'hung@example.com' }, { 'idempotency-key': 'hung-1' });
    expect(((await again.json()) as { id: string }).id).toBe(retried.id);
  }, 60_000);
});
