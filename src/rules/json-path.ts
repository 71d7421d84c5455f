import {
  FunctionExpressionType,
  jsonpath,
  JSONPathEnvironment,
  JSONPathError,
  JSONPathRecursionLimitError,
  JSONPathTypeError,
  type FilterFunction,
  type JSONValue,
  type Token,
} from 'json-p3';
import { compileRuleRegex, regexMatches, ruleRegexProblem } from './rule-regex.js';

/**
 * JSONPath is RFC 9535, as json-p3 implements it, compiled once per path: a path that validates is
 * a path that is evaluated, never turned into "no match" at delivery time. Two local choices:
 * `match()`/`search()` run on RE2 (linear time, like `bodyMatches`), and `$.errors.0` still means
 * `$.errors[0]`, as it did with jsonpath-plus.
 */

/** The values a path selects, or undefined when the document nests deeper than `..` searches. */
export type SelectJson = (document: unknown) => unknown[] | undefined;

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

/**
 * How deep `..` descends. json-p3 walks it with nested generators (each level costs every yield
 * again), so an answer nested thousands deep would be slow; CRM answers nest a handful of levels.
 */
const MAX_DESCENT_DEPTH = 128;

/** `match()` (whole string) and `search()` (anywhere) on RE2, instead of JavaScript's backtracking RegExp. */
class Re2Function implements FilterFunction {
  readonly argTypes = [FunctionExpressionType.ValueType, FunctionExpressionType.ValueType];
  readonly returnType = FunctionExpressionType.LogicalType;
  constructor(private readonly whole: boolean) {}
  call(value: unknown, pattern: unknown): boolean {
    // RFC 9535: a value that is not a string simply does not match.
    if (typeof value !== 'string' || typeof pattern !== 'string') return false;
    return this.whole ? compileRuleRegex(pattern).testExact(value) : regexMatches(pattern, value);
  }
}

class RelayEnvironment extends JSONPathEnvironment {
  protected override setupFilterFunctions(): void {
    super.setupFilterFunctions();
    this.functionRegister.set('match', new Re2Function(true));
    this.functionRegister.set('search', new Re2Function(false));
  }

  /** A pattern is a string literal RE2 compiles, so a bad one is refused at validation, not per answer. */
  override checkWellTypedness(token: Token, args: jsonpath.expressions.FilterExpression[]) {
    const checked = super.checkWellTypedness(token, args);
    if (token.value !== 'match' && token.value !== 'search') return checked;
    const pattern = args[1];
    if (!(pattern instanceof jsonpath.expressions.StringLiteral))
      throw new JSONPathTypeError(`the pattern of ${token.value}() must be a 'string'`, pattern!.token);
    const problem = ruleRegexProblem(pattern.value);
    if (problem) throw new JSONPathTypeError(`${token.value}(): ${problem}`, pattern.token);
    return checked;
  }
}

const environment = new RelayEnvironment({ maxRecursionDepth: MAX_DESCENT_DEPTH });
const compiled = new Map<string, SelectJson>();
/** Paths come from connection files, so a handful; the bound only guards against churn. */
const MAX_CACHED = 1_000;

/** The compiled path (cached); throws JsonPathSyntaxError naming the character where it breaks. */
export function compileJsonPath(source: string): SelectJson {
  let select = compiled.get(source);
  if (select) return select;
  if (!source.startsWith('$'))
    throw new JsonPathSyntaxError('a JSONPath starts with $, e.g. $.errors[*].email', 0);
  const { path, origin } = dotIndicesAsBrackets(source);
  let query: jsonpath.JSONPathQuery;
  try {
    query = environment.compile(path);
  } catch (error) {
    if (!(error instanceof JSONPathError)) throw error;
    // json-p3 ends its message with a quote of the path and the index: we give the character instead.
    const reason = error.message.replace(/ \('[\s\S]*':\d+\)$/, '');
    throw new JsonPathSyntaxError(reason, origin(error.token.index));
  }
  select = (document) => {
    try {
      return query.query(document as JSONValue).values();
    } catch (error) {
      if (error instanceof JSONPathRecursionLimitError) return undefined;
      throw error;
    }
  };
  if (compiled.size >= MAX_CACHED) compiled.clear();
  compiled.set(source, select);
  return select;
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

/**
 * jsonpath-plus read a number after a dot (`$.errors.0.email`, `$..0`) as an index; RFC 9535 has no
 * such shorthand, so `.0` becomes `[0]` before compiling. Quoted strings and decimals (`1.5` in a
 * filter) are left alone. `origin` maps a character of the result back to the path as written.
 */
function dotIndicesAsBrackets(source: string): { path: string; origin: (at: number) => number } {
  let path = '';
  const from: number[] = [];
  const emit = (text: string, at: number) => {
    path += text;
    for (let k = 0; k < text.length; k += 1) from.push(at);
  };
  for (let i = 0; i < source.length; i += 1) {
    const char = source[i]!;
    if (char === "'" || char === '"') {
      const end = closingQuote(source, i);
      for (let k = i; k < end; k += 1) emit(source[k]!, k);
      i = end - 1;
      continue;
    }
    const digits = char === '.' ? indexDigits(source, i + 1) : '';
    if (digits === '' || startsNumber(source, i)) {
      emit(char, i);
      continue;
    }
    emit(source[i - 1] === '.' ? '.[' : '[', i);
    for (let k = 0; k < digits.length; k += 1) emit(digits[k]!, i + 1 + k);
    emit(']', i + 1 + digits.length);
    i += digits.length;
  }
  return { path, origin: (at) => from[at] ?? source.length };
}

const NAME_CHAR = /[\p{L}\p{N}_]/u;

/** The digits from `start` on, unless a name character follows them (`.0e` is not an index). */
function indexDigits(source: string, start: number): string {
  let end = start;
  while (end < source.length && source[end]! >= '0' && source[end]! <= '9') end += 1;
  return end < source.length && NAME_CHAR.test(source[end]!) ? '' : source.slice(start, end);
}

/** Whether the word just before `at` is a number (`1` of `1.5`), not a name (`errors` of `errors.0`). */
function startsNumber(source: string, at: number): boolean {
  let start = at;
  while (start > 0 && NAME_CHAR.test(source[start - 1]!)) start -= 1;
  return start < at && source[start]! >= '0' && source[start]! <= '9';
}

/** The index just past the quote closing the string that opens at `start` (or the end of the path). */
function closingQuote(source: string, start: number): number {
  for (let i = start + 1; i < source.length; i += 1) {
    if (source[i] === '\\') i += 1;
    else if (source[i] === source[start]) return i + 1;
  }
  return source.length;
}
