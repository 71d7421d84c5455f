import { describe, expect, it } from 'vitest';
import { readTokenResponse } from '../../src/auth/token-response.js';
import type { RenderedRequest, SendOutcome } from '../../src/domain/delivery.js';
import { PermanentDeliveryError, RetryableDeliveryError } from '../../src/errors.js';

const SECRET = 'very-secret-client-value';
const request: RenderedRequest = {
  method: 'POST',
  url: 'https://auth.example.com/v2/token?tenant=t1',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: `grant_type=client_credentials&client_id=acme&client_secret=${SECRET}`,
  secrets: [SECRET],
};
const NOW = Date.UTC(2024, 4, 1);
const DEFAULT_TTL = 3_600_000;

const response = (status: number, body: unknown, headers: Record<string, string> = {}): SendOutcome => ({
  kind: 'response',
  status,
  headers,
  body: typeof body === 'string' ? body : JSON.stringify(body),
  bodyTruncated: false,
  durationMs: 5,
});
const read = (outcome: SendOutcome) => readTokenResponse(outcome, request, DEFAULT_TTL, NOW);
const failure = (outcome: SendOutcome) => {
  try {
    read(outcome);
  } catch (error) {
    return error as RetryableDeliveryError | PermanentDeliveryError;
  }
  return expect.unreachable('readTokenResponse should have thrown');
};

describe('readTokenResponse: tokens', () => {
  it('reads access_token and expires_in (seconds)', () => {
    expect(read(response(200, { access_token: 'abc', token_type: 'Bearer', expires_in: 1200 }))).toEqual({
      accessToken: 'abc',
      lifetimeMs: 1_200_000,
    });
  });

  it.each([
    ['absent', undefined, DEFAULT_TTL],
    ['a numeric string', '600', 600_000],
    ['zero', 0, DEFAULT_TTL],
    ['negative', -5, DEFAULT_TTL],
    ['not a number', 'soon', DEFAULT_TTL],
    ['absurdly large', 1e30, 365 * 24 * 3_600_000],
  ])('expires_in %s → lifetime %s', (_what, expiresIn, lifetimeMs) => {
    expect(read(response(201, { access_token: 'abc', expires_in: expiresIn })).lifetimeMs).toBe(lifetimeMs);
  });

  it.each(['bearer', 'BEARER', 'Bearer', 'N_A'])('accepts token_type %s', (tokenType) => {
    expect(read(response(200, { access_token: 'abc', token_type: tokenType })).accessToken).toBe('abc');
  });

  it.each(['DPoP', 'mac'])('refuses a %s token, which needs proof of possession', (tokenType) => {
    const error = failure(response(200, { access_token: 'abc', token_type: tokenType }));
    expect(error).toBeInstanceOf(PermanentDeliveryError);
    expect(error.code).toBe('AUTH_TOKEN_INVALID');
    expect(error.message).not.toContain('abc');
  });

  it.each([
    ['no access_token', { token_type: 'Bearer' }, 'has no access_token string'],
    ['an empty access_token', { access_token: '' }, 'has no access_token string'],
    ['a numeric access_token', { access_token: 42 }, 'has no access_token string'],
    ['HTML', '<html>ok</html>', 'is not a JSON object'],
    ['a JSON array', ['abc'], 'is not a JSON object'],
  ])('a 2xx with %s is permanent AUTH_TOKEN_INVALID', (_what, body, reason) => {
    const error = failure(response(200, body));
    expect(error).toBeInstanceOf(PermanentDeliveryError);
    expect(error).toMatchObject({ code: 'AUTH_TOKEN_INVALID' });
    expect(error.message).toBe(`token endpoint auth.example.com: the token response ${reason}`);
  });
});

describe('readTokenResponse: errors', () => {
  it.each([500, 502, 503, 429, 408])('status %s is retryable and honours Retry-After', (status) => {
    const error = failure(response(status, 'busy', { 'Retry-After': '30' }));
    expect(error).toBeInstanceOf(RetryableDeliveryError);
    expect(error).toMatchObject({ code: 'AUTH_TOKEN_UNAVAILABLE', retryAfterMs: 30_000 });
    expect(error.message).toBe(`token endpoint auth.example.com answered status ${status}`);
  });

  it('without Retry-After the retry policy decides the wait', () => {
    const error = failure(response(503, ''));
    expect(error).toBeInstanceOf(RetryableDeliveryError);
    expect((error as RetryableDeliveryError).retryAfterMs).toBeUndefined();
  });

  it.each([400, 401, 403])('status %s is a permanent refusal of the credentials', (status) => {
    const error = failure(
      response(status, { error: 'invalid_client', error_description: 'Bad client\r\ncredentials' }),
    );
    expect(error).toBeInstanceOf(PermanentDeliveryError);
    expect(error.code).toBe('AUTH_TOKEN_REFUSED');
    expect(error.message).toBe(
      `token endpoint auth.example.com refused the client credentials (status ${status}: invalid_client (Bad client credentials)): check the connection's clientId/clientSecret secrets`,
    );
  });

  it('only error and error_description reach the message, capped and without echoed secrets', () => {
    const error = failure(
      response(401, {
        error: 'invalid_client',
        error_description: `secret ${SECRET} rejected ${'x'.repeat(500)}`,
        access_token: 'tok-in-error-body',
        client_secret: SECRET,
      }),
    );
    expect(error.message).not.toContain(SECRET);
    expect(error.message).not.toContain('tok-in-error-body');
    expect(error.message).toContain('secret [redacted] rejected xxx');
    expect(error.message.length).toBeLessThan(400);
  });

  it.each([404, 405, 302])('status %s points at the token URL', (status) => {
    const error = failure(response(status, 'Not here'));
    expect(error).toBeInstanceOf(PermanentDeliveryError);
    expect(error.message).toBe(
      `token endpoint auth.example.com answered status ${status}: check the connection's tokenUrl`,
    );
  });

  it.each(['NETWORK', 'CONNECT_TIMEOUT', 'HEADERS_TIMEOUT', 'BODY_TIMEOUT'] as const)(
    'a %s transport failure is retryable',
    (code) => {
      const error = failure({ kind: 'error', code, message: 'no response within 1s', durationMs: 1000 });
      expect(error).toBeInstanceOf(RetryableDeliveryError);
      expect(error.code).toBe('AUTH_TOKEN_UNAVAILABLE');
      expect(error.message).toBe(`${code}: token endpoint auth.example.com: no response within 1s`);
    },
  );

  it('a token URL refused by the target guard is permanent', () => {
    const error = failure({
      kind: 'error',
      code: 'TARGET_REFUSED',
      message: 'private address',
      durationMs: 1,
    });
    expect(error).toBeInstanceOf(PermanentDeliveryError);
    expect(error.code).toBe('TARGET_REFUSED');
  });
});
