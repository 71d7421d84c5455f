import type { JsonMatch } from '../config/connection-schema.js';
import { compileJsonPath, JsonPathSyntaxError } from './json-path.js';

/** A response body read as JSON: its value, or the fact that it is not JSON (HTML error page, XML, cut short). */
export type JsonBody = { isJson: true; value: unknown } | { isJson: false };

/** Renders a templated rule value (`'{{email}}'`) for the delivery at hand. */
export type ResolveValue = (value: string) => string;

type JsonScalar = string | number | boolean | null;

/** Parses a body as JSON without throwing: a body that is not JSON simply never matches a JSON test. */
export function parseJsonBody(body: string): JsonBody {
  try {
    return { isJson: true, value: JSON.parse(body) as unknown };
  } catch {
    return { isJson: false };
  }
}

/** Parses on first use and remembers, so several JSON tests over one response parse it once (or never). */
export function lazyJsonBody(body: string): () => JsonBody {
  let parsed: JsonBody | undefined;
  return () => (parsed ??= parseJsonBody(body));
}

/**
 * The values a JSONPath (RFC 9535: `$.a.b`, `$.errors[*].email`, `$.errors[?@.code == 'X']`)
 * selects, or undefined when the path does not compile or the document nests too deep to search.
 */
export function selectJson(path: string, value: unknown): unknown[] | undefined {
  try {
    return compileJsonPath(path)(value);
  } catch (error) {
    if (error instanceof JsonPathSyntaxError) return undefined;
    throw error;
  }
}

/**
 * Whether one JSON test holds. `exists`: the path selects something (a `null` value counts: the
 * key is there). `equals`: a selected value is strictly equal (`1` is not `"1"`). `in`: a selected
 * value is in the list. `contains`: a selected array has the value as an element, or a selected
 * string contains the string. String values are rendered by `resolve` first (per-item results:
 * `contains: '{{email}}'`). Not JSON, or nested deeper than `..` searches: the test does not hold.
 * A path that does not compile throws (validation refuses one, so this is never a silent "no match").
 */
export function jsonMatches(match: JsonMatch, body: JsonBody, resolve: ResolveValue): boolean {
  if (!body.isJson) return false;
  const selected = compileJsonPath(match.path)(body.value);
  if (selected === undefined) return false;
  if (match.exists !== undefined) return selected.length > 0 === match.exists;
  if (match.equals !== undefined) {
    const expected = resolveScalar(match.equals, resolve);
    return selected.some((value) => value === expected);
  }
  if (match.in !== undefined) {
    const allowed = match.in.map((value) => resolveScalar(value, resolve));
    return selected.some((value) => allowed.includes(value as JsonScalar));
  }
  if (match.contains !== undefined) {
    const expected = resolveScalar(match.contains, resolve);
    return selected.some((value) => containsValue(value, expected));
  }
  return false;
}

function resolveScalar(value: JsonScalar, resolve: ResolveValue): JsonScalar {
  return typeof value === 'string' ? resolve(value) : value;
}

function containsValue(selected: unknown, expected: JsonScalar): boolean {
  if (Array.isArray(selected)) return selected.some((item) => item === expected);
  // Every string contains "": a template that renders empty must not make the test match everything.
  if (typeof selected === 'string' && typeof expected === 'string') {
    return expected !== '' && selected.includes(expected);
  }
  return false;
}
