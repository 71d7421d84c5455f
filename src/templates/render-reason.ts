import type { Connection } from '../config/connection-schema.js';
import { scrubSecrets } from '../domain/scrub.js';
import type { ConfigIssue } from '../errors.js';
import { sampleContext, templateData, type TemplateContext } from './context.js';
import { newRenderState } from './helpers.js';
import { describeFailure } from './problem.js';
import { compileTemplate, type CompiledTemplate } from './template-env.js';

/** Characters of a rendered reason kept: a CRM's message, not its whole answer. */
export const MAX_REASON_CHARS = 500;

/** What a rule's `reason` template sees of the CRM's answer, beside the delivery's own context. */
export interface ReasonAnswer {
  status: number;
  headers: Record<string, string>;
  /** The body parsed as JSON, or its text when it is not JSON. */
  body: unknown;
}

/** Where this delivery is in its request: its position and the request's size (1 when alone). */
export interface ReasonItem {
  index: number;
  size: number;
}

// Reasons never see secrets: they describe what the CRM said, and `{{secret}}` in one renders nothing.
const noSecrets = { get: () => undefined };
const compiledReasons = new Map<string, CompiledTemplate>();

function compiledReason(source: string): CompiledTemplate {
  let compiled = compiledReasons.get(source);
  if (!compiled) {
    compiled = compileTemplate(source, 'text');
    // Rule reasons are few and fixed per connection version; a bound keeps edits from piling up.
    if (compiledReasons.size >= 1_000) compiledReasons.clear();
    compiledReasons.set(source, compiled);
  }
  return compiled;
}

/**
 * Renders a rule's `reason` over the delivery's context plus the answer: `response.status`,
 * `response.headers`, `response.body` (parsed JSON) and `response.item`, this delivery's own
 * result in a batch (see `itemResult`). What it renders is scrubbed of `secrets` (a CRM may echo
 * a key back) and bounded. A reason that does not render for this answer (a field the CRM left
 * out) falls back to `fallback`, saying why, rather than failing the verdict.
 */
export function renderReason(
  source: string,
  context: TemplateContext,
  answer: ReasonAnswer,
  item: ReasonItem,
  secrets: readonly string[],
  fallback: string,
): string {
  let text: string;
  try {
    const response = { ...answer, item: itemResult(answer.body, context.email, item) };
    text = compiledReason(source).render({ ...templateData(context), response }, newRenderState(noSecrets));
  } catch (error) {
    text = `${fallback} (its reason did not render for this answer: ${describeFailure(error)})`;
  }
  const scrubbed = scrubSecrets(text, [...secrets]);
  return scrubbed.length > MAX_REASON_CHARS ? `${scrubbed.slice(0, MAX_REASON_CHARS)}…` : scrubbed;
}

/** Nodes of a JSON answer searched for a batch item's own result: a bound on one CRM's answer. */
const MAX_SEARCHED = 5_000;

/**
 * A delivery's own entry in a batch's answer: the `index`-th element when the answer is a list as
 * long as the batch (Postmark's batch answer), otherwise the first object in it that carries this
 * delivery's email as a value (per-item results naming the address). `null` when there is none.
 * Alone in its request, the answer is all its own: `response.item` is the whole body.
 */
export function itemResult(body: unknown, email: string, item: ReasonItem): unknown {
  if (item.size <= 1) return body ?? null;
  if (Array.isArray(body) && body.length === item.size) return body[item.index] ?? null;
  const wanted = email.toLowerCase();
  const queue: unknown[] = [body];
  for (let seen = 0; queue.length > 0 && seen < MAX_SEARCHED; seen++) {
    const node = queue.shift();
    if (node === null || typeof node !== 'object') continue;
    const values = Array.isArray(node) ? node : Object.values(node);
    if (!Array.isArray(node) && values.some((v) => typeof v === 'string' && v.toLowerCase() === wanted))
      return node;
    queue.push(...values);
  }
  return null;
}

/**
 * The answer cannot be known before it comes, so for a dry render each `response...` path stands in
 * as `email` (a known text): everything else in the template is checked as it will render.
 */
function withoutAnswer(source: string): string {
  return source.replace(/(^|[\s({=])response(?:\.[^\s}()]+)?(?=[\s})]|$)/g, '$1email');
}

/**
 * Compiles and dry-renders every rule's templated `reason`, so an unknown variable or helper shows at
 * validation, not in an attempt record. The answer's fields cannot be known before it comes, so
 * any path under `response` passes.
 */
export function checkReasonTemplates(connection: Connection): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const data = templateData(sampleContext(connection));
  connection.response.rules.forEach((rule, r) => {
    if (rule.reason === undefined || !rule.reason.includes('{{')) return;
    try {
      // Compiled as written (syntax, helpers), rendered with the answer's paths stood in for.
      compiledReason(rule.reason);
      compileTemplate(withoutAnswer(rule.reason), 'text').render(data, newRenderState(noSecrets));
    } catch (error) {
      issues.push({ field: `response.rules[${r}].reason`, reason: describeFailure(error) });
    }
  });
  return issues;
}
