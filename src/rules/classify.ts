import type { Matcher, Rule, StatusMatch } from '../config/connection-schema.js';
import type { SendOutcome, Verdict } from '../domain/delivery.js';
import { parseRetryAfter } from '../http/retry-after.js';
import { jsonMatches, lazyJsonBody, type JsonBody, type ResolveValue } from './json-match.js';
import { rateLimitDelay } from './rate-limit.js';
import { regexMatches } from './rule-regex.js';

export type { ResolveValue } from './json-match.js';

/** Statuses that mean "not now" rather than "no": retry them when no rule says otherwise. */
const RETRYABLE_STATUSES = new Set([408, 425]);
/** Too Many Requests: throttling, so by default it waits without spending an attempt. */
const TOO_MANY_REQUESTS = 429;

type Response = Extract<SendOutcome, { kind: 'response' }>;

const identity: ResolveValue = (value) => value;

/**
 * Decides what one attempt's outcome means: the connection's rules first (in order, first match
 * wins), then the defaults: 2xx success; 429 rate_limited (Retry-After or X-RateLimit-Reset); 408,
 * 425 and 5xx retry (honouring Retry-After); any other status fails; transport errors retry, except
 * a refused target, which no retry can fix.
 *
 * `resolve` renders templated string values of JSON tests (`contains: '{{email}}'`) for this
 * delivery; classify itself knows nothing of templates. Errors it throws propagate. The body is
 * parsed as JSON at most once per call, and only if a JSON test is reached.
 */
export function classify(
  rules: readonly Rule[],
  outcome: SendOutcome,
  now: number,
  resolve: ResolveValue = identity,
  reasonOf?: ReasonOf,
): Verdict {
  if (outcome.kind === 'error') {
    if (outcome.code === 'TARGET_REFUSED' || outcome.code === 'REQUEST_INVALID') {
      return { verdict: 'fail', rule: 'default', code: outcome.code, reason: outcome.message };
    }
    return { verdict: 'retry', rule: 'default', code: outcome.code, reason: outcome.message };
  }

  const json = lazyJsonBody(outcome.body);
  for (const [index, rule] of rules.entries()) {
    if (rule.when !== undefined && !matches(rule.when, outcome, resolve, json)) continue;
    return ruleVerdict(
      rule,
      index,
      outcome,
      now,
      reasonOf && ((source, fallback) => reasonOf(source, json, fallback)),
    );
  }
  return defaultVerdict(outcome, now);
}

/**
 * Renders a rule's templated `reason` for the answer at hand (src/templates/render-reason.ts);
 * `json` is the body as parsed for the rules, `fallback` what to say when it does not render.
 */
export type ReasonOf = (source: string, json: () => JsonBody, fallback: string) => string;

/** The verdict a matching rule gives, with the code and delay that go with it. */
function ruleVerdict(
  rule: Rule,
  index: number,
  response: Response,
  now: number,
  reasonOf?: (source: string, fallback: string) => string,
): Verdict {
  const verdict = rule.otherwise ?? rule.then ?? 'fail';
  const reason =
    rule.reason === undefined
      ? ruleReason(verdict, index, response.status)
      : reasonOf && rule.reason.includes('{{')
        ? reasonOf(rule.reason, ruleReason(verdict, index, response.status))
        : rule.reason;
  switch (verdict) {
    case 'success':
    case 'success_already_done':
      return { verdict, rule: index, reason };
    case 'retry':
      return withDelay(
        { verdict, rule: index, code: 'HTTP_STATUS', reason },
        rule.after ?? parseRetryAfter(response.headers, now),
      );
    case 'rate_limited':
      // The CRM's own headers say best when its limit resets; a rule's `after` is the fallback when
      // it sends none, before the backoff schedule.
      return withDelay(
        { verdict, rule: index, code: 'RATE_LIMITED', reason },
        rateLimitDelay(response.headers, now, rule.delayHeader) ?? rule.after,
      );
    case 'refresh_auth':
      return { verdict, rule: index, code: 'AUTH_REFUSED', reason };
    case 'fail':
      return { verdict, rule: index, code: 'RULE_FAIL', reason };
  }
}

function ruleReason(verdict: Verdict['verdict'], index: number, status: number): string {
  const matched = `rule ${index + 1} (${verdict}) matched status ${status}`;
  return verdict === 'success_already_done'
    ? `${matched}: the CRM says it was already done (counted as delivered)`
    : matched;
}

function defaultVerdict(response: Response, now: number): Verdict {
  const { status } = response;
  if (status >= 200 && status < 300)
    return { verdict: 'success', rule: 'default', reason: `status ${status}` };
  if (status === TOO_MANY_REQUESTS) {
    return withDelay(
      {
        verdict: 'rate_limited',
        rule: 'default',
        code: 'RATE_LIMITED',
        reason: 'status 429: the CRM is throttling',
      },
      rateLimitDelay(response.headers, now),
    );
  }
  if (status >= 500 || RETRYABLE_STATUSES.has(status)) {
    return withDelay(
      { verdict: 'retry', rule: 'default', code: 'HTTP_STATUS', reason: `status ${status} is temporary` },
      parseRetryAfter(response.headers, now),
    );
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

/** Adds `retryAfterMs` only when there is a delay, so "no delay" stays absent rather than undefined. */
function withDelay(
  verdict: Extract<Verdict, { verdict: 'retry' | 'rate_limited' }>,
  retryAfterMs: number | undefined,
): Verdict {
  return retryAfterMs === undefined ? verdict : { ...verdict, retryAfterMs };
}

/**
 * Whether a response passes every test of a matcher. `resolve` renders templated JSON test values;
 * `json` is the body read as JSON, shared between the rules of one classify call.
 */
export function matches(
  matcher: Matcher,
  response: Response,
  resolve: ResolveValue = identity,
  json: () => JsonBody = lazyJsonBody(response.body),
): boolean {
  if (matcher.status !== undefined) {
    const statuses = Array.isArray(matcher.status) ? matcher.status : [matcher.status];
    if (!statuses.some((s) => statusMatches(s, response.status))) return false;
  }
  if (matcher.bodyContains !== undefined && !response.body.includes(matcher.bodyContains)) return false;
  if (matcher.bodyMatches !== undefined && !regexMatches(matcher.bodyMatches, response.body)) return false;
  if (matcher.header !== undefined) {
    const value = response.headers[matcher.header.name.toLowerCase()];
    if (value === undefined) return false;
    if (matcher.header.equals !== undefined && value !== matcher.header.equals) return false;
    if (matcher.header.matches !== undefined && !regexMatches(matcher.header.matches, value)) return false;
  }
  if (matcher.json !== undefined) {
    const tests = Array.isArray(matcher.json) ? matcher.json : [matcher.json];
    // Cheap tests above run first, so a status mismatch never pays for parsing the body.
    if (!tests.every((test) => jsonMatches(test, json(), resolve))) return false;
  }
  return true;
}

/** `200`, `"2xx"` or `"500-599"` against a status. */
export function statusMatches(match: StatusMatch, status: number): boolean {
  if (typeof match === 'number') return match === status;
  if (match.endsWith('xx')) return Math.floor(status / 100) === Number(match[0]);
  const [low, high] = match.split('-').map(Number);
  return status >= low! && status <= high!;
}
