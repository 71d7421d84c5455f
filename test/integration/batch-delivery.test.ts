import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionInput } from '../../src/config/connection-schema.js';
import { batchedConnection, emailsIn, rejectsListed, sendTo, settledAll } from '../helpers/batch.js';
import { startTestEngine, type TestEngine } from '../helpers/engine.js';
import { startFakeCrm, type FakeCrm, type Responder } from '../helpers/crm-server.js';
import { uniquePrefix } from '../helpers/redis.js';

// Batched connections on the real engine: many unsubscribes per request, each delivery with its own
// outcome, per-item results read from the answer, and refused batches split until the bad address
// goes alone.
let engine: TestEngine;
const crms: Record<string, FakeCrm> = {};
const names = ['grouped', 'peritem', 'split'] as const;
type Name = (typeof names)[number];

const batched = (name: Name, overrides: Partial<ConnectionInput> = {}) =>
  batchedConnection(name, crms[name]!.url, overrides);
const send = (campaign: Name, emails: string[]) => sendTo(engine, campaign, emails);
const settled = (ids: string[]) => settledAll(engine, ids);

beforeAll(async () => {
  process.env.TEST_CRM_TOKEN = 'batch-token';
  const ok: Responder = () => ({ status: 202, body: '{}' });
  for (const name of names) crms[name] = await startFakeCrm(ok);
  engine = await startTestEngine(uniquePrefix('batch'), [
    batched('grouped'),
    // The CRM lists the addresses it rejected: those fail, the rest of the request succeeded.
    batched('peritem', { response: rejectsListed }),
    batched('split'),
  ]);
});

afterAll(async () => {
  await engine?.close();
  await Promise.all(Object.values(crms).map((crm) => crm.close()));
});

describe('a batched connection', () => {
  it('sends many unsubscribes per request, and records each delivery with its own attempt', async () => {
    const emails = Array.from({ length: 25 }, (_, i) => `g${i}@example.com`);
    const ids = await send('grouped', emails);
    const records = await settled(ids);
    expect(records.every((d) => d.status === 'succeeded')).toBe(true);
    const requests = crms.grouped!.received;
    expect(requests.flatMap((r) => emailsIn(r.body)).sort()).toEqual([...emails].sort());
    expect(Math.max(...requests.map((r) => emailsIn(r.body).length))).toBeLessThanOrEqual(10);
    // Far fewer requests than unsubscribes: 25 in batches of up to 10.
    expect(requests.length).toBeLessThanOrEqual(6);
    for (const record of records) {
      expect(record.attempts).toHaveLength(1);
      expect(record.attempts[0]).toMatchObject({ verdict: 'success', status: 202 });
    }
  });

  it('reads per-item results: the rejected address fails, the others in the same request succeed', async () => {
    crms.peritem!.respond(() => ({ status: 200, body: '{"invalid":["bad@example.com"]}' }));
    const ids = await send('peritem', ['ok1@example.com', 'bad@example.com', 'ok2@example.com']);
    const records = await settled(ids);
    expect(records.map((d) => d.status)).toEqual(['succeeded', 'failed', 'succeeded']);
    expect(records[1]!.attempts.at(-1)).toMatchObject({
      verdict: 'fail',
      reason: 'the CRM rejected this address',
    });
    expect(crms.peritem!.received.length).toBeLessThan(3);
  });

  it('splits a batch the CRM refuses whole until the bad address goes alone, without spending attempts', async () => {
    // Refuses any request that carries the bad address, as a CRM validating the whole body would.
    crms.split!.respond((request) =>
      emailsIn(request.body).includes('bad@example.com')
        ? { status: 400, body: '{"error":"invalid email in request"}' }
        : { status: 202, body: '{}' },
    );
    const emails = Array.from({ length: 8 }, (_, i) => (i === 5 ? 'bad@example.com' : `s${i}@example.com`));
    const records = await settled(await send('split', emails));
    expect(records.filter((d) => d.status === 'failed').map((d) => d.id)).toEqual([records[5]!.id]);
    const bad = records[5]!;
    expect(bad.attempts.at(-1)).toMatchObject({ verdict: 'fail', status: 400 });
    expect(bad.attempts.some((a) => a.errorCode === 'BATCH_SPLIT')).toBe(true);
    // Splits hand the delivery back rather than failing an attempt: the policy's 3 were enough.
    expect(bad.attemptsMade).toBe(1);
    const sizes = crms
      .split!.received.filter((r) => emailsIn(r.body).includes('bad@example.com'))
      .map((r) => emailsIn(r.body).length);
    expect(sizes.at(-1)).toBe(1);
    expect(records.filter((d) => d.status === 'succeeded')).toHaveLength(7);
  });
});
