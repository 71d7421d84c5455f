import { TemplateProblem } from './problem.js';

/** `encodeURIComponent`, with lone surrogates (which it throws on) reported as a template problem. */
export function encodeComponent(input: string, who: string): string {
  try {
    return encodeURIComponent(input);
  } catch {
    throw new TemplateProblem(`${who}: the value is not valid Unicode text`);
  }
}

/** Percent-encodes like `encodeURIComponent`, keeping `@` (safe in paths, common in emails). */
export function encodeUrlValue(input: string): string {
  return encodeComponent(input, 'url').replace(/%40/g, '@');
}

/**
 * The WHATWG `application/x-www-form-urlencoded` byte serializer: only ASCII alphanumerics and
 * `*-._` stay, a space becomes `+`. `encodeURIComponent` also keeps `!'()~`, so those are encoded
 * here; `URLSearchParams` would do the same but silently turns lone surrogates into U+FFFD.
 */
export function formEncode(input: string, who = 'form value'): string {
  return encodeComponent(input, who)
    .replace(/%20/g, '+')
    .replace(/[!'()~]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** A whole form body; a repeated name is sent once per value, in order. */
export function formBody(pairs: readonly (readonly [string, string])[]): string {
  return pairs
    .map(([name, value]) => `${formEncode(name, 'form field name')}=${formEncode(value)}`)
    .join('&');
}

const XML_ENTITIES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
};

/** Characters XML 1.0 cannot carry at all, not even as `&#...;` (controls, lone surrogates, U+FFFE/F). */
const NOT_XML_CHAR = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

/**
 * Escapes text for XML element content and for attribute values in either quote style, so a value
 * can never close an element or an attribute. A character XML cannot represent is refused rather
 * than dropped: the CRM would reject the document, or worse, parse a different one.
 */
export function escapeXml(input: string, who = 'XML value'): string {
  if (NOT_XML_CHAR.test(input)) {
    throw new TemplateProblem(
      `${who}: the value contains a character XML cannot carry (a control character)`,
    );
  }
  return input.replace(/[&<>"']/g, (char) => XML_ENTITIES[char]!);
}
