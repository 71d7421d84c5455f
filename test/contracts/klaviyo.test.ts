/**
 * Contract: connections/examples/klaviyo.yaml against Klaviyo's published spec
 * (operation bulk_unsubscribe_profiles, POST /api/profile-subscription-bulk-delete-jobs, JSON:API).
 * Docs: https://developers.klaviyo.com/en/reference/bulk_unsubscribe_profiles
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EMAILS,
  expectSelfDocumented,
  fixedSecrets,
  loadExample,
  loadSpec,
  render,
  verdictOn,
  type ContractSpec,
} from './helpers.js';
import { invalid, throttled } from './klaviyo-answers.js';

const OPERATION = 'bulk_unsubscribe_profiles';
const KEY = 'pk_4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f01';
const secrets = fixedSecrets({ KLAVIYO_PRIVATE_API_KEY: KEY });
const example = loadExample('klaviyo');

let spec: ContractSpec;
beforeAll(async () => {
  spec = await loadSpec('klaviyo-bulk_unsubscribe_profiles.json.gz', {
    bodies: { [OPERATION]: 'application/vnd.api+json' },
  });
});

const job = (email: string) => ({
  data: {
    type: 'profile-subscription-bulk-delete-job',
    attributes: {
      profiles: {
        data: [
          {
            type: 'profile',
            attributes: { email, subscriptions: { email: { marketing: { consent: 'UNSUBSCRIBED' } } } },
          },
        ],
      },
    },
  },
});

describe('Klaviyo example', () => {
  it('documents its docs, settings and secret, and is linked to nothing', () => {
    expectSelfDocumented(example, ['KLAVIYO_PRIVATE_API_KEY']);
  });

  it('sends the revision its spec describes', () => {
    const revision = spec
      .operation(OPERATION)
      .parameters?.find((p) => 'name' in p && p.name === 'revision') as { schema: { default: string } };
    expect(example.connection.settings.revision).toBe(revision.schema.default);
  });

  it.each(Object.values(EMAILS))('renders the documented JSON:API unsubscribe job for %s', (email) => {
    const request = render(example, secrets, email);
    expect(request).toMatchObject({
      method: 'POST',
      url: 'https://a.klaviyo.com/api/profile-subscription-bulk-delete-jobs',
    });
    expect(request.headers).toEqual({
      accept: 'application/vnd.api+json',
      authorization: `Klaviyo-API-Key ${KEY}`,
      'content-type': 'application/vnd.api+json',
      revision: '2026-07-15',
    });
    // The address exactly as received: Klaviyo matches profiles case-insensitively itself.
    expect(JSON.parse(request.body!)).toEqual(job(email));
    expect(request.secrets).toContain(KEY);

    const check = spec.check(request, OPERATION);
    expect(check.errors).toEqual([]);
    expect(check.body).toEqual(job(email));
  });

  it('the spec catches a wrong consent, content type or missing key (the check can fail)', () => {
    const request = render(example, secrets, EMAILS.apostrophePlus);
    const wrong = JSON.stringify(job(EMAILS.apostrophePlus)).replace('"UNSUBSCRIBED"', '"SUBSCRIBED"');
    expect(spec.check({ ...request, body: wrong }, OPERATION).errors).toEqual([
      'schema: /requestBody/data/attributes/profiles/data/0/attributes/subscriptions/email/marketing/consent must be equal to one of the allowed values',
    ]);
    const asJson = { ...request, headers: { ...request.headers, 'content-type': 'application/json' } };
    expect(spec.check(asJson, OPERATION).errors).toEqual([
      'content-type: application/json is not one of application/vnd.api+json',
    ]);
    const { revision: _dropped, ...noRevision } = request.headers;
    expect(spec.check({ ...request, headers: noRevision }, OPERATION).errors).toEqual([
      "schema: /header must have required property 'revision'",
    ]);
  });

  describe('response rules', () => {
    it('uses answers shaped as the spec documents them', () => {
      expect(spec.checkResponse(OPERATION, 429, throttled)).toEqual([]);
      expect(spec.checkResponse(OPERATION, 400, invalid)).toEqual([]);
    });

    it('202 (job accepted, empty body): delivered', () => {
      expect(verdictOn(example, { status: 202 }).verdict).toBe('success');
    });

    it('429 with Retry-After: rate limited for as long as Klaviyo says', () => {
      const verdict = verdictOn(example, { status: 429, headers: { 'Retry-After': '2' }, body: throttled });
      expect(verdict).toMatchObject({ verdict: 'rate_limited', retryAfterMs: 2_000 });
    });

    it('400 (invalid input): failed; 503: retried', () => {
      expect(verdictOn(example, { status: 400, body: invalid }).verdict).toBe('fail');
      expect(verdictOn(example, { status: 503 }).verdict).toBe('retry');
    });
  });
});
