import type { RetryPolicy } from '../config/connection-schema.js';
import { retryDelay } from './backoff.js';

/** What to do after a failed attempt: wait and try again, or stop for good. */
export type RetryPlan =
  | { action: 'retry'; delayMs: number; deadlineNear: boolean }
  | { action: 'give_up'; code: 'DEADLINE_PASSED' | 'ATTEMPTS_EXHAUSTED'; reason: string };

export interface RetryInput {
  /** The attempt that just failed, 1-based. */
  attemptNumber: number;
  /** When the unsubscribe was received (ms): the deadline counts from here. */
  receivedAt: number;
  now: number;
  /** The wait the CRM or a rule asked for, if any. */
  retryAfterMs?: number;
  /** False for `rate_limited`: waiting out a throttle is not a failed attempt. */
  spendsAttempt: boolean;
}

/**
 * The last attempt before a deadline is planned this long before it, so queue lag and a slow CRM
 * (the default timeouts add up to 25s) still leave it answered in time. A tenth of the deadline
 * when that is less, so short deadlines keep most of their window.
 */
const LAST_ATTEMPT_MARGIN_MS = 60_000;

/**
 * Plans the next step after a failed attempt under a connection's retry policy.
 *
 * Gives up with DEADLINE_PASSED once `receivedAt + deadline` is reached, and with ATTEMPTS_EXHAUSTED
 * when an attempt-spending failure was the last one allowed (`rate_limited` never exhausts attempts,
 * but does respect the deadline). Otherwise waits `retryDelay`, shortened when it would overshoot
 * the deadline. `deadlineNear` flags a delivery still failing within `warnBefore` (default: a fifth
 * of the deadline) of its deadline; without a deadline it is always false.
 */
export function planRetry(
  policy: RetryPolicy,
  input: RetryInput,
  random: () => number = Math.random,
): RetryPlan {
  const deadline =
    policy.deadline === undefined
      ? undefined
      : { length: policy.deadline, at: input.receivedAt + policy.deadline };
  // The deadline is checked first: past it, "out of time" is the truer reason than "out of attempts".
  if (deadline && input.now >= deadline.at) return deadlinePassed(deadline);
  if (input.spendsAttempt && input.attemptNumber >= policy.attempts) {
    const attempts = `${policy.attempts} attempt${policy.attempts === 1 ? '' : 's'}`;
    return {
      action: 'give_up',
      code: 'ATTEMPTS_EXHAUSTED',
      reason: `used all ${attempts} the retry policy allows`,
    };
  }
  const delayMs = retryDelay(policy, input.attemptNumber, input.retryAfterMs, random);
  if (!deadline) return { action: 'retry', delayMs, deadlineNear: false };
  return fitToDeadline(policy, deadline, input.now, delayMs);
}

/** A retry deadline: how long it runs (ms) and when it ends (epoch ms). */
interface Deadline {
  length: number;
  at: number;
}

/**
 * Keeps a planned wait inside the deadline. A wait that would land past `deadline - margin` is
 * brought forward to land exactly there: one last attempt in time beats giving up early, even
 * against the CRM's Retry-After (the law's deadline outranks its wish, and a throttled last try
 * costs no more than not trying). If even that moment has passed, there is no time left: give up
 * rather than retry at once, which would only hammer the CRM in a loop until the deadline. That is
 * also where a failed last attempt leaves us, so the shortening happens once.
 */
function fitToDeadline(policy: RetryPolicy, deadline: Deadline, now: number, delayMs: number): RetryPlan {
  const remaining = deadline.at - now;
  const deadlineNear = remaining <= (policy.warnBefore ?? deadline.length / 5);
  const latest = remaining - Math.min(LAST_ATTEMPT_MARGIN_MS, deadline.length / 10);
  if (delayMs <= latest) return { action: 'retry', delayMs, deadlineNear };
  if (latest <= 0) return deadlinePassed(deadline, 'the deadline is too close for another attempt');
  return { action: 'retry', delayMs: Math.round(latest), deadlineNear };
}

function deadlinePassed(deadline: Deadline, detail?: string): RetryPlan {
  const until = new Date(deadline.at).toISOString();
  const base = `kept trying for ${formatDuration(deadline.length)} (until ${until}); the CRM never accepted it`;
  return {
    action: 'give_up',
    code: 'DEADLINE_PASSED',
    reason: detail === undefined ? base : `${base}, and ${detail}`,
  };
}

const UNITS: ReadonlyArray<readonly [string, number]> = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
];

/** A duration as a connection file would write it: `10d`, `36h`, `90s`, or `1500ms`. */
export function formatDuration(ms: number): string {
  const unit = UNITS.find(([, size]) => ms >= size && ms % size === 0);
  return unit === undefined ? `${ms}ms` : `${ms / unit[1]}${unit[0]}`;
}
