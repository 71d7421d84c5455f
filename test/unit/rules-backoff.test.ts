import { describe, expect, it } from 'vitest';
import { retrySchema } from '../../src/config/connection-schema.js';
import { retryDelay } from '../../src/rules/backoff.js';

const policy = (input: object) => retrySchema.parse(input);

describe('retryDelay', () => {
  it('doubles from the first delay and stops at maxDelay', () => {
    const p = policy({ delay: '1s', maxDelay: '10s', jitter: false });
    expect([1, 2, 3, 4, 5, 6].map((n) => retryDelay(p, n, undefined))).toEqual([
      1_000, 2_000, 4_000, 8_000, 10_000, 10_000,
    ]);
  });
  it('keeps a fixed delay fixed', () => {
    const p = policy({ backoff: 'fixed', delay: '5s', jitter: false });
    expect([1, 2, 9].map((n) => retryDelay(p, n, undefined))).toEqual([5_000, 5_000, 5_000]);
  });
  it('spreads jittered delays over [d/2, d]', () => {
    const p = policy({ delay: '4s', jitter: true });
    expect(retryDelay(p, 1, undefined, () => 0)).toBe(2_000);
    expect(retryDelay(p, 1, undefined, () => 0.999_999)).toBe(4_000);
    expect(retryDelay(p, 2, undefined, () => 0.5)).toBe(6_000);
  });
  it('lets Retry-After win, capped by maxRetryAfter', () => {
    const p = policy({ delay: '1s', maxRetryAfter: '1m', jitter: true });
    expect(retryDelay(p, 1, 20_000, () => 0)).toBe(20_000);
    expect(retryDelay(p, 1, 3_600_000)).toBe(60_000);
    expect(retryDelay(p, 1, -5)).toBe(0);
  });
  it('does not overflow after many attempts', () => {
    expect(retryDelay(policy({ delay: '5s', maxDelay: '1h', jitter: false }), 1_000, undefined)).toBe(
      3_600_000,
    );
  });
});

describe('retryDelay with backoff: schedule', () => {
  const p = policy({ backoff: 'schedule', schedule: ['1m', '5m', '30m', '2h'], jitter: false });

  it('takes schedule[n-1] and repeats the last entry', () => {
    expect([1, 2, 3, 4, 5, 50].map((n) => retryDelay(p, n, undefined))).toEqual([
      60_000, 300_000, 1_800_000, 3_600_000, 3_600_000, 3_600_000,
    ]);
  });
  it('caps entries at maxDelay (default 1h) and at a higher one when raised', () => {
    const raised = policy({ backoff: 'schedule', schedule: ['1m', '2h'], maxDelay: '3h', jitter: false });
    expect(retryDelay(raised, 2, undefined)).toBe(7_200_000);
  });
  it('jitters each entry over [d/2, d]', () => {
    const jittered = policy({ backoff: 'schedule', schedule: ['10s', '1m'] });
    expect(retryDelay(jittered, 1, undefined, () => 0)).toBe(5_000);
    expect(retryDelay(jittered, 2, undefined, () => 0.5)).toBe(45_000);
  });
  it('reads attempt 0 as the first entry', () => {
    expect(retryDelay(p, 0, undefined)).toBe(60_000);
  });
  it('still lets Retry-After win', () => {
    expect(retryDelay(p, 3, 15_000)).toBe(15_000);
  });
});
