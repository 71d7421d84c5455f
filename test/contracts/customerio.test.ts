/**
 * Contract: connections/examples/customerio.yaml against Customer.io's published Track API spec
 * (operation identify, PUT /api/v1/customers/{identifier}).
 * Docs: https://docs.customer.io/integrations/api/track/#operation/identify
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Document } from 'openapi-backend';
import {
  EMAILS,
  IN_PATH,
  basicAuth,
  expectSelfDocumented,
  fixedSecrets,
  loadExample,
  loadSpec,
  render,
  verdictOn,
  type ContractSpec,
} from './helpers.js';

const OPERATION = 'identify';
const SITE_ID = 'a1b2c3d4e5f6a7b8c9d0';
const KEY = '7f3c2a1b0e9d8c7b6a5f';
const secrets = fixedSecrets({ CUSTOMERIO_TRACK_API_KEY: KEY });
const example = loadExample('customerio');

/**
 * The spec's `identifier` path parameter is a `oneOf` of three plain strings (id, email, cio_id),
 * so every value matches more than one branch and `oneOf` can never pass; the docs mean "any of".
 * Its cio_id branch also writes a pattern as a `format`. Both are corrected in memory.
 */
function fixIdentifier(document: Document): void {
  const parameter = (
    document.components?.parameters as unknown as Record<string, { schema: Record<string, unknown> }>
  ).track_customer_id!;
  const branches = parameter.schema.oneOf as Array<Record<string, unknown>>;
  expect(branches.map((b) => b.title)).toEqual(['id', 'email', 'cio_id']);
  const cioId = branches[2]!;
  expect(cioId.format).toBe('cio_[a-zA-Z0-9]*');
  delete cioId.format;
  cioId.pattern = '^cio_[a-zA-Z0-9]*$';
  parameter.schema = { anyOf: branches };
}

let spec: ContractSpec;
beforeAll(async () => {
  spec = await loadSpec('customerio-track.json.gz', {
    bodies: { [OPERATION]: 'application/json' },
    adjust: fixIdentifier,
  });
});

describe('Customer.io example', () => {
  it('documents its docs, settings and secret, and is linked to nothing', () => {
    expectSelfDocumented(example, ['CUSTOMERIO_TRACK_API_KEY']);
  });

  it.each(Object.values(EMAILS))('renders the documented identify call for %s', (email) => {
    const request = render(example, secrets, email);
    expect(request).toMatchObject({
      method: 'PUT',
      url: `https://track.customer.io/api/v1/customers/${IN_PATH[email]}`,
      body: '{"unsubscribed":true}',
    });
    expect(request.headers).toEqual({
      accept: 'application/json',
      authorization: basicAuth(SITE_ID, KEY),
      'content-type': 'application/json',
    });
    expect(request.secrets).toContain(KEY);

    const check = spec.check(request, OPERATION);
    expect(check.errors).toEqual([]);
    expect(check.params).toEqual({ identifier: email });
  });

  it('goes to the EU region when the setting says so', () => {
    const eu = {
      ...example,
      connection: {
        ...example.connection,
        settings: { ...example.connection.settings, trackHost: 'track-eu.customer.io' },
      },
    };
    const request = render(eu, secrets, EMAILS.apostrophePlus);
    expect(request.url).toBe(
      `https://track-eu.customer.io/api/v1/customers/${IN_PATH[EMAILS.apostrophePlus]}`,
    );
    // The operation's own `servers` name only the US host; the document's list the EU one.
    expect(spec.document.servers?.map((server) => server.url)).toContain('https://track-eu.customer.io');
    expect(spec.check(request, OPERATION, { base: 'https://track-eu.customer.io' }).errors).toEqual([]);
  });

  it('the spec catches a wrongly typed attribute or a missing login (the check can fail)', () => {
    const request = render(example, secrets, EMAILS.apostrophePlus);
    expect(spec.check({ ...request, body: '{"unsubscribed":{"value":true}}' }, OPERATION).errors).toEqual([
      'schema: /requestBody/unsubscribed must be boolean',
    ]);
    const { authorization: _dropped, ...anonymous } = request.headers;
    expect(spec.check({ ...request, headers: anonymous }, OPERATION).errors).toEqual([
      'security: none of [{"Tracking-API-Key":[]}] is satisfied',
    ]);
  });

  describe('response rules', () => {
    const badRequest = { meta: { errors: ['invalid email address'] } };

    it('uses the answer the spec documents (an empty object, no schema)', () => {
      const ok = spec.operation(OPERATION).responses!['200'] as { description: string; content?: unknown };
      expect(ok).toEqual({ description: 'A successful request returns an empty object response.' });
    });

    it('200 {}: delivered', () => {
      expect(verdictOn(example, { status: 200, body: {} }).verdict).toBe('success');
    });

    it('400: failed; 401: failed; 429: rate limited; 503: retried', () => {
      expect(verdictOn(example, { status: 400, body: badRequest }).verdict).toBe('fail');
      expect(
        verdictOn(example, { status: 401, body: { meta: { error: 'Unauthorized request' } } }).verdict,
      ).toBe('fail');
      expect(verdictOn(example, { status: 429 }).verdict).toBe('rate_limited');
      expect(verdictOn(example, { status: 503 }).verdict).toBe('retry');
    });
  });
});
