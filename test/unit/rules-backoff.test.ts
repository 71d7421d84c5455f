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
