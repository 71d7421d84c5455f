import { describe, expect, it } from 'vitest';
import { ruleSchema, type Rule } from '../../src/config/connection-schema.js';
import type { SendOutcome } from '../../src/domain/delivery.js';
import { classify, statusMatches } from '../../src/rules/classify.js';

const NOW = Date.parse('2026-11-23T12:00:00Z');
const response = (status: number, body = '', headers: Record<string, string> = {}): SendOutcome => ({
  kind: 'response',
  status,
  headers,
  body,
  bodyTruncated: false,
  durationMs: 12,
});
const rules = (...input: unknown[]): Rule[] => input.map((rule) => ruleSchema.parse(rule));

describe('default classification', () => {
  it.each([200, 201, 202, 204, 299])('%i is a success', (status) => {
    expect(classify([], response(status), NOW).verdict).toBe('success');
  });
  it.each([408, 425, 500, 502, 503, 504, 599])('%i is retried', (status) => {
    expect(classify([], response(status), NOW)).toMatchObject({
      verdict: 'retry',
      code: 'HTTP_STATUS',
      rule: 'default',
    });
  });
  it.each([400, 401, 403, 404, 409, 410, 422])('%i fails permanently', (status) => {
    expect(classify([], response(status), NOW)).toMatchObject({
      verdict: 'fail',
      code: 'HTTP_STATUS',
      rule: 'default',
    });
  });
  it('treats a 429 without a rule as throttling, not a failed attempt', () => {
    expect(classify([], response(429), NOW)).toEqual({
      verdict: 'rate_limited',
      rule: 'default',
      code: 'RATE_LIMITED',
      reason: 'status 429: the CRM is throttling',
    });
    expect(classify([], response(429, '', { 'x-ratelimit-reset': '20' }), NOW)).toMatchObject({
      verdict: 'rate_limited',
      retryAfterMs: 20_000,
    });
  });
  it('keeps a 401 without a rule a plain failure (the worker refreshes OAuth2 tokens itself)', () => {
    expect(classify([], response(401), NOW)).toMatchObject({ verdict: 'fail', code: 'HTTP_STATUS' });
  });
  it('fails a redirect and says where it pointed', () => {
    const verdict = classify([], response(301, '', { location: 'https://new.example.com/' }), NOW);
    expect(verdict).toMatchObject({ verdict: 'fail' });
    expect(verdict.reason).toContain('https://new.example.com/');
  });
  it('honours Retry-After in seconds and as an HTTP date', () => {
    expect(classify([], response(429, '', { 'retry-after': '7' }), NOW)).toMatchObject({
      verdict: 'rate_limited',
      retryAfterMs: 7_000,
    });
    const date = new Date(NOW + 90_000).toUTCString();
    expect(classify([], response(503, '', { 'retry-after': date }), NOW)).toMatchObject({
      retryAfterMs: 90_000,
    });
  });
  it('retries transport errors but not a refused target', () => {
    const error = (code: Extract<SendOutcome, { kind: 'error' }>['code']): SendOutcome => ({
      kind: 'error',
      code,
      message: code,
      durationMs: 1,
    });
    expect(classify([], error('NETWORK'), NOW)).toMatchObject({ verdict: 'retry', code: 'NETWORK' });
    expect(classify([], error('HEADERS_TIMEOUT'), NOW)).toMatchObject({
      verdict: 'retry',
      code: 'HEADERS_TIMEOUT',
    });
    expect(classify([], error('TARGET_REFUSED'), NOW)).toMatchObject({
      verdict: 'fail',
      code: 'TARGET_REFUSED',
    });
  });
});

describe('connection rules', () => {
  it('takes the first matching rule, in order', () => {
    const list = rules(
      {
        when: { status: 400, bodyContains: 'already unsubscribed' },
        then: 'success',
        reason: 'already done',
      },
      { when: { status: '4xx' }, then: 'fail' },
    );
    expect(classify(list, response(400, '{"message":"already unsubscribed"}'), NOW)).toEqual({
      verdict: 'success',
      rule: 0,
      reason: 'already done',
    });
    expect(classify(list, response(400, '{"message":"bad email"}'), NOW)).toMatchObject({
      verdict: 'fail',
      rule: 1,
      code: 'RULE_FAIL',
    });
  });
  it('falls back to the defaults when nothing matches', () => {
    expect(classify(rules({ when: { status: 404 }, then: 'success' }), response(503), NOW)).toMatchObject({
      verdict: 'retry',
      rule: 'default',
    });
  });
  it('applies "otherwise" to anything left', () => {
    expect(classify(rules({ otherwise: 'fail' }), response(503), NOW)).toMatchObject({
      verdict: 'fail',
      rule: 0,
    });
  });
  it('catches a 200 that carries an error', () => {
    const list = rules({ when: { status: 200, bodyMatches: '"success"\\s*:\\s*false' }, then: 'fail' });
    expect(classify(list, response(200, '{"success": false}'), NOW)).toMatchObject({
      verdict: 'fail',
      rule: 0,
    });
    expect(classify(list, response(200, '{"success": true}'), NOW)).toMatchObject({
      verdict: 'success',
      rule: 'default',
    });
  });
  it('matches headers by presence, value and pattern', () => {
    const list = rules({
      when: { header: { name: 'X-Status', matches: '^err' } },
      then: 'retry',
      after: '30s',
    });
    expect(classify(list, response(200, '', { 'x-status': 'error-temporary' }), NOW)).toMatchObject({
      verdict: 'retry',
      retryAfterMs: 30_000,
    });
    expect(classify(list, response(200, '', { 'x-status': 'ok' }), NOW).verdict).toBe('success');
  });
  it('uses Retry-After for a retry rule without its own delay', () => {
    const list = rules({ when: { status: 420 }, then: 'retry' });
    expect(classify(list, response(420, '', { 'retry-after': '3' }), NOW)).toMatchObject({
      verdict: 'retry',
      retryAfterMs: 3_000,
    });
  });
});

describe('status matching', () => {
  it.each([
    [200, 200, true],
    ['2xx', 204, true],
    ['2xx', 300, false],
    ['500-503', 503, true],
    ['500-503', 504, false],
  ] as const)('%s vs %i → %s', (match, status, expected) => {
    expect(statusMatches(match, status)).toBe(expected);
  });
});
