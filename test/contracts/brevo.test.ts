/**
 * Contract: connections/examples/brevo.yaml against Brevo's published spec (Swagger 2.0
 * "SendinBlue API" v3, converted to OpenAPI 3 with swagger2openapi): operation updateContact,
 * PUT /v3/contacts/{email}.
 * Docs: https://developers.brevo.com/reference/updatecontact
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EMAILS,
  IN_PATH,
  expectSelfDocumented,
  fixedSecrets,
  loadExample,
  loadSpec,
  render,
  verdictOn,
  type ContractSpec,
} from './helpers.js';

const OPERATION = 'updateContact';
const KEY = 'xkeysib-5d0c7a1f3e2b4c6d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d-AbCdEfGhIjKlMnOp';
// The spec still names the host api.sendinblue.com; Sendinblue is now Brevo and documents api.brevo.com.
const BASE = 'https://api.brevo.com/v3';
const secrets = fixedSecrets({ BREVO_API_KEY: KEY });
const example = loadExample('brevo');

let spec: ContractSpec;
beforeAll(async () => {
  spec = await loadSpec('brevo.yaml.gz', { bodies: { [OPERATION]: 'application/json' } });
});

describe('Brevo example', () => {
  it('documents its docs and secret, and is linked to nothing', () => {
    expectSelfDocumented(example, ['BREVO_API_KEY']);
  });

  it('targets the host the spec names, under its new name', () => {
    expect(spec.document.servers).toEqual([{ url: 'https://api.sendinblue.com/v3' }]);
  });

  it.each(Object.values(EMAILS))('renders the documented contact update for %s', (email) => {
    const request = render(example, secrets, email);
    // "Email (urlencoded) of the contact": a raw + would be read as a space.
    expect(request).toMatchObject({
      method: 'PUT',
      url: `${BASE}/contacts/${IN_PATH[email]}`,
      body: '{"emailBlacklisted":true}',
    });
    expect(request.headers).toEqual({
      accept: 'application/json',
      'api-key': KEY,
      'content-type': 'application/json',
    });
    expect(request.secrets).toContain(KEY);

    const check = spec.check(request, OPERATION, { base: BASE });
    expect(check.errors).toEqual([]);
    expect(check.params).toEqual({ email });
  });

  it('the spec catches a wrong type, a missing key or a wrong method (the check can fail)', () => {
    const request = render(example, secrets, EMAILS.apostrophePlus);
    expect(
      spec.check({ ...request, body: '{"emailBlacklisted":"yes"}' }, OPERATION, { base: BASE }).errors,
    ).toEqual(['schema: /requestBody/emailBlacklisted must be boolean']);
    expect(
      spec.check(
        { ...request, headers: { accept: 'application/json', 'content-type': 'application/json' } },
        OPERATION,
        { base: BASE },
      ).errors,
    ).toEqual(['security: none of [{"api-key":[]}] is satisfied']);
    expect(spec.check({ ...request, method: 'PATCH' }, OPERATION, { base: BASE }).errors[0]).toMatch(
      /^route: /,
    );
  });

  describe('response rules', () => {
    const notFound = { code: 'document_not_found', message: 'Contact does not exist' };
    const invalid = { code: 'invalid_parameter', message: 'Invalid email address' };

    it('uses answers shaped as the spec documents them', () => {
      expect(spec.checkResponse(OPERATION, 404, notFound)).toEqual([]);
      expect(spec.checkResponse(OPERATION, 400, invalid)).toEqual([]);
    });

    it('204: delivered', () => {
      expect(verdictOn(example, { status: 204 }).verdict).toBe('success');
    });

    it('404 document_not_found (not a contact): already done', () => {
      expect(verdictOn(example, { status: 404, body: notFound }).verdict).toBe('success_already_done');
    });

    it('400: failed; 429: rate limited until x-sib-ratelimit-reset; 500: retried; 401: failed', () => {
      expect(verdictOn(example, { status: 400, body: invalid }).verdict).toBe('fail');
      const limited = verdictOn(example, {
        status: 429,
        headers: {
          'x-sib-ratelimit-limit': '10',
          'x-sib-ratelimit-remaining': '0',
          'x-sib-ratelimit-reset': '7',
        },
        body: { code: 'too_many_requests', message: 'Too many requests' },
      });
      expect(limited).toMatchObject({ verdict: 'rate_limited', retryAfterMs: 7_000 });
      expect(verdictOn(example, { status: 500 }).verdict).toBe('retry');
      expect(
        verdictOn(example, { status: 401, body: { code: 'unauthorized', message: 'Key not found' } }).verdict,
      ).toBe('fail');
    });
  });
});
