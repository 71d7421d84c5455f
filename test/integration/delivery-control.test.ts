import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionInput } from '../../src/config/connection-schema.js';
import type { OperationalEvent } from '../../src/events/operational-event.js';
import type { Backlog } from '../../src/store/backlogs.js';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';

// One engine, one fake CRM per connection, so each behaviour is seen at its own CRM. Connections
// link to one campaign each, so an unsubscribe reaches exactly the connections a test means.
const ADMIN = 'test-admin-token-0123456789';
const crms: Record<string, FakeCrm> = {};
let engine: TestEngine;

const names = [
  'paused',
  'witness',
  'throttled',
  'flaky',
  'dupes',
  'down',
  'healthy',
  'gone',
  'heir',
  'sleepy',
] as const;
type Name = (typeof names)[number];

function conn(name: Name, overrides: Partial<ConnectionInput> = {}): ConnectionInput {
  return crmConnection(name, crms[name]!.url, { campaigns: [name], dedupe: { window: 0 }, ...overrides });
}

async function admin<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const response = await fetch(`${engine.url}/admin/v1${path}`, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN}`,
      'x-operator': 'test-operator',
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
}

async function send(campaign: string, emails: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const email of emails) {
    const response = await engine.unsubscribe('acme', { email, campaign });
    expect(response.status).toBe(201);
    ids.push(response.body.id as string);
  }
  return ids;
}

const emails = (tag: string, count: number) =>
  Array.from({ length: count }, (_, i) => `${tag}${i}@example.com`);
const backlog = async (id: string) => (await admin<Backlog>('GET', `/connections/${id}/backlog`)).body;
const events = async (connection: string) =>
  (await admin<{ events: OperationalEvent[] }>('GET', `/events?connection=${connection}&limit=1000`)).body
    .events;

beforeAll(async () => {
  // Connection secrets are read from the process environment, as in production.
  process.env.TEST_CRM_TOKEN = 'delivery-control-token';
  for (const name of names) crms[name] = await startFakeCrm();
  engine = await startTestEngine(
    uniquePrefix('delivery-control'),
    [
      conn('paused'),
      conn('witness', { campaigns: ['paused'] }),
      conn('throttled', { limits: { concurrency: 1 } }),
      conn('flaky', {
        circuit: { failures: 3, warnAfter: 2, cooldown: '1s' },
        retry: { attempts: 20, backoff: 'fixed', delay: '100ms', jitter: false },
      }),
      conn('dupes', { campaigns: ['spring', 'autumn', 'winter'], dedupe: { window: '1h' } }),
      conn('down', {
        circuit: { enabled: false },
        request: {
          url: `${crms.down!.url}/hang`,
          timeouts: { connect: '1s', headers: '500ms', body: '500ms' },
        },
        retry: { attempts: 100, backoff: 'fixed', delay: '50ms', jitter: false },
      }),
      conn('healthy'),
      conn('gone'),
      conn('heir'),
      conn('sleepy', { limits: { concurrency: 1 } }),
    ],
    { WORKER_CONCURRENCY: '5' },
  );
});

afterAll(async () => {
  await engine?.close();
  await Promise.all(Object.values(crms).map((crm) => crm.close()));
});

describe('pause and resume', () => {
  it('keeps the backlog while paused (in every worker) and drains it on resume', async () => {
    const paused = await admin<Backlog>('POST', '/connections/paused/pause', { reason: 'CRM maintenance' });
    expect(paused.status).toBe(200);
    expect(paused.body.control.paused).toMatchObject({ by: 'test-operator', reason: 'CRM maintenance' });

    // The witness is linked to the same campaign: once it has all five, the paused connection's
    // workers had every chance to send theirs too.
    await send('paused', emails('p', 5));
    await eventually('the witness delivered all five', () => crms.witness!.received.length === 5);
    expect(crms.paused!.received).toHaveLength(0);
    expect((await backlog('paused')).counts).toMatchObject({ paused: 5, waiting: 0 });

    const resumed = await admin<Backlog>('POST', '/connections/paused/resume');
    expect(resumed.status).toBe(200);
    await eventually('the backlog drained', () => crms.paused!.received.length === 5);
    const types = (await events('paused')).map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['connection_paused', 'connection_resumed']));
  });

  it('says what is wrong when asked to pause a connection that does not exist', async () => {
    const missing = await admin<{ message: string }>('POST', '/connections/nope/pause', {});
    expect(missing.status).toBe(404);
    expect(missing.body.message).toContain('no connection nope');
  });
});

describe('a disabled connection', () => {
  it('holds its queued deliveries (not failed, not dropped) and delivers them once enabled again', async () => {
    crms.sleepy!.respond(() => ({ status: 200, body: '{}', delayMs: 300 }));
    await send('sleepy', emails('s', 5));
    expect((await admin('POST', '/connections/sleepy/disable')).status).toBe(200);
    const held = await eventually('the backlog is held', async () => {
      const b = await backlog('sleepy');
      return b.connection === 'disabled' && b.queuePaused && b.counts.active === 0 ? b : undefined;
    });
    expect(held.control.paused?.by).toBe('connection disabled');
    expect(held.counts.paused).toBe(5 - crms.sleepy!.received.length);
    expect(held.counts.paused).toBeGreaterThan(0);
    expect(held.counts.failed).toBe(0);

    expect((await admin('POST', '/connections/sleepy/enable')).status).toBe(200);
    await eventually('all five delivered', () => crms.sleepy!.received.length === 5);
    const types = (await events('sleepy')).map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['connection_paused', 'connection_resumed']));
  });
});

describe('a CRM that rate-limits (429 with Retry-After)', () => {
  it('holds the whole connection back until its window passes, without spending attempts', async () => {
    let throttledAt = 0;
    crms.throttled!.respond((request, i) => {
      if (i === 0) {
        throttledAt = request.at;
        return { status: 429, headers: { 'retry-after': '1' }, body: '{"error":"slow down"}' };
      }
      return { status: 200, body: '{}' };
    });
    const ids = await send('throttled', emails('t', 4));
    await eventually('all four delivered', () => crms.throttled!.received.length === 5);
    // Every request after the 429, whichever delivery it carried, waited out the CRM's window.
    const after = crms.throttled!.received.slice(1).map((r) => r.at - throttledAt);
    expect(Math.min(...after)).toBeGreaterThanOrEqual(950);
    const throttled = await Promise.all(ids.map((id) => engine.records.get(`${id}:throttled`)));
    const first = throttled.find((d) => d.attempts.some((a) => a.verdict === 'rate_limited'))!;
    expect(first.attempts.map((a) => a.verdict)).toEqual(['rate_limited', 'success']);
    expect(first.attemptsMade).toBe(1);
  });
});

describe('circuit breaker', () => {
  it('opens after consecutive failures, lets one probe through after the cool-down, and closes on success', async () => {
    let up = false;
    crms.flaky!.respond(() => (up ? { status: 200, body: '{}' } : { status: 503, body: 'down' }));
    await send('flaky', emails('f', 4));
    await eventually('the circuit opened', async () => (await backlog('flaky')).control.circuit === 'open');
    const opened = (await events('flaky')).find((e) => e.type === 'circuit_opened')!;
    expect(opened.message).toContain('opened after 3 consecutive failures');
    up = true;
    await eventually('all delivered', async () =>
      (await engine.records.list({ connection: 'flaky', status: 'succeeded' })).length === 4
        ? true
        : undefined,
    );
    const log = await events('flaky');
    const at = (type: string) => Date.parse(log.find((e) => e.type === type)!.at);
    expect(log.map((e) => e.type)).toEqual(
      expect.arrayContaining(['connection_failing', 'circuit_opened', 'circuit_half_open', 'circuit_closed']),
    );
    // Nothing reached the CRM while the circuit was open; the first request after is the probe alone.
    const requests = crms.flaky!.received.map((r) => r.at);
    const duringOpen = requests.filter(
      (t) => t > at('circuit_opened') + 50 && t < at('circuit_half_open') - 50,
    );
    expect(duringOpen).toEqual([]);
    expect((await backlog('flaky')).control).toMatchObject({ circuit: 'closed', consecutiveFailures: 0 });
  });
});

describe('duplicates', () => {
  it('delivers the same email to a connection once, from several campaigns, and records the merge', async () => {
    const ids = [
      ...(await send('spring', ['Dana@Example.com'])),
      ...(await send('autumn', ['dana@example.com'])),
      ...(await send('winter', [' dana@example.com'])),
    ];
    await eventually('all three settled', async () =>
      (await Promise.all(ids.map((id) => engine.records.get(`${id}:dupes`)))).every(
        (d) => d.status === 'succeeded',
      )
        ? true
        : undefined,
    );
    expect(crms.dupes!.received).toHaveLength(1);
    const records = await Promise.all(ids.map((id) => engine.records.get(`${id}:dupes`)));
    const merged = records.filter((d) => d.mergedInto);
    expect(merged).toHaveLength(2);
    const carrier = records.find((d) => !d.mergedInto)!;
    for (const d of merged) {
      expect(d.mergedInto).toBe(carrier.id);
      expect(d.attempts[0]).toMatchObject({ verdict: 'success_already_done', mergedInto: carrier.id });
    }
  });
});

describe('isolation', () => {
  it('keeps delivering to a healthy connection while another CRM hangs with a backlog', async () => {
    crms.down!.respond(() => ({ status: 200, hang: true }));
    // Enough hanging deliveries to fill every worker slot this process has many times over.
    await send('down', emails('d', 60));
    await eventually('the failing CRM is busy', () => crms.down!.received.length >= 5);
    await send('healthy', emails('h', 40));
    await eventually('the healthy connection delivered all 40', () => crms.healthy!.received.length === 40);
    // ...while the failing one still has its backlog and has delivered nothing.
    const down = await backlog('down');
    expect(down.counts.waiting + down.counts.delayed + down.counts.active).toBeGreaterThan(0);
    expect((await engine.records.list({ connection: 'down', status: 'succeeded' })).length).toBe(0);
  });
});

describe('the backlog of a deleted connection', () => {
  it('stays visible, refuses to be touched while delivering, and can be moved to another connection or discarded', async () => {
    await admin('POST', '/connections/gone/pause', { reason: 'retiring' });
    const ids = await send('gone', emails('g', 3));
    expect((await admin('POST', '/connections/gone/backlog/discard', {})).body).toMatchObject({
      wouldTake: 3,
      sendingNow: 0,
    });
    const removed = await admin('DELETE', '/connections/gone');
    expect(removed.status).toBeLessThan(300);

    const all = (await admin<{ backlogs: Backlog[] }>('GET', '/backlogs')).body.backlogs;
    expect(all.find((b) => b.connectionId === 'gone')).toMatchObject({
      connection: 'deleted',
      counts: { paused: 3 },
    });

    const busy = await admin<{ message: string }>('POST', '/connections/healthy/backlog/discard', {
      confirm: true,
    });
    expect(busy.status).toBe(409);
    expect(busy.body.message).toContain('pause it first');

    const moved = await admin<{ moved: number }>('POST', '/connections/gone/backlog/move', {
      to: 'heir',
      confirm: true,
    });
    expect(moved).toMatchObject({ status: 202, body: { moved: 3, sendingNow: 0 } });
    await eventually('the heir delivered them', () => crms.heir!.received.length === 3);
    const old = await engine.records.get(`${ids[0]}:gone`).catch((error: Error) => error);
    expect(String(old)).toContain('moved by test-operator to connection heir');
  });
});
