import { RE2JS, RE2JSException } from 're2js';

/**
 * Regular expressions of response rules (`bodyMatches`, `header.matches`) run on RE2 (re2js), whose
 * matching time is linear in the input: a pattern like `^(a+)+$` that backtracks for seconds in
 * JavaScript's engine cannot freeze a worker. RE2 refuses what it cannot match in linear time
 * (backreferences, lookahead, lookbehind), so such a pattern is refused at validation.
 */

/** The most characters of a body or header a rule's regex looks at (the default maxResponseBytes). */
export const REGEX_INPUT_CHARS = 65_536;

const compiled = new Map<string, RE2JS>();
/** Patterns come from connection files, so a handful; the bound only guards against churn. */
const MAX_CACHED = 1_000;

/** A pattern RE2 cannot compile, with RE2's reason. */
export class RuleRegexError extends Error {
  constructor(
    readonly pattern: string,
    readonly reason: string,
  ) {
    super(`not a valid regular expression (RE2 syntax): ${reason}`);
    this.name = 'RuleRegexError';
  }
}

export function compileRuleRegex(pattern: string): RE2JS {
  let regex = compiled.get(pattern);
  if (regex) return regex;
  try {
    regex = RE2JS.compile(pattern);
  } catch (error) {
    if (error instanceof RE2JSException) throw new RuleRegexError(pattern, describe(error.message));
    throw error;
  }
  if (compiled.size >= MAX_CACHED) compiled.clear();
  compiled.set(pattern, regex);
  return regex;
}

/** The reason a pattern is refused, or undefined when RE2 compiles it. */
export function ruleRegexProblem(pattern: string): string | undefined {
  try {
    compileRuleRegex(pattern);
    return undefined;
  } catch (error) {
    if (error instanceof RuleRegexError) return error.message;
    throw error;
  }
}

/** Whether the pattern matches anywhere in the first REGEX_INPUT_CHARS characters of the input. */
export function regexMatches(pattern: string, input: string): boolean {
  const bounded = input.length > REGEX_INPUT_CHARS ? input.slice(0, REGEX_INPUT_CHARS) : input;
  return compileRuleRegex(pattern).test(bounded);
}

/** RE2's messages say what is wrong; add what to do for the constructs it never supports. */
function describe(message: string): string {
  const reason = message.replace(/^error parsing regexp: /, '');
  if (/\(\?<?[=!]/.test(reason))
    return `${reason} (lookahead and lookbehind are not supported: RE2 matches in linear time)`;
  if (/invalid escape sequence: `\\[1-9]/.test(reason))
    return `${reason} (backreferences are not supported: RE2 matches in linear time)`;
  if (/invalid escape sequence: `\\u/.test(reason)) return `${reason} (write \\x{0041} for a code point)`;
  return reason;
}
