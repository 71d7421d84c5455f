import { createHash } from 'node:crypto';
import { hasUrlUnsafeChar } from './chars.js';
import type { SecretSource } from './context.js';
import { TemplateProblem } from './problem.js';

/** Per-render state, reachable by helpers only (through the `@relay` data frame). */
export interface RenderState {
  readonly secrets: SecretSource;
  /** Every string this render derived from a secret; all of them must be redacted. */
  readonly revealed: Set<string>;
  /** The raw value of a single-expression JSON leaf, so `"{{attempt}}"` stays a number. */
  captured: unknown;
}

export function newRenderState(secrets: SecretSource): RenderState {
  return { secrets, revealed: new Set(), captured: undefined };
}

interface HelperSpec {
  readonly min: number;
  readonly max: number;
  readonly fn: (args: unknown[], state: RenderState) => unknown;
}

function kindOf(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** Text for a value: objects and lists are refused, as `[object Object]` is never what was meant. */
export function toText(value: unknown, who: string): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'boolean') return String(value);
  throw new TemplateProblem(`${who}: got ${kindOf(value)}, not text; use {{json ...}} to write it as JSON`);
}

const text =
  (name: string, transform: (input: string) => string): HelperSpec['fn'] =>
  ([value]) =>
    transform(toText(value, name));

const digest = (algorithm: string) => (input: string) =>
  createHash(algorithm).update(input, 'utf8').digest('hex');

function encodeComponent(input: string, who: string): string {
  try {
    return encodeURIComponent(input);
  } catch {
    throw new TemplateProblem(`${who}: the value is not valid Unicode text`);
  }
}

const isBlank = (value: unknown) => value === null || value === undefined || value === '';

/** Helpers template authors may call. */
export const PUBLIC_HELPERS: Readonly<Record<string, HelperSpec>> = {
  lowercase: { min: 1, max: 1, fn: text('lowercase', (s) => s.toLowerCase()) },
  uppercase: { min: 1, max: 1, fn: text('uppercase', (s) => s.toUpperCase()) },
  trim: { min: 1, max: 1, fn: text('trim', (s) => s.trim()) },
  md5: { min: 1, max: 1, fn: text('md5', digest('md5')) },
  sha1: { min: 1, max: 1, fn: text('sha1', digest('sha1')) },
  sha256: { min: 1, max: 1, fn: text('sha256', digest('sha256')) },
  base64: { min: 1, max: 1, fn: text('base64', (s) => Buffer.from(s, 'utf8').toString('base64')) },
  urlencode: { min: 1, max: 1, fn: text('urlencode', (s) => encodeComponent(s, 'urlencode')) },
  json: { min: 1, max: 1, fn: ([value]) => JSON.stringify(value) ?? 'null' },
  default: { min: 2, max: 16, fn: (args) => args.find((value) => !isBlank(value)) ?? args[args.length - 1] },
  eq: { min: 2, max: 2, fn: ([a, b]) => a === b },
  and: { min: 2, max: 16, fn: (args) => args.every(Boolean) },
  or: { min: 2, max: 16, fn: (args) => args.some(Boolean) },
  not: { min: 1, max: 1, fn: ([value]) => !value },
  secret: {
    min: 1,
    max: 1,
    fn: ([name], state) => {
      const value = typeof name === 'string' ? state.secrets.get(name) : undefined;
      // Name the secret, never its value: this message ends up in logs and attempt records.
      if (value === undefined || value === '') {
        throw new TemplateProblem(`secret "${String(name)}" is not set`);
      }
      state.revealed.add(value);
      return value;
    },
  },
};

/** Percent-encodes like `encodeURIComponent`, keeping `@` (safe in paths, common in emails). */
export function encodeUrlValue(input: string): string {
  return encodeComponent(input, 'url').replace(/%40/g, '@');
}

function urlBase(value: unknown): string {
  const base = toText(value, 'base URL');
  let parsed: URL | undefined;
  try {
    parsed = new URL(base);
  } catch {
    parsed = undefined;
  }
  // The URL parser silently drops tabs and newlines, so refuse them before parsing can hide them.
  if (!parsed || hasUrlUnsafeChar(base) || !/^https?:$/.test(parsed.protocol)) {
    throw new TemplateProblem(
      'a URL that starts with an expression needs it to give an absolute http(s) URL',
    );
  }
  if (parsed.search || parsed.hash) {
    throw new TemplateProblem('the base URL must not have a query or fragment');
  }
  return base.replace(/\/+$/, '');
}

/**
 * Internal helpers the AST rewrite wraps around every `{{...}}`, one per place a value can land.
 * Authors cannot call them (names starting with `__` are refused at compile time).
 */
export const ESCAPERS: Readonly<Record<string, HelperSpec>> = {
  /** URL path, query or fragment. */
  __url: { min: 1, max: 1, fn: ([value]) => encodeUrlValue(toText(value, 'URL value')) },
  /** Before the path (host, userinfo): `@` is encoded too, so a value cannot move the host. */
  __urlAuthority: { min: 1, max: 1, fn: ([value]) => encodeComponent(toText(value, 'URL value'), 'url') },
  /** An expression that starts the URL gives the base URL itself, e.g. `{{engine.sandboxUrl}}/x`. */
  __urlBase: { min: 1, max: 1, fn: ([value]) => urlBase(value) },
  /** Header values are checked for control characters once fully rendered. */
  __header: { min: 1, max: 1, fn: ([value]) => toText(value, 'header value') },
  /** JSON string leaves: `JSON.stringify` escapes the final string. */
  __text: { min: 1, max: 1, fn: ([value]) => toText(value, 'JSON string value') },
  __capture: {
    min: 1,
    max: 1,
    fn: ([value], state) => {
      state.captured = value;
      return '';
    },
  },
};

function derivesFromSecret(args: unknown[], revealed: Set<string>): boolean {
  if (revealed.size === 0) return false;
  return args.some((arg) => typeof arg === 'string' && [...revealed].some((secret) => arg.includes(secret)));
}

/** The Handlebars-facing function: checks arity, finds the render state, tracks derived secrets. */
export function toHandlebarsHelper(name: string, spec: HelperSpec): (...args: unknown[]) => unknown {
  return (...all: unknown[]) => {
    const options = all.pop() as { data?: { relay?: RenderState } } | undefined;
    const state = options?.data?.relay;
    if (!state) throw new TemplateProblem(`${name}: rendered without a render state`);
    if (all.length < spec.min || all.length > spec.max) {
      throw new TemplateProblem(`${name} takes ${arity(spec)}, got ${all.length}`);
    }
    const result = spec.fn(all, state);
    // `{{base64 (secret 'K')}}` is as secret as K itself.
    if (typeof result === 'string' && result !== '' && derivesFromSecret(all, state.revealed)) {
      state.revealed.add(result);
    }
    return result;
  };
}

export function arity(spec: HelperSpec): string {
  if (spec.min === spec.max) return `${spec.min} argument${spec.min === 1 ? '' : 's'}`;
  return `${spec.min} to ${spec.max} arguments`;
}
