import { scrubSecrets } from '../domain/scrub.js';
import { UnsubRelayError } from '../errors.js';

/**
 * A template problem without its location. Helpers and the environment do not know which
 * connection or field they serve, so they throw this and the caller turns it into a
 * `TemplateError` (or a `ConfigIssue`) naming the connection and the field.
 */
export class TemplateProblem extends UnsubRelayError {
  readonly code = 'TEMPLATE_ERROR';
}

/**
 * The reason to show for anything thrown while compiling or rendering. Handlebars' strict
 * lookups print the object they searched (`"x" not defined in s3cret`), which can be an email or
 * a secret, so those messages are rewritten and any known secret is scrubbed from the rest.
 */
export function describeFailure(error: unknown, secrets: Iterable<string> = []): string {
  const message = error instanceof Error ? error.message : String(error);
  const strictMiss = /^"([^"]*)" not defined in [\s\S]*?(?: - (\d+):(\d+))?$/.exec(message);
  if (strictMiss) {
    const where = strictMiss[2] ? ` (line ${strictMiss[2]}, column ${Number(strictMiss[3]) + 1})` : '';
    return `unknown variable "${strictMiss[1]}"${where}`;
  }
  const inOperator = /^Cannot use 'in' operator to search for '([^']*)' in /.exec(message);
  if (inOperator) return `unknown variable "${inOperator[1]}" (its parent is not an object)`;
  return scrubSecrets(message, secrets);
}
