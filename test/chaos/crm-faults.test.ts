import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ConnectionInput } from '../../src/config/connection-schema.js';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { writeConnections } from '../helpers/engine.js';
import { cli, freePort, spawnEngine, type EngineProcess } from '../helpers/processes.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';
import {
  ADMIN_TOKEN,
  adminClient,
  chaosConnection,
  client,
  emailsIn,
  engineEnv,
  postAll,
  recordFigures,
  settled,
  type DeliveryView,
  tearDown,
} from './support.js';

// A CRM that is down (connection refused), one that refuses (500, 422) and one that accepts and
// never answers, beside a healthy one: each failure is retried or failed as its rule says and shows
// as a failed delivery; replayed once the CRM is back, each is delivered; the hanging CRM never
// holds the healthy connection's deliveries.
const prefix = uniquePrefix('chaos-crm-faults');
const PER_CONNECTION = 5;
const HANG_TIMEOUT = '20s';
let crm: FakeCrm;
let hanging: FakeCrm;
let back: FakeCrm | undefined;
let downPort: number;
let dir: string;
let engine: EngineProcess | undefined;

const failing = ['down', 'refuse500', 'refuse422', 'hanging'] as const;

beforeAll(async () => {
  crm = await startFakeCrm((request) => {
    if (request.path === '/refuse500') return { status: 500, body: '{"error":"boom"}' };
    if (request.path === '/refuse422') return { status: 422, body: '{"error":"unprocessable"}' };
    return { status: 200, body: '{}' };
  });
  hanging = await startFakeCrm(() => ({ status: 200, hang: true }));
  downPort = await freePort();
  dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-chaos-faults-'));
  // The circuit stays out of it: this check is about each delivery's own verdict (an open circuit
  // would hold them as pending instead, which the breaker's own tests cover).
  const fault = (id: string, url: string, extra: Partial<ConnectionInput> = {}) =>
    chaosConnection(id, url, {
      campaigns: [id],
      retry: { attempts: 3, backoff: 'fixed', delay: '100ms', jitter: false },
      circuit: { enabled: false },
      ...extra,
    });
  await writeConnections(dir, [
    fault('down', `http://127.0.0.1:${downPort}`),
    fault('refuse500', crm.url),
    fault('refuse422', crm.url),
    fault('hanging', hanging.url, {
      retry: { attempts: 1 },
      request: {
        ...chaosConnection('hanging', hanging.url).request,
        timeouts: { connect: '2s', headers: HANG_TIMEOUT, body: HANG_TIMEOUT },
      },
    }),
    fault('bystander', crm.url),
  ]);
  engine = await spawnEngine(
    engineEnv({ REDIS_PREFIX: prefix, CONNECTIONS_DIR: dir, WORKER_CONCURRENCY: '4' }),
  );
});

afterAll(() => tearDown({ engines: [engine], closers: [crm, hanging, back], dir, prefix }));

it('fails visibly for a CRM that is down, refusing or hanging, replays once it is back, and a hanging CRM holds no one else', async () => {
  const admin = adminClient(engine!.url);
  const key = await admin.createKey('acme');
  const http = client(engine!.url, 4);
  const post = async (campaign: string) =>
    postAll(
      http,
      key,
      Array.from({ length: PER_CONNECTION }, (_, i) => ({ email: `${campaign}${i}@example.com`, campaign })),
    );
  const ids = new Map<string, string[]>();
  // The hanging CRM first, until it holds requests open: then the healthy connection's turn.
  const hangingAnswers = await post('hanging');
  ids.set(
    'hanging',
    hangingAnswers.map((a) => `${a.id}:hanging`),
  );
  await eventually('the hanging CRM holding requests', () => hanging.received.length >= 1, 60_000);
  for (const campaign of ['down', 'refuse500', 'refuse422', 'bystander']) {
    const answers = await post(campaign);
    expect(answers.filter((a) => a.status !== 201)).toEqual([]);
    ids.set(
      campaign,
      answers.map((a) => `${a.id}:${campaign}`),
    );
  }
  expect(hangingAnswers.filter((a) => a.status !== 201)).toEqual([]);

  const bystander = await settled(admin, ids.get('bystander')!, ['succeeded'], 60_000);
  // Delivered while the hanging CRM still held every request it had been sent.
  const hangingWhenBystanderDone = await Promise.all(
    ids
      .get('hanging')!
      .map(async (id) => (await admin.json<DeliveryView>('GET', `/admin/v1/deliveries/${id}`)).status),
  );
  expect(hangingWhenBystanderDone.every((status) => status === 'pending')).toBe(true);

  const failed = new Map<string, DeliveryView[]>();
  for (const connection of failing)
    failed.set(connection, await settled(admin, ids.get(connection)!, ['failed'], 120_000));
  const reasons = Object.fromEntries(
    failing.map((c) => [c, [...new Set(failed.get(c)!.map((v) => v.failedReason?.split(':')[0]))]]),
  );
  const attemptsMade = Object.fromEntries(
    failing.map((c) => [c, [...new Set(failed.get(c)!.map((v) => v.attemptsMade))]]),
  );
  expect(reasons).toEqual({
    down: ['NETWORK'],
    refuse500: ['HTTP_STATUS'],
    refuse422: ['HTTP_STATUS'],
    hanging: ['HEADERS_TIMEOUT'],
  });
  // 500 and refused connections are temporary: every attempt spent; 422 is permanent: one.
  expect(attemptsMade).toEqual({ down: [3], refuse500: [3], refuse422: [1], hanging: [1] });
  const listed = await admin.json<{ deliveries: DeliveryView[] }>(
    'GET',
    '/admin/v1/deliveries?status=failed&limit=1000',
  );
  expect(listed.deliveries.length).toBe(PER_CONNECTION * failing.length);

  // The CRMs come back.
  crm.respond(() => ({ status: 200, body: '{}' }));
  hanging.respond(() => ({ status: 200, body: '{}' }));
  back = await startFakeCrm(() => ({ status: 200, body: '{}' }), downPort);
  const requestsBeforeReplay = crm.received.length + hanging.received.length;
  // Replayed through the CLI, the admin API's bulk replay and its one-delivery replay.
  const replayCli = cli(['replay', '--connection', 'down', '--yes'], {
    ADMIN_URL: engine!.url,
    ADMIN_TOKEN,
  });
  expect(replayCli.status, replayCli.stderr).toBe(0);
  for (const connection of ['refuse500', 'refuse422'])
    expect(
      (await admin.json<{ replayed: string[] }>('POST', '/admin/v1/replay', { connection })).replayed,
    ).toHaveLength(PER_CONNECTION);
  for (const id of ids.get('hanging')!)
    expect((await admin.call('POST', `/admin/v1/deliveries/${encodeURIComponent(id)}/replay`)).status).toBe(
      202,
    );

  const replayed = await settled(
    admin,
    failing.flatMap((c) => ids.get(c)!),
    ['succeeded'],
    120_000,
  );
  const seen = (fake: FakeCrm, p: string) =>
    new Set(fake.received.filter((r) => r.path === `/${p}`).flatMap((r) => emailsIn(r.body)));
  for (const [connection, fake] of [
    ['down', back],
    ['refuse500', crm],
    ['refuse422', crm],
    ['hanging', hanging],
    ['bystander', crm],
  ] as const)
    expect(seen(fake, connection).size).toBe(PER_CONNECTION);
  await http.close();
  await admin.close();
  await recordFigures('crm-faults', {
    perConnection: PER_CONNECTION,
    failedReasons: reasons,
    attemptsMade,
    hangingTimeout: HANG_TIMEOUT,
    bystanderSucceededWhileHangingPending: bystander.length,
    requests: {
      refuse500: crm.received.filter((r) => r.path === '/refuse500').length,
      refuse422: crm.received.filter((r) => r.path === '/refuse422').length,
      hanging: hanging.received.length,
      downAfterBack: back.received.length,
      afterReplay:
        crm.received.length + hanging.received.length + back.received.length - requestsBeforeReplay,
    },
    replayedThenSucceeded: replayed.length,
  });
});
