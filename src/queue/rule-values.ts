import type { Connection, Rule } from '../config/connection-schema.js';
import { TemplateError, UnsubRelayError, type ConfigIssue } from '../errors.js';
import { sampleContext, templateData, type TemplateContext } from '../templates/context.js';
import { newRenderState } from '../templates/helpers.js';
import { compileTemplate, type CompiledTemplate } from '../templates/template-env.js';

/**
 * Rule values may be templates over the delivery (`contains: '{{email}}'`, for per-item results in a
 * response). Each distinct string is compiled once; plain strings pass through untouched. Rule values
 * never see secrets: a rule compares what the CRM said, it does not authenticate.
 */
const compiledValues = new Map<string, CompiledTemplate>();
const noSecrets = { get: () => undefined };

function compiledValue(value: string): CompiledTemplate {
  let compiled = compiledValues.get(value);
  if (!compiled) {
    compiled = compileTemplate(value, 'text');
    compiledValues.set(value, compiled);
  }
  return compiled;
}

export function ruleValueResolver(context: TemplateContext): (value: string) => string {
  const data = templateData(context);
  return (value) =>
    value.includes('{{') ? compiledValue(value).render(data, newRenderState(noSecrets)) : value;
}

function templatedValues(rule: Rule): Array<{ field: string; value: string }> {
  const matches =
    rule.when?.json === undefined ? [] : Array.isArray(rule.when.json) ? rule.when.json : [rule.when.json];
  const found: Array<{ field: string; value: string }> = [];
  matches.forEach((match, m) => {
    const at = Array.isArray(rule.when?.json) ? `when.json[${m}]` : 'when.json';
    for (const key of ['equals', 'contains'] as const) {
      const value = match[key];
      if (typeof value === 'string' && value.includes('{{')) found.push({ field: `${at}.${key}`, value });
    }
    match.in?.forEach((value, i) => {
      if (typeof value === 'string' && value.includes('{{')) found.push({ field: `${at}.in[${i}]`, value });
    });
  });
  return found;
}

/** Compiles and dry-renders every templated rule value, so mistakes show at validation, not delivery. */
export function checkRuleValues(connection: Connection): ConfigIssue[] {
  const resolve = ruleValueResolver(sampleContext(connection));
  const issues: ConfigIssue[] = [];
  connection.response.rules.forEach((rule, r) => {
    for (const { field, value } of templatedValues(rule)) {
      try {
        resolve(value);
      } catch (error) {
        const reason = error instanceof UnsubRelayError ? error.message : 'does not render';
        issues.push({
          field: `response.rules[${r}].${field}`,
          reason: error instanceof TemplateError ? error.message : reason,
        });
      }
    }
  });
  return issues;
}
