import { describe, expect, it } from 'vitest';
import { rateLimitDelay, resetDelay } from '../../src/rules/rate-limit.js';

const NOW = Date.parse('2026-11-23T12:00:00Z');

describe('resetDelay', () => {
  it.each([
    ['delta seconds', '30', 30_000],
    ['fractional delta seconds', '1.5', 1_500],
    ['zero', '0', 0],
    ['delta seconds just under the epoch threshold', '1000000000', 1e12],
    ['epoch seconds', String(NOW / 1000 + 60), 60_000],
    ['epoch milliseconds', String(NOW + 2_500), 2_500],
    ['epoch seconds in the past', String(NOW / 1000 - 60), 0],
    ['epoch milliseconds in the past', String(NOW - 1), 0],
    ['an HTTP date', 'Mon, 23 Nov 2026 12:05:00 GMT', 300_000],
    ['padding', ' 7 ', 7_000],
  ])('%s', (_name, value, expected) => {
    expect(resetDelay(value, NOW)).toBe(expected);
  });
  it.each(['', 'soon', '-5', '1e3', '12s'])('ignores %j', (value) => {
    expect(resetDelay(value, NOW)).toBeUndefined();
  });
  it('ignores a missing header', () => {
    expect(resetDelay(undefined, NOW)).toBeUndefined();
  });
});

describe('rateLimitDelay', () => {
  it('takes the named header, then Retry-After, then X-RateLimit-Reset', () => {
    const all = { 'x-wait': '3', 'retry-after': '20', 'x-ratelimit-reset': '100' };
    expect(rateLimitDelay(all, NOW, 'X-Wait')).toBe(3_000);
    expect(rateLimitDelay(all, NOW)).toBe(20_000);
    expect(rateLimitDelay({ 'x-ratelimit-reset': '100' }, NOW, 'X-Wait')).toBe(100_000);
    expect(rateLimitDelay({}, NOW, 'X-Wait')).toBeUndefined();
  });
  it('skips a named header it cannot read', () => {
    expect(rateLimitDelay({ 'x-wait': 'later', 'retry-after': '20' }, NOW, 'X-Wait')).toBe(20_000);
  });
  it('finds headers whatever their case', () => {
    expect(rateLimitDelay({ 'X-RateLimit-Reset': '9' }, NOW)).toBe(9_000);
    expect(rateLimitDelay({ 'x-wait': '4' }, NOW, 'X-WAIT')).toBe(4_000);
  });
});
