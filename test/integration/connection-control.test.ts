import { afterAll, describe, expect, it } from 'vitest';
import { connectionSchema, type ConnectionInput } from '../../src/config/connection-schema.js';
import { ConnectionControl, HOLD_MAX_MS } from '../../src/store/connection-control.js';
import { ConnectionStore } from '../../src/store/connection-store.js';
import { keyspace } from '../../src/store/keys.js';
import { cleanPrefix, testRedis, uniquePrefix } from '../helpers/redis.js';

// The control scripts run on the real Redis with the clock passed in, so every decision here is
// exact: no sleeps, no timing.
const prefix = uniquePrefix('control');
const redis = testRedis();
const control = new ConnectionControl(redis, keyspace(prefix));
let n = 0;

function connection(overrides: Partial<ConnectionInput> = {}) {
  return connectionSchema.parse({
    id: `c${++n}`,
    account: 'acme',
    name: 'Acme',
    request: { url: 'https://crm.example/unsubscribe' },
    dedupe: { window: 0 },
    ...overrides,
  });
}

afterAll(async () => {
  await cleanPrefix(prefix);
  redis.disconnect();
});

describe('rate limit (GCRA)', () => {
  it('lets a burst through at once, then spaces requests at the rate, across callers', async () => {
    const c = connection({ limits: { perSecond: 10, burst: 3 }, circuit: { enabled: false } });
    const t = 1_000_000;
    const waits: number[] = [];
    for (let i = 0; i < 6; i += 1) {
      const admission = await control.admit(c, `d${i}`, `e${i}@x.io`, t);
      expect(admission.kind).toBe('go');
      waits.push(admission.kind === 'go' ? admission.waitMs : -1);
    }
    // Three at once (the burst), then one every 100 ms: each caller is given its own slot.
    expect(waits).toEqual([0, 0, 0, 100, 200, 300]);
  });

  it('hands work back (the whole connection waits) rather than hold a job past the hold limit', async () => {
    const c = connection({ limits: { perSecond: 2, burst: 1 }, circuit: { enabled: false } });
    const t = 2_000_000;
    const held: number[] = [];
    for (let i = 0; ; i += 1) {
      const admission = await control.admit(c, `d${i}`, `e${i}@x.io`, t);
      if (admission.kind === 'wait') {
        expect(admission.reason).toBe('rate_limit');
        expect(admission.waitMs).toBeGreaterThan(HOLD_MAX_MS);
        break;
      }
      held.push(admission.kind === 'go' ? admission.waitMs : -1);
    }
    expect(held).toEqual([0, 500, 1000]);
    // Once the window has passed, the next slot is free again.
    const later = await control.admit(c, 'late', 'late@x.io', t + 10_000);
    expect(later).toMatchObject({ kind: 'go', waitMs: 0 });
  });

  it('never lets more than perSecond × seconds + burst through over a long run', async () => {
    const c = connection({ limits: { perSecond: 50, burst: 5 }, circuit: { enabled: false } });
    const start = 3_000_000;
    const sendTimes: number[] = [];
    // 2,000 callers arriving every 2 ms (250/s) for 4 s against a 50/s limit.
    for (let i = 0; i < 2_000; i += 1) {
      const now = start + i * 2;
      const admission = await control.admit(c, `d${i}`, `e${i}@x.io`, now);
      if (admission.kind === 'go') sendTimes.push(now + admission.waitMs);
    }
    const end = Math.max(...sendTimes);
    for (let from = start; from < end; from += 100) {
      const inWindow = sendTimes.filter((at) => at >= from && at < from + 1000).length;
      expect(inWindow).toBeLessThanOrEqual(50 + 5);
    }
  });
});

describe('circuit breaker', () => {
  const policy = { failures: 3, cooldown: '10s', warnAfter: 2 } as const;

  it('warns, opens after consecutive failures, sends one probe after the cool-down, and closes on success', async () => {
    const c = connection({ circuit: policy });
    const t = 10_000_000;
    const events: string[] = [];
    for (let i = 0; i < 3; i += 1) {
      expect((await control.admit(c, `d${i}`, 'x@x.io', t)).kind).toBe('go');
      events.push(...(await control.settle(c, `d${i}`, 'x@x.io', 'down', { releaseClaim: false }, t)).events);
    }
    expect(events).toEqual(['connection_failing', 'circuit_opened']);
    expect(await control.status(c.id)).toMatchObject({
      circuit: 'open',
      consecutiveFailures: 3,
      failing: true,
    });

    // Open: everyone waits out the rest of the cool-down, without spending anything.
    expect(await control.admit(c, 'd9', 'x@x.io', t + 4_000)).toMatchObject({
      kind: 'wait',
      reason: 'circuit_open',
      waitMs: 6_000,
    });
    // After it: exactly one probe; a second caller waits for the probe's result.
    const probe = await control.admit(c, 'probe', 'x@x.io', t + 10_000);
    expect(probe).toMatchObject({ kind: 'go', probe: true, halfOpened: true });
    expect(await control.admit(c, 'other', 'x@x.io', t + 10_001)).toMatchObject({
      kind: 'wait',
      reason: 'circuit_probe',
    });
    const closed = await control.settle(c, 'probe', 'x@x.io', 'up', { releaseClaim: false }, t + 10_050);
    expect(closed).toMatchObject({ state: 'closed', consecutiveFailures: 0 });
    expect(closed.events).toEqual(['circuit_closed', 'connection_recovered']);
    expect(await control.admit(c, 'other', 'x@x.io', t + 10_060)).toMatchObject({ kind: 'go', probe: false });
  });

  it('re-opens for another cool-down when the probe fails', async () => {
    const c = connection({ circuit: policy });
    const t = 20_000_000;
    for (let i = 0; i < 3; i += 1)
      await control.settle(c, `d${i}`, 'x@x.io', 'down', { releaseClaim: false }, t);
    expect(await control.admit(c, 'probe', 'x@x.io', t + 10_000)).toMatchObject({ kind: 'go', probe: true });
    const again = await control.settle(c, 'probe', 'x@x.io', 'down', { releaseClaim: false }, t + 10_100);
    expect(again).toMatchObject({ state: 'open', events: ['circuit_opened'] });
    expect(await control.admit(c, 'next', 'x@x.io', t + 15_000)).toMatchObject({
      kind: 'wait',
      reason: 'circuit_open',
      waitMs: 5_100,
    });
  });

  it('opens on the failure ratio over the window, not on scattered failures', async () => {
    const c = connection({
      circuit: { failures: 1000, failureRatio: 0.5, window: '10s', minRequests: 10 },
    });
    const t = 30_000_000;
    // Alternating: never 1000 in a row, but half of the last 10 s failed once 10 outcomes are in.
    const states: string[] = [];
    for (let i = 0; i < 10; i += 1) {
      const outcome = i % 2 === 0 ? 'up' : 'down';
      states.push(
        (await control.settle(c, `d${i}`, 'x@x.io', outcome, { releaseClaim: false }, t + i * 100)).state,
      );
    }
    expect(states.slice(0, 9).every((state) => state === 'closed')).toBe(true);
    expect(states[9]).toBe('open');
  });

  it('forgets failures older than the window when computing the ratio', async () => {
    const c = connection({
      circuit: { failures: 1000, failureRatio: 0.5, window: '10s', minRequests: 4 },
    });
    const t = 40_000_000;
    for (let i = 0; i < 3; i += 1)
      await control.settle(c, `old${i}`, 'x@x.io', 'down', { releaseClaim: false }, t);
    await control.settle(c, 'ok', 'x@x.io', 'up', { releaseClaim: false }, t + 1);
    // 20 s later the old failures are out of the window: one failure among two outcomes is below minRequests.
    const later = await control.settle(c, 'new', 'x@x.io', 'down', { releaseClaim: false }, t + 20_000);
    expect(later.state).toBe('closed');
  });

  it('counts neither 429s (neutral) nor anything at all when turned off', async () => {
    const neutral = connection({ circuit: policy });
    for (let i = 0; i < 5; i += 1)
      await control.settle(neutral, `d${i}`, 'x@x.io', 'neutral', { releaseClaim: false }, 50_000_000);
    expect(await control.status(neutral.id)).toMatchObject({ circuit: 'closed', consecutiveFailures: 0 });
    const off = connection({ circuit: { ...policy, enabled: false } });
    for (let i = 0; i < 5; i += 1)
      await control.settle(off, `d${i}`, 'x@x.io', 'down', { releaseClaim: false }, 50_000_000);
    expect(await control.admit(off, 'next', 'x@x.io', 50_000_001)).toMatchObject({ kind: 'go' });
  });

  it('can be closed by hand', async () => {
    const c = connection({ circuit: policy });
    for (let i = 0; i < 3; i += 1)
      await control.settle(c, `d${i}`, 'x@x.io', 'down', { releaseClaim: false }, 60_000_000);
    await control.closeCircuit(c.id, 60_000_001);
    expect(await control.status(c.id)).toMatchObject({
      circuit: 'closed',
      consecutiveFailures: 0,
      failing: false,
    });
    expect(await control.admit(c, 'next', 'x@x.io', 60_000_002)).toMatchObject({ kind: 'go', probe: false });
  });
});

describe('duplicate window', () => {
  it('merges the same email (any case) into the first delivery, per connection, within the window', async () => {
    const c = connection({ dedupe: { window: '1h' } });
    const other = connection({ dedupe: { window: '1h' } });
    const t = 70_000_000;
    expect(await control.admit(c, 'first', 'Jane@Example.com', t)).toMatchObject({ kind: 'go' });
    expect(await control.admit(c, 'second', ' jane@example.com ', t + 1)).toEqual({
      kind: 'merged',
      into: 'first',
    });
    // The first one itself (a retry, a replay) is never merged into itself.
    expect(await control.admit(c, 'first', 'jane@example.com', t + 2)).toMatchObject({ kind: 'go' });
    // Another connection is another advertiser's CRM: it gets its own delivery.
    expect(await control.admit(other, 'third', 'jane@example.com', t + 3)).toMatchObject({ kind: 'go' });
  });

  it('lets a later delivery through when the first failed for good', async () => {
    const c = connection({ dedupe: { window: '1h' } });
    const t = 80_000_000;
    await control.admit(c, 'first', 'bob@example.com', t);
    await control.settle(c, 'first', 'bob@example.com', 'up', { releaseClaim: true }, t + 1);
    expect(await control.admit(c, 'second', 'bob@example.com', t + 2)).toMatchObject({ kind: 'go' });
  });

  it('is off with window 0', async () => {
    const c = connection({ dedupe: { window: 0 } });
    await control.admit(c, 'first', 'amy@example.com', 90_000_000);
    expect(await control.admit(c, 'second', 'amy@example.com', 90_000_001)).toMatchObject({ kind: 'go' });
  });
});

describe('version check', () => {
  // Workers keep the connection version they last read and let admission confirm it, instead of
  // reading the connection for every delivery.
  const store = new ConnectionStore(redis, keyspace(prefix));

  it('admits while the stored version is the one held, and takes nothing once it is not', async () => {
    const c = connection({ limits: { perSecond: 1, burst: 1 }, circuit: { enabled: false } });
    const { version } = await store.put(c);
    const t = 95_000_000;
    expect(await control.admit(c, 'a', 'a@x.io', t, { version })).toMatchObject({ kind: 'go', waitMs: 0 });

    const changed = { ...c, name: 'Acme (renamed)' };
    await store.put(changed);
    const stale = await control.admit(c, 'b', 'b@x.io', t, { version });
    expect(stale.kind).toBe('stale');
    const current = store.parse(c.id, (stale as { record: string }).record);
    expect(current).toMatchObject({ version: version + 1, connection: { name: 'Acme (renamed)' } });
    // The stale answer took no rate slot: the next admission is spaced from 'a' alone.
    expect(await control.admit(changed, 'b', 'b@x.io', t, { version: current.version })).toMatchObject({
      kind: 'go',
      waitMs: 1000,
    });

    await store.remove(c.id);
    expect(await control.admit(changed, 'c', 'c@x.io', t, { version: current.version })).toEqual({
      kind: 'stale',
    });
  });
});

describe('admissions made in one turn', () => {
  // Calls made together go to Redis as one script call (TurnBatch): they must decide exactly as
  // one-by-one calls would, in call order.
  it('merges a duplicate sent in the same turn into the first, and spaces the rate in call order', async () => {
    const c = connection({ dedupe: { window: '1h' }, limits: { perSecond: 10, burst: 1 } });
    const t = 96_000_000;
    const answers = await Promise.all([
      control.admit(c, 'one', 'same@x.io', t),
      control.admit(c, 'two', 'SAME@x.io', t),
      control.admit(c, 'three', 'other@x.io', t),
    ]);
    expect(answers).toEqual([
      { kind: 'go', waitMs: 0, probe: false, halfOpened: false },
      { kind: 'merged', into: 'one' },
      { kind: 'go', waitMs: 100, probe: false, halfOpened: false },
    ]);
  });
});
