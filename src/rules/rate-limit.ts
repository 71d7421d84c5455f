import { parseRetryAfter } from '../http/retry-after.js';

/** Above this a reset value is an epoch time in milliseconds (1e12 ms is 2001-09-09). */
const EPOCH_MS_ABOVE = 1e12;
/** Above this a reset value is an epoch time in seconds (1e9 s is 2001-09-09); below it, a count of seconds. */
const EPOCH_SECONDS_ABOVE = 1e9;

/**
 * How long a throttling CRM asks us to wait, in ms from `now`: the rule's `delayHeader` if it names
 * one and the response carries a usable value, else `Retry-After`, else `X-RateLimit-Reset`.
 * Undefined when none is usable, so the caller falls back to its backoff schedule.
 */
export function rateLimitDelay(
  headers: Record<string, string>,
  now: number,
  delayHeader?: string,
): number | undefined {
  const named = delayHeader === undefined ? undefined : resetDelay(header(headers, delayHeader), now);
  return named ?? parseRetryAfter(headers, now) ?? resetDelay(header(headers, 'X-RateLimit-Reset'), now);
}

/**
 * A reset-style header value as ms from `now`. CRMs disagree on what they send, so the size says:
 * above 1e12 epoch ms, above 1e9 epoch seconds, otherwise delta seconds (fractions allowed, as in
 * `1.5`). An HTTP date is read as Retry-After reads it. Never negative: a reset in the past means now.
 */
export function resetDelay(raw: string | undefined, now: number): number | undefined {
  if (raw === undefined) return undefined;
  const value = raw.trim();
  if (!/^\d+(\.\d+)?$/.test(value)) return parseRetryAfter({ 'retry-after': value }, now);
  const number = Number(value);
  if (number > EPOCH_MS_ABOVE) return Math.max(0, Math.round(number - now));
  if (number > EPOCH_SECONDS_ABOVE) return Math.max(0, Math.round(number * 1000 - now));
  return Math.round(number * 1000);
}

/** Header names are case-insensitive; the sender's map may or may not be lower-cased. */
function header(headers: Record<string, string>, name: string): string | undefined {
  const wanted = name.toLowerCase();
  return Object.entries(headers).find(([key]) => key.toLowerCase() === wanted)?.[1];
}
