import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { writeConnections } from '../helpers/engine.js';
import { spawnEngine, type EngineProcess } from '../helpers/processes.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';
import {
  adminClient,
  chaosConnection,
  client,
  counts,
  emailsIn,
  engineEnv,
  postAll,
  recordFigures,
  settled,
  tearDown,
} from './support.js';

// A CRM answering 429 with Retry-After for a while, to an unbatched and a batched connection: no
// attempt is spent on it, nothing is lost, everything is delivered once the storm is over, and the
// CRM gets one request as each wait ends, not the whole backlog.
const prefix = uniquePrefix('chaos-429');
const COUNT = 100;
const STORM_MS = 8_000;
let crm: FakeCrm;
let dir: string;
let engine: EngineProcess | undefined;
let stormStart = 0;

beforeAll(async () => {
  crm = await startFakeCrm((request) => {
    if (stormStart === 0) stormStart = request.at;
    return request.at - stormStart < STORM_MS
      ? { status: 429, headers: { 'retry-after': '1' }, body: '{"error":"slow down"}' }
      : { status: 200, body: '{}' };
  });
  dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-chaos-429-'));
  await writeConnections(dir, [
    chaosConnection('storm', crm.url, {
      retry: { attempts: 3, delay: '200ms', jitter: false, maxRetryAfter: '5s' },
    }),
    chaosConnection('storm-batched', crm.url, {
      batched: true,
      retry: { attempts: 3, delay: '200ms', jitter: false, maxRetryAfter: '5s' },
    }),
  ]);
  engine = await spawnEngine(
    engineEnv({ REDIS_PREFIX: prefix, CONNECTIONS_DIR: dir, WORKER_CONCURRENCY: '50' }),
  );
});

afterAll(() => tearDown({ engines: [engine], closers: [crm], dir, prefix }));

it('delivers everything after a storm of 429s with Retry-After, spending no attempt on it', async () => {
  const admin = adminClient(engine!.url);
  const key = await admin.createKey('acme');
  const http = client(engine!.url, 4);
  const emails = Array.from({ length: COUNT }, (_, i) => `storm${i}@example.com`);
  const answers = await postAll(
    http,
    key,
    emails.map((email) => ({ email })),
  );
  await http.close();
  expect(answers.filter((a) => a.status !== 201)).toEqual([]);
  const onPath = (p: string) => crm.received.filter((r) => r.path === `/${p}`);
  for (const connection of ['storm', 'storm-batched'])
    await eventually(
      `every unsubscribe delivered to ${connection}`,
      () => {
        const delivered = new Set(
          onPath(connection)
            .filter((r) => r.at - stormStart >= STORM_MS)
            .flatMap((r) => emailsIn(r.body)),
        );
        return emails.every((email) => delivered.has(email));
      },
      180_000,
    );
  const views = await settled(
    admin,
    answers.flatMap((a) => [`${a.id}:storm`, `${a.id}:storm-batched`]),
    ['succeeded'],
    120_000,
  );
  await admin.close();
  const during = (p: string) => onPath(p).filter((r) => r.at - stormStart < STORM_MS);
  const busiestSecond = (p: string) => {
    const at = during(p).map((r) => r.at);
    return Math.max(0, ...at.map((start) => at.filter((t) => t >= start && t < start + 1000).length));
  };
  const after = (p: string) => onPath(p).filter((r) => r.at - stormStart >= STORM_MS);
  const lastDelivered = Math.max(...crm.received.map((r) => r.at));
  const figures = {
    unsubscribes: COUNT,
    stormMs: STORM_MS,
    retryAfterSeconds: 1,
    requestsDuringStorm: { unbatched: during('storm').length, batched: during('storm-batched').length },
    busiestSecondDuringStorm: { unbatched: busiestSecond('storm'), batched: busiestSecond('storm-batched') },
    requestsAfterStorm: { unbatched: after('storm').length, batched: after('storm-batched').length },
    deliveredTwice:
      [...counts(after('storm').flatMap((r) => emailsIn(r.body))).values()].filter((n) => n > 1).length +
      [...counts(after('storm-batched').flatMap((r) => emailsIn(r.body))).values()].filter((n) => n > 1)
        .length,
    msFromStormEndToLastDelivery: lastDelivered - stormStart - STORM_MS,
    recordedSucceeded: views.length,
    maxAttemptsMade: Math.max(...views.map((v) => v.attemptsMade)),
  };
  await recordFigures('rate-limit-storm', figures);
  expect(views).toHaveLength(COUNT * 2);
  // Each delivered on its first attempt: the 429s before it spent none (3 would have failed some).
  expect(figures.maxAttemptsMade).toBe(1);
  // After the first second (the requests already in flight when the first 429 came back), a
  // throttled CRM gets one request as each wait ends, not the backlog: at most two per window here
  // (before the gentle reopen: 291 requests in the storm, 100 in one second).
  const windows = STORM_MS / 1000;
  for (const path of ['storm', 'storm-batched'])
    expect(during(path).filter((r) => r.at - stormStart >= 1000).length).toBeLessThanOrEqual(2 * windows);
});
