import type { Logger } from 'pino';
import { EACH_KEY, type Connection } from '../config/connection-schema.js';
import {
  isDelivered,
  type AttemptBatch,
  type RenderedRequest,
  type SendOutcome,
  type Verdict,
} from '../domain/delivery.js';
import { RetryableDeliveryError, TemplateError, UnsubRelayError } from '../errors.js';
import type { Unsubscribe } from '../domain/unsubscribe.js';
import type { EventSink } from '../events/operational-event.js';
import { logEmail } from '../logging.js';
import type { Metrics } from '../observe/metrics.js';
import { planRetry } from '../rules/retry-plan.js';
import type { AttemptStore, AttemptWrite } from '../store/attempt-store.js';
import type { ConnectionControl, HealthOutcome } from '../store/connection-control.js';
import type { LedgerRecords } from '../store/ledger.js';
import { attemptFields, type AttemptFields } from './attempt-fields.js';
import { eventMessage, refusedForItsContent } from './delivery-health.js';
import type { Exchange } from './exchange.js';

/** Whose attempt a record is, and when it started. */
export interface AttemptIdentity {
  deliveryId: string;
  unsubscribeId: string;
  startedAt: number;
  /** The connection version it used (0: none was read). */
  version: number;
}

/** One delivery being attempted: who it is for, with which connection version, which attempt. */
export interface AttemptInFlight extends AttemptIdentity {
  unsubscribe: Unsubscribe;
  connectionId: string;
  /** The version that renders it (a pinned replay's, or the current one). */
  connection: Connection;
  /** The connection as it is now: limits, circuit and duplicate window follow it. */
  control: Connection;
  attemptNumber: number;
  log: Logger;
  /**
   * It travelled in a batch job, whose request settles the CRM's health (and its probe) once: an
   * attempt with nothing to say about health, and no claim to give back, is only written.
   */
  inBatch?: boolean;
  /** The batched request it travels in, once that request is known (recorded with its attempt). */
  batch?: AttemptBatch;
  /** Its place in the batched request (`batch`): which `$each` item of the body is its own. */
  itemIndex?: number;
  /** It is the one request that asks a CRM that throttled the connection (429) again. */
  reopening?: boolean;
}

/**
 * What happens to a delivery after its attempt was recorded. The single-delivery worker turns it
 * into how its BullMQ job ends; a batch job turns it into a delivery job of its own (src/queue/batch-jobs.ts).
 */
export type AttemptResult =
  | { kind: 'delivered' }
  | { kind: 'failed'; code: string; reason: string }
  /** `rateLimited`: the CRM throttles the whole connection; the wait spends no attempt. */
  | { kind: 'retry'; code: string; reason: string; delayMs: number; rateLimited: boolean };

export interface OutcomeDeps {
  attempts: AttemptStore;
  ledger: LedgerRecords;
  control: ConnectionControl;
  events: EventSink;
  metrics?: Metrics;
  retention: { succeededMs: number; failedMs: number };
  slowDown: (connectionId: string, ms: number) => Promise<void>;
  clock: () => number;
  random?: () => number;
  /** Whose level says whether a delivery's info line is written (a delivery's own logger is its child). */
  logger: Pick<Logger, 'isLevelEnabled'>;
}

/** At most one `rate_limited` event per connection in this window: a 429 storm is one piece of news. */
const RATE_LIMITED_EVENT_EVERY_MS = 60_000;

const delivered = (fields: Pick<AttemptFields, 'verdict'>) => isDelivered(fields.verdict);

/**
 * Records attempts and decides what each verdict means, the same way for a delivery sent alone and
 * for one that travelled in a batch job: the attempt record, the circuit's view of the answer, the
 * retry plan, metrics, events and the log line.
 */
export function createOutcomes(deps: OutcomeDeps) {
  // Asked of the engine's logger: a delivery's child logger is made only when a line is written.
  const infoEnabled = () => deps.logger.isLevelEnabled('info');
  const lastRateLimitedEvent = new Map<string, number>();

  const attempt = (d: AttemptIdentity, fields: AttemptFields, durationMs: number): AttemptWrite =>
    deps.attempts.prepareFor(
      {
        deliveryId: d.deliveryId,
        startedAt: new Date(d.startedAt).toISOString(),
        durationMs: Math.round(durationMs),
        connectionVersion: d.version,
      },
      fields,
      delivered(fields) ? deps.retention.succeededMs : deps.retention.failedMs,
    );

  // A delivery left waiting for a retry, or failed and kept for replay, still needs its
  // unsubscribe: the ledger entry lives at least as long as a failed delivery is kept.
  const keepLedger = (d: AttemptIdentity, fields: AttemptFields) =>
    delivered(fields) ? undefined : deps.ledger.keepFor(d.unsubscribeId, deps.retention.failedMs);

  /** Writes an attempt that says nothing about the CRM's health (nothing was sent, or it was merged). */
  const record = async (d: AttemptIdentity, fields: AttemptFields, durationMs: number) => {
    await Promise.all([deps.attempts.write(attempt(d, fields, durationMs)), keepLedger(d, fields)]);
  };

  /** Writes the attempt and what it says about the CRM's health, in one round trip. */
  const recordAndSettle = async (
    d: AttemptInFlight,
    fields: AttemptFields,
    durationMs: number,
    outcome: HealthOutcome,
    final: boolean,
  ) => {
    const claimToGiveBack = final && d.control.dedupe.window > 0;
    // The request that reopened a throttled CRM and was not throttled again: the rate resumes.
    const reopened = d.reopening === true && fields.verdict !== 'rate_limited';
    // Nothing for the circuit to hear (it is off, or a batch's request tells it once), no claim
    // to give back, no throttle to lift: the attempt is only written.
    if (!claimToGiveBack && !reopened && (!d.control.circuit.enabled || (d.inBatch && outcome === 'neutral')))
      return record(d, fields, durationMs);
    const [settled] = await Promise.all([
      deps.control.settle(
        d.control,
        d.deliveryId,
        d.unsubscribe.email,
        outcome,
        { releaseClaim: final, attempt: attempt(d, fields, durationMs), reopened },
        deps.clock(),
      ),
      keepLedger(d, fields),
    ]);
    await announce(d.control, settled, { deliveryId: d.deliveryId, unsubscribeId: d.unsubscribe.id });
  };

  /** Circuit transitions a settle reported: metrics, events, and an opened circuit holds the queue. */
  const announce = async (
    control: Connection,
    settled: Awaited<ReturnType<ConnectionControl['settle']>>,
    about: { deliveryId?: string; unsubscribeId?: string },
  ) => {
    for (const type of settled.events) {
      deps.metrics?.circuitTransitions.inc({ connection: control.id, to: type });
      deps.events.emit({
        type,
        connectionId: control.id,
        ...about,
        message: eventMessage(type, control.id, settled.consecutiveFailures, control.circuit.cooldown),
        details: { consecutiveFailures: settled.consecutiveFailures },
      });
      if (type === 'circuit_opened') {
        deps.metrics?.rateLimitWaits.inc({ connection: control.id, reason: 'circuit_open' });
        await deps.slowDown(control.id, control.circuit.cooldown);
      }
    }
  };

  /** An admission took the half-open circuit's probe: one delivery (or batch) goes through to try the CRM. */
  const halfOpened = (connectionId: string) =>
    deps.events.emit({
      type: 'circuit_half_open',
      connectionId,
      message: `circuit of ${connectionId} is half-open: one probe delivery goes through`,
    });

  /** The CRM throttles the connection: hold all of it back for `delayMs`, with one event a minute. */
  const throttled = async (connectionId: string, delayMs: number, deliveryId: string) => {
    deps.metrics?.rateLimitWaits.inc({ connection: connectionId, reason: 'crm_rate_limited' });
    const now = deps.clock();
    // The queue's own hold keeps workers from fetching; the control's throttle makes the end of it
    // one request, not every worker at once (src/store/control-scripts.ts).
    await Promise.all([
      deps.slowDown(connectionId, delayMs),
      deps.control.throttle(connectionId, now + delayMs),
    ]);
    const last = lastRateLimitedEvent.get(connectionId) ?? 0;
    if (now - last >= RATE_LIMITED_EVENT_EVERY_MS) {
      lastRateLimitedEvent.set(connectionId, now);
      deps.events.emit({
        type: 'rate_limited',
        connectionId,
        deliveryId,
        message: `${connectionId}'s CRM asked us to slow down; the connection waits ${delayMs} ms`,
        details: { waitMs: delayMs },
      });
    }
  };

  /**
   * Records the attempt a verdict ends, with its health outcome, and says what happens next:
   * delivered, failed for good (kept for replay), or retried after the planned delay.
   */
  const conclude = async (
    d: AttemptInFlight,
    verdict: Verdict,
    request: RenderedRequest | undefined,
    outcome: SendOutcome | undefined,
    durationMs: number,
    healthOutcome: HealthOutcome,
  ): Promise<AttemptResult> => {
    const { connectionId, unsubscribe } = d;
    const base =
      request && outcome
        ? attemptFields(request, outcome, verdict, d.batch, d.itemIndex)
        : {
            verdict: verdict.verdict,
            reason: verdict.reason,
            ...('code' in verdict ? { errorCode: verdict.code } : {}),
          };
    // Built only for a line that is logged: a batch concludes hundreds at a time.
    const logFields = () => ({
      attempt: d.attemptNumber,
      connectionVersion: d.version,
      email: logEmail(unsubscribe.email),
      status: outcome?.kind === 'response' ? outcome.status : undefined,
      durationMs: Math.round(durationMs),
      verdict: verdict.verdict,
    });
    const count = (name: string) => deps.metrics?.deliveries.inc({ connection: connectionId, verdict: name });
    if (verdict.verdict === 'success' || verdict.verdict === 'success_already_done') {
      await recordAndSettle(d, base, durationMs, healthOutcome, false);
      count(verdict.verdict);
      deps.metrics?.endToEndSeconds.observe(
        { connection: connectionId },
        Math.max(0, deps.clock() - Date.parse(unsubscribe.receivedAt)) / 1000,
      );
      if (infoEnabled())
        d.log.info(
          logFields(),
          verdict.verdict === 'success' ? 'delivered' : 'delivered (the CRM had it already)',
        );
      return { kind: 'delivered' };
    }
    if (verdict.verdict === 'fail' || verdict.verdict === 'refresh_auth') {
      await recordAndSettle(d, base, durationMs, healthOutcome, true);
      count('fail');
      d.log.warn({ ...logFields(), code: verdict.code }, 'delivery failed: %s', verdict.reason);
      return { kind: 'failed', code: verdict.code, reason: verdict.reason };
    }
    // Only retry and rate_limited are left (TS does not narrow multi-literal discriminants here).
    const waiting = verdict as Extract<Verdict, { verdict: 'retry' | 'rate_limited' }>;
    const now = deps.clock();
    const plan = planRetry(
      d.connection.retry,
      {
        attemptNumber: d.attemptNumber,
        receivedAt: Date.parse(unsubscribe.receivedAt),
        now,
        retryAfterMs: waiting.retryAfterMs,
        spendsAttempt: waiting.verdict === 'retry',
      },
      deps.random,
    );
    if (plan.action === 'give_up') {
      // Out of attempts, the last answer's code says most (NETWORK, HTTP_STATUS...); out of time,
      // the deadline is the news.
      const code = plan.code === 'DEADLINE_PASSED' ? plan.code : waiting.code;
      const reason = `gave up: ${plan.reason}; last answer: ${waiting.reason}`;
      await recordAndSettle(
        d,
        { ...base, verdict: 'fail', errorCode: code, reason },
        durationMs,
        healthOutcome,
        true,
      );
      count('exhausted');
      deps.events.emit({
        type: 'delivery_exhausted',
        connectionId,
        deliveryId: d.deliveryId,
        unsubscribeId: unsubscribe.id,
        message: `delivery ${d.deliveryId} failed for good (${code}): ${plan.reason}; replay it once ${connectionId} is fixed`,
        details: { code, attempts: d.attemptNumber },
      });
      d.log.warn({ ...logFields(), code }, 'delivery failed: %s', reason);
      return { kind: 'failed', code, reason };
    }
    const nextAttemptAt = now + plan.delayMs;
    await recordAndSettle(
      d,
      {
        ...base,
        nextAttemptAt: new Date(nextAttemptAt).toISOString(),
        ...(plan.deadlineNear ? { deadlineNear: true } : {}),
      },
      durationMs,
      healthOutcome,
      false,
    );
    count(waiting.verdict);
    if (plan.deadlineNear) {
      deps.events.emit({
        type: 'deadline_near',
        connectionId,
        deliveryId: d.deliveryId,
        unsubscribeId: unsubscribe.id,
        message: `delivery ${d.deliveryId} is still failing close to its deadline; next attempt ${new Date(nextAttemptAt).toISOString()}`,
        details: { code: waiting.code, nextAttemptAt: new Date(nextAttemptAt).toISOString() },
      });
      d.log.warn(
        { ...logFields(), code: waiting.code, nextAttemptAt },
        'delivery still failing close to its deadline',
      );
    } else if (infoEnabled())
      d.log.info(
        { ...logFields(), code: waiting.code, delayMs: plan.delayMs },
        'delivery will retry: %s',
        verdict.reason,
      );
    return {
      kind: 'retry',
      code: waiting.code,
      reason: verdict.reason,
      delayMs: plan.delayMs,
      rateLimited: waiting.verdict === 'rate_limited',
    };
  };

  return { record, recordAndSettle, announce, halfOpened, throttled, conclude };
}
export type Outcomes = ReturnType<typeof createOutcomes>;

/**
 * Rendering or the OAuth2 token failed before anything reached the CRM: what that means. A template
 * error names the connection's `origin` (its file, see `connectionSourceName`) and the field, so the
 * operator knows what to fix: `connections/acme.yaml: request.auth.token: secret "ACME_KEY" is not set`.
 */
export function unsentVerdict(error: unknown, origin?: string): Verdict {
  if (!(error instanceof UnsubRelayError)) throw error;
  if (error instanceof TemplateError && origin !== undefined) {
    const prefix = `connection ${error.connectionId}: `;
    const detail = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
    return { verdict: 'fail', rule: 'default', code: error.code, reason: `${origin}: ${detail}` };
  }
  return error instanceof RetryableDeliveryError
    ? {
        verdict: 'retry',
        rule: 'default',
        code: error.code,
        reason: error.message,
        ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
      }
    : { verdict: 'fail', rule: 'default', code: error.code, reason: error.message };
}

/** A token refused with no way to refresh it fails: the credentials need a look. */
export function authRefused(verdict: Verdict): Verdict {
  return verdict.verdict === 'refresh_auth'
    ? {
        verdict: 'fail',
        rule: verdict.rule,
        code: 'AUTH_REFUSED',
        reason: `${verdict.reason} (no OAuth2 token to refresh: check the credentials)`,
      }
    : verdict;
}

/**
 * A batch did not render for one of its unsubscribes' data: the failing field is inside `$each`,
 * the only part of a batched request that sees an unsubscribe (a missing secret or a bad header
 * fails every batch alike, and splitting could not help).
 */
export function itemNotRendered(error: unknown): error is TemplateError {
  return error instanceof TemplateError && error.field.includes(`.${EACH_KEY}`);
}

/** The CRM refused a whole batch for what is in it, and no per-item answer told some apart. */
export function refusedWhole(result: Exchange): boolean {
  return refusedForItsContent(result.outcome) && result.verdicts.every((v) => v.verdict === 'fail');
}
