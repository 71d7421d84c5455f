import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crmConnection, startTestEngine, type TestEngine } from '../helpers/engine.js';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';

const ADMIN = 'test-admin-token-0123456789';
let engine: TestEngine;
let ok: FakeCrm;
let broken: FakeCrm;

/** One sample's value from the Prometheus text format (0 when the series is absent). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const wanted = Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`));
    if (wanted) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

const scrape = async () => {
  const response = await fetch(`${engine.url}/metrics`);
  expect(response.headers.get('content-type')).toContain('text/plain');
  return response.text();
};

beforeAll(async () => {
  process.env.TEST_CRM_TOKEN = 'metrics-token';
  ok = await startFakeCrm();
  broken = await startFakeCrm(() => ({ status: 503, body: 'down' }));
  engine = await startTestEngine(uniquePrefix('metrics'), [
    crmConnection('m-ok', ok.url, { campaigns: ['ok'] }),
    crmConnection('m-held', ok.url, { campaigns: ['held'] }),
    crmConnection('m-broken', broken.url, {
      campaigns: ['broken'],
      circuit: { failures: 1, cooldown: '1h' },
      retry: { attempts: 5, backoff: 'fixed', delay: '50ms', jitter: false },
    }),
  ]);
});

afterAll(async () => {
  await engine?.close();
  await ok?.close();
  await broken?.close();
});

describe('GET /metrics', () => {
  it('moves as unsubscribes are accepted, rejected and delivered', async () => {
    const before = await scrape();
    for (const email of ['a@example.com', 'b@example.com', 'c@example.com'])
      expect((await engine.unsubscribe('acme', { email, campaign: 'ok' })).status).toBe(201);
    expect((await engine.unsubscribe('acme', { email: 'not-an-email' })).status).toBe(400);

    const after = await eventually('three deliveries counted', async () => {
      const text = await scrape();
      return sample(text, 'unsub_relay_deliveries_total', { connection: 'm-ok', verdict: 'success' }) === 3
        ? text
        : undefined;
    });
    const delta = (name: string, labels?: Record<string, string>) =>
      sample(after, name, labels) - sample(before, name, labels);
    expect(delta('unsub_relay_unsubscribes_accepted_total')).toBe(3);
    expect(delta('unsub_relay_unsubscribes_rejected_total', { status: '400' })).toBe(1);
    expect(delta('unsub_relay_attempt_duration_seconds_count', { connection: 'm-ok' })).toBe(3);
    expect(delta('unsub_relay_end_to_end_seconds_count', { connection: 'm-ok' })).toBe(3);
    expect(sample(after, 'unsub_relay_queue_depth', { connection: 'm-ok', state: 'waiting' })).toBe(0);
    expect(sample(after, 'process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it('shows a held backlog, its age, the pause and an open circuit, and the admin health view says the same', async () => {
    const paused = await fetch(`${engine.url}/admin/v1/connections/m-held/pause`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'metrics test' }),
    });
    expect(paused.status).toBe(200);
    for (const email of ['h1@example.com', 'h2@example.com'])
      await engine.unsubscribe('acme', { email, campaign: 'held' });
    for (const email of ['x1@example.com', 'x2@example.com'])
      await engine.unsubscribe('acme', { email, campaign: 'broken' });

    const text = await eventually('the circuit open and a delivery held by it', async () => {
      const scraped = await scrape();
      return sample(scraped, 'unsub_relay_circuit_state', { connection: 'm-broken' }) === 2 &&
        sample(scraped, 'unsub_relay_rate_limit_waits_total', {
          connection: 'm-broken',
          reason: 'circuit_open',
        }) >= 1
        ? scraped
        : undefined;
    });
    expect(sample(text, 'unsub_relay_queue_depth', { connection: 'm-held', state: 'paused' })).toBe(2);
    expect(sample(text, 'unsub_relay_connection_paused', { connection: 'm-held' })).toBe(1);
    expect(sample(text, 'unsub_relay_oldest_pending_age_seconds', { connection: 'm-held' })).toBeGreaterThan(
      0,
    );
    // Every answer the broken CRM gave counts as a retry (both may have been in flight when it opened).
    expect(sample(text, 'unsub_relay_deliveries_total', { connection: 'm-broken', verdict: 'retry' })).toBe(
      broken.received.length,
    );
    expect(
      sample(text, 'unsub_relay_circuit_transitions_total', { connection: 'm-broken', to: 'circuit_opened' }),
    ).toBe(1);

    const ready = await fetch(`${engine.url}/admin/v1/health`, {
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    // One advertiser's trouble never makes the engine unready: it is reported per connection.
    expect(ready.status).toBe(200);
    const body = (await ready.json()) as { connections: Record<string, { status: string; pending: number }> };
    expect(body.connections['m-ok']).toMatchObject({ status: 'healthy', pending: 0 });
    expect(body.connections['m-held']).toMatchObject({ status: 'paused', pending: 2 });
    expect(body.connections['m-broken']).toMatchObject({ status: 'circuit_open' });
  });

  it('lists every connection queue in the dashboard, behind the admin token', async () => {
    expect((await fetch(`${engine.url}/admin/queues/api/queues`)).status).toBe(401);
    const listed = await fetch(`${engine.url}/admin/queues/api/queues`, {
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(listed.status).toBe(200);
    const names = ((await listed.json()) as { queues: { name: string }[] }).queues.map((q) => q.name);
    expect(names).toEqual(
      expect.arrayContaining(['deliveries.m-ok', 'deliveries.m-held', 'deliveries.m-broken']),
    );
    // The scrape never carries a secret.
    expect(await scrape()).not.toContain('metrics-token');
  });
});
