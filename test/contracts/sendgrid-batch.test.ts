/**
 * Contract: connections/examples/sendgrid-batch.yaml (sendgrid.yaml, batched) against Twilio
 * SendGrid's published suppressions spec (operation CreateGlobalSuppression,
 * POST /v3/asm/suppressions/global), which takes `recipient_emails` as a list with no maxItems.
 * Docs: https://www.twilio.com/docs/sendgrid/api-reference/suppressions-global-suppressions/add-recipient-addresses-to-the-global-suppression-group
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

const OPERATION = 'CreateGlobalSuppression';
const KEY = 'SG.aBcDeFgHiJkLmNoPqRsTuV.wXyZ0123456789-_aBcDeFgHiJkLmNoPqRsTuVwXyZ01';
const secrets = fixedSecrets({ SENDGRID_API_KEY: KEY });
const example = loadExample('sendgrid-batch');
/** Several unsubscribes, the tricky ones included; SendGrid takes no Unicode local part (below). */
const EMAILS_IN_BATCH = [EMAILS.apostrophePlus, EMAILS.upper, 'jane.doe@example.com', 'ops@example.org'];

let spec: ContractSpec;
beforeAll(async () => {
  spec = await loadSpec('sendgrid-suppressions.json.gz', { bodies: { [OPERATION]: 'application/json' } });
});

describe('SendGrid batch example', () => {
  it('documents its docs, settings, secret and maximum, and is sendgrid.yaml batched', () => {
    expectSelfDocumented(example, ['SENDGRID_API_KEY']);
    expectBatchVariantOf(example, loadExample('sendgrid'));
    expect(example.connection.batch).toEqual({ maxSize: 500, maxWait: 1_000 });
  });

  it('the spec sets no maximum for recipient_emails (the 500 is the file’s own choice)', () => {
    const body = spec.operation(OPERATION).requestBody as {
      content: Record<string, { schema: { properties: Record<string, object> } }>;
    };
    const list = body.content['application/json']!.schema.properties.recipient_emails!;
    expect(list).toMatchObject({ type: 'array', items: { format: 'email' } });
    expect(list).not.toHaveProperty('maxItems');
  });

  it('renders one global suppression listing every address of the batch', () => {
    const request = renderBatch(example, secrets, EMAILS_IN_BATCH);
    expect(request).toMatchObject({
      method: 'POST',
      url: 'https://api.sendgrid.com/v3/asm/suppressions/global',
      body: JSON.stringify({ recipient_emails: EMAILS_IN_BATCH }),
    });
    expect(request.headers).toEqual({
      accept: 'application/json',
      authorization: `Bearer ${KEY}`,
      'content-type': 'application/json',
    });
    expect(request.secrets).toContain(KEY);

    const check = spec.check(request, OPERATION);
    expect(check.errors).toEqual([]);
    expect(check.body).toEqual({ recipient_emails: EMAILS_IN_BATCH });
  });

  it('a full batch (maxSize addresses) is one request the spec accepts', () => {
    const emails = Array.from({ length: 500 }, (_, i) => `unsub-${i}+list@example.com`);
    const request = renderBatch(example, secrets, emails);
    expect(spec.check(request, OPERATION).errors).toEqual([]);
    expect(Buffer.byteLength(request.body!)).toBeLessThan(20_000);
  });

  it('a Unicode local part in the batch breaks SendGrid’s contract for the whole request', () => {
    const emails = [...EMAILS_IN_BATCH.slice(0, 2), EMAILS.unicode];
    expect(spec.check(renderBatch(example, secrets, emails), OPERATION).errors).toEqual([
      'schema: /requestBody/recipient_emails/2 must match format "email"',
    ]);
    // SendGrid refuses the request (400): every delivery fails, so the engine splits the batch
    // until the Unicode address goes alone and fails alone.
    const refused = { errors: [{ field: 'recipient_emails', message: 'email address is invalid' }] };
    expect(verdictsOn(example, { status: 400, body: refused }, emails).map((v) => v.verdict)).toEqual([
      'fail',
      'fail',
      'fail',
    ]);
  });

  describe('response rules, per item', () => {
    // The documented 201 lists the suppressed addresses, as they were sent.
    const added = { recipient_emails: EMAILS_IN_BATCH };

    it('uses answers shaped as the spec documents them', () => {
      expect(spec.checkResponse(OPERATION, 201, added)).toEqual([]);
      const example201 = (
        spec.operation(OPERATION).responses as Record<
          string,
          { content: Record<string, { examples: Record<string, { value: unknown }> }> }
        >
      )['201']!.content['application/json']!.examples.response!.value;
      expect(example201).toEqual({ recipient_emails: ['test1@example.com', 'test2@example.com'] });
    });

    it('201 listing every address: each delivery succeeds', () => {
      const verdicts = verdictsOn(example, { status: 201, body: added }, EMAILS_IN_BATCH);
      expect(verdicts.map((v) => v.verdict)).toEqual(['success', 'success', 'success', 'success']);
    });

    it('201 without one address: that delivery fails alone, the rest succeed', () => {
      const missing = { recipient_emails: EMAILS_IN_BATCH.filter((e) => e !== EMAILS.apostrophePlus) };
      const verdicts = verdictsOn(example, { status: 201, body: missing }, EMAILS_IN_BATCH);
      expect(verdicts.map((v) => v.verdict)).toEqual(['fail', 'success', 'success', 'success']);
      expect(verdicts[0]).toMatchObject({
        code: 'RULE_FAIL',
        reason: "SendGrid's 201 does not list this address as suppressed",
      });
    });

    it('201 listing an address in lower case still counts for it', () => {
      const lowered = { recipient_emails: EMAILS_IN_BATCH.map((e) => e.toLowerCase()) };
      const verdicts = verdictsOn(example, { status: 201, body: lowered }, EMAILS_IN_BATCH);
      expect(verdicts.map((v) => v.verdict)).toEqual(['success', 'success', 'success', 'success']);
      // ... but not an address that merely contains another one.
      const other = { recipient_emails: ['xjane.doe@example.com'] };
      expect(verdictsOn(example, { status: 201, body: other }, ['jane.doe@example.com'])[0]!.verdict).toBe(
        'fail',
      );
    });

    it('429: every delivery waits; 500: every delivery is retried; 401: every delivery fails', () => {
      const limited = verdictsOn(
        example,
        {
          status: 429,
          headers: {
            'X-RateLimit-Limit': '600',
            'X-RateLimit-Remaining': '0',
            'X-RateLimit-Reset': '1795433280',
          },
          body: { errors: [{ field: null, message: 'too many requests' }] },
        },
        EMAILS_IN_BATCH,
      );
      expect(new Set(limited.map((v) => v.verdict))).toEqual(new Set(['rate_limited']));
      expect(new Set(verdictsOn(example, { status: 500 }, EMAILS_IN_BATCH).map((v) => v.verdict))).toEqual(
        new Set(['retry']),
      );
      const denied = { errors: [{ field: null, message: 'access forbidden' }] };
      expect(
        new Set(verdictsOn(example, { status: 401, body: denied }, EMAILS_IN_BATCH).map((v) => v.verdict)),
      ).toEqual(new Set(['fail']));
    });
  });
});
