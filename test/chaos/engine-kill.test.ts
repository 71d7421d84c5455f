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

// An engine SIGKILLed while both a batched and an unbatched connection have requests in flight:
// a new engine takes over, and every accepted unsubscribe reaches both CRMs' endpoints.
const prefix = uniquePrefix('chaos-engine-kill');
const COUNT = 120;
const CONCURRENCY = 8;
let crm: FakeCrm;
let dir: string;
const engines: EngineProcess[] = [];
let env: Record<string, string>;

beforeAll(async () => {
  // Until the kill the CRM answers nothing, so the killed engine has requests in flight for sure
  // (answers after a delay raced the POSTs on a loaded machine: see test/e2e/crash-batch.test.ts).
  crm = await startFakeCrm(() => ({ status: 200, body: '{}', hang: true }));
  dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-chaos-kill-'));
  await writeConnections(dir, [
    chaosConnection('single', crm.url),
    chaosConnection('batched', crm.url, { batched: true }),
  ]);
  env = engineEnv({ REDIS_PREFIX: prefix, CONNECTIONS_DIR: dir, WORKER_CONCURRENCY: String(CONCURRENCY) });
});

afterAll(() => tearDown({ engines, closers: [crm], dir, prefix }));

it('delivers everything to a batched and an unbatched connection after the engine is SIGKILLed mid-drain', async () => {
  const first = await spawnEngine(env);
  engines.push(first);
  const admin = adminClient(first.url);
  const key = await admin.createKey('acme');
  const http = client(first.url, 4);
  const emails = Array.from({ length: COUNT }, (_, i) => `kill${i}@example.com`);
  const answers = await postAll(
    http,
    key,
    emails.map((email) => ({ email })),
  );
  await http.close();
  await admin.close();
  expect(answers.filter((a) => a.status !== 201)).toEqual([]);
  const onPath = (p: string) => crm.received.filter((r) => r.path === `/${p}`);
  await eventually(
    'requests in flight to both connections',
    () => onPath('single').length >= CONCURRENCY / 2 && onPath('batched').length >= 1,
    60_000,
  );
  const inFlight = { single: onPath('single').length, batched: onPath('batched').length };
  const inFlightEmails = new Set(crm.received.flatMap((r) => emailsIn(r.body)));
  first.child.kill('SIGKILL');
  await first.exited;
  const beforeRestart = crm.received.length;
  crm.respond(() => ({ status: 200, body: '{}', delayMs: 20 }));

  const second = await spawnEngine(env);
  engines.push(second);
  const after = adminClient(second.url);
  for (const connection of ['single', 'batched'])
    await eventually(
      `every unsubscribe at /${connection}`,
      () => {
        const seen = new Set(
          onPath(connection)
            .slice(0)
            .flatMap((r) => emailsIn(r.body)),
        );
        return emails.every((email) => seen.has(email));
      },
      180_000,
    );
  const views = await settled(
    after,
    answers.flatMap((a) => [`${a.id}:single`, `${a.id}:batched`]),
    ['succeeded'],
    120_000,
  );
  await after.close();
  // Only what was in flight at the kill (sent, never answered) may reach the CRM twice.
  const answeredAfter = crm.received.slice(beforeRestart);
  const twice = (p: string) =>
    [...counts(answeredAfter.filter((r) => r.path === `/${p}`).flatMap((r) => emailsIn(r.body)))].filter(
      ([, n]) => n > 1,
    ).length;
  const figures = {
    unsubscribes: COUNT,
    requestsInFlightAtKill: inFlight,
    addressesInFlightAtKill: inFlightEmails.size,
    requestsAfterRestart: {
      single: answeredAfter.filter((r) => r.path === '/single').length,
      batched: answeredAfter.filter((r) => r.path === '/batched').length,
    },
    deliveredTwiceAfterRestart: { single: twice('single'), batched: twice('batched') },
    recordedSucceeded: views.length,
  };
  await recordFigures('engine-kill', figures);
  expect(views).toHaveLength(COUNT * 2);
  expect(twice('single') + twice('batched')).toBe(0);
});
