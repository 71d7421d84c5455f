import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionInput } from '../../src/config/connection-schema.js';
import type { Attempt } from '../../src/domain/delivery.js';
import { keyspace } from '../../src/store/keys.js';
import type { Backlog } from '../../src/store/backlogs.js';
import { AttemptStore } from '../../src/store/attempt-store.js';
import {
  batchedConnection,
  emailsIn,
  formedBeforePause,
  rejectsListed,
  sendTo,
  settledAll,
} from '../helpers/batch.js';
import { startTestEngine, type TestEngine } from '../helpers/engine.js';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { eventually, uniquePrefix } from '../helpers/redis.js';

// Batch jobs (issue 7): a batched connection's deliveries wait in its buffer, travel many to one
// BullMQ job, and get a job of their own only when they leave the batch undelivered.
const ADMIN = 'test-admin-token-0123456789';
let engine: TestEngine;
const crms: Record<string, FakeCrm> = {};
const names = [
  'bulk',
  'flaky',
  'down',
  'peritem',
  'held',
  'heir',
  'dedupe',
  'unbatched',
  'resume',
  'poison',
] as const;
type Name = (typeof names)[number];

const batched = (name: Name, overrides: Partial<ConnectionInput> = {}) =>
  batchedConnection(name, crms[name]!.url, overrides, '100ms');
const send = (campaign: Name, emails: string[]) => sendTo(engine, campaign, emails);
const settled = (ids: string[]) => settledAll(engine, ids);

async function admin<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const response = await fetch(`${engine.url}/admin/v1${path}`, {
    method,
    headers: {
      authorization: `Bearer ${ADMIN}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as T };
}

const emails = (tag: string, n: number) => Array.from({ length: n }, (_, i) => `${tag}${i}@example.com`);
const ownJob = (id: string) => engine.queues.ofDelivery(id).getJob(id);

beforeAll(async () => {
  process.env.TEST_CRM_TOKEN = 'batch-jobs-token';
  for (const name of names) crms[name] = await startFakeCrm(() => ({ status: 202, body: '{}' }));
  engine = await startTestEngine(uniquePrefix('batch-jobs'), [
    batched('bulk'),
    batched('flaky'),
    batched('down', { retry: { attempts: 2, backoff: 'fixed', delay: '50ms', jitter: false } }),
    // The CRM lists the addresses it rejected: those fail, the rest of the request succeeded.
    batched('peritem', { response: rejectsListed }),
    batched('held'),
    batched('heir'),
    batched('dedupe', { dedupe: { window: '1m' } }),
    batched('unbatched'),
    batched('resume'),
    // Each item renders a date from its own attributes: one that is not a date does not render.
    {
      ...batched('poison'),
      request: {
        ...batched('poison').request,
        body: {
          json: {
            emails: [
              { $each: { email: '{{email}}', at: '{{date (default attributes.signup receivedAt)}}' } },
            ],
          },
        },
      },
    },
  ]);
});

afterAll(async () => {
  await engine?.close();
  await Promise.all(Object.values(crms).map((crm) => crm.close()));
});

/**
 * The requests some attempts travelled in, checked for agreement: every attempt names one, and
 * each request's id is named by exactly as many attempts as the size it records.
 */
function sharedRequests(attempts: Attempt[]): { requests: number; ids: string[] } {
  const byId = new Map<string, Attempt[]>();
  for (const attempt of attempts) {
    expect(attempt.batch, `attempt of ${attempt.deliveryId}`).toBeDefined();
    byId.set(attempt.batch!.id, [...(byId.get(attempt.batch!.id) ?? []), attempt]);
  }
  for (const [id, sharing] of byId) {
    for (const attempt of sharing) expect(attempt.batch, id).toEqual({ id, size: sharing.length });
  }
  return { requests: byId.size, ids: [...byId.keys()] };
}

describe('batch jobs', () => {
  it('deliver a batched connection many to a job: no delivery gets a job of its own, each gets its attempt', async () => {
    const ids = await send('bulk', emails('b', 30));
    const records = await settled(ids);
    expect(records.map((d) => d.status)).toEqual(ids.map(() => 'succeeded'));
    for (const record of records) {
      expect(record.attempts).toHaveLength(1);
      expect(record.attempts[0]).toMatchObject({ number: 1, verdict: 'success', status: 202 });
      expect(record.finishedAt).toBeDefined();
    }
    expect(await Promise.all(ids.map(ownJob))).toEqual(ids.map(() => undefined));
    // Listed as succeeded all the same, though no job of their own lists them.
    const listed = await engine.records.list({ connection: 'bulk', status: 'succeeded', limit: 100 });
    expect(listed.map((d) => d.id).sort()).toEqual([...ids].sort());
    expect(listed[0]).toMatchObject({ status: 'succeeded', account: 'acme', campaign: 'bulk' });
    const requests = crms.bulk!.received;
    expect(requests.flatMap((r) => emailsIn(r.body)).sort()).toEqual(emails('b', 30).sort());
    expect(requests.length).toBeLessThanOrEqual(6);
    // Each attempt names the request it travelled in: one id per request, as many as it carried.
    const shared = sharedRequests(records.map((d) => d.attempts[0]!));
    expect(shared.requests).toBe(requests.length);
    expect(shared.ids.every((id) => id.startsWith('batch-'))).toBe(true);
    // Nothing is left behind: the buffer is empty and every batch closed.
    const keys = keyspace(engine.prefix);
    expect(await engine.redis.llen(keys.batchBuffer('bulk'))).toBe(0);
    expect(await engine.redis.zcard(keys.openBatches('bulk'))).toBe(0);
    // The unsubscribe's own view says the same.
    const unsubscribeId = ids[0]!.split(':')[0]!;
    const view = await admin<{ deliveries: Array<{ status: string }> }>(
      'GET',
      `/accounts/acme/unsubscribes/${unsubscribeId}`,
    );
    expect(view.body.deliveries).toEqual([expect.objectContaining({ status: 'succeeded' })]);
  });

  it('hand a delivery the CRM did not take over to a job of its own, which counts the batch attempt', async () => {
    crms.flaky!.respond((_request, index) =>
      index === 0 ? { status: 503, body: '{"error":"busy"}' } : { status: 202, body: '{}' },
    );
    // Held while they are sent, so all four travel in one batch, the one the CRM refuses.
    expect((await admin('POST', '/connections/flaky/pause', { reason: 'one batch' })).status).toBe(200);
    const ids = await send('flaky', emails('f', 4));
    expect((await admin('POST', '/connections/flaky/resume')).status).toBe(200);
    const records = await settled(ids);
    for (const record of records) {
      expect(record.status).toBe('succeeded');
      expect(record.attempts.map((a) => [a.number, a.verdict, a.status])).toEqual([
        [1, 'retry', 503],
        [2, 'success', 202],
      ]);
      expect(record.attemptsMade).toBe(2);
    }
    // The refused request was the batch job's, all four in it; the retries went in jobs of their
    // own, grouped again by the worker into requests of its own naming.
    const first = sharedRequests(records.map((d) => d.attempts[0]!));
    expect(first).toEqual({ requests: 1, ids: [expect.stringMatching(/^batch-/)] });
    expect(records[0]!.attempts[0]!.batch).toMatchObject({ size: 4 });
    const second = sharedRequests(records.map((d) => d.attempts[1]!));
    expect(second.ids.every((id) => id.startsWith('request-'))).toBe(true);
    expect((await Promise.all(ids.map(ownJob))).every(Boolean)).toBe(true);
  });

  it("give up after the policy's attempts in all, the batch's included, and the failed delivery replays", async () => {
    crms.down!.respond(() => ({ status: 503, body: '{"error":"down"}' }));
    const [id] = await send('down', ['d0@example.com']);
    const [record] = await settled([id!]);
    expect(record!.status).toBe('failed');
    expect(record!.attempts.map((a) => a.verdict)).toEqual(['retry', 'fail']);
    expect(record!.failedReason).toMatch(/^HTTP_STATUS:/);

    // The replay has the policy's whole budget again: its first answer is a 503 it retries.
    crms.down!.respond((_request, index) =>
      index === 2 ? { status: 503, body: '{"error":"down"}' } : { status: 202, body: '{}' },
    );
    expect((await admin('POST', `/deliveries/${id}/replay`)).status).toBe(202);
    const replayed = await eventually('the replay delivered', async () => {
      const d = await engine.records.get(id!);
      return d.status === 'succeeded' ? d : undefined;
    });
    expect(replayed.attempts.map((a) => a.verdict)).toEqual(['retry', 'fail', 'retry', 'success']);
  });

  it('keep a delivery refused in the batch (per-item) failed, in a job of its own that replays', async () => {
    crms.peritem!.respond(() => ({ status: 200, body: '{"invalid":["bad@example.com"]}' }));
    const ids = await send('peritem', ['ok@example.com', 'bad@example.com']);
    const records = await settled(ids);
    expect(records.map((d) => d.status)).toEqual(['succeeded', 'failed']);
    const bad = records[1]!;
    expect(bad.attempts).toHaveLength(1);
    expect(bad.failedReason).toContain('the CRM rejected this address');
    expect(bad.attemptsMade).toBe(1);

    crms.peritem!.respond(() => ({ status: 202, body: '{}' }));
    expect((await admin('POST', `/deliveries/${bad.id}/replay`)).status).toBe(202);
    const replayed = await eventually('the replay delivered', async () => {
      const d = await engine.records.get(bad.id);
      return d.status === 'succeeded' ? d : undefined;
    });
    expect(replayed.attempts.map((a) => a.verdict)).toEqual(['fail', 'success']);
    expect(crms.peritem!.received.at(-1)!.body).toContain('bad@example.com');
  });

  it('leave a paused connection’s deliveries waiting in the buffer, counted, listed and movable', async () => {
    expect((await admin('POST', '/connections/held/pause', { reason: 'CRM migration' })).status).toBe(200);
    const ids = await send('held', emails('h', 4));
    // Longer than maxWait: a paused connection forms no batch.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(crms.held!.received).toHaveLength(0);
    const backlog = (await admin<Backlog>('GET', '/connections/held/backlog')).body;
    expect(backlog.counts).toMatchObject({ paused: 4, waiting: 0 });
    expect(backlog.oldestPendingAgeSeconds).toBeGreaterThan(0);
    expect((await engine.records.get(ids[0]!)).status).toBe('pending');
    const pending = await engine.records.list({ connection: 'held', status: 'pending' });
    expect(pending.map((d) => d.id).sort()).toEqual([...ids].sort());

    const moved = await admin<{ moved: number }>('POST', '/connections/held/backlog/move', {
      to: 'heir',
      confirm: true,
    });
    expect(moved).toMatchObject({ status: 202, body: { moved: 4 } });
    await eventually(
      'the heir delivered them',
      () => crms.heir!.received.flatMap((r) => emailsIn(r.body)).length === 4,
    );
    expect(await engine.redis.llen(keyspace(engine.prefix).batchBuffer('held'))).toBe(0);
    const old = await engine.records.get(ids[0]!).catch((error: Error) => error);
    expect(String(old)).toContain('moved by');
  });

  it('merge a duplicate within the window, even inside one batch', async () => {
    const ids = await send('dedupe', ['same@example.com', 'same@example.com', 'other@example.com']);
    const records = await settled(ids);
    expect(records.map((d) => d.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    const sent = crms.dedupe!.received.flatMap((r) => emailsIn(r.body));
    expect(sent.filter((e) => e === 'same@example.com')).toHaveLength(1);
    const merged = records.filter((d) => d.attempts.some((a) => a.mergedInto));
    expect(merged).toHaveLength(1);
  });

  it('send what waits in the buffer one request each once the connection is no longer batched', async () => {
    expect(
      (await admin('POST', '/connections/unbatched/pause', { reason: 'switching to single requests' }))
        .status,
    ).toBe(200);
    const ids = await send('unbatched', emails('u', 3));
    const { batch: _batch, ...single } = batched('unbatched');
    const replaced = await admin('PUT', '/connections/unbatched', {
      ...single,
      request: {
        ...single.request,
        url: `${crms.unbatched!.url}/v3/suppressions/{{email}}`,
        body: { json: { email: '{{email}}' } },
      },
    });
    expect(replaced.status).toBe(200);
    expect((await admin('POST', '/connections/unbatched/resume')).status).toBe(200);
    const records = await settled(ids);
    expect(records.map((d) => d.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    // Sent alone: no batched request to name.
    expect(records.map((d) => d.attempts.at(-1)!.batch)).toEqual([undefined, undefined, undefined]);
    expect(crms.unbatched!.received.map((r) => r.path).sort()).toEqual(
      emails('u', 3)
        .map((e) => `/v3/suppressions/${e}`)
        .sort(),
    );
  });

  it('carry on from what an earlier run recorded when a batch runs again: nothing recorded is sent twice', async () => {
    expect((await admin('POST', '/connections/resume/pause', { reason: 'staging a crash' })).status).toBe(
      200,
    );
    const ids = await send('resume', emails('r', 4));
    const keys = keyspace(engine.prefix);
    const attempts = new AttemptStore(engine.redis, keys);
    // A run that stopped after recording three outcomes and before acting on them.
    expect(await formedBeforePause(engine.redis, keys, 'resume', 'batch-resumed', 10)).toBe(4);
    const record = (id: string, fields: Record<string, unknown>) =>
      attempts.append(
        {
          deliveryId: id,
          startedAt: new Date().toISOString(),
          durationMs: 5,
          connectionVersion: 1,
          reason: 'recorded by the first run',
          verdict: 'success',
          status: 202,
          ...fields,
        },
        60_000,
      );
    await record(ids[0]!, {});
    await record(ids[1]!, { verdict: 'fail', status: 404, errorCode: 'HTTP_STATUS' });
    await record(ids[2]!, {
      verdict: 'retry',
      status: 503,
      errorCode: 'HTTP_STATUS',
      nextAttemptAt: new Date(Date.now() + 100).toISOString(),
    });
    await engine.queues
      .for('resume')
      .add(
        'batch',
        { batch: 'batch-resumed', connectionId: 'resume', resumed: true },
        { jobId: 'batch-resumed' },
      );
    expect((await admin('POST', '/connections/resume/resume')).status).toBe(200);

    const records = await settled(ids);
    expect(records.map((d) => d.status)).toEqual(['succeeded', 'failed', 'succeeded', 'succeeded']);
    expect(records.map((d) => d.attempts.length)).toEqual([1, 1, 2, 1]);
    expect(records[2]!.attempts.map((a) => a.number)).toEqual([1, 2]);
    const sent = crms.resume!.received.flatMap((r) => emailsIn(r.body)).sort();
    expect(sent).toEqual(['r2@example.com', 'r3@example.com']);
    expect(await engine.redis.zcard(keys.openBatches('resume'))).toBe(0);
  });

  it('split a batch one unsubscribe of which does not render, until that one fails alone', async () => {
    expect((await admin('POST', '/connections/poison/pause', { reason: 'one batch' })).status).toBe(200);
    const ids: string[] = [];
    for (const [i, signup] of [
      '2024-05-01T10:00:00Z',
      'last tuesday',
      '2024-05-02T10:00:00Z',
      '2024-05-03T10:00:00Z',
    ].entries()) {
      const { status, body } = await engine.unsubscribe('acme', {
        email: `p${i}@example.com`,
        campaign: 'poison',
        attributes: { signup },
      });
      expect(status).toBe(201);
      ids.push(`${body.id as string}:poison`);
    }
    expect((await admin('POST', '/connections/poison/resume')).status).toBe(200);
    const records = await settled(ids);

    expect(records.map((d) => d.status)).toEqual(['succeeded', 'failed', 'succeeded', 'succeeded']);
    const bad = records[1]!;
    expect(bad.attempts.at(-1)).toMatchObject({ verdict: 'fail', errorCode: 'TEMPLATE_ERROR' });
    // Halved without spending an attempt (4, 2, then alone): only its last try counts.
    expect(bad.attempts.filter((a) => a.errorCode === 'BATCH_SPLIT').length).toBeGreaterThanOrEqual(1);
    const sent = crms.poison!.received.flatMap(
      (r) => (JSON.parse(r.body) as { emails: Array<{ email: string }> }).emails,
    );
    expect(sent.map((item) => item.email).sort()).toEqual([
      'p0@example.com',
      'p2@example.com',
      'p3@example.com',
    ]);
  });
});
