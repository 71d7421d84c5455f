import { randomUUID } from 'node:crypto';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { OAuth2Tokens } from '../auth/oauth2.js';
import type { Connection, StoredConnection } from '../config/connection-schema.js';
import { readDeliveryJob, type RenderedRequest, type SendOutcome, type Verdict } from '../domain/delivery.js';
import { RetryableDeliveryError, UnsubRelayError } from '../errors.js';
import type { Sender } from '../http/sender.js';
import { logEmail } from '../logging.js';
import { planRetry } from '../rules/retry-plan.js';
import type { AttemptStore } from '../store/attempt-store.js';
import type { ConnectionStore } from '../store/connection-store.js';
import type { LedgerRecords } from '../store/ledger.js';
import type { EventSink, OperationalEventInput } from '../events/operational-event.js';
import type { Metrics } from '../observe/metrics.js';
import type { Admission, ConnectionControl, HealthOutcome } from '../store/connection-control.js';
import {
  compileConnection,
  templateContext,
  type CompiledConnection,
  type SecretSource,
  type TemplateContext,
} from '../templates/render-request.js';
import { attemptFields, type AttemptFields } from './attempt-fields.js';
import { Batcher, batchCap } from './batcher.js';
import { eventMessage, healthOf, refusedForItsContent } from './delivery-health.js';
import { exchange, type Exchange } from './exchange.js';
import { ruleValueResolver } from './rule-values.js';

/** One delivery waiting in a batch: what its request needs, and its own context for per-item rules. */
interface BatchEntry {
  connection: Connection;
  control: Connection;
  compiled: CompiledConnection;
  context: TemplateContext;
  resolve: (value: string) => string;
}

export interface ProcessorDeps {
  connections: ConnectionStore;
  /** Where a job's unsubscribe is (jobs carry only its id). */
  ledger: LedgerRecords;
  attempts: AttemptStore;
  sender: Sender;
  tokens: OAuth2Tokens;
  secrets: SecretSource;
  engine: { sandboxUrl: string };
  retention: { succeededMs: number; failedMs: number };
  logger: Logger;
  /** Rate limit, circuit breaker and duplicate window, shared by every worker process. */
  control: ConnectionControl;
  /** Holds a whole connection back: every worker of its queue, in every process, waits `ms`. */
  slowDown: (connectionId: string, ms: number) => Promise<void>;
  /** Takes a connection's queue out of service (it was disabled or deleted while deliveries waited). */
  hold: (connectionId: string, reason: 'disabled' | 'deleted') => Promise<void>;
  events: EventSink;
  metrics?: Metrics;
  clock?: () => number;
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** How long a connection whose backlog is held (disabled or deleted) keeps its workers off the queue. */
const HOLD_RECHECK_MS = 5_000;
/** At most one `rate_limited` event per connection in this window: a 429 storm is one piece of news. */
const RATE_LIMITED_EVENT_EVERY_MS = 60_000;

/**
 * Delivers one unsubscribe to one connection: the connection's current version from the shared
 * store, then render, send, classify, record the attempt, and tell BullMQ what happens next by how
 * this function ends: return (delivered); `RetryableDeliveryError` (retry after the planned delay,
 * see `connectionBackoff`); `DelayedError` after moving the job (rate limited: waits without spending
 * an attempt); `UnrecoverableError` (failed now, kept for replay).
 */
export function createProcessor(deps: ProcessorDeps): (job: Job, token?: string) => Promise<unknown> {
  const clock = deps.clock ?? Date.now;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const lastRateLimitedEvent = new Map<string, number>();
  const emit = (event: OperationalEventInput) => deps.events.emit(event);
  const exchangeDeps = { sender: deps.sender, tokens: deps.tokens, secrets: deps.secrets, clock };
  const batcher = new Batcher<BatchEntry, Exchange>(async (entries) => {
    const [first] = entries as [BatchEntry, ...BatchEntry[]];
    await takeRequestSlot(first.control);
    return exchange(exchangeDeps, first.connection, first.compiled, first.context, first.resolve, {
      contexts: entries.map((entry) => entry.context),
      resolvers: entries.map((entry) => entry.resolve),
    });
  });
  /** A batched request waits for its own rate-limit slot (the deliveries in it are already taken). */
  const takeRequestSlot = async (control: Connection) => {
    if (!control.limits.perSecond) return;
    const requestOnly = {
      ...control,
      dedupe: { window: 0 },
      circuit: { ...control.circuit, enabled: false },
    };
    for (;;) {
      const slot = await deps.control.admit(requestOnly, `batch:${randomUUID()}`, '', clock());
      if (slot.kind === 'go') return slot.waitMs > 0 ? sleep(slot.waitMs) : undefined;
      if (slot.kind === 'wait') await sleep(slot.waitMs);
    }
  };
  // Templates are compiled once per connection version, not per delivery.
  const compiled = new Map<string, { version: number; compiled: CompiledConnection }>();
  const compile = (stored: StoredConnection): CompiledConnection => {
    const cached = compiled.get(stored.connection.id);
    if (cached?.version === stored.version) return cached.compiled;
    const fresh = compileConnection(stored.connection);
    compiled.set(stored.connection.id, { version: stored.version, compiled: fresh });
    return fresh;
  };

  // The version of each connection last read here; admission checks it is still the stored one.
  const lastSeen = new Map<string, StoredConnection>();
  const remember = (stored: StoredConnection) => (lastSeen.set(stored.connection.id, stored), stored);
  const forget = (connectionId: string) => (lastSeen.delete(connectionId), undefined);
  const readCurrent = async (connectionId: string) => {
    const stored = await deps.connections.get(connectionId);
    return stored ? remember(stored) : forget(connectionId);
  };

  return async function processDelivery(job: Job, token?: string): Promise<unknown> {
    const data = readDeliveryJob(job);
    const { deliveryId: id, unsubscribeId, connectionId, pinVersion, batchSplit } = data;
    const log = deps.logger.child({ deliveryId: id, unsubscribeId, connectionId });
    const startedAt = clock();
    const attemptNumber = job.attemptsMade + 1;
    let version = 0;

    const attempt = (fields: AttemptFields, durationMs: number) =>
      deps.attempts.prepare(
        {
          deliveryId: id,
          startedAt: new Date(startedAt).toISOString(),
          durationMs: Math.round(durationMs),
          connectionVersion: version,
          ...fields,
        },
        fields.verdict === 'success' || fields.verdict === 'success_already_done'
          ? deps.retention.succeededMs
          : deps.retention.failedMs,
      );
    // A delivery left waiting for a retry, or failed and kept for replay, still needs its
    // unsubscribe: the ledger entry lives at least as long as a failed delivery is kept.
    const keepLedger = (fields: AttemptFields) =>
      fields.verdict === 'success' || fields.verdict === 'success_already_done'
        ? undefined
        : deps.ledger.keepFor(unsubscribeId, deps.retention.failedMs);
    const record = async (fields: AttemptFields, durationMs: number) => {
      await Promise.all([deps.attempts.write(attempt(fields, durationMs)), keepLedger(fields)]);
    };
    const failNow = async (code: string, reason: string, fields: Partial<AttemptFields> = {}) => {
      await record({ verdict: 'fail', errorCode: code, reason, ...fields }, clock() - startedAt);
      log.warn({ code, attempt: attemptNumber }, 'delivery failed: %s', reason);
      throw new UnrecoverableError(`${code}: ${reason}`);
    };

    const found = data.unsubscribe ?? (await deps.ledger.get(unsubscribeId))?.unsubscribe;
    if (!found)
      return failNow(
        'UNSUBSCRIBE_EXPIRED',
        `unsubscribe ${unsubscribeId} is no longer in the ledger (RETENTION_UNSUBSCRIBES): nothing to deliver`,
      );
    const unsubscribe = found;

    // A replay of the original request (issue 5) pins the version its first attempt used.
    const pinned =
      pinVersion === undefined ? undefined : await deps.connections.getVersion(connectionId, pinVersion);
    if (pinVersion !== undefined && !pinned)
      return failNow('CONNECTION_MISSING', `connection ${connectionId} has no version ${pinVersion}`);
    // A deleted or disabled connection's deliveries are not failed or dropped: they go back to its
    // queue, which is held, and stay there as a visible backlog an operator moves or discards.
    const holdBack = async (reason: 'disabled' | 'deleted'): Promise<never> => {
      log.warn({ reason }, 'delivery held: its connection is %s', reason);
      await deps.hold(connectionId, reason);
      await deps.slowDown(connectionId, HOLD_RECHECK_MS);
      throw Worker.RateLimitError();
    };
    // The version last seen here is checked inside the admission script, so an unchanged connection
    // costs no read of its own; a held one is read again, since it may be back.
    let current = lastSeen.get(connectionId);
    if (!current?.connection.enabled) current = await readCurrent(connectionId);
    let admission: Admission;
    for (;;) {
      if (!current) return holdBack('deleted');
      if (!current.connection.enabled) return holdBack('disabled');
      // Limits, circuit and duplicates follow the connection as it is now, even for a pinned replay;
      // a batched connection's rate limit counts requests, so it is taken per batch, not per delivery.
      admission = await deps.control.admit(
        current.connection.batch ? { ...current.connection, limits: {} } : current.connection,
        id,
        unsubscribe.email,
        clock(),
        { version: current.version },
      );
      if (admission.kind !== 'stale') break;
      current = admission.record
        ? remember(deps.connections.parse(connectionId, admission.record))
        : forget(connectionId);
    }
    const used = pinned ?? current;
    version = used.version;
    const { connection } = used;
    const control = current.connection;

    if (admission.kind === 'merged') {
      await record(
        {
          verdict: 'success_already_done',
          reason: `merged into delivery ${admission.into}: the same email went to this connection within ${Math.round(control.dedupe.window / 1000)}s`,
          mergedInto: admission.into,
        },
        0,
      );
      deps.metrics?.deliveries.inc({ connection: connectionId, verdict: 'merged' });
      log.info(
        { mergedInto: admission.into, email: logEmail(unsubscribe.email) },
        'delivery merged into a duplicate',
      );
      return { mergedInto: admission.into };
    }
    if (admission.halfOpened)
      emit({
        type: 'circuit_half_open',
        connectionId,
        message: `circuit of ${connectionId} is half-open: one probe delivery goes through`,
      });
    if (admission.kind === 'wait') {
      // Not an attempt: the job goes back to the front of the queue and the whole connection waits.
      deps.metrics?.rateLimitWaits.inc({ connection: connectionId, reason: admission.reason });
      await deps.slowDown(connectionId, admission.waitMs);
      throw Worker.RateLimitError();
    }
    if (admission.waitMs > 0) await sleep(admission.waitMs);
    /** Writes the attempt and what it says about the CRM's health, in one round trip. */
    const recordAndSettle = async (
      fields: AttemptFields,
      durationMs: number,
      outcome: HealthOutcome,
      final: boolean,
    ) => {
      const [settled] = await Promise.all([
        deps.control.settle(
          control,
          id,
          unsubscribe.email,
          outcome,
          { releaseClaim: final, attempt: attempt(fields, durationMs) },
          clock(),
        ),
        keepLedger(fields),
      ]);
      for (const type of settled.events) {
        deps.metrics?.circuitTransitions.inc({ connection: connectionId, to: type });
        emit({
          type,
          connectionId,
          deliveryId: id,
          unsubscribeId: unsubscribe.id,
          message: eventMessage(type, connectionId, settled.consecutiveFailures, control.circuit.cooldown),
          details: { consecutiveFailures: settled.consecutiveFailures },
        });
        if (type === 'circuit_opened') {
          deps.metrics?.rateLimitWaits.inc({ connection: connectionId, reason: 'circuit_open' });
          await deps.slowDown(connectionId, control.circuit.cooldown);
        }
      }
    };

    const context = templateContext(unsubscribe, connection, attemptNumber, deps.engine);
    let result: Exchange;
    // In a batch, this delivery's place in the request: its verdict, and whether it speaks for the
    // request's health (one request is one answer about the CRM, however many it carried).
    let item = { index: 0, size: 1 };
    try {
      const resolve = ruleValueResolver(context);
      if (connection.batch) {
        const cap = batchCap(connection.batch.maxSize, job.attemptsMade, batchSplit);
        const batched = await batcher.submit(
          `${connectionId}:${version}:${cap}`,
          { connection, control, compiled: compile(used), context, resolve },
          cap,
          connection.batch.maxWait,
        );
        result = batched.result;
        item = { index: batched.index, size: batched.size };
      } else result = await exchange(exchangeDeps, connection, compile(used), context, resolve);
    } catch (error) {
      if (!(error instanceof UnsubRelayError)) throw error;
      // Rendering or the OAuth2 token failed before anything reached the CRM.
      const verdict: Verdict =
        error instanceof RetryableDeliveryError
          ? {
              verdict: 'retry',
              rule: 'default',
              code: error.code,
              reason: error.message,
              ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
            }
          : { verdict: 'fail', rule: 'default', code: error.code, reason: error.message };
      // Nothing reached the CRM, so this says nothing about its health (but frees the probe).
      return settle(verdict, undefined, undefined, clock() - startedAt, 'neutral');
    }
    if (result.refused) {
      await record(
        attemptFields(result.refused.request, result.refused.outcome, result.refused.verdict),
        result.refused.outcome.durationMs,
      );
    }
    let verdict = result.verdicts[item.index] ?? result.verdict;
    if (
      item.size > 1 &&
      refusedForItsContent(result.outcome) &&
      result.verdicts.every((v) => v.verdict === 'fail')
    ) {
      // The CRM refused the whole batch for what is in it (a per-item answer would have told some
      // apart): it may be one bad address, so try again in halves, without spending an attempt,
      // until the address it refuses goes alone and fails alone.
      const splitTo = Math.max(1, Math.floor(item.size / 2));
      await recordAndSettle(
        {
          ...attemptFields(result.request, result.outcome, verdict),
          verdict: 'retry',
          errorCode: 'BATCH_SPLIT',
          reason: `the CRM refused a batch of ${item.size} (${verdict.reason}); retrying in batches of ${splitTo}`,
        },
        result.outcome.durationMs,
        'neutral',
        false,
      );
      await job.updateData({ ...job.data, batchSplit: splitTo });
      throw Worker.RateLimitError();
    }
    if (verdict.verdict === 'refresh_auth') {
      verdict = {
        verdict: 'fail',
        rule: verdict.rule,
        code: 'AUTH_REFUSED',
        reason: `${verdict.reason} (no OAuth2 token to refresh: check the credentials)`,
      };
    }
    deps.metrics?.attemptSeconds.observe({ connection: connectionId }, result.outcome.durationMs / 1000);
    return settle(
      verdict,
      result.request,
      result.outcome,
      result.outcome.durationMs,
      item.index === 0 ? healthOf(verdict, result.outcome) : 'neutral',
    );

    async function settle(
      verdict: Verdict,
      request: RenderedRequest | undefined,
      outcome: SendOutcome | undefined,
      durationMs: number,
      healthOutcome: HealthOutcome,
    ) {
      const base =
        request && outcome
          ? attemptFields(request, outcome, verdict)
          : {
              verdict: verdict.verdict,
              reason: verdict.reason,
              ...('code' in verdict ? { errorCode: verdict.code } : {}),
            };
      const logFields = {
        attempt: attemptNumber,
        connectionVersion: version,
        email: logEmail(unsubscribe.email),
        status: outcome?.kind === 'response' ? outcome.status : undefined,
        durationMs: Math.round(durationMs),
        verdict: verdict.verdict,
      };
      const count = (name: string) =>
        deps.metrics?.deliveries.inc({ connection: connectionId, verdict: name });
      if (verdict.verdict === 'success' || verdict.verdict === 'success_already_done') {
        await recordAndSettle(base, durationMs, healthOutcome, false);
        count(verdict.verdict);
        deps.metrics?.endToEndSeconds.observe(
          { connection: connectionId },
          Math.max(0, clock() - Date.parse(unsubscribe.receivedAt)) / 1000,
        );
        log.info(
          logFields,
          verdict.verdict === 'success' ? 'delivered' : 'delivered (the CRM had it already)',
        );
        return;
      }
      if (verdict.verdict === 'fail' || verdict.verdict === 'refresh_auth') {
        await recordAndSettle(base, durationMs, healthOutcome, true);
        count('fail');
        log.warn({ ...logFields, code: verdict.code }, 'delivery failed: %s', verdict.reason);
        throw new UnrecoverableError(`${verdict.code}: ${verdict.reason}`);
      }
      // Only retry and rate_limited are left (TS does not narrow multi-literal discriminants here).
      const waiting = verdict as Extract<Verdict, { verdict: 'retry' | 'rate_limited' }>;
      const now = clock();
      const plan = planRetry(
        connection.retry,
        {
          attemptNumber,
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
          { ...base, verdict: 'fail', errorCode: code, reason },
          durationMs,
          healthOutcome,
          true,
        );
        count('exhausted');
        emit({
          type: 'delivery_exhausted',
          connectionId,
          deliveryId: id,
          unsubscribeId: unsubscribe.id,
          message: `delivery ${id} failed for good (${code}): ${plan.reason}; replay it once ${connectionId} is fixed`,
          details: { code, attempts: attemptNumber },
        });
        log.warn({ ...logFields, code }, 'delivery failed: %s', reason);
        throw new UnrecoverableError(`${code}: ${reason}`);
      }
      const nextAttemptAt = now + plan.delayMs;
      await recordAndSettle(
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
        emit({
          type: 'deadline_near',
          connectionId,
          deliveryId: id,
          unsubscribeId: unsubscribe.id,
          message: `delivery ${id} is still failing close to its deadline; next attempt ${new Date(nextAttemptAt).toISOString()}`,
          details: { code: waiting.code, nextAttemptAt: new Date(nextAttemptAt).toISOString() },
        });
        log.warn(
          { ...logFields, code: waiting.code, nextAttemptAt },
          'delivery still failing close to its deadline',
        );
      } else
        log.info(
          { ...logFields, code: waiting.code, delayMs: plan.delayMs },
          'delivery will retry: %s',
          verdict.reason,
        );
      if (waiting.verdict === 'rate_limited' && token) {
        // The CRM throttles the connection, not this one delivery: hold the whole connection back
        // until its window passes, and put this delivery back without spending an attempt.
        deps.metrics?.rateLimitWaits.inc({ connection: connectionId, reason: 'crm_rate_limited' });
        await deps.slowDown(connectionId, plan.delayMs);
        const last = lastRateLimitedEvent.get(connectionId) ?? 0;
        if (now - last >= RATE_LIMITED_EVENT_EVERY_MS) {
          lastRateLimitedEvent.set(connectionId, now);
          emit({
            type: 'rate_limited',
            connectionId,
            deliveryId: id,
            message: `${connectionId}'s CRM asked us to slow down; the connection waits ${plan.delayMs} ms`,
            details: { waitMs: plan.delayMs },
          });
        }
        throw Worker.RateLimitError();
      }
      throw new RetryableDeliveryError(waiting.code, verdict.reason, plan.delayMs);
    }
  };
}

/** BullMQ backoff strategy `connection`: the delay the processor planned for this failure. */
export function connectionBackoff(_attemptsMade: number, _type?: string, error?: Error): number {
  return error instanceof RetryableDeliveryError && error.retryAfterMs !== undefined
    ? error.retryAfterMs
    : 5_000;
}
