/**
 * Contract: connections/examples/iterable.yaml against Iterable's documented request (no spec is
 * vendored for Iterable). Subscriptions API, "Unsubscribe a single user":
 * https://api.iterable.com/api/docs#subscriptions_unsubscribeSingleUser
 *
 *   DELETE https://api.iterable.com/api/subscriptions/{subscriptionGroup}/{subscriptionGroupId}/user/{userEmail}
 *   Api-Key: <server-side key>
 *
 *   subscriptionGroup    emailList, messageType or messageChannel
 *   subscriptionGroupId  numeric id of the list, message type or channel
 *   userEmail            the user's email address (a path segment, so percent-encoded)
 *   200 {"msg": ..., "code": "Success", "params": ...}; 202 accepted; 400/401/404/409 errors.
 *
 * Why not POST /api/users/updateSubscriptions: it replaces the user's unsubscribedChannelIds (and
 * the other lists it is given) wholesale, so sending one channel would re-subscribe the user to
 * any other channel they had left. This call only adds the one unsubscribe.
 */
import { describe, expect, it } from 'vitest';
import {
  EMAILS,
  IN_PATH,
  expectSelfDocumented,
  fixedSecrets,
  loadExample,
  render,
  verdictOn,
} from './helpers.js';

const KEY = 'b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6';
const secrets = fixedSecrets({ ITERABLE_API_KEY: KEY });
const example = loadExample('iterable');
const DOCUMENTED_PATH =
  /^\/api\/subscriptions\/(emailList|messageType|messageChannel)\/(\d+)\/user\/([^/]+)$/;

describe('Iterable example', () => {
  it('documents its docs, settings and secret, and is linked to nothing', () => {
    expectSelfDocumented(example, ['ITERABLE_API_KEY']);
  });

  it.each(Object.values(EMAILS))('renders the documented single-user unsubscribe for %s', (email) => {
    const request = render(example, secrets, email);
    expect(request).toEqual({
      method: 'DELETE',
      url: `https://api.iterable.com/api/subscriptions/messageChannel/12345/user/${IN_PATH[email]}`,
      headers: { accept: 'application/json', 'api-key': KEY },
      secrets: expect.arrayContaining([KEY]),
    });
    const url = new URL(request.url);
    const [, group, groupId, userEmail] = DOCUMENTED_PATH.exec(url.pathname)!;
    expect([group, groupId, decodeURIComponent(userEmail!)]).toEqual(['messageChannel', '12345', email]);
    expect(url.search).toBe('');
  });

  it('goes to the EU data centre when the setting says so', () => {
    const eu = {
      ...example,
      connection: {
        ...example.connection,
        settings: { ...example.connection.settings, apiHost: 'api.eu.iterable.com' },
      },
    };
    expect(render(eu, secrets, EMAILS.upper).url).toBe(
      'https://api.eu.iterable.com/api/subscriptions/messageChannel/12345/user/UPPER.Case@Example.COM',
    );
  });

  describe('response rules', () => {
    it('200 with code Success, or 202: delivered', () => {
      expect(
        verdictOn(example, { status: 200, body: { msg: '', code: 'Success', params: null } }).verdict,
      ).toBe('success');
      expect(verdictOn(example, { status: 202 }).verdict).toBe('success');
    });

    it('200 with another code: failed, not counted as delivered', () => {
      expect(
        verdictOn(example, { status: 200, body: { msg: 'User not found', code: 'BadParams' } }).verdict,
      ).toBe('fail');
    });

    it('429 RateLimitExceeded: rate limited; 5xx: retried', () => {
      expect(
        verdictOn(example, { status: 429, body: { msg: 'Rate limit exceeded', code: 'RateLimitExceeded' } })
          .verdict,
      ).toBe('rate_limited');
      expect(verdictOn(example, { status: 500, body: 'Internal server error' }).verdict).toBe('retry');
    });

    it('400 BadParams, 401 BadApiKey, 404 (API not enabled), 409 conflict: failed', () => {
      expect(
        verdictOn(example, { status: 400, body: { msg: 'Invalid email', code: 'BadParams' } }).verdict,
      ).toBe('fail');
      expect(
        verdictOn(example, { status: 401, body: { msg: 'Invalid API key', code: 'BadApiKey' } }).verdict,
      ).toBe('fail');
      expect(
        verdictOn(example, { status: 404, body: { msg: 'Endpoint not found', code: 'NotFound' } }).verdict,
      ).toBe('fail');
      expect(
        verdictOn(example, { status: 409, body: { msg: 'Email/userId conflict', code: 'GenericError' } })
          .verdict,
      ).toBe('fail');
    });
  });
});
