import { createHash } from 'node:crypto';
import { hasUrlUnsafeChar } from './chars.js';
import { encodeComponent, encodeUrlValue, escapeXml } from './encoding.js';
import { EXTRA_HELPERS, INTERNAL_HELPERS, isBlank } from './helpers-extra.js';
import { TemplateProblem } from './problem.js';
import { checkBudget, text, toText, type HelperSpec, type RenderState } from './render-state.js';

export { newRenderState, toText, type RenderOptions, type RenderState } from './render-state.js';
export { encodeUrlValue } from './encoding.js';

const digest = (algorithm: string) => (input: string) =>
  createHash(algorithm).update(input, 'utf8').digest('hex');

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
  ...EXTRA_HELPERS,
};

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
  /** Form fields (encoded whole once rendered), text bodies and signing payloads: as they are. */
  __plain: { min: 1, max: 1, fn: ([value]) => toText(value, 'value') },
  /** XML bodies: every value is escaped for element text and attribute values. */
  __xml: { min: 1, max: 1, fn: ([value]) => escapeXml(toText(value, 'XML value')) },
  __capture: {
    min: 1,
    max: 1,
    fn: ([value], state) => {
      state.captured = value;
      return '';
    },
  },
  ...INTERNAL_HELPERS,
};

function derivesFromSecret(args: unknown[], revealed: Set<string>): boolean {
  if (revealed.size === 0) return false;
  return args.some((arg) => typeof arg === 'string' && [...revealed].some((secret) => arg.includes(secret)));
}

interface HelperOptions {
  data?: { relay?: RenderState; root?: unknown };
}

/** The Handlebars-facing function: checks arity and the time budget, tracks derived secrets. */
export function toHandlebarsHelper(name: string, spec: HelperSpec): (...args: unknown[]) => unknown {
  return (...all: unknown[]) => {
    const options = all.pop() as HelperOptions | undefined;
    const state = options?.data?.relay;
    if (!state) throw new TemplateProblem(`${name}: rendered without a render state`);
    checkBudget(state);
    const result = callHelper(name, spec, all, state, options.data?.root);
    checkBudget(state);
    return result;
  };
}

/**
 * One helper call: its arity, then the secrets its result derives from. From Handlebars (above),
 * or from a template rendered without it (template-env.ts), which has no loop to budget.
 */
export function callHelper(
  name: string,
  spec: HelperSpec,
  args: unknown[],
  state: RenderState,
  root: unknown,
): unknown {
  if (args.length < spec.min || args.length > spec.max) {
    throw new TemplateProblem(`${name} takes ${arity(spec)}, got ${args.length}`);
  }
  const result = spec.fn(args, state, root);
  // `{{base64 (secret 'K')}}` is as secret as K itself. A result equal to an argument adds
  // nothing: marking it would turn a whole signed body that merely contains a secret into one.
  if (
    typeof result === 'string' &&
    result !== '' &&
    !args.includes(result) &&
    derivesFromSecret(args, state.revealed)
  ) {
    state.revealed.add(result);
  }
  return result;
}

export function arity(spec: HelperSpec): string {
  if (spec.min === spec.max) return `${spec.min} argument${spec.min === 1 ? '' : 's'}`;
  return `${spec.min} to ${spec.max} arguments`;
}
