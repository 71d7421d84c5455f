/**
 * Contract: connections/examples/braze.yaml against Braze's documented request (Braze publishes no
 * OpenAPI spec). https://www.braze.com/docs/api/endpoints/email/post_email_subscription_status/
 *
 *   POST https://rest.iad-01.braze.com/email/status
 *   Content-Type: application/json
 *   Authorization: Bearer YOUR-REST-API-KEY
 *   { "email": "example@example.com", "subscription_state": "subscribed" }
 *
 *   email               required  string or array  an address, or up to 50
 *   subscription_state  required  string           "subscribed", "unsubscribed" or "opted_in"
 *
 * The REST endpoint depends on the instance (https://www.braze.com/docs/api/basics/#endpoints):
 * https://rest.<instance>.braze.com (e.g. iad-01 ... iad-08, fra-01, fra-02).
 */
import { describe, expect, it } from 'vitest';
import { EMAILS, expectSelfDocumented, fixedSecrets, loadExample, render, verdictOn } from './helpers.js';

const KEY = '9b7c2d5e-1f3a-4b6c-8d0e-2f4a6b8c0d1e';
const secrets = fixedSecrets({ BRAZE_REST_API_KEY: KEY });
const example = loadExample('braze');
const DOCUMENTED_FIELDS = ['email', 'subscription_state'];
const DOCUMENTED_STATES = ['subscribed', 'unsubscribed', 'opted_in'];

describe('Braze example', () => {
  it('documents its docs, settings and secret, and is linked to nothing', () => {
    expectSelfDocumented(example, ['BRAZE_REST_API_KEY']);
  });

  it.each(Object.values(EMAILS))('renders the documented /email/status request for %s', (email) => {
    const request = render(example, secrets, email);
    expect(request).toMatchObject({ method: 'POST', url: 'https://rest.iad-01.braze.com/email/status' });
    expect(request.headers).toEqual({
      accept: 'application/json',
      authorization: `Bearer ${KEY}`,
      'content-type': 'application/json',
    });
    const body = JSON.parse(request.body!) as Record<string, unknown>;
    expect(body).toEqual({ email, subscription_state: 'unsubscribed' });
    expect(Object.keys(body).sort()).toEqual(DOCUMENTED_FIELDS);
    expect(DOCUMENTED_STATES).toContain(body.subscription_state);
    expect(request.secrets).toContain(KEY);
  });

  it('uses the instance REST endpoint from the settings, as a base URL', () => {
    const eu = {
      ...example,
      connection: { ...example.connection, settings: { restEndpoint: 'https://rest.fra-02.braze.eu' } },
    };
    expect(render(eu, secrets, EMAILS.upper).url).toBe('https://rest.fra-02.braze.eu/email/status');
  });

  describe('response rules', () => {
    // https://www.braze.com/docs/api/errors/ : 201 {"message":"success"}; errors carry other messages.
    it('2xx with "message":"success": delivered', () => {
      expect(verdictOn(example, { status: 201, body: { message: 'success' } }).verdict).toBe('success');
    });

    it('2xx without "success": failed, so nothing is counted delivered on a partial answer', () => {
      const verdict = verdictOn(example, {
        status: 201,
        body: { message: 'Valid data must be provided in the email field.' },
      });
      expect(verdict.verdict).toBe('fail');
    });

    it('429 with X-RateLimit-Reset: rate limited; 5xx: retried; 400 and 401: failed', () => {
      const limited = verdictOn(example, {
        status: 429,
        headers: {
          'X-RateLimit-Limit': '250000',
          'X-RateLimit-Remaining': '0',
          'X-RateLimit-Reset': '1795433280',
        },
        body: { message: 'Rate limit exceeded' },
      });
      expect(limited.verdict).toBe('rate_limited');
      expect(verdictOn(example, { status: 503 }).verdict).toBe('retry');
      expect(verdictOn(example, { status: 400, body: { message: 'Invalid email address' } }).verdict).toBe(
        'fail',
      );
      expect(
        verdictOn(example, { status: 401, body: { message: 'Invalid API key: [REDACTED]' } }).verdict,
      ).toBe('fail');
    });
  });
});
