import { FilterParser, JsonPathSyntaxError, member, NAME, type FilterTest } from './json-path-filter.js';

export { JsonPathSyntaxError } from './json-path-filter.js';

/**
 * A JSONPath compiled once into a function, so a path that validates is a path that is evaluated:
 * a syntax error is found at validation (with its character), never turned into "no match" at
 * delivery time. The grammar is the common core of JSONPath (RFC 9535):
 *
 *   $            the document          .name  ['name']   a field
 *   [0] [-1]     an element            [*] .*            every child
 *   [0:2] [::2]  a slice               [a,'b',0]         a union
 *   ..name ..*   every descendant      [?(@.code == 'X')] a filter (see json-path-filter.ts)
 */
export type SelectJson = (document: unknown) => unknown[];

type Selector = (node: unknown, out: unknown[]) => void;
interface Segment {
  descendants: boolean;
  selectors: Selector[];
}

const INTEGER = /-?\d+/y;

export function compileJsonPath(source: string): SelectJson {
  const parser = new FilterParser(source, 0);
  if (source[0] !== '$') throw new JsonPathSyntaxError('a JSONPath starts with $, e.g. $.errors[*].email', 0);
  parser.index = 1;
  const segments: Segment[] = [];
  while (parser.index < source.length) segments.push(segment(parser, source));
  return (document) => {
    let nodes: unknown[] = [document];
    for (const { descendants, selectors } of segments) {
      const next: unknown[] = [];
      for (const node of descendants ? withDescendants(nodes) : nodes)
        for (const select of selectors) select(node, next);
      nodes = next;
    }
    return nodes;
  };
}

/** The reason a path does not compile, or undefined when it does. */
export function jsonPathProblem(source: string): string | undefined {
  try {
    compileJsonPath(source);
    return undefined;
  } catch (error) {
    if (error instanceof JsonPathSyntaxError) return `not a valid JSONPath: ${error.message}`;
    throw error;
  }
}

function segment(parser: FilterParser, source: string): Segment {
  const char = source[parser.index];
  if (char === '[') return { descendants: false, selectors: bracket(parser, source) };
  if (char !== '.') parser.fail(`unexpected "${char}" (expected ".name", "[...]" or "..")`);
  parser.index += 1;
  const descendants = source[parser.index] === '.';
  if (descendants) {
    parser.index += 1;
    if (source[parser.index] === '[') return { descendants, selectors: bracket(parser, source) };
  }
  if (source[parser.index] === '*') {
    parser.index += 1;
    return { descendants, selectors: [children] };
  }
  const name = parser.match(NAME);
  if (name === undefined) parser.fail('expected a field name, "*" or "[" after "."');
  return { descendants, selectors: [field(name)] };
}

/** `[...]`: a filter, or a comma-separated list of names, indices, slices and `*`. */
function bracket(parser: FilterParser, source: string): Selector[] {
  parser.index += 1;
  parser.skipSpaces();
  if (source[parser.index] === '?') {
    parser.index += 1;
    const test = parser.parse();
    closeBracket(parser, source);
    return [filter(test)];
  }
  const selectors: Selector[] = [];
  for (;;) {
    parser.skipSpaces();
    selectors.push(bracketSelector(parser, source));
    parser.skipSpaces();
    if (source[parser.index] !== ',') break;
    parser.index += 1;
  }
  closeBracket(parser, source);
  return selectors;
}

function closeBracket(parser: FilterParser, source: string): void {
  parser.skipSpaces();
  if (source[parser.index] !== ']')
    parser.fail(source[parser.index] ? 'expected "]"' : 'the "[" is not closed');
  parser.index += 1;
}

function bracketSelector(parser: FilterParser, source: string): Selector {
  const char = source[parser.index];
  if (char === '*') {
    parser.index += 1;
    return children;
  }
  if (char === "'" || char === '"') return field(parser.quoted());
  const bounds: Array<number | undefined> = [];
  for (;;) {
    parser.skipSpaces();
    const value = parser.match(INTEGER);
    bounds.push(value === undefined ? undefined : Number(value));
    parser.skipSpaces();
    if (source[parser.index] !== ':' || bounds.length === 3) break;
    parser.index += 1;
  }
  if (bounds.length === 1) {
    if (bounds[0] === undefined)
      parser.fail("expected an index, a slice, '*', a 'name' or ?(filter) inside []");
    return index(bounds[0]);
  }
  if (bounds[2] === 0) parser.fail('a slice step cannot be 0');
  return slice(bounds[0], bounds[1], bounds[2] ?? 1);
}

function field(name: string): Selector {
  // `$.errors.0.email`, as jsonpath-plus read it: a number after a dot indexes a list.
  if (/^\d+$/.test(name)) {
    const element = index(Number(name));
    return (node, out) => {
      if (Array.isArray(node)) element(node, out);
      else if (node !== null && typeof node === 'object' && Object.hasOwn(node, name))
        out.push((node as Record<string, unknown>)[name]);
    };
  }
  return (node, out) => {
    if (node !== null && typeof node === 'object' && !Array.isArray(node) && Object.hasOwn(node, name))
      out.push((node as Record<string, unknown>)[name]);
  };
}

function index(at: number): Selector {
  return (node, out) => {
    if (!Array.isArray(node)) return;
    const value = member(node, at);
    const position = at < 0 ? node.length + at : at;
    if (position >= 0 && position < node.length) out.push(value);
  };
}

/** Python-style slices, as RFC 9535 defines them. */
function slice(start: number | undefined, end: number | undefined, step: number): Selector {
  return (node, out) => {
    if (!Array.isArray(node)) return;
    const n = node.length;
    const norm = (i: number) =>
      i < 0 ? Math.max(n + i, step > 0 ? 0 : -1) : Math.min(i, step > 0 ? n : n - 1);
    if (step > 0) {
      for (let i = norm(start ?? 0), stop = norm(end ?? n); i < stop; i += step) out.push(node[i]);
    } else {
      for (let i = norm(start ?? n - 1), stop = end === undefined ? -1 : norm(end); i > stop; i += step)
        out.push(node[i]);
    }
  };
}

const children: Selector = (node, out) => {
  if (Array.isArray(node)) out.push(...node);
  else if (node !== null && typeof node === 'object') out.push(...Object.values(node));
};

/** A filter keeps the children (array elements or object values) for which the test holds. */
function filter(test: FilterTest): Selector {
  return (node, out) => {
    const found: unknown[] = [];
    children(node, found);
    for (const item of found) if (test(item)) out.push(item);
  };
}

/**
 * Each node and all its descendants, in document order. Iterative: a deeply nested answer must not
 * overflow the stack of the worker that classifies it.
 */
function withDescendants(nodes: unknown[]): unknown[] {
  const all: unknown[] = [];
  const stack = [...nodes].reverse();
  while (stack.length > 0) {
    const node = stack.pop();
    all.push(node);
    const found: unknown[] = [];
    children(node, found);
    for (let i = found.length - 1; i >= 0; i -= 1) stack.push(found[i]);
  }
  return all;
}
