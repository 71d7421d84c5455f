import type { Matcher, Rule, StatusMatch } from '../config/connection-schema.js';
import type { SendOutcome, Verdict } from '../domain/delivery.js';
import { parseRetryAfter } from '../http/retry-after.js';

/** Statuses that mean "not now" rather than "no": retry them when no rule says otherwise. */
const RETRYABLE_STATUSES = new Set([408, 425, 429]);

type Response = Extract<SendOutcome, { kind: 'response' }>;

/**
 * Decides what one attempt's outcome means: the connection's rules first (in order, first match
 * wins), then the defaults: 2xx success; 408, 425, 429 and 5xx retry (honouring Retry-After);
 * any other status fails; transport errors retry, except a refused target, which no retry can fix.
 */
export function classify(rules: readonly Rule[], outcome: SendOutcome, now: number): Verdict {
  if (outcome.kind === 'error') {
    if (outcome.code === 'TARGET_REFUSED') {
      return { verdict: 'fail', rule: 'default', code: outcome.code, reason: outcome.message };
    }
    return { verdict: 'retry', rule: 'default', code: outcome.code, reason: outcome.message };
  }

  const retryAfterMs = parseRetryAfter(outcome.headers, now);
  for (const [index, rule] of rules.entries()) {
    if (rule.when !== undefined && !matches(rule.when, outcome)) continue;
    const verdict = rule.otherwise ?? rule.then ?? 'fail';
    const reason = rule.reason ?? `rule ${index + 1} (${verdict}) matched status ${outcome.status}`;
    if (verdict === 'success') return { verdict, rule: index, reason };
    if (verdict === 'fail') return { verdict, rule: index, code: 'RULE_FAIL', reason };
    const after = rule.after ?? retryAfterMs;
    return {
      verdict,
      rule: index,
      code: 'HTTP_STATUS',
      reason,
      ...(after === undefined ? {} : { retryAfterMs: after }),
    };
  }
  return defaultVerdict(outcome, retryAfterMs);
}

function defaultVerdict(response: Response, retryAfterMs: number | undefined): Verdict {
  const { status } = response;
  if (status >= 200 && status < 300)
    return { verdict: 'success', rule: 'default', reason: `status ${status}` };
  if (status >= 500 || RETRYABLE_STATUSES.has(status)) {
    return {
      verdict: 'retry',
      rule: 'default',
      code: 'HTTP_STATUS',
      reason: `status ${status} is temporary`,
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    };
  }
  const redirect =
    status >= 300 && status < 400
      ? ` (redirects are not followed: ${response.headers.location ?? 'no location'})`
      : '';
  return {
    verdict: 'fail',
    rule: 'default',
    code: 'HTTP_STATUS',
    reason: `status ${status} is permanent${redirect}`,
  };
}

export function matches(matcher: Matcher, response: Response): boolean {
  if (matcher.status !== undefined) {
    const statuses = Array.isArray(matcher.status) ? matcher.status : [matcher.status];
    if (!statuses.some((s) => statusMatches(s, response.status))) return false;
  }
  if (matcher.bodyContains !== undefined && !response.body.includes(matcher.bodyContains)) return false;
  if (matcher.bodyMatches !== undefined && !new RegExp(matcher.bodyMatches).test(response.body)) return false;
  if (matcher.header !== undefined) {
    const value = response.headers[matcher.header.name.toLowerCase()];
    if (value === undefined) return false;
    if (matcher.header.equals !== undefined && value !== matcher.header.equals) return false;
    if (matcher.header.matches !== undefined && !new RegExp(matcher.header.matches).test(value)) return false;
  }
  return true;
}

export function statusMatches(match: StatusMatch, status: number): boolean {
  if (typeof match === 'number') return match === status;
  if (match.endsWith('xx')) return Math.floor(status / 100) === Number(match[0]);
  const [low, high] = match.split('-').map(Number);
  return status >= low! && status <= high!;
}
