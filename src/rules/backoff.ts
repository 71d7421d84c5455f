import type { RetryPolicy } from '../config/connection-schema.js';

/**
 * How long to wait before the next attempt, after `attemptsMade` attempts have failed.
 *
 * A server's Retry-After (or a rule's `after`) wins over the schedule, capped by `maxRetryAfter` so a
 * CRM cannot park a delivery for a week. Otherwise: `delay` (fixed), `delay * 2^(n-1)` (exponential)
 * or `schedule[n-1]` (schedule, the last entry repeating), capped by `maxDelay`; with jitter the wait
 * is drawn from [d/2, d] so retries after an outage spread out. `random` is injected so the schedule
 * is testable.
 */
export function retryDelay(
  policy: RetryPolicy,
  attemptsMade: number,
  retryAfterMs: number | undefined,
  random: () => number = Math.random,
): number {
  if (retryAfterMs !== undefined) return Math.min(Math.max(0, retryAfterMs), policy.maxRetryAfter);
  const capped = Math.min(baseDelay(policy, Math.max(1, attemptsMade)), policy.maxDelay);
  return policy.jitter ? Math.round(capped / 2 + random() * (capped / 2)) : capped;
}

/** The uncapped, unjittered wait after the `n`th failed attempt (n >= 1). */
function baseDelay(policy: RetryPolicy, n: number): number {
  switch (policy.backoff) {
    case 'fixed':
      return policy.delay;
    case 'schedule': {
      // The schema requires a schedule with this backoff; `delay` only guards a hand-built policy.
      const schedule = policy.schedule ?? [policy.delay];
      return schedule[Math.min(n, schedule.length) - 1] ?? policy.delay;
    }
    case 'exponential':
      // The exponent is bounded so thousands of attempts cannot overflow to Infinity.
      return policy.delay * 2 ** Math.min(n - 1, 40);
  }
}
