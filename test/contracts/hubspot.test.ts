/**
 * Contract: connections/examples/hubspot.yaml against HubSpot's published Communication Preferences
 * v4 spec (POST /communication-preferences/v4/statuses/{subscriberIdString}/unsubscribe-all).
 * Docs: https://developers.hubspot.com/docs/api-reference/communication-preferences-subscriptions-v4/subscription-status/post-communication-preferences-v4-statuses-subscriberIdString-unsubscribe-all
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

const OPERATION = 'post-/communication-preferences/v4/statuses/{subscriberIdString}/unsubscribe-all';
const TOKEN = 'pat-na1-2c1e6a0b-5f4d-4e7a-9b8c-0d1e2f3a4b5c';
const secrets = fixedSecrets({ HUBSPOT_ACCESS_TOKEN: TOKEN });
const example = loadExample('hubspot');

let spec: ContractSpec;
beforeAll(async () => {
  spec = await loadSpec('hubspot-communication-preferences-v4.json.gz');
});

describe('HubSpot example', () => {
  it('documents its docs and secret, and is linked to nothing', () => {
    expectSelfDocumented(example, ['HUBSPOT_ACCESS_TOKEN']);
  });

  it.each(Object.values(EMAILS))('renders the documented unsubscribe-all for %s', (email) => {
    const request = render(example, secrets, email);
    expect(request).toEqual({
      method: 'POST',
      url: `https://api.hubapi.com/communication-preferences/v4/statuses/${IN_PATH[email]}/unsubscribe-all?channel=EMAIL&verbose=true`,
      headers: { accept: 'application/json', authorization: `Bearer ${TOKEN}` },
      secrets: expect.arrayContaining([TOKEN]),
    });

    const check = spec.check(request, OPERATION);
    expect(check.errors).toEqual([]);
    // HubSpot reads the address back out of the path exactly as received.
    expect(check.params).toEqual({ subscriberIdString: email });
    expect(check.query).toEqual({ channel: 'EMAIL', verbose: 'true' });
  });

  it('the spec catches a missing channel or token (the check can fail)', () => {
    const request = render(example, secrets, EMAILS.apostrophePlus);
    const noChannel = { ...request, url: request.url.replace('channel=EMAIL&', '') };
    expect(spec.check(noChannel, OPERATION).errors).toEqual([
      "schema: /query must have required property 'channel'",
    ]);
    const sms = { ...request, url: request.url.replace('channel=EMAIL', 'channel=SMS') };
    expect(spec.check(sms, OPERATION).errors).toEqual([
      'schema: /query/channel must be equal to one of the allowed values',
    ]);
    expect(spec.check({ ...request, headers: { accept: 'application/json' } }, OPERATION).errors[0]).toMatch(
      /^security: /,
    );
  });

  describe('response rules', () => {
    const status = {
      completedAt: '2026-11-23T11:27:36.012Z',
      startedAt: '2026-11-23T11:27:35.981Z',
      requestedAt: '2026-11-23T11:27:35.975Z',
      status: 'COMPLETE',
      results: [
        {
          channel: 'EMAIL',
          source: 'Public API',
          status: 'UNSUBSCRIBED',
          subscriberIdString: EMAILS.apostrophePlus,
          subscriptionId: 7_654_321,
          subscriptionName: 'Marketing Information',
          timestamp: '2026-11-23T11:27:36.001Z',
          setStatusSuccessReason: 'UNSUBSCRIBE_FROM_ALL_OCCURRED',
        },
      ],
    };
    // HubSpot's error envelope; the message is the one its subscription API gives for an address
    // that has already opted out ("... is already unsubscribed from subscription ...").
    const already = {
      status: 'error',
      message: `${EMAILS.apostrophePlus} is already unsubscribed from subscription 7654321`,
      correlationId: 'aeb5f871-7f07-4993-9211-075dc63e7cbf',
      category: 'VALIDATION_ERROR',
    };
    const rateLimited = {
      status: 'error',
      message: 'You have reached your secondly limit.',
      errorType: 'RATE_LIMIT',
      correlationId: 'c033cdaa-2c40-4a64-ae48-b4cec88dad24',
      policyName: 'SECONDLY',
      category: 'RATE_LIMITS',
    };
    const invalid = {
      status: 'error',
      message: 'Invalid input JSON on line 1, column 1',
      correlationId: '5f8b8a4e-6b8e-4c61-9a53-4c3d2e1f0a9b',
      category: 'VALIDATION_ERROR',
    };

    it('uses answers shaped as the spec documents them', () => {
      expect(spec.checkResponse(OPERATION, 200, status)).toEqual([]);
      expect(spec.checkResponse(OPERATION, 400, already)).toEqual([]);
      expect(spec.checkResponse(OPERATION, 429, rateLimited)).toEqual([]);
    });

    it('200: delivered', () => {
      expect(verdictOn(example, { status: 200, body: status }).verdict).toBe('success');
    });

    it('400 "already unsubscribed": already done, not failed', () => {
      expect(verdictOn(example, { status: 400, body: already })).toMatchObject({
        verdict: 'success_already_done',
        reason: 'HubSpot says the address is already unsubscribed',
      });
    });

    it('any other 400: failed', () => {
      expect(verdictOn(example, { status: 400, body: invalid }).verdict).toBe('fail');
    });

    it('429: rate limited; 502: retried; 401 (bad token): failed', () => {
      expect(verdictOn(example, { status: 429, body: rateLimited }).verdict).toBe('rate_limited');
      expect(verdictOn(example, { status: 502 }).verdict).toBe('retry');
      expect(
        verdictOn(example, { status: 401, body: { ...invalid, category: 'INVALID_AUTHENTICATION' } }).verdict,
      ).toBe('fail');
    });
  });
});
