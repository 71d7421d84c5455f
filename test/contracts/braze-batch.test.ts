/**
 * Contract: connections/examples/braze-batch.yaml (braze.yaml, batched) against Braze's documented
 * request (Braze publishes no OpenAPI spec).
 * https://www.braze.com/docs/api/endpoints/email/post_email_subscription_status/
 *
 *   email               required  string or array  "String email address to modify, or an array
 *                                                   of up to 50 email addresses to modify."
 *   subscription_state  required  string           "subscribed", "unsubscribed" or "opted_in"
 *
 * Answers (https://www.braze.com/docs/api/errors/): {"message":"success"}; a request that succeeded
 * with non-fatal errors adds "errors": [<minor error message>], and everything not affected by
 * those errors is still done; a fatal error is {"message": <fatal error message>, "errors": [...]}.
 */
import { describe, expect, it } from 'vitest';
import {
  EMAILS,
  expectBatchVariantOf,
  expectSelfDocumented,
  fixedSecrets,
  loadExample,
  renderBatch,
  verdictsOn,
  type CrmAnswer,
} from './helpers.js';

const KEY = '9b7c2d5e-1f3a-4b6c-8d0e-2f4a6b8c0d1e';
const secrets = fixedSecrets({ BRAZE_REST_API_KEY: KEY });
const example = loadExample('braze-batch');
const DOCUMENTED_FIELDS = ['email', 'subscription_state'];
const DOCUMENTED_MAX = 50;
const EMAILS_IN_BATCH = [...Object.values(EMAILS), 'jane.doe@example.com'];

describe('Braze batch example', () => {
  it('documents its docs, settings, secret and maximum, and is braze.yaml batched', () => {
    expectSelfDocumented(example, ['BRAZE_REST_API_KEY']);
    expectBatchVariantOf(example, loadExample('braze'));
    expect(example.connection.batch).toEqual({ maxSize: DOCUMENTED_MAX, maxWait: 1_000 });
  });

  it('renders one /email/status request whose email array lists every address', () => {
    const request = renderBatch(example, secrets, EMAILS_IN_BATCH);
    expect(request).toMatchObject({ method: 'POST', url: 'https://rest.iad-01.braze.com/email/status' });
    expect(request.headers).toEqual({
      accept: 'application/json',
      authorization: `Bearer ${KEY}`,
      'content-type': 'application/json',
    });
    const body = JSON.parse(request.body!) as Record<string, unknown>;
    expect(body).toEqual({ email: EMAILS_IN_BATCH, subscription_state: 'unsubscribed' });
    expect(Object.keys(body).sort()).toEqual(DOCUMENTED_FIELDS);
    expect(request.secrets).toContain(KEY);
  });

  it('a full batch is the documented array of up to 50 addresses', () => {
    const emails = Array.from({ length: DOCUMENTED_MAX }, (_, i) => `unsub-${i}+list@example.com`);
    const body = JSON.parse(renderBatch(example, secrets, emails).body!) as { email: string[] };
    expect(body.email).toEqual(emails);
    expect(body.email.length).toBeLessThanOrEqual(DOCUMENTED_MAX);
  });

  it('uses the instance REST endpoint from the settings, as a base URL', () => {
    const eu = {
      ...example,
      connection: { ...example.connection, settings: { restEndpoint: 'https://rest.fra-02.braze.eu' } },
    };
    expect(renderBatch(eu, secrets, EMAILS_IN_BATCH).url).toBe('https://rest.fra-02.braze.eu/email/status');
  });

  describe('response rules, per item', () => {
    const verdicts = (answer: CrmAnswer) =>
      verdictsOn(example, answer, EMAILS_IN_BATCH).map((v) => v.verdict);

    it('2xx with "message":"success": every delivery succeeds', () => {
      expect(verdicts({ status: 201, body: { message: 'success' } })).toEqual([
        'success',
        'success',
        'success',
        'success',
      ]);
    });

    it('success with a non-fatal error naming one address: that delivery fails alone', () => {
      // The documented shape; Braze does not document the message text for /email/status.
      const partial = { message: 'success', errors: [`Invalid email address: ${EMAILS.upper}`] };
      const all = verdictsOn(example, { status: 201, body: partial }, EMAILS_IN_BATCH);
      expect(all.map((v) => v.verdict)).toEqual(['success', 'fail', 'success', 'success']);
      expect(all[1]).toMatchObject({
        code: 'RULE_FAIL',
        reason: expect.stringContaining('error for this address'),
      });
      // Errors as objects (as other Braze endpoints write them) are read too.
      const structured = {
        message: 'success',
        errors: [{ type: 'invalid email', input: EMAILS.apostrophePlus, index: 0 }],
      };
      expect(verdicts({ status: 201, body: structured })).toEqual(['fail', 'success', 'success', 'success']);
      // A non-fatal error that names no address fails nobody.
      expect(verdicts({ status: 201, body: { message: 'success', errors: ['something minor'] } })).toEqual([
        'success',
        'success',
        'success',
        'success',
      ]);
    });

    it('2xx without "success", or a 400: every delivery fails, so the engine splits the batch', () => {
      const fatal = { message: 'Valid data must be provided in the email field.' };
      expect(verdicts({ status: 201, body: fatal })).toEqual(['fail', 'fail', 'fail', 'fail']);
      expect(verdicts({ status: 400, body: { message: 'Invalid email address' } })).toEqual([
        'fail',
        'fail',
        'fail',
        'fail',
      ]);
    });

    it('429 with X-RateLimit-Reset: every delivery waits; 5xx: retried', () => {
      const limited = verdicts({
        status: 429,
        headers: {
          'X-RateLimit-Limit': '250000',
          'X-RateLimit-Remaining': '0',
          'X-RateLimit-Reset': '1795433280',
        },
        body: { message: 'Rate limit exceeded' },
      });
      expect(new Set(limited)).toEqual(new Set(['rate_limited']));
      expect(verdicts({ status: 503 })).toEqual(['retry', 'retry', 'retry', 'retry']);
    });
  });
});
