import { mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { writeConnections } from '../helpers/engine.js';
import { spawnEngine, type EngineProcess } from '../helpers/processes.js';
import { eventually } from '../helpers/redis.js';
import {
  adminClient,
  chaosConnection,
  client,
  counts,
  emailsIn,
  engineEnv,
  recordFigures,
  settled,
  startOwnRedis,
  type OwnRedis,
  tearDown,
} from './support.js';

// Redis SIGKILLed under load and restarted on the same port and data (AOF, appendfsync everysec as
// docker-compose.yml runs it): every unsubscribe answered 201 reaches the CRM, and ingest answers
// only 201 or the documented 503 while Redis is gone.
let crm: FakeCrm;
let redis: OwnRedis;
let engine: EngineProcess | undefined;
let work: string;
const CONCURRENCY = 4;

beforeAll(async () => {
  crm = await startFakeCrm(() => ({ status: 200, body: '{}', delayMs: 20 }));
  work = await mkdtemp(path.join(tmpdir(), 'unsub-relay-chaos-redis-'));
  redis = await startOwnRedis(path.join(work, 'redis'));
  const connections = path.join(work, 'connections');
  await mkdir(connections);
  await writeConnections(connections, [chaosConnection('redis-crm', crm.url)]);
  engine = await spawnEngine(
    engineEnv({
      REDIS_URL: redis.url,
      REDIS_PREFIX: 'chaos-redis',
      CONNECTIONS_DIR: connections,
      WORKER_CONCURRENCY: String(CONCURRENCY),
    }),
  );
});

afterAll(() => tearDown({ engines: [engine], closers: [crm, redis], dir: work }));

it('loses no accepted unsubscribe when Redis is SIGKILLed under load and restarted', async () => {
  const admin = adminClient(engine!.url);
  const http = client(engine!.url, CONCURRENCY);
  const key = await admin.createKey('acme');
  const answers: Array<{
    email: string;
    status: number;
    id: string;
    phase: string;
    ms: number;
    /** A 503 whose write reached Redis and lost its answer says so: it may have been stored. */
    maybeStored: boolean;
  }> = [];
  const transportErrors: string[] = [];
  let phase = 'before';
  let stop = false;
  let n = 0;
  const writers = Array.from({ length: CONCURRENCY }, async () => {
    while (!stop) {
      const email = `redis${n++}@example.com`;
      const started = Date.now();
      try {
        const answer = await http.request(
          'POST',
          '/v1/unsubscribes',
          { authorization: key, 'content-type': 'application/json' },
          JSON.stringify({ email }),
        );
        const id = answer.status === 201 ? (JSON.parse(answer.body) as { id: string }).id : '';
        const maybeStored = answer.status === 503 && answer.body.includes('may still be stored');
        answers.push({ email, status: answer.status, id, phase, ms: Date.now() - started, maybeStored });
        // While Redis is down, the 503 says retry in 5 s; a quarter second keeps the load on.
        if (answer.status === 503) await new Promise((resolve) => setTimeout(resolve, 250));
      } catch (error) {
        transportErrors.push(`${phase}: ${String(error)}`);
      }
    }
  });
  const accepted = (p: string) => answers.filter((a) => a.phase === p && a.status === 201).length;

  await eventually('load under way', () => accepted('before') >= 150, 60_000);
  const crmBeforeKill = crm.received.length;
  await redis.kill();
  phase = 'down';
  await eventually(
    'ingest answering while Redis is down',
    () => answers.some((a) => a.phase === 'down' && a.status === 503),
    30_000,
  );
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  phase = 'restarting';
  await redis.restart();
  const restartedAt = Date.now();
  phase = 'after';
  await eventually('ingest accepting again', () => accepted('after') >= 150, 90_000);
  stop = true;
  await Promise.all(writers);
  await http.close();

  const statuses = counts(answers.map((a) => String(a.status)));
  const acceptedAll = answers.filter((a) => a.status === 201);
  const wanted = new Set(acceptedAll.map((a) => a.email));
  const delivered = await eventually(
    `all ${wanted.size} accepted unsubscribes at the CRM`,
    () => {
      const seen = new Set(crm.received.flatMap((r) => emailsIn(r.body)));
      return [...wanted].every((email) => seen.has(email)) ? seen : undefined;
    },
    180_000,
  ).catch((error: Error) => {
    const seen = new Set(crm.received.flatMap((r) => emailsIn(r.body)));
    const missing = [...wanted].filter((email) => !seen.has(email));
    throw new Error(`${error.message}; ${missing.length} missing, e.g. ${missing.slice(0, 5).join(', ')}`);
  });
  const views = await settled(
    admin,
    acceptedAll.map((a) => `${a.id}:redis-crm`),
    ['succeeded'],
    120_000,
  );
  const received = counts(crm.received.flatMap((r) => emailsIn(r.body)));
  const duplicates = [...received.values()].filter((c) => c > 1).length;
  // At-least-once (docs/architecture.md): only a delivery in flight when Redis went (sent, its
  // completion never written) may be sent again. One first sent after Redis was back, then again,
  // would be a delivery recorded and re-sent.
  const firstSent = new Map<string, number>();
  for (const request of crm.received)
    for (const email of emailsIn(request.body)) if (!firstSent.has(email)) firstSent.set(email, request.at);
  const resentAfterRecovery = [...received]
    .filter(([email, c]) => c > 1 && firstSent.get(email)! >= restartedAt)
    .map(([email]) => email);
  // A 503 that said "not stored" must mean it; one that said the write may still be stored (Redis
  // died between taking the MULTI and answering) may be delivered, as that answer warned.
  const mayBeStored = new Set(answers.filter((a) => a.maybeStored).map((a) => a.email));
  const notAccepted = [...received.keys()].filter((email) => !wanted.has(email) && !mayBeStored.has(email));
  const figures = {
    posted: answers.length,
    accepted: acceptedAll.length,
    statuses: Object.fromEntries(statuses),
    answered503WhileDown: answers.filter((a) => a.status === 503).length,
    slowest503Ms: Math.max(0, ...answers.filter((a) => a.status === 503).map((a) => a.ms)),
    transportErrors: transportErrors.length,
    crmRequestsBeforeKill: crmBeforeKill,
    crmRequests: crm.received.length,
    deliveredDistinct: delivered.size,
    deliveredTwice: duplicates,
    deliveredTwiceFirstSentAfterRestart: resentAfterRecovery.length,
    deliveredWithout201: notAccepted.length,
    answered503MaybeStored: mayBeStored.size,
    deliveredAfter503MaybeStored: [...received.keys()].filter((e) => mayBeStored.has(e)).length,
    recordedSucceeded: views.length,
  };
  await recordFigures('redis-restart', figures);
  await admin.close();

  expect(transportErrors).toEqual([]);
  expect([...statuses.keys()].filter((s) => s !== '201' && s !== '503')).toEqual([]);
  expect(engine!.child.exitCode).toBeNull();
  expect(views.every((v) => v.status === 'succeeded')).toBe(true);
  // A 503 that said nothing was stored never reaches the CRM.
  expect(notAccepted).toEqual([]);
  expect(resentAfterRecovery).toEqual([]);
});
