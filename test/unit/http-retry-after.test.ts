import { describe, expect, it } from 'vitest';
import { parseRetryAfter } from '../../src/http/retry-after.js';

const now = Date.UTC(2025, 5, 1, 12, 0, 0); // Sun, 01 Jun 2025 12:00:00 GMT

describe('parseRetryAfter', () => {
  it.each([
    ['0', 0],
    ['120', 120_000],
    ['  30 ', 30_000],
    ['007', 7_000],
  ])('reads delta-seconds %j', (value, ms) => {
    expect(parseRetryAfter({ 'retry-after': value }, now)).toBe(ms);
  });

  it.each([
    ['Sun, 01 Jun 2025 12:01:30 GMT', 90_000, 'IMF-fixdate'],
    ['sun, 01 jun 2025 12:01:30 gmt', 90_000, 'IMF-fixdate, any case'],
    ['Sunday, 01-Jun-25 13:00:00 GMT', 3_600_000, 'RFC 850'],
    ['Sun Jun  1 12:00:05 2025', 5_000, 'asctime, space-padded day, read as UTC'],
    ['Mon Jun 02 12:00:00 2025', 86_400_000, 'asctime, two-digit day'],
    ['Sun, 01 Jun 2025 12:00:00 GMT', 0, 'exactly now'],
  ])('reads HTTP-date %j (%s)', (value, ms) => {
    expect(parseRetryAfter({ 'retry-after': value }, now)).toBe(ms);
  });

  it('never returns a negative wait for a date in the past', () => {
    expect(parseRetryAfter({ 'retry-after': 'Sat, 31 May 2025 12:00:00 GMT' }, now)).toBe(0);
  });

  it('finds the header whatever its case', () => {
    expect(parseRetryAfter({ 'Retry-After': '5' }, now)).toBe(5_000);
  });

  it.each([
    ['', 'empty'],
    ['-5', 'negative'],
    ['1.5', 'fractional seconds'],
    ['soon', 'words'],
    ['1 2', 'something Date.parse would accept'],
    ['2025-06-01T12:01:00Z', 'ISO 8601 is not an HTTP-date'],
    ['Sun, 01 Jun 2025 12:01:30 PST', 'zone other than GMT'],
    ['Sun, 31 Feb 2025 12:00:00 GMT', 'a day that does not exist'],
    ['Sun, 01 Foo 2025 12:00:00 GMT', 'unknown month'],
    ['Sun, 01 Jun 2025 25:00:00 GMT', 'hour out of range'],
  ])('ignores %j (%s)', (value) => {
    expect(parseRetryAfter({ 'retry-after': value }, now)).toBeUndefined();
  });

  it('is undefined when the header is absent', () => {
    expect(parseRetryAfter({ 'content-type': 'text/plain' }, now)).toBeUndefined();
  });

  it('reads a two-digit RFC 850 year more than 50 years ahead as the past century', () => {
    // "99" from 2025 would be 2099, more than 50 years ahead: it is 1999, long past.
    expect(parseRetryAfter({ 'retry-after': 'Friday, 31-Dec-99 23:59:59 GMT' }, now)).toBe(0);
    // "70" would be 2070, within 50 years: a wait of 45 years, not a date in 1970.
    expect(parseRetryAfter({ 'retry-after': 'Sunday, 01-Jun-70 12:00:00 GMT' }, now)).toBe(
      Date.UTC(2070, 5, 1, 12) - now,
    );
  });
});
