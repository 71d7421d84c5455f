import type { CompiledBody, CompiledJson } from './compile-body.js';
import { formEncode } from './encoding.js';
import { TemplateProblem } from './problem.js';
import type { Rendering } from './render-core.js';

/** The body as sent. A field that fails is reported and rendered empty, so checks see every field. */
export function renderBody(body: CompiledBody, r: Rendering): string {
  switch (body.kind) {
    case 'json':
      return JSON.stringify(renderJson(body.root, r, r.data));
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

/** `data` is what templates see: the request's, or inside `$each` one unsubscribe's of the batch. */
function renderJson(node: CompiledJson, r: Rendering, data: object): unknown {
  switch (node.kind) {
    case 'literal':
      return node.value;
    case 'text':
      return r.attempt(node.compiled.field, () => node.compiled.template.render(data, r.state)) ?? '';
    case 'value':
      return (
        r.attempt(node.compiled.field, () => jsonValue(node.compiled.template.evaluate(data, r.state))) ??
        null
      );
    case 'array':
      return node.items.flatMap((item) =>
        item.kind === 'each'
          ? r.items.map((one) => renderJson(item.item, r, one))
          : [renderJson(item, r, data)],
      );
    case 'each':
      // Compiling allows `$each` only as a list item, which the array case expands.
      return r.items.map((one) => renderJson(node.item, r, one));
    case 'object': {
      // No prototype, so a `__proto__` key stays a key (JSON.stringify reads own keys alone).
      const object: Record<string, unknown> = Object.create(null);
      for (const [key, value] of node.entries) object[key] = renderJson(value, r, data);
      return object;
    }
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
