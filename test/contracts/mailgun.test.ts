/**
 * Contract: connections/examples/mailgun.yaml against Mailgun's published spec
 * (operation POST-v3--domainID--unsubscribes, POST /v3/{domain_name}/unsubscribes, form body).
 * Docs: https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/unsubscribe/post-v3--domainid--unsubscribes
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EMAILS,
  basicAuth,
  expectSelfDocumented,
  fixedSecrets,
  formFields,
  loadExample,
  loadSpec,
  render,
  verdictOn,
  type ContractSpec,
} from './helpers.js';

const OPERATION = 'POST-v3--domainID--unsubscribes';
const KEY = 'key-3ax6xnjp29jd6fds4gc373sgvjxteol0';
const FORM = 'application/x-www-form-urlencoded';
const secrets = fixedSecrets({ MAILGUN_API_KEY: KEY });
const example = loadExample('mailgun');

let spec: ContractSpec;
beforeAll(async () => {
  // The spec files the single-record form body under "application/form-data", which is not a
  // registered media type; Mailgun's docs call it form data and accept it urlencoded (or multipart).
  // The form schema is therefore checked against our application/x-www-form-urlencoded body.
  spec = await loadSpec('mailgun.yaml.gz', {
    bodies: { [OPERATION]: 'application/form-data' },
    mediaTypeAliases: { [FORM]: 'application/form-data' },
  });
});

describe('Mailgun example', () => {
  it('documents its docs, settings and secret, and is linked to nothing', () => {
    expectSelfDocumented(example, ['MAILGUN_API_KEY']);
  });

  it.each(Object.values(EMAILS))('renders the documented form POST for %s', (email) => {
    const request = render(example, secrets, email);
    expect(request).toMatchObject({
      method: 'POST',
      url: 'https://api.mailgun.net/v3/mg.example.com/unsubscribes',
    });
    expect(request.headers).toEqual({
      accept: 'application/json',
      authorization: basicAuth('api', KEY),
      'content-type': FORM,
    });
    // Form-encoded: `+` must arrive as %2B (a bare + is a space), Unicode as UTF-8 percent-escapes.
    expect(formFields(request.body!)).toEqual({ address: email });
    expect(request.body).toMatch(/^[\x21-\x7e]+$/);
    expect(request.secrets).toContain(KEY);

    const check = spec.check(request, OPERATION);
    expect(check.errors).toEqual([]);
    expect(check.params).toEqual({ domain_name: 'mg.example.com' });
    expect(check.body).toEqual({ address: email });
  });

  it('goes to the EU host when the setting says so', () => {
    const eu = {
      ...example,
      connection: {
        ...example.connection,
        settings: { ...example.connection.settings, apiHost: 'api.eu.mailgun.net' },
      },
    };
    const request = render(eu, secrets, EMAILS.upper);
    expect(request.url).toBe('https://api.eu.mailgun.net/v3/mg.example.com/unsubscribes');
    expect(spec.check(request, OPERATION).errors).toEqual([]);
  });

  it('the spec catches a form without the address, or another media type (the check can fail)', () => {
    const request = render(example, secrets, EMAILS.apostrophePlus);
    expect(spec.check({ ...request, body: 'tag=%2A' }, OPERATION).errors).toEqual([
      "schema: /requestBody must have required property 'address'",
    ]);
    const text = { ...request, headers: { ...request.headers, 'content-type': 'text/plain' } };
    expect(spec.check(text, OPERATION).errors).toEqual([
      'content-type: text/plain is not one of application/json, application/form-data',
      "schema: / must have required property 'requestBody'",
    ]);
  });

  describe('response rules', () => {
    const added = {
      message: 'Address has been added to the unsubscribes table',
      address: EMAILS.apostrophePlus,
    };

    it('uses answers shaped as the spec documents them', () => {
      expect(spec.checkResponse(OPERATION, 200, added)).toEqual([]);
      expect(
        spec.checkResponse(OPERATION, 400, { message: "'address' parameter is not a valid address" }),
      ).toEqual([]);
    });

    it('200: delivered (an address already in the table is updated, also 200)', () => {
      expect(verdictOn(example, { status: 200, body: added }).verdict).toBe('success');
    });

    it('400: failed; 429: rate limited; 500: retried; 401 (bad key): failed', () => {
      expect(
        verdictOn(example, { status: 400, body: { message: "'address' parameter is not a valid address" } })
          .verdict,
      ).toBe('fail');
      expect(verdictOn(example, { status: 429, body: { message: 'Too many requests' } }).verdict).toBe(
        'rate_limited',
      );
      expect(verdictOn(example, { status: 500 }).verdict).toBe('retry');
      expect(verdictOn(example, { status: 401, body: 'Forbidden' }).verdict).toBe('fail');
    });
  });
});
