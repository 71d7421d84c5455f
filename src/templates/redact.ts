import type { RenderedRequest } from '../domain/delivery.js';

import { REDACTED, scrubSecrets } from '../domain/scrub.js';

export { REDACTED };

/** Headers whose whole value is a credential, whatever the connection says. */
const SENSITIVE_HEADERS = new Set([
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
  'api-key',
]);
/** Custom credential headers (`X-Auth-Token`, `Klaviyo-API-Key`, ...). */
const SENSITIVE_HEADER_PATTERN = /auth|token|secret|passw|api-?key|signature|session/i;

export interface RedactedRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
}

/**
 * The request as it may be logged or recorded: every secret replaced wherever it appears,
 * credential headers blanked, and a URL password removed.
 */
export function redactRequest(req: RenderedRequest): RedactedRequest {
  const line = redactRequestLine(req);
  return {
    ...line,
    headers: { ...line.headers },
    ...(req.body !== undefined ? { body: scrubSecrets(req.body, req.secrets) } : {}),
  };
}

/**
 * The same without the body (what an attempt record keeps). A connection's requests mostly share
 * their URL and headers, so the last answer is kept and given again, as the same object, for a
 * request with the same method, URL, headers and secrets: treat it as read-only.
 */
export function redactRequestLine(req: RenderedRequest): Omit<RedactedRequest, 'body'> {
  const last = lastLine;
  if (last && sameLine(last.of, req)) return last.redacted;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    const lower = name.toLowerCase();
    headers[name] =
      SENSITIVE_HEADERS.has(lower) || SENSITIVE_HEADER_PATTERN.test(lower)
        ? REDACTED
        : scrubSecrets(value, req.secrets);
  }
  const redacted = {
    method: req.method,
    url: scrubSecrets(redactUrlPassword(req.url), req.secrets),
    headers,
  };
  lastLine = { of: req, redacted };
  return redacted;
}
let lastLine: { of: RenderedRequest; redacted: Omit<RedactedRequest, 'body'> } | undefined;

function sameLine(a: RenderedRequest, b: RenderedRequest): boolean {
  if (a.method !== b.method || a.url !== b.url || a.secrets !== b.secrets) return false;
  const names = Object.keys(a.headers);
  if (names.length !== Object.keys(b.headers).length) return false;
  for (const name of names) if (a.headers[name] !== b.headers[name]) return false;
  return true;
}

/** `https://user:pw@host/` → `https://user:[redacted]@host/`; anything unparsable is left to `scrub`. */
function redactUrlPassword(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/?#@:]*:)[^/?#@]*@/i, `$1${REDACTED}@`);
}
