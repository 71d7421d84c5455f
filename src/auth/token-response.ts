import type { RenderedRequest, SendOutcome } from '../domain/delivery.js';
import { PermanentDeliveryError, RetryableDeliveryError } from '../errors.js';
import { parseRetryAfter } from '../http/retry-after.js';

/**
 * Reading an OAuth2 token endpoint's answer (RFC 6749 §5). Pure: the caller sends the request and
 * supplies the clock. Every error message is built from the status, the host and at most the
 * `error`/`error_description` fields of an error body: never the request or response body, which
 * carry the client secret and the token.
 */

/** A token as the endpoint issued it. */
export interface IssuedToken {
  accessToken: string;
  /** How long the endpoint says the token lives (from `expires_in`, or the connection's default). */
  lifetimeMs: number;
}

/** Stable error codes of the token fetch, as they appear in attempt records. */
export const TOKEN_ERROR = {
  /** The endpoint is down, slow or rate limiting us: retry later. */
  unavailable: 'AUTH_TOKEN_UNAVAILABLE',
  /** The endpoint refused the client credentials (or the token URL is wrong): fix the connection. */
  refused: 'AUTH_TOKEN_REFUSED',
  /** A 2xx that is not a usable token response. */
  invalid: 'AUTH_TOKEN_INVALID',
} as const;

// A year: longer lifetimes are capped so the Redis PX value stays an ordinary integer.
const MAX_LIFETIME_MS = 365 * 24 * 3_600_000;
// Token types that need proof of possession: sending them as a plain header cannot work.
const UNUSABLE_TOKEN_TYPES = new Set(['mac', 'dpop', 'pop']);

/**
 * The token in a token endpoint's answer, or a delivery error saying whether retrying can help:
 * transport failures, 408, 429 and 5xx are retryable (honouring `Retry-After`); 400/401/403 mean the
 * credentials were refused; any other status, or a 2xx without a string `access_token`, is permanent.
 */
export function readTokenResponse(
  outcome: SendOutcome,
  tokenRequest: RenderedRequest,
  defaultTtlMs: number,
  now: number,
): IssuedToken {
  const endpoint = redact(`token endpoint ${hostOf(tokenRequest.url)}`, tokenRequest.secrets);
  if (outcome.kind === 'error') {
    const message = redact(`${endpoint}: ${outcome.message}`, tokenRequest.secrets);
    // The target guard refusing the token URL is configuration, as it is for the delivery itself.
    if (outcome.code === 'TARGET_REFUSED') throw new PermanentDeliveryError('TARGET_REFUSED', message);
    throw new RetryableDeliveryError(TOKEN_ERROR.unavailable, `${outcome.code}: ${message}`);
  }

  const { status } = outcome;
  if (status >= 200 && status < 300) return issuedToken(outcome.body, endpoint, defaultTtlMs);

  const reason = errorReason(outcome.body, tokenRequest.secrets);
  if (status === 408 || status === 429 || status >= 500) {
    const retryAfterMs = parseRetryAfter(outcome.headers, now);
    throw new RetryableDeliveryError(
      TOKEN_ERROR.unavailable,
      `${endpoint} answered status ${status}${reason}`,
      retryAfterMs,
    );
  }
  if (status === 400 || status === 401 || status === 403) {
    throw new PermanentDeliveryError(
      TOKEN_ERROR.refused,
      `${endpoint} refused the client credentials (status ${status}${reason}): check the connection's clientId/clientSecret secrets`,
    );
  }
  // 3xx (never followed), 404, 405, ...: the token URL itself is wrong.
  throw new PermanentDeliveryError(
    TOKEN_ERROR.refused,
    `${endpoint} answered status ${status}${reason}: check the connection's tokenUrl`,
  );
}

function issuedToken(body: string, endpoint: string, defaultTtlMs: number): IssuedToken {
  const json = parseObject(body);
  const accessToken = json?.access_token;
  if (typeof accessToken !== 'string' || accessToken === '') {
    const what = json ? 'has no access_token string' : 'is not a JSON object';
    throw new PermanentDeliveryError(TOKEN_ERROR.invalid, `${endpoint}: the token response ${what}`);
  }
  const tokenType = json?.token_type;
  if (typeof tokenType === 'string' && UNUSABLE_TOKEN_TYPES.has(tokenType.toLowerCase())) {
    throw new PermanentDeliveryError(
      TOKEN_ERROR.invalid,
      `${endpoint} issued a ${tokenType.slice(0, 16)} token; only bearer tokens can be sent in a header`,
    );
  }
  return { accessToken, lifetimeMs: lifetime(json?.expires_in, defaultTtlMs) };
}

/** `expires_in` is seconds; some endpoints send it as a string. Absent or nonsense: the default. */
function lifetime(expiresIn: unknown, defaultTtlMs: number): number {
  const seconds =
    typeof expiresIn === 'string' && /^\d+$/.test(expiresIn.trim()) ? Number(expiresIn) : expiresIn;
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds <= 0) return defaultTtlMs;
  return Math.min(Math.round(seconds * 1000), MAX_LIFETIME_MS);
}

/**
 * `: invalid_client (Client authentication failed)` from an RFC 6749 §5.2 error body, or nothing.
 * Only those two fields, stripped of control characters, capped, and with request secrets removed
 * (an endpoint may echo what it was sent).
 */
function errorReason(body: string, secrets: string[]): string {
  const json = parseObject(body);
  const clean = (value: unknown, max: number) =>
    typeof value === 'string' ? redact(value.replace(/\p{Cc}+/gu, ' ').trim(), secrets).slice(0, max) : '';
  const error = clean(json?.error, 64);
  const description = clean(json?.error_description, 200);
  if (!error && !description) return '';
  return `: ${[error, description && `(${description})`].filter(Boolean).join(' ')}`;
}

function parseObject(body: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body);
    return value && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** `host` only: the URL's path or query may carry credentials. */
function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '(invalid URL)';
  }
}

function redact(text: string, secrets: string[]): string {
  return secrets.filter((s) => s.length > 0).reduce((t, s) => t.split(s).join('[redacted]'), text);
}
