import { connectionSchema, type Connection } from '../../config/connection-schema.js';
import { zodIssues } from '../../config/load-connections.js';
import { InputError, type ConfigIssue } from '../../errors.js';
import { checkRuleValues } from '../../queue/rule-values.js';
import { checkTemplates } from '../../templates/render-request.js';

/** Validates one connection as a file would be: schema, templates and rule values. */
export function validateConnection(input: unknown): { connection?: Connection; issues: ConfigIssue[] } {
  const result = connectionSchema.safeParse(input);
  if (!result.success) return { issues: zodIssues(result.error) };
  const issues = [...checkTemplates(result.data), ...checkRuleValues(result.data)];
  return issues.length ? { issues } : { connection: result.data, issues: [] };
}

export function invalid(issues: ConfigIssue[], prefix = ''): InputError {
  const fields = Object.fromEntries(issues.map((i) => [`${prefix}${i.field || '(connection)'}`, i.reason]));
  return new InputError(`invalid connection: fix these fields: ${Object.keys(fields).join(', ')}`, fields);
}
