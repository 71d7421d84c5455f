/**
 * The rules the HTTP client (undici) applies before it sends a request, checked by us first: a
 * request it refuses is a request we built wrong, not a CRM that is down (RFC 9110 section 5).
 */

/** tchar: `!#$%&'*+-.^_|~`, digits and letters. Methods and header names are tokens. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** field-value: tab, visible ASCII, space, and obs-text (0x80-0xFF); nothing else (undici's headerCharRegex). */
const NOT_FIELD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

export function isHttpToken(text: string): boolean {
  return TOKEN.test(text);
}

export function isHeaderFieldValue(text: string): boolean {
  return !NOT_FIELD_VALUE.test(text);
}

/**
 * Why a header value cannot be sent, or undefined when it can. Says where the bad character is and
 * what kind it is, never the value (an email, or a secret).
 */
export function headerValueProblem(value: string): string | undefined {
  const at = value.search(NOT_FIELD_VALUE);
  if (at < 0) return undefined;
  const code = value.charCodeAt(at);
  const kind =
    code < 0x20 || code === 0x7f
      ? 'a control character (CR, LF, NUL, ...)'
      : 'a character beyond Latin-1 (Unicode)';
  return `the value has ${kind} at position ${at + 1}, which an HTTP header cannot carry; put it in the body or encode it (e.g. {{urlencode email}})`;
}
