import type { CompiledBody, CompiledJson } from './compile-body.js';
import { formEncode } from './encoding.js';
import { TemplateProblem } from './problem.js';
import type { Rendering } from './render-core.js';

/** The body as sent. A field that fails is reported and rendered empty, so checks see every field. */
export function renderBody(body: CompiledBody, r: Rendering): string {
  switch (body.kind) {
    case 'json':
      return JSON.stringify(renderJson(body.root, r));
    case 'form': {
      const pairs: string[] = [];
      for (const { name, values } of body.fields) {
        for (const value of values) {
          const pair = r.attempt(
            value.field,
            () => `${formEncode(name, 'form field name')}=${formEncode(r.text(value))}`,
          );
          if (pair !== undefined) pairs.push(pair);
        }
      }
      return pairs.join('&');
    }
    case 'xml':
    case 'text':
      return r.attempt(body.template.field, () => r.text(body.template)) ?? '';
  }
}

function renderJson(node: CompiledJson, r: Rendering): unknown {
  switch (node.kind) {
    case 'literal':
      return node.value;
    case 'text':
      return r.attempt(node.compiled.field, () => r.text(node.compiled)) ?? '';
    case 'value':
      return (
        r.attempt(node.compiled.field, () => jsonValue(node.compiled.template.evaluate(r.data, r.state))) ??
        null
      );
    case 'array':
      return node.items.map((item) => renderJson(item, r));
    case 'object':
      // fromEntries defines own properties, so a `__proto__` key stays a key.
      return Object.fromEntries(node.entries.map(([key, value]) => [key, renderJson(value, r)]));
  }
}

function jsonValue(value: unknown): unknown {
  if (value === undefined || value === null) return null;
  if (typeof value === 'number' && !Number.isFinite(value)) {
    throw new TemplateProblem('the value is not a finite number');
  }
  if (['string', 'number', 'boolean', 'object'].includes(typeof value)) return value;
  throw new TemplateProblem(`a ${typeof value} cannot be written as JSON`);
}
