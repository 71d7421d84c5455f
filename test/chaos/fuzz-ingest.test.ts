import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { writeConnections } from '../helpers/engine.js';
import { spawnEngine, type EngineProcess } from '../helpers/processes.js';
import { uniquePrefix } from '../helpers/redis.js';
import {
  adminClient,
  chaosConnection,
  client,
  counts,
  engineEnv,
  recordFigures,
  tearDown,
} from './support.js';

// 20,000 hostile requests at a running engine: arbitrary JSON and non-JSON bodies, wrong types,
// huge and Unicode strings, wrong content types, bad keys, other methods and paths. Redis is up, so
// not one may answer 5xx (the documented 503 is for Redis unavailable only).
const prefix = uniquePrefix('chaos-fuzz');
const RUNS = Number(process.env.CHAOS_FUZZ_RUNS ?? 20_000);
const SEED = Number(process.env.CHAOS_FUZZ_SEED ?? 18_2026);
const PARALLEL = 16;
let crm: FakeCrm;
let dir: string;
let engine: EngineProcess | undefined;

interface Spec {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

beforeAll(async () => {
  crm = await startFakeCrm();
  dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-chaos-fuzz-'));
  await writeConnections(dir, [chaosConnection('fuzzed', crm.url)]);
  // The API role alone: accepted unsubscribes are stored with their deliveries, and the cores go
  // to the API under test rather than to delivering them.
  engine = await spawnEngine(
    engineEnv({ REDIS_PREFIX: prefix, CONNECTIONS_DIR: dir, ROLES: 'api', LOG_LEVEL: 'warn' }),
  );
});

afterAll(() => tearDown({ engines: [engine], closers: [crm], dir, prefix }));

function specs(key: string): Spec[] {
  const ascii = (max: number) => fc.string({ unit: 'grapheme-ascii', maxLength: max });
  const unicode = (max: number) => fc.string({ unit: 'grapheme', maxLength: max });
  const huge = fc.integer({ min: 256, max: 40_000 }).map((n) => 'é'.repeat(n));
  const anyValue = fc.oneof(
    unicode(40),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }),
    fc.dictionary(ascii(8), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
    huge,
  );
  const email = fc.oneof(
    { weight: 4, arbitrary: fc.emailAddress() },
    { weight: 2, arbitrary: fc.tuple(unicode(20), unicode(12)).map(([l, d]) => `${l}@${d}.example`) },
    { weight: 1, arbitrary: fc.constant('"john doe"@example.com') },
    { weight: 1, arbitrary: fc.constant(' Jane@Example.com ') },
    { weight: 2, arbitrary: anyValue },
  );
  const object = fc.record(
    {
      email,
      campaign: fc.oneof(ascii(20), unicode(300), anyValue),
      occurredAt: fc.oneof(
        fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
        ascii(30),
        anyValue,
      ),
      source: fc.oneof(unicode(300), anyValue),
      attributes: fc.oneof(
        fc.dictionary(unicode(70), unicode(1_100), { maxKeys: 60 }),
        fc.dictionary(ascii(10), anyValue, { maxKeys: 4 }),
        anyValue,
      ),
      extra: fc.dictionary(unicode(20), anyValue, { maxKeys: 14 }),
    },
    { requiredKeys: [] },
  );
  const plausible = fc
    .record(
      {
        email: fc.oneof(fc.emailAddress(), email),
        campaign: fc.oneof(fc.stringMatching(/^[a-z0-9-]{1,20}$/), unicode(30)),
        source: unicode(30),
        attributes: fc.dictionary(ascii(10), unicode(20), { maxKeys: 3 }),
      },
      { requiredKeys: ['email'] },
    )
    .map((value) => JSON.stringify(value));
  const body = fc.oneof(
    { weight: 8, arbitrary: plausible },
    {
      weight: 8,
      arbitrary: object.map(({ extra, ...rest }) => JSON.stringify({ ...(extra ?? {}), ...rest })),
    },
    { weight: 2, arbitrary: fc.json({ maxDepth: 4 }) },
    { weight: 1, arbitrary: unicode(200) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 9_000 }).map((n) => '['.repeat(n) + ']'.repeat(n)) },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 1, max: 9_000 }).map((n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n)),
    },
    { weight: 1, arbitrary: fc.constant('') },
    { weight: 1, arbitrary: fc.constant('{"email":"a@example.com"') },
    { weight: 1, arbitrary: fc.constant('{"email":"a@example.com","__proto__":{"polluted":true}}') },
    { weight: 1, arbitrary: fc.constant('{"email":"a@example.com","constructor":{"prototype":{"x":1}}}') },
    { weight: 1, arbitrary: huge.map((s) => JSON.stringify({ email: 'a@example.com', campaign: s })) },
  );
  // Mostly the right value, so most requests get past one check to the next one's fuzz.
  const header = (values: string[]) =>
    fc.oneof(
      { weight: 14, arbitrary: fc.constant(values[0]) },
      { weight: 3, arbitrary: fc.constantFrom(...values.slice(1)) },
      { weight: 1, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: ascii(60) },
    );
  const spec = fc.record({
    method: fc.oneof(
      { weight: 12, arbitrary: fc.constant('POST') },
      { weight: 1, arbitrary: fc.constantFrom('GET', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD', 'TRACE') },
    ),
    path: fc.oneof(
      { weight: 14, arbitrary: fc.constant('/v1/unsubscribes') },
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          '/v1/unsubscribes/',
          '/v1/unsubscribes?email=a@example.com',
          '/v1/UNSUBSCRIBES',
          '/v1/unsubscribes/%ff',
          '/v1/unsubscribes/..%2f..%2fadmin',
          '//v1/unsubscribes',
          '/admin/v1/deliveries',
          '/admin/v1/connections/..%2f',
          '/admin/v1/replay',
          '/admin/v1/keys',
          '/admin/queues',
          '/sandbox/crm/x',
          '/readyz',
          '/healthz',
          '/metrics',
          '/%00',
        ),
      },
      { weight: 1, arbitrary: fc.webPath().map((p) => p || '/') },
    ),
    contentType: header([
      'application/json',
      'application/json; charset=utf-8',
      'application/json; charset=utf-16',
      'APPLICATION/JSON',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/json, text/plain',
      '',
    ]),
    authorization: header([key, `Bearer ${key}`, `${key}x`, 'urk_nope', 'Bearer', `Basic ${key}`]),
    accept: fc.oneof(
      fc.constant(undefined),
      header(['application/json', '*/*', 'text/html', 'application/xml', '']),
    ),
    idempotencyKey: fc.option(
      fc.oneof(ascii(40), fc.string({ unit: 'grapheme-ascii', minLength: 250, maxLength: 300 })),
      {
        freq: 4,
      },
    ),
    body,
  });
  return fc.sample(spec, { numRuns: RUNS, seed: SEED }).map((s) => {
    const headers: Record<string, string> = {};
    if (s.contentType !== undefined) headers['content-type'] = s.contentType;
    if (s.authorization !== undefined) headers.authorization = s.authorization;
    if (s.accept !== undefined) headers.accept = s.accept;
    if (s.idempotencyKey !== null) headers['idempotency-key'] = s.idempotencyKey;
    const withBody = s.method !== 'GET' && s.method !== 'HEAD';
    return { method: s.method, path: s.path, headers, ...(withBody ? { body: s.body } : {}) };
  });
}

it(`answers ${RUNS} fuzzed ingest requests without a single 5xx`, async () => {
  const admin = adminClient(engine!.url);
  const key = await admin.createKey('acme');
  await admin.close();
  const generated = Date.now();
  const all = specs(key);
  const generateMs = Date.now() - generated;
  const http = client(engine!.url, PARALLEL);
  const statuses: number[] = [];
  const accepted = new Set<string>();
  const serverErrors: Array<{ spec: Spec; status: number; body: string }> = [];
  const unsendable: string[] = [];
  const transport: string[] = [];
  let next = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next < all.length) {
        const spec = all[next++]!;
        try {
          const answer = await http.request(spec.method, spec.path, spec.headers, spec.body);
          statuses.push(answer.status);
          if (answer.status === 201) accepted.add((JSON.parse(answer.body) as { id: string }).id);
          if (answer.status >= 500) serverErrors.push({ spec, status: answer.status, body: answer.body });
        } catch (error) {
          const name = (error as { code?: string }).code ?? (error as Error).name;
          // undici refuses to send some generated requests at all (a header it cannot encode, a
          // path with a control character): those never reach the engine.
          if (name === 'UND_ERR_INVALID_ARG') unsendable.push((error as Error).message);
          else transport.push(`${name}: ${(error as Error).message} (${spec.method} ${spec.path})`);
        }
      }
    }),
  );
  const sendMs = Date.now() - started;
  await http.close();
  const ready = await fetch(`${engine!.url}/readyz`);
  // Every accepted one, however odd its address or fields, is stored with its delivery.
  const stored = adminClient(engine!.url);
  const missing: string[] = [];
  for (const id of accepted) {
    const answer = await stored.call('GET', `/admin/v1/accounts/acme/unsubscribes/${id}`);
    const view = answer.status === 200 ? (JSON.parse(answer.body) as { deliveries?: unknown[] }) : {};
    if (!view.deliveries?.length) missing.push(`${id}: ${answer.status} ${answer.body.slice(0, 200)}`);
  }
  await stored.close();
  const logs = engine!.logs();
  const figures = {
    requests: all.length,
    seed: SEED,
    answered: statuses.length,
    statuses: Object.fromEntries([...counts(statuses.map(String))].sort()),
    acceptedDistinct: accepted.size,
    acceptedNotStored: missing.length,
    serverErrors: serverErrors.length,
    unsendable: unsendable.length,
    transportErrors: transport.length,
    transportExamples: [...new Set(transport)].slice(0, 5),
    generateMs,
    sendMs,
    requestsPerSecond: Math.round((statuses.length / sendMs) * 1000),
    engineErrorLogLines: logs.split('\n').filter((line) => /"level":(50|60)/.test(line)).length,
  };
  await recordFigures('fuzz-ingest', figures);
  expect(
    serverErrors.slice(0, 5).map((e) => ({
      ...e,
      spec: { ...e.spec, body: e.spec.body?.slice(0, 300) },
    })),
  ).toEqual([]);
  expect(missing.slice(0, 5)).toEqual([]);
  expect(engine!.child.exitCode).toBeNull();
  expect(ready.status).toBe(200);
  expect(figures.engineErrorLogLines).toBe(0);
});
