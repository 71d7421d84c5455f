import { escapeXml } from './encoding.js';
import { TemplateProblem } from './problem.js';
import { text, toText, type HelperSpec } from './render-state.js';
import { formatInstant, parseIsoDate } from './time.js';

export const isBlank = (value: unknown) => value === null || value === undefined || value === '';

function separatorOf(value: unknown, who: string): string {
  const separator = toText(value, who);
  if (separator === '') throw new TemplateProblem(`${who}: the separator must not be empty`);
  return separator;
}

function indexOf(value: unknown): number {
  const index = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
  if (typeof index !== 'number' || !Number.isSafeInteger(index)) {
    throw new TemplateProblem('split: the index must be a whole number, e.g. {{split email "@" 1}}');
  }
  return index;
}

/**
 * `{{date field FORMAT}}` after the compile-time rewrite: `__date value format name lenient`. The
 * rewrite adds the field's name, so the error says which field is wrong, and `lenient` when the call
 * is an argument of `default`, so `{{default (date occurredAt) receivedAt}}` falls through instead of failing.
 */
function formatDate([value, format, name, lenient]: unknown[]): unknown {
  const who = typeof name === 'string' && name !== '' ? name : 'the value';
  let reason: string | undefined;
  let ms: number | undefined;
  if (isBlank(value)) reason = `date: ${who} is not set`;
  else {
    ms = typeof value === 'string' ? parseIsoDate(value) : undefined;
    if (ms === undefined) {
      reason = `date: ${who} is not an ISO 8601 date (like 2024-05-01 or 2024-05-01T10:00:00Z)`;
    }
  }
  if (reason !== undefined || ms === undefined) {
    if (lenient === true) return null;
    throw new TemplateProblem(reason ?? `date: ${who} is not a date`);
  }
  return formatInstant(ms, format ?? 'iso');
}

function settingOf([name]: unknown[], root: unknown): unknown {
  const settings = (root as { settings?: unknown } | null | undefined)?.settings;
  if (
    typeof name !== 'string' ||
    settings === null ||
    typeof settings !== 'object' ||
    !Object.hasOwn(settings, name)
  ) {
    throw new TemplateProblem(`setting "${String(name)}" is not in this connection's settings`);
  }
  return (settings as Record<string, unknown>)[name];
}

/** Helpers added for body kinds, time, ids and settings; merged into `PUBLIC_HELPERS`. */
export const EXTRA_HELPERS: Readonly<Record<string, HelperSpec>> = {
  /** Explicit XML escaping, for XML inside a `text` body (an `xml` body escapes on its own). */
  xml: { min: 1, max: 1, fn: text('xml', (s) => escapeXml(s, 'xml')) },
  now: { min: 0, max: 1, fn: ([format], state) => formatInstant(state.now, format ?? 'iso') },
  /** Rewritten to `__date` at compile time; this body only runs if a template bypassed that. */
  date: { min: 1, max: 2, fn: ([value, format]) => formatDate([value, format, undefined, false]) },
  uuid: {
    min: 0,
    max: 0,
    fn: (_args, state) => {
      const id = state.uuid();
      state.uuids.push(id);
      return id;
    },
  },
  split: {
    min: 3,
    max: 3,
    fn: ([value, separator, index]) => {
      const parts = toText(value, 'split').split(separatorOf(separator, 'split'));
      const at = indexOf(index);
      // A negative index counts from the end: {{split email '.' -1}} is the top-level domain.
      return parts[at < 0 ? parts.length + at : at] ?? '';
    },
  },
  after: {
    min: 2,
    max: 2,
    fn: ([value, separator]) => {
      const input = toText(value, 'after');
      const sep = separatorOf(separator, 'after');
      const found = input.indexOf(sep);
      return found < 0 ? '' : input.slice(found + sep.length);
    },
  },
  setting: { min: 1, max: 1, fn: ([name], _state, root) => settingOf([name], root) },
};

/** Internal helpers produced by compile-time rewrites; authors cannot call them by name. */
export const INTERNAL_HELPERS: Readonly<Record<string, HelperSpec>> = {
  __date: { min: 4, max: 4, fn: formatDate },
};
