/**
 * Contract: connections/examples/sendgrid.yaml against Twilio SendGrid's published suppressions
 * spec (operation CreateGlobalSuppression, POST /v3/asm/suppressions/global).
 * Docs: https://www.twilio.com/docs/sendgrid/api-reference/suppressions-global-suppressions/add-recipient-addresses-to-the-global-suppression-group
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

const OPERATION = 'CreateGlobalSuppression';
const KEY = 'SG.aBcDeFgHiJkLmNoPqRsTuV.wXyZ0123456789-_aBcDeFgHiJkLmNoPqRsTuVwXyZ01';
const secrets = fixedSecrets({ SENDGRID_API_KEY: KEY });
const example = loadExample('sendgrid');

let spec: ContractSpec;
beforeAll(async () => {
  spec = await loadSpec('sendgrid-suppressions.json.gz', { bodies: { [OPERATION]: 'application/json' } });
});

describe('SendGrid example', () => {
  it('documents its docs, settings and secret, and is linked to nothing', () => {
    expectSelfDocumented(example, ['SENDGRID_API_KEY']);
  });

  it.each([EMAILS.apostrophePlus, EMAILS.upper])(
    'renders the documented global suppression for %s',
    (email) => {
      const request = render(example, secrets, email);
      expect(request).toMatchObject({
        method: 'POST',
        url: 'https://api.sendgrid.com/v3/asm/suppressions/global',
        body: JSON.stringify({ recipient_emails: [email] }),
      });
      expect(request.headers).toEqual({
        accept: 'application/json',
        authorization: `Bearer ${KEY}`,
        'content-type': 'application/json',
      });
      expect(request.secrets).toContain(KEY);

      const check = spec.check(request, OPERATION);
      expect(check.errors).toEqual([]);
    },
  );

  it('a Unicode local part renders, but SendGrid’s contract (format: email) refuses it', () => {
    const request = render(example, secrets, EMAILS.unicode);
    expect(JSON.parse(request.body!)).toEqual({ recipient_emails: [EMAILS.unicode] });
    expect(spec.check(request, OPERATION).errors).toEqual([
      'schema: /requestBody/recipient_emails/0 must match format "email"',
    ]);
    // ... which SendGrid answers with a 400: the delivery fails visibly rather than retrying.
    const refused = { errors: [{ field: 'recipient_emails', message: 'email address is invalid' }] };
    expect(verdictOn(example, { status: 400, body: refused }, EMAILS.unicode).verdict).toBe('fail');
  });

  it('goes to the EU host when the setting says so', () => {
    const eu = {
      ...example,
      connection: { ...example.connection, settings: { apiHost: 'api.eu.sendgrid.com' } },
    };
    const request = render(eu, secrets, EMAILS.apostrophePlus);
    expect(request.url).toBe('https://api.eu.sendgrid.com/v3/asm/suppressions/global');
    expect(spec.check(request, OPERATION).errors).toEqual([]);
  });

  it('the spec catches a wrong body or auth scheme (the check can fail)', () => {
    const request = render(example, secrets, EMAILS.apostrophePlus);
    expect(
      spec.check({ ...request, body: JSON.stringify({ emails: [EMAILS.apostrophePlus] }) }, OPERATION).errors,
    ).toEqual(["schema: /requestBody must have required property 'recipient_emails'"]);
    const basic = { ...request, headers: { ...request.headers, authorization: `Token ${KEY}` } };
    expect(spec.check(basic, OPERATION).errors[0]).toMatch(/^security: /);
  });

  describe('response rules', () => {
    const added = { recipient_emails: [EMAILS.apostrophePlus] };

    it('uses answers shaped as the spec documents them', () => {
      expect(spec.checkResponse(OPERATION, 201, added)).toEqual([]);
    });

    it('201: delivered (adding an address twice is also a 201)', () => {
      expect(verdictOn(example, { status: 201, body: added }).verdict).toBe('success');
    });

    it('429 with X-RateLimit-Reset: rate limited; 500: retried; 401/403: failed', () => {
      const verdict = verdictOn(example, {
        status: 429,
        headers: {
          'X-RateLimit-Limit': '600',
          'X-RateLimit-Remaining': '0',
          'X-RateLimit-Reset': '1795433280',
        },
        body: { errors: [{ field: null, message: 'too many requests' }] },
      });
      expect(verdict.verdict).toBe('rate_limited');
      expect(verdictOn(example, { status: 500 }).verdict).toBe('retry');
      const denied = { errors: [{ field: null, message: 'access forbidden' }] };
      expect(verdictOn(example, { status: 403, body: denied }).verdict).toBe('fail');
      expect(verdictOn(example, { status: 401, body: denied }).verdict).toBe('fail');
    });
  });
});
