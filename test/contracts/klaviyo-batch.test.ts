/**
 * Contract: connections/examples/klaviyo-batch.yaml (klaviyo.yaml, batched) against Klaviyo's
 * published spec (operation bulk_unsubscribe_profiles, POST /api/profile-subscription-bulk-delete-jobs,
 * JSON:API), whose description gives the per-call maximum: 100 profiles.
 * Docs: https://developers.klaviyo.com/en/reference/bulk_unsubscribe_profiles
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EMAILS,
  expectBatchVariantOf,
  expectSelfDocumented,
  fixedSecrets,
  loadExample,
  loadSpec,
  renderBatch,
  verdictsOn,
  type ContractSpec,
} from './helpers.js';
import { invalid, throttled } from './klaviyo-answers.js';

const OPERATION = 'bulk_unsubscribe_profiles';
const KEY = 'pk_4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f01';
const secrets = fixedSecrets({ KLAVIYO_PRIVATE_API_KEY: KEY });
const example = loadExample('klaviyo-batch');
const EMAILS_IN_BATCH = [...Object.values(EMAILS), 'jane.doe@example.com'];

let spec: ContractSpec;
beforeAll(async () => {
  spec = await loadSpec('klaviyo-bulk_unsubscribe_profiles.json.gz', {
    bodies: { [OPERATION]: 'application/vnd.api+json' },
  });
});

const profile = (email: string) => ({
  type: 'profile',
  attributes: { email, subscriptions: { email: { marketing: { consent: 'UNSUBSCRIBED' } } } },
});
const job = (emails: readonly string[]) => ({
  data: {
    type: 'profile-subscription-bulk-delete-job',
    attributes: { profiles: { data: emails.map(profile) } },
  },
});

describe('Klaviyo batch example', () => {
  it('documents its docs, settings, secret and maximum, and is klaviyo.yaml batched', () => {
    expectSelfDocumented(example, ['KLAVIYO_PRIVATE_API_KEY']);
    expectBatchVariantOf(example, loadExample('klaviyo'));
  });

  it('takes as many profiles per job as the spec allows, and sends its revision', () => {
    const operation = spec.operation(OPERATION);
    expect(operation.description).toContain('Maximum number of profiles per call: 100');
    expect(example.connection.batch).toEqual({ maxSize: 100, maxWait: 1_000 });
    const revision = operation.parameters?.find((p) => 'name' in p && p.name === 'revision') as {
      schema: { default: string };
    };
    expect(example.connection.settings.revision).toBe(revision.schema.default);
  });

  it('renders one JSON:API job with a profile per address of the batch', () => {
    const request = renderBatch(example, secrets, EMAILS_IN_BATCH);
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
    // Each address exactly as received: Klaviyo matches profiles case-insensitively itself.
    expect(JSON.parse(request.body!)).toEqual(job(EMAILS_IN_BATCH));
    expect(request.secrets).toContain(KEY);

    const check = spec.check(request, OPERATION);
    expect(check.errors).toEqual([]);
    expect(check.body).toEqual(job(EMAILS_IN_BATCH));
  });

  it('a full batch (100 profiles) is one job the spec accepts', () => {
    const emails = Array.from({ length: 100 }, (_, i) => `unsub-${i}+list@example.com`);
    const request = renderBatch(example, secrets, emails);
    expect(spec.check(request, OPERATION).errors).toEqual([]);
    expect(JSON.parse(request.body!).data.attributes.profiles.data).toHaveLength(100);
  });

  it('the spec catches a wrong consent in one profile (the check can fail)', () => {
    const request = renderBatch(example, secrets, EMAILS_IN_BATCH);
    const body = job(EMAILS_IN_BATCH);
    body.data.attributes.profiles.data[2]!.attributes.subscriptions.email.marketing.consent = 'SUBSCRIBED';
    expect(spec.check({ ...request, body: JSON.stringify(body) }, OPERATION).errors).toEqual([
      'schema: /requestBody/data/attributes/profiles/data/2/attributes/subscriptions/email/marketing/consent must be equal to one of the allowed values',
    ]);
  });

  describe('response rules (Klaviyo answers for the whole job, never per profile)', () => {
    const verdicts = (answer: Parameters<typeof verdictsOn>[1]) =>
      verdictsOn(example, answer, EMAILS_IN_BATCH).map((v) => v.verdict);

    it('uses answers shaped as the spec documents them', () => {
      expect(spec.checkResponse(OPERATION, 429, throttled)).toEqual([]);
      expect(spec.checkResponse(OPERATION, 400, invalid)).toEqual([]);
    });

    it('202 (job accepted, empty body): every delivery of the job succeeds', () => {
      expect(verdicts({ status: 202 })).toEqual(['success', 'success', 'success', 'success']);
    });

    it('400 (one invalid address): the job is refused whole, every delivery fails, so the engine splits it', () => {
      expect(verdicts({ status: 400, body: invalid })).toEqual(['fail', 'fail', 'fail', 'fail']);
    });

    it('429 with Retry-After: every delivery waits as long as Klaviyo says; 503: retried', () => {
      const limited = verdictsOn(
        example,
        { status: 429, headers: { 'Retry-After': '2' }, body: throttled },
        EMAILS_IN_BATCH,
      );
      for (const verdict of limited)
        expect(verdict).toMatchObject({ verdict: 'rate_limited', retryAfterMs: 2_000 });
      expect(verdicts({ status: 503 })).toEqual(['retry', 'retry', 'retry', 'retry']);
    });
  });
});
