import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionInput } from '../../src/config/connection-schema.js';
import type { Backlog } from '../../src/store/backlogs.js';
import { batchedConnection } from '../helpers/batch.js';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { ROOT } from '../helpers/processes.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';

// Issue 18, the delivery path: one engine, one loopback CRM per connection, each linked to the
// campaign of its own name so an unsubscribe reaches exactly the connection a test means.
const ADMIN = 'test-admin-token-0123456789';
const names = ['unicode', 'throttled', 'postmark', 'wronglist', 'nosplit', 'nosecret', 'bodykept'] as const;
type Name = (typeof names)[number];
const crms = {} as Record<Name, FakeCrm>;
let engine: TestEngine;

function conn(name: Name, overrides: Partial<ConnectionInput> = {}): ConnectionInput {
  return crmConnection(name, crms[name].url, { campaigns: [name], dedupe: { window: 0 }, ...overrides });
}

async function admin<T>(path: string): Promise<T> {
  const response = await fetch(`${engine.url}/admin/v1${path}`, {
    headers: { authorization: `Bearer ${ADMIN}` },
  });
  return (await response.json()) as T;
}

async function send(campaign: string, emails: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const email of emails) {
    const response = await engine.unsubscribe('acme', { email, campaign });
    expect(response.status).toBe(201);
    ids.push(`${response.body.id as string}:${campaign}`);
  }
  return ids;
}

beforeAll(async () => {
  process.env.TEST_CRM_TOKEN = 'delivery-path-token';
  for (const name of names) crms[name] = await startFakeCrm();
  engine = await startTestEngine(uniquePrefix('delivery-path'), [
    conn('unicode', {
      request: {
        method: 'POST',
        url: `${crms.unicode.url}/v3/suppressions`,
        auth: { type: 'bearer', token: "{{secret 'TEST_CRM_TOKEN'}}" },
        headers: { 'X-Email': '{{email}}' },
        body: { json: { email: '{{email}}' } },
        timeouts: { connect: '1s', headers: '1s', body: '1s' },
      },
      // Three failures open the circuit for a minute: long past any wait below.
      circuit: { failures: 3, warnAfter: 2, cooldown: '60s' },
      retry: { attempts: 5, backoff: 'fixed', delay: '50ms', jitter: false },
    }),
    conn('throttled'),
    batchedConnection('postmark', crms.postmark.url, {
      response: {
        rules: [
          {
            when: { status: 200, json: { path: '$[?(@.ErrorCode==406)].To', contains: '{{email}}' } },
            then: 'fail',
            reason: 'Postmark refused {{email}} for {{campaign}}: {{response.item.Message}}',
          },
          { when: { status: 200 }, then: 'success' },
        ],
      },
    }),
    batchedConnection('wronglist', crms.wronglist.url, {}, '1s'),
    conn('bodykept', {
      request: {
        method: 'POST',
        url: `${crms.bodykept.url}/v3/suppressions`,
        auth: { type: 'bearer', token: "{{secret 'TEST_CRM_TOKEN'}}" },
        body: { json: { email: '{{email}}', key: "{{secret 'TEST_CRM_TOKEN'}}" } },
      },
    }),
    conn('nosecret', {
      request: {
        method: 'POST',
        url: `${crms.nosecret.url}/v3/suppressions`,
        auth: { type: 'bearer', token: "{{secret 'DELIVERY_PATH_UNSET_KEY'}}" },
        body: { json: { email: '{{email}}' } },
      },
    }),
    batchedConnection(
      'nosplit',
      crms.nosplit.url,
      {
        response: {
          rules: [
            {
              when: { status: 422 },
              then: 'fail',
              split: false,
              reason: 'list {{response.body.list}} not found',
            },
          ],
        },
      },
      '1s',
    ),
  ]);
});

afterAll(async () => {
  await engine?.close();
  await Promise.all(Object.values(crms).map((crm) => crm.close()));
});

describe('a request the HTTP client cannot build (a Unicode email in a header)', () => {
  it('fails that delivery alone as a template error, and never counts against the CRM', async () => {
    const unicode = await send(
      'unicode',
      Array.from({ length: 6 }, (_, i) => `jürgen${i}@例え.jp`),
    );
    const failed = await eventually('the Unicode deliveries failed', async () => {
      const all = await Promise.all(unicode.map((id) => engine.records.get(id)));
      return all.every((d) => d.status === 'failed') ? all : undefined;
    });
    for (const delivery of failed) {
      // One attempt, permanent: no retry of a request that can never be built.
      expect(delivery.attempts).toHaveLength(1);
      expect(delivery.attempts[0]).toMatchObject({ verdict: 'fail', errorCode: 'TEMPLATE_ERROR' });
      expect(delivery.attempts[0]!.reason).toContain('request.headers.X-Email');
    }
    expect(crms.unicode.received).toHaveLength(0);

    const [ordinary] = await send('unicode', ['plain@example.com']);
    await eventually(
      'the ordinary delivery went through',
      async () => (await engine.records.get(ordinary!)).status === 'succeeded',
    );
    expect(crms.unicode.received).toHaveLength(1);
    const backlog = await admin<Backlog>('/connections/unicode/backlog');
    expect(backlog.control).toMatchObject({ circuit: 'closed', consecutiveFailures: 0 });
  });
});

describe('a CRM that answers 429 with Retry-After to every request for a while', () => {
  it('gets one request when each wait ends, and the configured rate only once it stops throttling', async () => {
    const answered429 = new Set<number>();
    let throttleUntil = 0;
    crms.throttled.respond((_request, i) => {
      if (Date.now() < throttleUntil) {
        answered429.add(i);
        return { status: 429, headers: { 'retry-after': '1' }, body: '{"error":"slow down"}' };
      }
      return { status: 200, body: '{"ok":true}' };
    });
    throttleUntil = Date.now() + 3_500;
    const ids = await send(
      'throttled',
      Array.from({ length: 12 }, (_, i) => `t${i}@example.com`),
    );
    await eventually('all delivered', async () => {
      const all = await Promise.all(ids.map((id) => engine.records.get(id)));
      return all.every((d) => d.status === 'succeeded');
    });
    // Requests in one window arrive together; windows are a Retry-After (1 s) apart. Counted per
    // window: the first (before any 429 was heard) may carry many, every later window that was
    // answered 429 exactly one.
    const windows: number[][] = [];
    crms.throttled.received.forEach((request, i) => {
      const last = windows.at(-1);
      if (last && request.at - crms.throttled.received[last.at(-1)!]!.at < 400) last.push(i);
      else windows.push([i]);
    });
    const throttledWindows = windows.slice(1).filter((w) => w.some((i) => answered429.has(i)));
    expect(throttledWindows.length).toBeGreaterThanOrEqual(2);
    expect(throttledWindows.map((w) => w.length)).toEqual(throttledWindows.map(() => 1));
    // Once a reopening request was not throttled, the rest went at the configured rate (all of it).
    expect(crms.throttled.received.length - answered429.size).toBe(12);
  });
});

describe("a rule's reason as a template over the delivery and the answer", () => {
  it("puts the batch item's own message from the CRM in its attempt record", async () => {
    crms.postmark.respond((request) => {
      const emails = (JSON.parse(request.body) as { emails: string[] }).emails;
      const results = emails.map((To) =>
        To.startsWith('inactive')
          ? { ErrorCode: 406, Message: `Address ${To} is inactive`, To }
          : { ErrorCode: 0, Message: 'OK', To },
      );
      return { status: 200, body: JSON.stringify(results) };
    });
    const [ok, inactive] = await send('postmark', ['fine@example.com', 'inactive@example.com']);
    const refused = await eventually('the inactive address failed', async () => {
      const d = await engine.records.get(inactive!);
      return d.status === 'failed' ? d : undefined;
    });
    expect(refused.attempts.at(-1)!.reason).toBe(
      'Postmark refused inactive@example.com for postmark: Address inactive@example.com is inactive',
    );
    await eventually(
      'the other delivered',
      async () => (await engine.records.get(ok!)).status === 'succeeded',
    );
  });
});

describe('a batch refused whole for a configuration error (422 on every half)', () => {
  const wrongList = () => ({ status: 422, body: '{"error":"unknown list","list":"L-9"}' });

  it('stops splitting once both halves were refused the same way: 8 deliveries, 3 requests', async () => {
    crms.wronglist.respond(wrongList);
    const ids = await send(
      'wronglist',
      Array.from({ length: 8 }, (_, i) => `w${i}@example.com`),
    );
    const all = await eventually('all failed', async () => {
      const records = await Promise.all(ids.map((id) => engine.records.get(id)));
      return records.every((d) => d.status === 'failed') ? records : undefined;
    });
    // One request of 8, its two halves of 4, and nothing more.
    expect(
      crms.wronglist.received.map((r) => (JSON.parse(r.body) as { emails: string[] }).emails.length),
    ).toEqual([8, 4, 4]);
    for (const d of all) expect(d.attempts.at(-1)!.reason).toContain('both halves of a refused batch');
  });

  it('keeps splitting when the halves are refused with different answers (a bad address in each)', async () => {
    // The CRM names the bad addresses it found: each half's answer differs, so this is not a
    // configuration error, and splitting goes on down to the two bad ones.
    const bad = new Set(['b0@example.com', 'b7@example.com']);
    crms.wronglist.respond((request) => {
      const found = (JSON.parse(request.body) as { emails: string[] }).emails.filter((e) => bad.has(e));
      return found.length === 0
        ? { status: 200, body: '{"ok":true}' }
        : { status: 422, body: JSON.stringify({ error: 'invalid address', emails: found }) };
    });
    const emails = Array.from({ length: 8 }, (_, i) => `b${i}@example.com`);
    const ids = await send('wronglist', emails);
    const all = await eventually('all ended', async () => {
      const records = await Promise.all(ids.map((id) => engine.records.get(id)));
      return records.every((d) => d.status === 'failed' || d.status === 'succeeded') ? records : undefined;
    });
    expect(all.map((d, i) => [emails[i], d.status])).toEqual(
      emails.map((e) => [e, bad.has(e) ? 'failed' : 'succeeded']),
    );
  });

  it('fails the whole batch as one when its rule says split: false: 8 deliveries, 1 request', async () => {
    crms.nosplit.respond(wrongList);
    const ids = await send(
      'nosplit',
      Array.from({ length: 8 }, (_, i) => `n${i}@example.com`),
    );
    const all = await eventually('all failed', async () => {
      const records = await Promise.all(ids.map((id) => engine.records.get(id)));
      return records.every((d) => d.status === 'failed') ? records : undefined;
    });
    expect(crms.nosplit.received).toHaveLength(1);
    for (const d of all) {
      expect(d.attempts).toHaveLength(1);
      expect(d.attempts[0]).toMatchObject({ verdict: 'fail', status: 422 });
      expect(d.attempts[0]!.reason).toMatch(/^list L-9 not found \(rule 1 says split: false/);
    }
  });
});

describe('a referenced secret that is not set', () => {
  it("fails the delivery naming the connection's file and the field", async () => {
    delete process.env.DELIVERY_PATH_UNSET_KEY;
    const [id] = await send('nosecret', ['s@example.com']);
    const failed = await eventually('it failed', async () => {
      const d = await engine.records.get(id!);
      return d.status === 'failed' ? d : undefined;
    });
    expect(failed.attempts.at(-1)).toMatchObject({
      errorCode: 'TEMPLATE_ERROR',
      reason: `${engine.connectionsDir}/nosecret.yaml: request.auth.token: secret "DELIVERY_PATH_UNSET_KEY" is not set`,
    });
    expect(crms.nosecret.received).toHaveLength(0);
  });
});

describe('the request body in the attempt record', () => {
  it('keeps a delivery sent alone its own body, redacted', async () => {
    const [id] = await send('bodykept', ['kept@example.com']);
    const done = await eventually('delivered', async () => {
      const d = await engine.records.get(id!);
      return d.status === 'succeeded' ? d : undefined;
    });
    expect(JSON.parse(crms.bodykept.received[0]!.body)).toEqual({
      email: 'kept@example.com',
      key: 'delivery-path-token',
    });
    expect(done.attempts[0]!.request!.body).toBe('{"email":"kept@example.com","key":"[redacted]"}');
  });

  it("keeps a batched delivery its own item, and the batch's shared request once, with no one else's address", async () => {
    crms.postmark.respond((request) => {
      const emails = (JSON.parse(request.body) as { emails: string[] }).emails;
      return { status: 200, body: JSON.stringify(emails.map((To) => ({ ErrorCode: 0, Message: 'OK', To }))) };
    });
    const ids = await send('postmark', ['first@example.com', 'second@example.com']);
    const records = await eventually('both delivered', async () => {
      const all = await Promise.all(ids.map((id) => engine.records.get(id)));
      return all.every((d) => d.status === 'succeeded') ? all : undefined;
    });
    const [first, second] = records;
    expect(first!.attempts[0]!.requestItem).toBe('"first@example.com"');
    expect(second!.attempts[0]!.requestItem).toBe('"second@example.com"');
    for (const d of records) {
      const attempt = d.attempts[0]!;
      expect(attempt.request!.body).toBeUndefined();
      const shared = d.batchRequests![attempt.batch!.id]!;
      expect(shared.body).toContain('$each: 2 items');
      // The request as recorded (its own item, the shared request): no one else's address.
      const other = d === first ? 'second@example.com' : 'first@example.com';
      expect(JSON.stringify([attempt.request, attempt.requestItem, d.batchRequests])).not.toContain(other);
    }
    // `deliveries show` prints its own item and the shared body, once. (Not spawnSync: the engine
    // answering it runs in this process.)
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [path.join(ROOT, 'bin/unsub-relay.js'), 'deliveries', 'show', ids[0]!],
      { cwd: ROOT, env: { ...process.env, ADMIN_URL: engine.url, ADMIN_TOKEN: ADMIN } },
    );
    expect(stdout).toContain('attempt 1 item: "first@example.com"');
    expect(stdout).toMatch(/batch batch-\S+ shared body: \{"emails":\["\$each: 2 items/);
    expect(stdout).not.toContain('second@example.com"');
    // Stored once for the request, not in each delivery's attempts.
    expect(await engine.redis.lrange(`${engine.prefix}:attempts:${ids[0]!}`, 0, -1)).not.toContain('$each');
  });
});
