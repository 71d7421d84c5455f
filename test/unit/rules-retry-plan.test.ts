import { describe, expect, it } from 'vitest';
import { retrySchema } from '../../src/config/connection-schema.js';
import { formatDuration, planRetry, type RetryInput } from '../../src/rules/retry-plan.js';

const policy = (input: object) => retrySchema.parse(input);
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const RECEIVED = Date.parse('2026-11-23T10:00:00Z');
const DEADLINE_AT = Date.parse('2026-12-03T10:00:00Z'); // RECEIVED + 10d
const input = (over: Partial<RetryInput>): RetryInput => ({
  attemptNumber: 1,
  receivedAt: RECEIVED,
  now: RECEIVED + MINUTE,
  spendsAttempt: true,
  ...over,
});

describe('planRetry: attempts', () => {
  const p = policy({ attempts: 3, delay: '1s', jitter: false });

  it('retries on the backoff schedule until the last allowed attempt has failed', () => {
    expect(planRetry(p, input({ attemptNumber: 1 }))).toEqual({
      action: 'retry',
      delayMs: 1_000,
      deadlineNear: false,
    });
    expect(planRetry(p, input({ attemptNumber: 2 }))).toEqual({
      action: 'retry',
      delayMs: 2_000,
      deadlineNear: false,
    });
    expect(planRetry(p, input({ attemptNumber: 3 }))).toEqual({
      action: 'give_up',
      code: 'ATTEMPTS_EXHAUSTED',
      reason: 'used all 3 attempts the retry policy allows',
    });
  });
  it('says "attempt" for a single one', () => {
    expect(planRetry(policy({ attempts: 1 }), input({}))).toMatchObject({
      reason: 'used all 1 attempt the retry policy allows',
    });
  });
  it('never exhausts attempts while rate limited, and honours the wait asked for', () => {
    expect(planRetry(p, input({ attemptNumber: 3, spendsAttempt: false, retryAfterMs: 30_000 }))).toEqual({
      action: 'retry',
      delayMs: 30_000,
      deadlineNear: false,
    });
    expect(planRetry(p, input({ attemptNumber: 99, spendsAttempt: false }))).toMatchObject({
      action: 'retry',
    });
  });
  it("caps the CRM's wish by maxRetryAfter", () => {
    const capped = policy({ attempts: 3, maxRetryAfter: '10m' });
    expect(planRetry(capped, input({ retryAfterMs: DAY }))).toMatchObject({ delayMs: 10 * MINUTE });
  });
  it('passes the random source through to the jitter', () => {
    const jittered = policy({ attempts: 5, delay: '4s' });
    expect(planRetry(jittered, input({ attemptNumber: 2 }), () => 0)).toMatchObject({ delayMs: 4_000 });
    expect(planRetry(jittered, input({ attemptNumber: 2 }), () => 0.5)).toMatchObject({ delayMs: 6_000 });
  });
  it('follows an explicit schedule', () => {
    const scheduled = policy({ backoff: 'schedule', schedule: ['1m', '5m', '30m'], jitter: false });
    expect([1, 2, 3, 4].map((n) => planRetry(scheduled, input({ attemptNumber: n })))).toEqual([
      { action: 'retry', delayMs: MINUTE, deadlineNear: false },
      { action: 'retry', delayMs: 5 * MINUTE, deadlineNear: false },
      { action: 'retry', delayMs: 30 * MINUTE, deadlineNear: false },
      { action: 'retry', delayMs: 30 * MINUTE, deadlineNear: false },
    ]);
  });
});

describe('planRetry: deadline', () => {
  const p = policy({ deadline: '10d', backoff: 'fixed', delay: '1h', jitter: false });
  const passed = {
    action: 'give_up',
    code: 'DEADLINE_PASSED',
    reason: 'kept trying for 10d (until 2026-12-03T10:00:00.000Z); the CRM never accepted it',
  };

  it('gives up once the deadline is reached, with a clear reason', () => {
    expect(planRetry(p, input({ attemptNumber: 200, now: DEADLINE_AT }))).toEqual(passed);
    expect(planRetry(p, input({ attemptNumber: 200, now: DEADLINE_AT + 1 }))).toEqual(passed);
  });
  it('gives up at the deadline even while rate limited', () => {
    expect(
      planRetry(p, input({ now: DEADLINE_AT + HOUR, spendsAttempt: false, retryAfterMs: 1_000 })),
    ).toEqual(passed);
  });
  it('names the deadline rather than the attempts when both have run out', () => {
    const both = policy({ attempts: 3, deadline: '10d', delay: '1h', jitter: false });
    expect(planRetry(both, input({ attemptNumber: 3, now: DEADLINE_AT }))).toMatchObject({
      code: 'DEADLINE_PASSED',
    });
    expect(planRetry(both, input({ attemptNumber: 3, now: DEADLINE_AT - DAY }))).toMatchObject({
      code: 'ATTEMPTS_EXHAUSTED',
    });
  });
  it('bounds a deadline-only policy by time, not by a count of attempts', () => {
    expect(planRetry(p, input({ attemptNumber: 5_000, now: RECEIVED + 5 * DAY }))).toEqual({
      action: 'retry',
      delayMs: HOUR,
      deadlineNear: false,
    });
  });
  it('keeps a wait that lands at least the margin (1 minute) before the deadline', () => {
    expect(planRetry(p, input({ now: DEADLINE_AT - HOUR - MINUTE }))).toEqual({
      action: 'retry',
      delayMs: HOUR,
      deadlineNear: true,
    });
  });
  it('brings a wait that would overshoot forward, so one last attempt lands a minute before the deadline', () => {
    expect(planRetry(p, input({ now: DEADLINE_AT - 10 * MINUTE }))).toEqual({
      action: 'retry',
      delayMs: 9 * MINUTE,
      deadlineNear: true,
    });
    // Also when the wait was the CRM's own Retry-After.
    expect(
      planRetry(p, input({ now: DEADLINE_AT - 30 * MINUTE, spendsAttempt: false, retryAfterMs: HOUR })),
    ).toEqual({ action: 'retry', delayMs: 29 * MINUTE, deadlineNear: true });
  });
  it('gives up when not even the last attempt fits, instead of retrying at once in a loop', () => {
    expect(planRetry(p, input({ now: DEADLINE_AT - 30_000 }))).toEqual({
      action: 'give_up',
      code: 'DEADLINE_PASSED',
      reason:
        'kept trying for 10d (until 2026-12-03T10:00:00.000Z); the CRM never accepted it, ' +
        'and the deadline is too close for another attempt',
    });
    expect(planRetry(p, input({ now: DEADLINE_AT - MINUTE }))).toMatchObject({ code: 'DEADLINE_PASSED' });
  });
  it('shrinks the margin to a tenth of a short deadline', () => {
    const short = policy({ deadline: '5m', backoff: 'fixed', delay: '1h', jitter: false });
    // 60s left, margin 30s (a tenth of 5m): the last attempt goes out in 30s.
    expect(planRetry(short, input({ now: RECEIVED + 4 * MINUTE }))).toEqual({
      action: 'retry',
      delayMs: 30_000,
      deadlineNear: true,
    });
  });
});

describe('planRetry: deadlineNear', () => {
  const near = (p: ReturnType<typeof policy>, now: number) => {
    const plan = planRetry(p, input({ now, attemptNumber: 2 }));
    return plan.action === 'retry' ? plan.deadlineNear : plan.code;
  };

  it('flags the last fifth of the deadline by default (2 of 10 days)', () => {
    const p = policy({ deadline: '10d', delay: '1m', jitter: false });
    expect(near(p, DEADLINE_AT - 2 * DAY - 1)).toBe(false);
    expect(near(p, DEADLINE_AT - 2 * DAY)).toBe(true);
    expect(near(p, DEADLINE_AT - HOUR)).toBe(true);
  });
  it('flags from warnBefore when given', () => {
    const p = policy({ deadline: '10d', warnBefore: '1d', delay: '1m', jitter: false });
    expect(near(p, DEADLINE_AT - 2 * DAY)).toBe(false);
    expect(near(p, DEADLINE_AT - DAY - 1)).toBe(false);
    expect(near(p, DEADLINE_AT - DAY)).toBe(true);
  });
  it('never flags without a deadline', () => {
    const p = policy({ attempts: 10, delay: '1m', jitter: false });
    expect(near(p, RECEIVED + 365 * DAY)).toBe(false);
  });
});

describe('formatDuration', () => {
  it.each([
    [10 * DAY, '10d'],
    [36 * HOUR, '36h'],
    [90 * MINUTE, '90m'],
    [90_000, '90s'],
    [1_500, '1500ms'],
    [0, '0ms'],
  ])('%i ms → %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});
