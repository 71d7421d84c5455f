import { EACH_KEY, type BodyTemplate, type JsonTemplate } from '../config/connection-schema.js';
import type { ConfigIssue } from '../errors.js';
import { hasHeaderUnsafeChar } from './chars.js';
import { isSingleExpression, parseTemplate, type CompiledTemplate } from './template-env.js';
import type { EscapeContext, TemplateOptions } from './template-ast.js';

/** XML and text bodies are whole documents (a SOAP envelope), so they get more room than one field. */
export const MAX_BODY_TEMPLATE_BYTES = 64 * 1024;

/** A compiled template and the connection-file field it came from, for error messages. */
export interface CompiledField {
  readonly field: string;
  readonly template: CompiledTemplate;
}

export type Compile = (
  source: string,
  context: EscapeContext,
  field: string,
  options?: TemplateOptions,
) => CompiledField | undefined;

export type CompiledJson =
  | { readonly kind: 'literal'; readonly value: string | number | boolean | null }
  | { readonly kind: 'text' | 'value'; readonly compiled: CompiledField }
  | { readonly kind: 'array'; readonly items: readonly CompiledJson[] }
  /** `{ $each: <item> }` in a list: `item` once per unsubscribe of the batch, rendered with its fields. */
  | { readonly kind: 'each'; readonly item: CompiledJson }
  | { readonly kind: 'object'; readonly entries: readonly (readonly [string, CompiledJson])[] };

export type CompiledBody = { readonly contentType: string } & (
  | { readonly kind: 'json'; readonly root: CompiledJson }
  | {
      readonly kind: 'form';
      /** In file order; a list value repeats its field once per item. */
      readonly fields: readonly { readonly name: string; readonly values: readonly CompiledField[] }[];
    }
  | { readonly kind: 'xml' | 'text'; readonly template: CompiledField }
);

export const DEFAULT_CONTENT_TYPES = {
  json: 'application/json',
  form: 'application/x-www-form-urlencoded',
  xml: 'text/xml; charset=utf-8',
} as const;

/** `data.attributes.email` for plain keys, `data["first name"]` for the rest. */
export function jsonPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  return /^[A-Za-z_$][\w$-]*$/.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

export function compileBody(
  body: BodyTemplate,
  compile: Compile,
  issues: ConfigIssue[],
): CompiledBody | undefined {
  const explicit = body.contentType;
  if (explicit !== undefined && hasHeaderUnsafeChar(explicit)) {
    issues.push({ field: 'request.body.contentType', reason: 'must not contain control characters' });
    return undefined;
  }
  if (body.json !== undefined) {
    const root = compileJson(body.json, 'request.body.json', compile, issues);
    return root && { kind: 'json', contentType: explicit ?? DEFAULT_CONTENT_TYPES.json, root };
  }
  if (body.form !== undefined) {
    const fields = Object.entries(body.form).map(([name, value]) => {
      const field = jsonPath('request.body.form', name);
      // Each value is rendered as plain text and form-encoded whole, literal text included.
      const values = Array.isArray(value)
        ? value.map((item, index) => compile(item, 'plain', jsonPath(field, index)))
        : [compile(value, 'plain', field)];
      return { name, values };
    });
    if (fields.some(({ values }) => values.some((value) => value === undefined))) return undefined;
    return {
      kind: 'form',
      contentType: explicit ?? DEFAULT_CONTENT_TYPES.form,
      fields: fields as { name: string; values: CompiledField[] }[],
    };
  }
  const whole = { maxBytes: MAX_BODY_TEMPLATE_BYTES };
  if (body.xml !== undefined) {
    const template = compile(body.xml, 'xml', 'request.body.xml', whole);
    return template && { kind: 'xml', contentType: explicit ?? DEFAULT_CONTENT_TYPES.xml, template };
  }
  if (body.text !== undefined) {
    const template = compile(body.text, 'plain', 'request.body.text', whole);
    // The schema requires a contentType for text; the fallback only guards a hand-built connection.
    return template && { kind: 'text', contentType: explicit ?? 'text/plain; charset=utf-8', template };
  }
  issues.push({ field: 'request.body', reason: 'give one of json, form, xml or text' });
  return undefined;
}

function compileJson(
  node: JsonTemplate,
  field: string,
  compile: Compile,
  issues: ConfigIssue[],
  inList = false,
): CompiledJson | undefined {
  if (typeof node === 'string') {
    let single: boolean;
    try {
      single = isSingleExpression(parseTemplate(node));
    } catch {
      single = false; // compiling again below reports the problem with its field
    }
    const compiled = compile(node, single ? 'value' : 'text', field);
    return compiled && { kind: single ? 'value' : 'text', compiled };
  }
  if (Array.isArray(node)) {
    const items = node.map((item, index) => compileJson(item, jsonPath(field, index), compile, issues, true));
    return items.every((item) => item !== undefined)
      ? { kind: 'array', items: items as CompiledJson[] }
      : undefined;
  }
  if (node !== null && typeof node === 'object' && Object.hasOwn(node, EACH_KEY)) {
    // The schema allows $each only in batched connections; here it must also stand alone in a list.
    const at = jsonPath(field, EACH_KEY);
    if (!inList || Object.keys(node).length !== 1) {
      issues.push({
        field: at,
        reason: `write ${EACH_KEY} alone inside a list: [{ ${EACH_KEY}: <what each unsubscribe adds> }]`,
      });
      return undefined;
    }
    const item = compileJson(node[EACH_KEY]!, at, compile, issues);
    return item && { kind: 'each', item };
  }
  if (node !== null && typeof node === 'object') {
    const entries = Object.entries(node).map(
      ([key, value]) => [key, compileJson(value, jsonPath(field, key), compile, issues)] as const,
    );
    return entries.every(([, value]) => value !== undefined)
      ? { kind: 'object', entries: entries as (readonly [string, CompiledJson])[] }
      : undefined;
  }
  return { kind: 'literal', value: node };
}

/** Every template string of a body with its field and size limit. */
export function bodySources(body: BodyTemplate): { field: string; source: string; maxBytes?: number }[] {
  const out: { field: string; source: string; maxBytes?: number }[] = [];
  const walk = (node: JsonTemplate, field: string): void => {
    if (typeof node === 'string') out.push({ field, source: node });
    else if (Array.isArray(node)) node.forEach((item, index) => walk(item, jsonPath(field, index)));
    else if (node !== null && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) walk(value, jsonPath(field, key));
    }
  };
  if (body.json !== undefined) walk(body.json, 'request.body.json');
  for (const [name, value] of Object.entries(body.form ?? {})) {
    const field = jsonPath('request.body.form', name);
    if (Array.isArray(value))
      value.forEach((item, index) => out.push({ field: jsonPath(field, index), source: item }));
    else out.push({ field, source: value });
  }
  if (body.xml !== undefined)
    out.push({ field: 'request.body.xml', source: body.xml, maxBytes: MAX_BODY_TEMPLATE_BYTES });
  if (body.text !== undefined)
    out.push({ field: 'request.body.text', source: body.text, maxBytes: MAX_BODY_TEMPLATE_BYTES });
  return out;
}
