import { hasHeaderUnsafeChar, hasUrlUnsafeChar } from './chars.js';
import type { CompiledField } from './compile-body.js';
import type { SecretSource } from './context.js';
import { escapeXml, formEncode } from './encoding.js';
import { TemplateProblem, describeFailure } from './problem.js';
import { newRenderState, type RenderOptions, type RenderState } from './render-state.js';

/** Where a failure goes: thrown as a `TemplateError` when rendering, collected when checking. */
export type Report = (field: string, reason: string) => void;
export type Attempt = <T>(field: string, work: () => T) => T | undefined;

/** One request being rendered: its data, render state, and the values that must be redacted. */
export interface Rendering {
  readonly data: object;
  /** A batch's unsubscribes, each as its templates see it (`$each`); one item otherwise. */
  readonly items: readonly object[];
  readonly state: RenderState;
  /** Values that are secret without coming from `{{secret}}`: auth header values, tokens, keys. */
  readonly sensitive: Set<string>;
  /** Runs one field's work; a failure is reported under that field, with secrets scrubbed. */
  readonly attempt: Attempt;
  text(field: CompiledField): string;
  /** Text that goes into a header: control characters are refused, never sent. */
  header(field: CompiledField): string;
  /** Everything to redact, in every encoding it may appear in. */
  secrets(): string[];
}

export function startRendering(
  data: object,
  secrets: SecretSource,
  options: RenderOptions | undefined,
  report: Report,
  items: readonly object[] = [data],
): Rendering {
  const state = newRenderState(secrets, options);
  const sensitive = new Set<string>();
  const attempt: Attempt = (field, work) => {
    try {
      return work();
    } catch (error) {
      report(field, describeFailure(error, [...state.revealed, ...sensitive]));
      return undefined;
    }
  };
  const text = (compiled: CompiledField) => compiled.template.render(data, state);
  return {
    data,
    items,
    state,
    sensitive,
    attempt,
    text,
    header(compiled) {
      return checkedHeader(text(compiled));
    },
    secrets: () => secretVariants([...state.revealed, ...sensitive]),
  };
}

export function checkedHeader(value: string, what = 'the value'): string {
  if (hasHeaderUnsafeChar(value)) {
    throw new TemplateProblem(`${what} contains a control character (CR, LF, NUL, ...); refusing to send it`);
  }
  return value;
}

export function checkedUrl(rendered: string): string {
  // Most connections' URLs are the same for every delivery: checked once.
  if (rendered === lastGoodUrl) return rendered;
  // The URL parser quietly strips tabs, newlines and edge spaces; refuse them instead.
  if (hasUrlUnsafeChar(rendered)) {
    throw new TemplateProblem('the URL contains spaces or control characters outside {{...}}');
  }
  let url: URL;
  try {
    url = new URL(rendered);
  } catch {
    throw new TemplateProblem('the rendered URL is not a valid absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TemplateProblem(`the URL must be http or https, not ${url.protocol.replace(/:$/, '')}`);
  }
  // Sent as rendered rather than as `url.href`: normalising could re-encode a secret into a form
  // the redaction list does not hold.
  lastGoodUrl = rendered;
  return rendered;
}
let lastGoodUrl: string | undefined;

/**
 * Each secret as written raw and in every encoding applied after its template rendered (inside a
 * JSON string, percent-encoded, form-encoded, XML-escaped), so redaction finds all of them.
 */
export function secretVariants(values: Iterable<string>): string[] {
  // Most requests of a connection reveal the same few values: their variants are worked out once
  // (and the one array stands for them, so scrubbing orders it once too). Treat it as read-only.
  const list = [...values];
  // JSON, not a join: no separator a secret could contain makes two sets one key.
  const key = JSON.stringify(list);
  const known = variantsOf.get(key);
  if (known) return known;
  const variants = variantsFor(list);
  if (variantsOf.size >= VARIANTS_KEPT) variantsOf.clear();
  variantsOf.set(key, variants);
  return variants;
}
/** Distinct secret sets kept (a connection's keys, plus OAuth2 tokens as they rotate). */
const VARIANTS_KEPT = 256;
const variantsOf = new Map<string, string[]>();

function variantsFor(values: readonly string[]): string[] {
  const out = new Set<string>();
  for (const value of values) {
    if (value === '') continue;
    out.add(value);
    out.add(JSON.stringify(value).slice(1, -1));
    for (const encode of [encodeURIComponent, formEncode, escapeXml]) {
      try {
        out.add(encode(value));
      } catch {
        // lone surrogates or XML-illegal characters cannot appear encoded either
      }
    }
  }
  return [...out];
}
