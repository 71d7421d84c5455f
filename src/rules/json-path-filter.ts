/**
 * The filter expressions of a JSONPath (`[?(@.code == 'X' && @.retry)]`): a small, closed grammar
 * compiled into a function. No calls, no assignments, no regular expressions: a path comes from a
 * connection file and must neither run code nor be able to backtrack for seconds.
 *
 *   or      := and ('||' and)*
 *   and     := unary ('&&' unary)*
 *   unary   := '!' unary | compare
 *   compare := operand (('==' | '!=' | '===' | '!==' | '<' | '<=' | '>' | '>=') operand)?
 *   operand := '@' member* | '(' or ')' | 'string' | "string" | number | true | false | null
 *   member  := '.' name | '[' 'string' ']' | '[' integer ']'
 */

export type FilterTest = (item: unknown) => boolean;
type Evaluate = (item: unknown) => unknown;

/** A JSONPath that cannot be compiled: `at` is the 0-based character of the path where it fails. */
export class JsonPathSyntaxError extends Error {
  constructor(
    readonly reason: string,
    readonly at: number,
  ) {
    super(`${reason} at character ${at + 1}`);
    this.name = 'JsonPathSyntaxError';
  }
}

export const NAME = /[\p{L}\p{N}_$-]+/uy;
const NUMBER = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const INTEGER = /-?\d+/y;
const COMPARISONS = ['===', '!==', '==', '!=', '<=', '>=', '<', '>'] as const;
type Comparison = (typeof COMPARISONS)[number];

/**
 * Reads a JSONPath from `index` on: `parse` reads one filter expression; the path compiler uses
 * its quoted strings, names and errors too, so both report the same character on failure.
 */
export class FilterParser {
  constructor(
    private readonly source: string,
    public index: number,
  ) {}

  parse(): FilterTest {
    const expression = this.or();
    return (item) => truthy(expression(item));
  }

  fail(reason: string): never {
    throw new JsonPathSyntaxError(reason, this.index);
  }

  skipSpaces(): void {
    while (this.source[this.index] === ' ') this.index += 1;
  }

  private eat(token: string): boolean {
    this.skipSpaces();
    if (!this.source.startsWith(token, this.index)) return false;
    this.index += token.length;
    return true;
  }

  private or(): Evaluate {
    let left = this.and();
    while (this.eat('||')) {
      const [a, b] = [left, this.and()];
      left = (item) => truthy(a(item)) || truthy(b(item));
    }
    return left;
  }

  private and(): Evaluate {
    let left = this.unary();
    while (this.eat('&&')) {
      const [a, b] = [left, this.unary()];
      left = (item) => truthy(a(item)) && truthy(b(item));
    }
    return left;
  }

  private unary(): Evaluate {
    this.skipSpaces();
    if (this.source[this.index] === '!' && this.source[this.index + 1] !== '=') {
      this.index += 1;
      const inner = this.unary();
      return (item) => !truthy(inner(item));
    }
    return this.compare();
  }

  private compare(): Evaluate {
    const left = this.operand();
    this.skipSpaces();
    const operator = COMPARISONS.find((op) => this.source.startsWith(op, this.index));
    if (!operator) return left;
    this.index += operator.length;
    const right = this.operand();
    return (item) => compareValues(operator, left(item), right(item));
  }

  private operand(): Evaluate {
    this.skipSpaces();
    const char = this.source[this.index];
    if (char === '@') {
      this.index += 1;
      return this.members();
    }
    if (char === '(') {
      this.index += 1;
      const inner = this.or();
      if (!this.eat(')')) this.fail('expected ")"');
      return inner;
    }
    if (char === "'" || char === '"') {
      const value = this.quoted();
      return () => value;
    }
    for (const [word, value] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (this.source.startsWith(word, this.index) && !wordContinues(this.source, this.index + word.length)) {
        this.index += word.length;
        return () => value;
      }
    }
    const number = this.match(NUMBER);
    if (number !== undefined) {
      const value = Number(number);
      return () => value;
    }
    if (char === '$') this.fail('a filter compares the current item "@", not the root "$"');
    return this.fail(
      char === undefined
        ? 'the filter ends too early'
        : `unexpected "${char}" (a filter compares @.field with 'text', a number, true, false or null)`,
    );
  }

  /** `@.a.b`, `@['a b']`, `@[0]`: the steps from the current item. */
  private members(): Evaluate {
    const steps: Array<string | number> = [];
    for (;;) {
      const char = this.source[this.index];
      if (char === '.') {
        this.index += 1;
        const name = this.match(NAME);
        if (name === undefined) this.fail('expected a field name after "."');
        steps.push(name);
      } else if (char === '[') {
        this.index += 1;
        this.skipSpaces();
        const quote = this.source[this.index];
        if (quote === "'" || quote === '"') steps.push(this.quoted());
        else {
          const index = this.match(INTEGER);
          if (index === undefined) this.fail("expected 'name' or an index inside [] after @");
          steps.push(Number(index));
        }
        if (!this.eat(']')) this.fail('expected "]"');
      } else {
        return (item) => steps.reduce<unknown>((value, step) => member(value, step), item);
      }
    }
  }

  /** A quoted string at the current index; a backslash escapes the next character. */
  quoted(): string {
    const quote = this.source[this.index]!;
    const start = this.index;
    let value = '';
    for (this.index += 1; this.index < this.source.length; this.index += 1) {
      const char = this.source[this.index]!;
      if (char === quote) {
        this.index += 1;
        return value;
      }
      if (char === '\\') {
        this.index += 1;
        if (this.index >= this.source.length) break;
        value += this.source[this.index];
      } else value += char;
    }
    this.index = start;
    return this.fail(`the string starting with ${quote} is not closed`);
  }

  match(pattern: RegExp): string | undefined {
    pattern.lastIndex = this.index;
    const found = pattern.exec(this.source);
    if (!found) return undefined;
    this.index += found[0].length;
    return found[0];
  }
}

function wordContinues(source: string, index: number): boolean {
  NAME.lastIndex = index;
  return NAME.test(source);
}

/** An own field of an object, an element (or `length`) of an array, the `length` of a string. */
export function member(value: unknown, step: string | number): unknown {
  if (Array.isArray(value)) {
    if (step === 'length') return value.length;
    const index = typeof step === 'number' ? step : /^\d+$/.test(step) ? Number(step) : undefined;
    if (index === undefined) return undefined;
    return value[index < 0 ? value.length + index : index];
  }
  if (typeof value === 'string') return step === 'length' ? value.length : undefined;
  if (value !== null && typeof value === 'object' && Object.hasOwn(value, String(step)))
    return (value as Record<string, unknown>)[String(step)];
  return undefined;
}

/** JavaScript truthiness: a bare `@.retry` holds for a present value other than false, null, 0 or "". */
function truthy(value: unknown): boolean {
  return Boolean(value);
}

/**
 * `==` and `===` are both strict (`1` is not `"1"`), as in the rest of the rule language; `<` and
 * friends compare two numbers or two strings and are false for anything else.
 */
function compareValues(operator: Comparison, left: unknown, right: unknown): boolean {
  switch (operator) {
    case '==':
    case '===':
      return left === right;
    case '!=':
    case '!==':
      return left !== right;
    default: {
      const comparable =
        (typeof left === 'number' && typeof right === 'number') ||
        (typeof left === 'string' && typeof right === 'string');
      if (!comparable) return false;
      const [a, b] = [left as number | string, right as number | string];
      return operator === '<' ? a < b : operator === '<=' ? a <= b : operator === '>' ? a > b : a >= b;
    }
  }
}
