import type { RetryPolicy } from '../config/connection-schema.js';

/**
 * How long to wait before the next attempt, after `attemptsMade` attempts have failed.
 *
 * A server's Retry-After (or a rule's `after`) wins over the schedule, capped by `maxRetryAfter` so a
 * CRM cannot park a delivery for a week. Otherwise: `delay` (fixed) or `delay * 2^(n-1)` (exponential),
 * capped by `maxDelay`; with jitter the wait is drawn from [d/2, d] so retries after an outage spread out.
 * `random` is injected so the schedule is testable.
 */
export function retryDelay(
  policy: RetryPolicy,
  attemptsMade: number,
  retryAfterMs: number | undefined,
  random: () => number = Math.random,
): number {
  if (retryAfterMs !== undefined) return Math.min(Math.max(0, retryAfterMs), policy.maxRetryAfter);
  const exponent = Math.max(0, attemptsMade - 1);
  const base =
    policy.backoff === 'fixed'
      ? policy.delay
      : Math.min(policy.delay * 2 ** Math.min(exponent, 40), policy.maxDelay);
  const capped = Math.min(base, policy.maxDelay);
  return policy.jitter ? Math.round(capped / 2 + random() * (capped / 2)) : capped;
}
