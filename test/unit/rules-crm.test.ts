import { describe, expect, it } from 'vitest';
import { ruleSchema, type Rule } from '../../src/config/connection-schema.js';
import type { SendOutcome } from '../../src/domain/delivery.js';
import { classify } from '../../src/rules/classify.js';

// Real CRM answers (shapes from their docs) and the rules a connection author writes for them.

const NOW = Date.parse('2026-11-23T12:00:00Z');
const response = (
  status: number,
  body: string | object,
  headers: Record<string, string> = {},
): SendOutcome => ({
  kind: 'response',
  status,
  headers,
  body: typeof body === 'string' ? body : JSON.stringify(body),
  bodyTruncated: false,
  durationMs: 80,
});
const rules = (...input: unknown[]): Rule[] => input.map((rule) => ruleSchema.parse(rule));

describe('HubSpot: 400 for an address that is already unsubscribed', () => {
  const already = {
    status: 'error',
    message: 'jane@example.com is already unsubscribed from subscription 7283917',
    correlationId: '3f1c5b0e-7a2d-4c55-9a1e-2c5f3b8d9e10',
    category: 'VALIDATION_ERROR',
  };
  const invalid = {
    status: 'error',
    message: 'Invalid email address: jane@',
    correlationId: 'a1b2c3d4-0000-4000-8000-000000000000',
    category: 'VALIDATION_ERROR',
  };

  it('counts it as delivered with a bodyContains rule', () => {
    const list = rules(
      { when: { status: 400, bodyContains: 'is already unsubscribed' }, then: 'success_already_done' },
      { when: { status: '4xx' }, then: 'fail' },
    );
    expect(classify(list, response(400, already), NOW)).toEqual({
      verdict: 'success_already_done',
      rule: 0,
      reason:
        'rule 1 (success_already_done) matched status 400: the CRM says it was already done (counted as delivered)',
    });
    expect(classify(list, response(400, invalid), NOW)).toEqual({
      verdict: 'fail',
      rule: 1,
      code: 'RULE_FAIL',
      reason: 'rule 2 (fail) matched status 400',
    });
  });

  it('counts it as delivered with JSON tests, all of which must hold', () => {
    const list = rules({
      when: {
        status: 400,
        json: [
          { path: '$.category', equals: 'VALIDATION_ERROR' },
          { path: '$.message', contains: 'already unsubscribed' },
        ],
      },
      then: 'success_already_done',
      reason: 'HubSpot says already unsubscribed',
    });
    expect(classify(list, response(400, already), NOW)).toEqual({
      verdict: 'success_already_done',
      rule: 0,
      reason: 'HubSpot says already unsubscribed',
    });
    // Same category, other message: one test fails, so the rule does not match.
    expect(classify(list, response(400, invalid), NOW)).toMatchObject({ verdict: 'fail', rule: 'default' });
  });
});

describe('Mailchimp: 404 for an unknown member, 400 for a member in compliance state', () => {
  const notFound = {
    type: 'https://mailchimp.com/developer/marketing/docs/errors/',
    title: 'Resource Not Found',
    status: 404,
    detail: 'The requested resource could not be found.',
    instance: '995c5cb0-3280-4a6e-808b-3b096d0bb219',
  };
  const compliance = {
    type: 'https://mailchimp.com/developer/marketing/docs/errors/',
    title: 'Member In Compliance State',
    status: 400,
    detail: 'jane@example.com is already a list member in compliance state due to unsubscribe.',
    instance: '0c3e2b1a-3a4f-4b1e-9d7c-1f2e3d4c5b6a',
  };
  const list = rules(
    {
      when: { status: 404, json: { path: '$.title', equals: 'Resource Not Found' } },
      then: 'success_already_done',
      reason: 'Mailchimp has no such member: nothing to unsubscribe',
    },
    {
      when: {
        json: { path: '$.title', in: ['Member In Compliance State', 'Forgotten Email Not Subscribed'] },
      },
      then: 'success_already_done',
    },
  );

  it('treats an unknown member as done: no mail can reach it', () => {
    expect(classify(list, response(404, notFound), NOW)).toEqual({
      verdict: 'success_already_done',
      rule: 0,
      reason: 'Mailchimp has no such member: nothing to unsubscribe',
    });
  });
  it('treats a member in compliance state as done, via `in`', () => {
    expect(classify(list, response(400, compliance), NOW)).toMatchObject({
      verdict: 'success_already_done',
      rule: 1,
    });
  });
  it("still fails a 404 that is not Mailchimp's JSON (a wrong data-centre host answering HTML)", () => {
    expect(classify(list, response(404, '<html><body>Not Found</body></html>'), NOW)).toMatchObject({
      verdict: 'fail',
      rule: 'default',
      code: 'HTTP_STATUS',
    });
  });
});

describe('200 responses that carry an error', () => {
  const soap = (status: 'OK' | 'Error') => `<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
  <soap:Body>
    <UpdateResponse xmlns="http://exacttarget.com/wsdl/partnerAPI">
      <Results>
        <StatusCode>${status}</StatusCode>
        <StatusMessage>${status === 'OK' ? 'Updated Subscriber.' : 'Error: Subscriber not found'}</StatusMessage>
      </Results>
      <OverallStatus>${status}</OverallStatus>
      <RequestID>9a4f4d7e-2b5c-4f0b-8a6e-1d2c3b4a5f60</RequestID>
    </UpdateResponse>
  </soap:Body>
</soap:Envelope>`;

  it('fails a SOAP answer whose OverallStatus is Error (Salesforce Marketing Cloud)', () => {
    const list = rules({
      when: { status: 200, bodyMatches: '<OverallStatus>\\s*Error' },
      then: 'fail',
      reason: 'SFMC OverallStatus=Error',
    });
    expect(classify(list, response(200, soap('Error')), NOW)).toEqual({
      verdict: 'fail',
      rule: 0,
      code: 'RULE_FAIL',
      reason: 'SFMC OverallStatus=Error',
    });
    expect(classify(list, response(200, soap('OK')), NOW)).toMatchObject({
      verdict: 'success',
      rule: 'default',
    });
  });

  it('fails {"success": false} with a JSON test, strictly typed', () => {
    const list = rules({ when: { status: '2xx', json: { path: '$.success', equals: false } }, then: 'fail' });
    expect(classify(list, response(200, '{"success": false, "error": "list not found"}'), NOW)).toMatchObject(
      {
        verdict: 'fail',
        rule: 0,
        code: 'RULE_FAIL',
      },
    );
    expect(classify(list, response(200, '{"success": true}'), NOW).verdict).toBe('success');
    // The string "false" is not the boolean false: a JSON test compares types too.
    expect(classify(list, response(200, '{"success": "false"}'), NOW).verdict).toBe('success');
    // An empty 204 is not JSON: the test does not match (and does not throw).
    expect(classify(list, response(204, ''), NOW).verdict).toBe('success');
  });
});

describe('per-item statuses in a batch response', () => {
  // Iterable-style answer: 200 even when the address was refused.
  const batch = (invalid: string[]) => ({
    successCount: invalid.length === 0 ? 1 : 0,
    failCount: invalid.length,
    invalidEmails: invalid,
    invalidUserIds: [],
  });
  const list = rules({
    when: { status: 200, json: { path: '$.invalidEmails', contains: '{{email}}' } },
    then: 'fail',
    reason: 'the CRM refused this address',
  });
  const resolverFor = (email: string) => (value: string) => value.replaceAll('{{email}}', email);

  it('fails the delivery whose own address the CRM lists as invalid', () => {
    const outcome = response(200, batch(['x@example.com']));
    expect(classify(list, outcome, NOW, resolverFor('x@example.com'))).toEqual({
      verdict: 'fail',
      rule: 0,
      code: 'RULE_FAIL',
      reason: 'the CRM refused this address',
    });
  });
  it('lets another address in the same batch answer through', () => {
    expect(
      classify(list, response(200, batch(['x@example.com'])), NOW, resolverFor('y@example.com')),
    ).toMatchObject({
      verdict: 'success',
      rule: 'default',
    });
    expect(classify(list, response(200, batch([])), NOW, resolverFor('x@example.com')).verdict).toBe(
      'success',
    );
  });
  it('compares whole array elements, not substrings of them', () => {
    // "x@example.com" is a substring of "max@example.com", but not an element of the list.
    expect(
      classify(list, response(200, batch(['max@example.com'])), NOW, resolverFor('x@example.com')).verdict,
    ).toBe('success');
  });
  it('matches the address inside error objects with a filter', () => {
    const errors = rules({
      when: {
        json: { path: "$.errors[?(@.code == 'INVALID_EMAIL')].email", equals: '{{email}}' },
      },
      then: 'fail',
    });
    const body = {
      errors: [
        { code: 'INVALID_EMAIL', email: 'x@example.com' },
        { code: 'RATE_LIMIT', email: 'y@example.com' },
      ],
    };
    expect(classify(errors, response(207, body), NOW, resolverFor('x@example.com')).verdict).toBe('fail');
    expect(classify(errors, response(207, body), NOW, resolverFor('y@example.com')).verdict).toBe('success');
  });
  it('without a resolver compares the template text itself', () => {
    expect(classify(list, response(200, batch(['x@example.com'])), NOW).verdict).toBe('success');
    expect(classify(list, response(200, batch(['{{email}}'])), NOW).verdict).toBe('fail');
  });
});

describe('throttling and refused credentials', () => {
  it('waits out a rate limit as Retry-After says', () => {
    const list = rules({ when: { status: 429 }, then: 'rate_limited', reason: 'Klaviyo throttled us' });
    expect(
      classify(
        list,
        response(429, { errors: [{ status: 429, code: 'throttled' }] }, { 'retry-after': '30' }),
        NOW,
      ),
    ).toEqual({
      verdict: 'rate_limited',
      rule: 0,
      code: 'RATE_LIMITED',
      reason: 'Klaviyo throttled us',
      retryAfterMs: 30_000,
    });
  });
  it('reads X-RateLimit-Reset as delta seconds, epoch seconds or epoch milliseconds', () => {
    const list = rules({ when: { status: 429 }, then: 'rate_limited' });
    const after = (reset: string) => classify(list, response(429, '', { 'x-ratelimit-reset': reset }), NOW);
    expect(after('45')).toMatchObject({
      verdict: 'rate_limited',
      code: 'RATE_LIMITED',
      retryAfterMs: 45_000,
    });
    expect(after(String(NOW / 1000 + 120))).toMatchObject({ retryAfterMs: 120_000 });
    expect(after(String(NOW + 90_500))).toMatchObject({ retryAfterMs: 90_500 });
    // A reset already in the past means "now".
    expect(after(String(NOW / 1000 - 10))).toMatchObject({ retryAfterMs: 0 });
  });
  it('prefers the header the rule names, and falls back when it is missing', () => {
    const list = rules({
      when: { status: [429, 503], bodyContains: 'rate limit' },
      then: 'rate_limited',
      delayHeader: 'RateLimit-Reset',
    });
    const body = '{"message":"API rate limit exceeded"}';
    expect(
      classify(list, response(503, body, { 'ratelimit-reset': '12', 'retry-after': '600' }), NOW),
    ).toMatchObject({
      verdict: 'rate_limited',
      rule: 0,
      retryAfterMs: 12_000,
    });
    expect(classify(list, response(503, body, { 'retry-after': '600' }), NOW)).toMatchObject({
      retryAfterMs: 600_000,
    });
  });
  it('leaves the delay to the backoff schedule when no header says', () => {
    const verdict = classify(rules({ when: { status: 429 }, then: 'rate_limited' }), response(429, ''), NOW);
    expect(verdict).toEqual({
      verdict: 'rate_limited',
      rule: 0,
      code: 'RATE_LIMITED',
      reason: 'rule 1 (rate_limited) matched status 429',
    });
  });
  it("uses a rate_limited rule's own `after` only when the CRM sends no usable header", () => {
    const list = rules({ when: { status: 429 }, then: 'rate_limited', after: '2m' });
    expect(classify(list, response(429, ''), NOW)).toMatchObject({ retryAfterMs: 120_000 });
    expect(classify(list, response(429, '', { 'retry-after': '5' }), NOW)).toMatchObject({
      retryAfterMs: 5_000,
    });
  });
  it('asks for a new token on a 401', () => {
    const list = rules({ when: { status: 401 }, then: 'refresh_auth' });
    const body = '{"error":"invalid_token","error_description":"Access token expired"}';
    expect(
      classify(list, response(401, body, { 'www-authenticate': 'Bearer error="invalid_token"' }), NOW),
    ).toEqual({
      verdict: 'refresh_auth',
      rule: 0,
      code: 'AUTH_REFUSED',
      reason: 'rule 1 (refresh_auth) matched status 401',
    });
  });
});
