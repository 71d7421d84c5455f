/**
 * Contract: connections/examples/mailchimp.yaml against Mailchimp's Marketing API spec
 * (operation patchListsIdMembersId, PATCH /lists/{list_id}/members/{subscriber_hash}).
 * Docs: https://mailchimp.com/developer/marketing/api/list-members/update-list-member/
 */
import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EMAILS,
  basicAuth,
  expectSelfDocumented,
  fixedSecrets,
  loadExample,
  loadSpec,
  render,
  verdictOn,
  type ContractSpec,
} from './helpers.js';

const OPERATION = 'patchListsIdMembersId';
const KEY = '0f1e2d3c4b5a69788796a5b4c3d2e1f0-us6';
const BASE = 'https://us6.api.mailchimp.com/3.0';
const secrets = fixedSecrets({ MAILCHIMP_API_KEY: KEY });
const example = loadExample('mailchimp');
const md5 = (text: string) => createHash('md5').update(text, 'utf8').digest('hex');

let spec: ContractSpec;
beforeAll(async () => {
  spec = await loadSpec('mailchimp-marketing.json.gz', { bodies: { [OPERATION]: 'application/json' } });
});

describe('Mailchimp example', () => {
  it('documents its docs, settings and secret, and is linked to nothing', () => {
    expectSelfDocumented(example, ['MAILCHIMP_API_KEY']);
  });

  it.each(Object.values(EMAILS))('renders the documented member PATCH for %s', (email) => {
    const request = render(example, secrets, email);
    // The member is the MD5 of the lowercased address (Mailchimp: "subscriber_hash").
    const hash = md5(email.toLowerCase());
    expect(request).toMatchObject({
      method: 'PATCH',
      url: `${BASE}/lists/a1b2c3d4e5/members/${hash}`,
      body: '{"status":"unsubscribed"}',
    });
    expect(request.headers).toEqual({
      accept: 'application/json',
      authorization: basicAuth('anystring', KEY),
      'content-type': 'application/json',
    });
    expect(request.secrets).toContain(KEY);

    const check = spec.check(request, OPERATION, { base: BASE });
    expect(check.errors).toEqual([]);
    expect(check.params).toEqual({ listId: 'a1b2c3d4e5', subscriberHash: hash });
  });

  it('addresses the same member whatever the case of the address', () => {
    const upper = render(example, secrets, EMAILS.upper).url;
    expect(upper).toBe(render(example, secrets, EMAILS.upper.toLowerCase()).url);
    expect(upper.endsWith(`/members/${md5('upper.case@example.com')}`)).toBe(true);
  });

  it('the spec catches a wrong status, method or auth (the check can fail)', () => {
    const request = render(example, secrets, EMAILS.apostrophePlus);
    expect(
      spec.check({ ...request, body: '{"status":"unsubscribe"}' }, OPERATION, { base: BASE }).errors,
    ).toEqual(['schema: /requestBody/status must be equal to one of the allowed values']);
    expect(spec.check({ ...request, method: 'POST' }, OPERATION, { base: BASE }).errors[0]).toMatch(
      /^route: /,
    );
    const { authorization: _dropped, ...anonymous } = request.headers;
    expect(spec.check({ ...request, headers: anonymous }, OPERATION, { base: BASE }).errors).toEqual([
      'security: none of [{"basicAuth":[]}] is satisfied',
    ]);
  });

  describe('response rules', () => {
    const member = {
      id: md5(EMAILS.apostrophePlus),
      email_address: EMAILS.apostrophePlus,
      unique_email_id: '882e9bec19',
      status: 'unsubscribed',
      list_id: 'a1b2c3d4e5',
    };
    // https://mailchimp.com/developer/marketing/docs/errors/ (problem+json documents)
    const problem = (status: number, title: string, detail: string) => ({
      type: 'https://mailchimp.com/developer/marketing/docs/errors/',
      title,
      status,
      detail,
      instance: '995c5cb0-3280-4a6e-808b-3b096d0bb219',
    });
    const notFound = problem(404, 'Resource Not Found', 'The requested resource could not be found.');
    const tooMany = problem(
      429,
      'Too Many Requests',
      'You have exceeded the limit of 10 simultaneous connections.',
    );

    it('uses answers shaped as the spec documents them', () => {
      expect(spec.checkResponse(OPERATION, 200, member)).toEqual([]);
      expect(spec.checkResponse(OPERATION, 404, notFound)).toEqual([]);
      expect(spec.checkResponse(OPERATION, 429, tooMany)).toEqual([]);
    });

    it('200 with the member unsubscribed: delivered', () => {
      expect(verdictOn(example, { status: 200, body: member }).verdict).toBe('success');
    });

    it('200 whose member is not unsubscribed: fails visibly', () => {
      expect(verdictOn(example, { status: 200, body: { ...member, status: 'subscribed' } }).verdict).toBe(
        'fail',
      );
    });

    it('404 (not on the list): already done', () => {
      const verdict = verdictOn(example, {
        status: 404,
        headers: { 'content-type': 'application/problem+json; charset=utf-8' },
        body: notFound,
      });
      expect(verdict).toMatchObject({ verdict: 'success_already_done', rule: 2 });
    });

    it('429 (too many connections): rate limited; 5xx: retried; 401 (bad key): failed', () => {
      expect(verdictOn(example, { status: 429, body: tooMany }).verdict).toBe('rate_limited');
      expect(verdictOn(example, { status: 503, body: 'upstream unavailable' }).verdict).toBe('retry');
      const badKey = problem(
        401,
        'API Key Invalid',
        'Your API key may be invalid, or you have attempted to access the wrong datacenter.',
      );
      expect(verdictOn(example, { status: 401, body: badKey }).verdict).toBe('fail');
    });
  });

  it('keeps trying for the 10 days unsubscribe law allows', () => {
    expect(example.connection.retry).toMatchObject({ deadline: 10 * 24 * 3_600_000 });
  });
});
