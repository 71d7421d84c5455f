import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ConnectionInput } from '../../src/config/connection-schema.js';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { writeConnections } from '../helpers/engine.js';
import { spawnEngine, type EngineProcess, cliAsync } from '../helpers/processes.js';
import { REDIS_URL, uniquePrefix } from '../helpers/redis.js';
import {
  ADMIN_TOKEN,
  adminClient,
  chaosConnection,
  client,
  engineEnv,
  postAll,
  recordFigures,
  settled,
  type DeliveryView,
  tearDown,
} from './support.js';
import { redisValues, secretForms } from './secret-scan.js';

// Connections holding every kind of secret deliver, fail, are tested, rendered and replayed; then
// no secret value (raw, URL-encoded, base64, base64url, JSON-escaped) appears in the engine's logs,
// any Redis value under its prefix, any admin answer, CLI output or /metrics.
const prefix = uniquePrefix('chaos-secrets');
// Each has characters that URL-encoding and base64 change, so every form differs from the raw one.
const SECRETS = {
  CHAOS_BEARER: 'zqBEARER+7f3a/9c=Tk',
  CHAOS_BASIC: 'zqBASIC+51e0/d2=Pw',
  CHAOS_OAUTH: 'zqOAUTH+88c1/ab=Cs',
  CHAOS_HMAC: 'zqHMAC+b07e/44=Ky',
  CHAOS_APIKEY: 'zqAPIKEY+3d21/f0=Ak',
  CHAOS_URLKEY: 'zqURLKEY+6a6a/11=Uk',
  CHAOS_HEADER: 'zqHEADER+9e9e/22=Hd',
  CHAOS_BODY: 'zqBODY+4c4c/33=Bd',
};
const BASIC_USER = 'svc-chaos';
// What the fake token endpoint issues: a credential too, though Redis caches it until it expires.
const ACCESS_TOKEN = 'zqACCESS+5b5b/44=At';
const CONNECTIONS = ['sec-bearer', 'sec-basic', 'sec-oauth', 'sec-hmac', 'sec-apikey', 'sec-url'];
let crm: FakeCrm;
let dir: string;
let engine: EngineProcess | undefined;
let failing = false;

beforeAll(async () => {
  crm = await startFakeCrm((request) => {
    if (request.path === '/oauth/token')
      return {
        status: 200,
        body: JSON.stringify({ access_token: ACCESS_TOKEN, token_type: 'Bearer', expires_in: 3600 }),
      };
    return failing ? { status: 422, body: '{"error":"refused"}' } : { status: 200, body: '{}' };
  });
  dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-chaos-secrets-'));
  const base = (
    id: string,
    auth: ConnectionInput['request']['auth'],
    extra: Record<string, unknown> = {},
  ) => {
    const connection = chaosConnection(id, crm.url, {
      campaigns: [id],
      testing: { email: `test-${id}@example.com` },
      retry: { attempts: 2, backoff: 'fixed', delay: '100ms', jitter: false },
    });
    return { ...connection, request: { ...connection.request, auth, ...extra } };
  };
  await writeConnections(dir, [
    base(
      'sec-bearer',
      { type: 'bearer', token: "{{secret 'CHAOS_BEARER'}}" },
      {
        headers: { 'X-Extra': "{{secret 'CHAOS_HEADER'}}" },
        body: { json: { email: '{{email}}', key: "{{secret 'CHAOS_BODY'}}" } },
      },
    ),
    base('sec-basic', { type: 'basic', username: BASIC_USER, password: "{{secret 'CHAOS_BASIC'}}" }),
    base('sec-oauth', {
      type: 'oauth2_client_credentials',
      tokenUrl: `${crm.url}/oauth/token`,
      clientId: 'chaos-client',
      clientSecret: "{{secret 'CHAOS_OAUTH'}}",
    }),
    base('sec-hmac', { type: 'hmac', secret: "{{secret 'CHAOS_HMAC'}}", timestampHeader: 'X-Timestamp' }),
    base('sec-apikey', { type: 'api_key', header: 'X-Api-Key', value: "{{secret 'CHAOS_APIKEY'}}" }),
    base('sec-url', { type: 'none' }, { url: `${crm.url}/sec-url?api_key={{secret 'CHAOS_URLKEY'}}` }),
  ]);
  engine = await spawnEngine(
    engineEnv({ REDIS_PREFIX: prefix, CONNECTIONS_DIR: dir, LOG_LEVEL: 'trace', ...SECRETS }),
  );
});

afterAll(() => tearDown({ engines: [engine], closers: [crm], dir, prefix }));

it('shows no secret in logs, Redis, admin answers, CLI output or metrics after deliveries, failures, tests, renders and replays', async () => {
  const admin = adminClient(engine!.url);
  const key = await admin.createKey('acme');
  const http = client(engine!.url, 4);
  const post = (tag: string) =>
    postAll(
      http,
      key,
      CONNECTIONS.flatMap((c) => [0, 1].map((i) => ({ email: `${tag}${i}@example.com`, campaign: c }))),
    );
  const deliveredAnswers = await post('ok');
  expect(deliveredAnswers.filter((a) => a.status !== 201)).toEqual([]);
  const deliveredIds = await deliveryIdsOf(
    admin,
    deliveredAnswers.map((a) => a.id),
  );
  const delivered = await settled(admin, deliveredIds, ['succeeded'], 120_000);

  failing = true;
  const failedAnswers = await post('no');
  const failedIds = await deliveryIdsOf(
    admin,
    failedAnswers.map((a) => a.id),
  );
  const failed = await settled(admin, failedIds, ['failed'], 120_000);
  await http.close();

  const cliOutputs: string[] = [];
  const cliEnv = { ADMIN_URL: engine!.url, ADMIN_TOKEN, ...SECRETS };
  for (const connection of CONNECTIONS) {
    await admin.call('POST', `/admin/v1/connections/${connection}/test`, { dryRun: true });
    await admin.call('POST', `/admin/v1/connections/${connection}/test`, {});
    await admin.call('GET', `/admin/v1/connections/${connection}/tests`);
    await admin.call('GET', `/admin/v1/connections/${connection}`);
    await admin.call('GET', `/admin/v1/connections/${connection}/versions`);
    for (const args of [
      ['render', connection, '--email', 'render@example.com', '--dir', dir],
      ['test', connection, '--dry-run'],
      ['test', connection],
    ]) {
      const run = await cliAsync(args, cliEnv);
      cliOutputs.push(`$ ${args.join(' ')} (${run.status})\n${run.stdout}\n${run.stderr}`);
    }
  }
  failing = false;
  for (const connection of CONNECTIONS) await admin.call('POST', '/admin/v1/replay', { connection });
  const replayed = await settled(admin, failedIds, ['succeeded'], 120_000);
  for (const id of [...deliveredIds, ...failedIds])
    await admin.call('GET', `/admin/v1/deliveries/${encodeURIComponent(id)}`);
  for (const args of [
    ['deliveries', 'show', failedIds[0]!],
    ['deliveries', 'list', '--status', 'succeeded'],
    ['connections', 'show', 'sec-oauth'],
  ]) {
    const run = await cliAsync(args, cliEnv);
    cliOutputs.push(`$ ${args.join(' ')} (${run.status})\n${run.stdout}\n${run.stderr}`);
  }
  for (const pathname of [
    '/admin/v1/connections',
    '/admin/v1/deliveries?limit=1000',
    '/admin/v1/deliveries?status=failed&limit=1000',
    '/admin/v1/events?limit=1000',
    '/admin/v1/backlogs',
    '/admin/v1/replays',
    '/admin/v1/accounts/acme/unsubscribes',
    '/admin/v1/accounts/acme/audit',
    '/readyz',
  ])
    await admin.call('GET', pathname);
  const metrics = await (await fetch(`${engine!.url}/metrics`)).text();
  await admin.close();

  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  const values = await redisValues(redis, prefix);
  redis.disconnect();

  const secrets: Record<string, string> = {
    ...SECRETS,
    BASIC_HEADER: Buffer.from(`${BASIC_USER}:${SECRETS.CHAOS_BASIC}`).toString('base64'),
    ADMIN_TOKEN,
  };
  const scanned: Array<[string, string]> = [
    ['engine logs', engine!.logs()],
    ['/metrics', metrics],
    ...admin.answers.map((answer) => [`admin ${answer.split('\n')[0]}`, answer] as [string, string]),
    ...cliOutputs.map((output) => [`cli ${output.split('\n')[0]}`, output] as [string, string]),
  ];
  const findings: string[] = [];
  const look = (where: string, text: string, names: Record<string, string>) => {
    for (const [name, value] of Object.entries(names))
      for (const [form, encoded] of Object.entries(secretForms(value)))
        if (text.includes(encoded)) findings.push(`${name} (${form}) in ${where}`);
  };
  for (const [where, text] of scanned) look(where, text, { ...secrets, ACCESS_TOKEN });
  // The OAuth2 token cache holds the access token until it expires, by design (README "Retention").
  for (const [redisKey, text] of values) look(`redis ${redisKey}`, text, secrets);
  const accessTokenKeys = values.filter(([, text]) => text.includes(ACCESS_TOKEN)).map(([k]) => k);

  // The scan can see them: each credential did travel to the CRM (the HMAC key only as signatures,
  // the Basic password inside its header, the client secret in the token request's form).
  const atCrm = crm.received.map((r) => `${r.path}\n${JSON.stringify(r.headers)}\n${r.body}`).join('\n');
  const sent = Object.entries({ ...secrets, ACCESS_TOKEN })
    .filter(([, value]) => Object.values(secretForms(value)).some((form) => atCrm.includes(form)))
    .map(([name]) => name);
  expect(sent.sort()).toEqual(
    [...Object.keys(SECRETS), 'BASIC_HEADER', 'ACCESS_TOKEN']
      .filter((name) => name !== 'CHAOS_HMAC' && name !== 'CHAOS_BASIC')
      .sort(),
  );
  expect(
    crm.received.some((r) => r.path === '/sec-hmac' && typeof r.headers['x-signature'] === 'string'),
  ).toBe(true);

  await recordFigures('secrets', {
    secrets: Object.keys(secrets).length + 1,
    formsEach: Object.keys(secretForms('x')).length,
    delivered: delivered.length,
    failedThenReplayed: replayed.length,
    failedCodes: [...new Set(failed.map((v: DeliveryView) => v.failedReason?.split(':')[0]))],
    crmRequests: crm.received.length,
    engineLogBytes: engine!.logs().length,
    redisKeysRead: values.length,
    adminAnswers: admin.answers.length,
    cliRuns: cliOutputs.length,
    metricsBytes: metrics.length,
    accessTokenCachedIn: accessTokenKeys,
    findings,
  });
  expect(findings).toEqual([]);
}, 600_000);

/** A delivery's id is `<unsubscribe id>:<connection id>`; each unsubscribe here went to one connection. */
async function deliveryIdsOf(
  admin: ReturnType<typeof adminClient>,
  unsubscribeIds: string[],
): Promise<string[]> {
  const all = await admin.json<{ deliveries: DeliveryView[] }>('GET', '/admin/v1/deliveries?limit=1000');
  const wanted = new Set(unsubscribeIds);
  // A delivery moving between states as the list is read can be listed twice.
  const found = [...new Set(all.deliveries.filter((d) => wanted.has(d.unsubscribeId)).map((d) => d.id))];
  if (found.length !== unsubscribeIds.length)
    throw new Error(`${found.length} deliveries for ${unsubscribeIds.length} unsubscribes`);
  return found;
}
