import type { CompiledBody, CompiledJson } from './compile-body.js';
import { formEncode } from './encoding.js';
import { TemplateProblem } from './problem.js';
import type { Rendering } from './render-core.js';

/** What `$each` rendered for each unsubscribe, and the lists it filled (see `renderBatchBody`). */
interface EachParts {
  perItem: unknown[][];
  lists: WeakSet<unknown[]>;
}

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

/**
 * A batched JSON body as sent, plus its parts for attempt records: each unsubscribe's own `$each`
 * item, and the body with the lists `$each` filled replaced by a marker (no one's address in it).
 */
export function renderBatchBody(
  root: CompiledJson,
  r: Rendering,
): { body: string; items: unknown[]; shared: string } {
  const parts: EachParts = { perItem: r.items.map(() => []), lists: new WeakSet() };
  const value = renderJson(root, r, r.data, parts);
  const marker = `$each: ${r.items.length} items, one per delivery (each attempt keeps its own)`;
  return {
    body: JSON.stringify(value),
    items: parts.perItem.map((mine) => (mine.length === 1 ? mine[0] : mine)),
    shared: JSON.stringify(value, (_key, v: unknown) =>
      Array.isArray(v) && parts.lists.has(v) ? [marker] : v,
    ),
  };
}

/** `data` is what templates see: the request's, or inside `$each` one unsubscribe's of the batch. */
function renderJson(node: CompiledJson, r: Rendering, data: object, parts?: EachParts): unknown {
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
    case 'array': {
      let filled = false;
      const list = node.items.flatMap((item) => {
        if (item.kind !== 'each') return [renderJson(item, r, data, parts)];
        filled = true;
        return r.items.map((one, i) => {
          const value = renderJson(item.item, r, one, parts);
          parts?.perItem[i]?.push(value);
          return value;
        });
      });
      if (filled) parts?.lists.add(list);
      return list;
    }
    case 'each':
      // Compiling allows `$each` only as a list item, which the array case expands.
      return r.items.map((one) => renderJson(node.item, r, one, parts));
    case 'object': {
      // No prototype, so a `__proto__` key stays a key (JSON.stringify reads own keys alone).
      const object: Record<string, unknown> = Object.create(null);
      for (const [key, value] of node.entries) object[key] = renderJson(value, r, data, parts);
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
