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
  const scrub = (text: string) => scrubSecrets(text, req.secrets);

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    const lower = name.toLowerCase();
    headers[name] =
      SENSITIVE_HEADERS.has(lower) || SENSITIVE_HEADER_PATTERN.test(lower) ? REDACTED : scrub(value);
  }
  return {
    method: req.method,
    url: scrub(redactUrlPassword(req.url)),
    headers,
    ...(req.body !== undefined ? { body: scrub(req.body) } : {}),
  };
}

/** `https://user:pw@host/` → `https://user:[redacted]@host/`; anything unparsable is left to `scrub`. */
function redactUrlPassword(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/?#@:]*:)[^/?#@]*@/i, `$1${REDACTED}@`);
}
