import type { SendOutcome, Verdict } from '../domain/delivery.js';
import type { HealthOutcome } from '../store/connection-control.js';

/**
 * 400, 413 and 422 refuse a request for its content, which splitting can isolate; a refused key
 * (401, 403) or a wrong URL (404) fails every half the same way, so those fail the batch at once.
 */
export function refusedForItsContent(outcome: SendOutcome): boolean {
  return outcome.kind === 'response' && [400, 413, 422].includes(outcome.status);
}

/**
 * What an answer says about the CRM's health, for the circuit breaker: transport failures and 5xx
 * mean it is not coping; a 429 says nothing; any other answer means it is up (even a refusal).
 */
export function healthOf(verdict: Verdict, outcome: SendOutcome): HealthOutcome {
  if (verdict.verdict === 'rate_limited') return 'neutral';
  if (verdict.verdict === 'success' || verdict.verdict === 'success_already_done') return 'up';
  // Refused by us (a guarded target, a request the client cannot build): nothing was asked of the CRM.
  if (outcome.kind === 'error')
    return outcome.code === 'TARGET_REFUSED' || outcome.code === 'REQUEST_INVALID' ? 'neutral' : 'down';
  return outcome.status >= 500 ? 'down' : 'up';
}

export function eventMessage(
  type: string,
  connectionId: string,
  failures: number,
  cooldownMs: number,
): string {
  switch (type) {
    case 'circuit_opened':
      return `circuit of ${connectionId} opened after ${failures} consecutive failures: its deliveries wait (nothing is dropped) and one probe goes in ${Math.round(cooldownMs / 1000)}s`;
    case 'circuit_closed':
      return `circuit of ${connectionId} closed: its CRM answers again and deliveries flow`;
    case 'connection_failing':
      return `deliveries to ${connectionId} are failing (${failures} in a row): check its CRM and its attempts`;
    default:
      return `deliveries to ${connectionId} succeed again`;
  }
}
