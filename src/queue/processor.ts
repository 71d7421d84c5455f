import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { OAuth2Tokens } from '../auth/oauth2.js';
import type { StoredConnection } from '../config/connection-schema.js';
import {
  deliveryJobSchema,
  type Attempt,
  type RenderedRequest,
  type SendOutcome,
  type Verdict,
} from '../domain/delivery.js';
import { scrubSecrets } from '../domain/scrub.js';
import { RetryableDeliveryError, UnsubRelayError } from '../errors.js';
import type { Sender } from '../http/sender.js';
import { maskEmail } from '../logging.js';
import { planRetry } from '../rules/retry-plan.js';
import type { AttemptStore } from '../store/attempt-store.js';
import type { ConnectionStore } from '../store/connection-store.js';
import { redactRequest } from '../templates/redact.js';
import {
  compileConnection,
  templateContext,
  type CompiledConnection,
  type SecretSource,
} from '../templates/render-request.js';
import { exchange, type Exchange } from './exchange.js';
import { ruleValueResolver } from './rule-values.js';

/** Bytes of response body kept in an attempt record: enough to read an error, not a whole page. */
const EXCERPT_BYTES = 2_048;

export interface ProcessorDeps {
  connections: ConnectionStore;
  attempts: AttemptStore;
  sender: Sender;
  tokens: OAuth2Tokens;
  secrets: SecretSource;
  engine: { sandboxUrl: string };
  retention: { succeededMs: number; failedMs: number };
  logger: Logger;
  clock?: () => number;
  random?: () => number;
}

type AttemptFields = Omit<
  Attempt,
  'deliveryId' | 'number' | 'startedAt' | 'durationMs' | 'connectionVersion'
>;

/**
 * Delivers one unsubscribe to one connection: the connection's current version from the shared
 * store, then render, send, classify, record the attempt, and tell BullMQ what happens next by how
 * this function ends: return (delivered); `RetryableDeliveryError` (retry after the planned delay,
 * see `connectionBackoff`); `DelayedError` after moving the job (rate limited: waits without spending
 * an attempt); `UnrecoverableError` (failed now, kept for replay).
 */
export function createProcessor(deps: ProcessorDeps): (job: Job, token?: string) => Promise<void> {
  const clock = deps.clock ?? Date.now;
  // Templates are compiled once per connection version, not per delivery.
  const compiled = new Map<string, { version: number; compiled: CompiledConnection }>();
  const compile = (stored: StoredConnection): CompiledConnection => {
    const cached = compiled.get(stored.connection.id);
    if (cached?.version === stored.version) return cached.compiled;
    const fresh = compileConnection(stored.connection);
    compiled.set(stored.connection.id, { version: stored.version, compiled: fresh });
    return fresh;
  };

  return async function processDelivery(job: Job, token?: string): Promise<void> {
    const { unsubscribe, connectionId, pinVersion } = deliveryJobSchema.parse(job.data);
    const id = job.id!;
    const log = deps.logger.child({ deliveryId: id, unsubscribeId: unsubscribe.id, connectionId });
    const startedAt = clock();
    const attemptNumber = job.attemptsMade + 1;
    let version = 0;

    const record = (fields: AttemptFields, durationMs: number) =>
      deps.attempts.append(
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
    const failNow = async (code: string, reason: string, fields: Partial<AttemptFields> = {}) => {
      await record({ verdict: 'fail', errorCode: code, reason, ...fields }, clock() - startedAt);
      log.warn({ code, attempt: attemptNumber }, 'delivery failed: %s', reason);
      throw new UnrecoverableError(`${code}: ${reason}`);
    };

    // A replay of the original request (issue 5) pins the version its first attempt used.
    const stored =
      pinVersion === undefined
        ? await deps.connections.get(connectionId)
        : await deps.connections.getVersion(connectionId, pinVersion);
    if (!stored)
      return failNow(
        'CONNECTION_MISSING',
        pinVersion === undefined
          ? `connection ${connectionId} no longer exists`
          : `connection ${connectionId} has no version ${pinVersion}`,
      );
    version = stored.version;
    const { connection } = stored;
    if (!connection.enabled) return failNow('CONNECTION_DISABLED', `connection ${connectionId} is disabled`);

    const context = templateContext(unsubscribe, connection, attemptNumber, deps.engine);
    let result: Exchange;
    try {
      result = await exchange(
        { sender: deps.sender, tokens: deps.tokens, secrets: deps.secrets, clock },
        connection,
        compile(stored),
        context,
        ruleValueResolver(context),
      );
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
      return settle(verdict, undefined, undefined, clock() - startedAt);
    }
    if (result.refused) {
      await record(
        attemptFields(result.refused.request, result.refused.outcome, result.refused.verdict),
        result.refused.outcome.durationMs,
      );
    }
    let verdict = result.verdict;
    if (verdict.verdict === 'refresh_auth') {
      verdict = {
        verdict: 'fail',
        rule: verdict.rule,
        code: 'AUTH_REFUSED',
        reason: `${verdict.reason} (no OAuth2 token to refresh: check the credentials)`,
      };
    }
    return settle(verdict, result.request, result.outcome, result.outcome.durationMs);

    async function settle(
      verdict: Verdict,
      request: RenderedRequest | undefined,
      outcome: SendOutcome | undefined,
      durationMs: number,
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
        email: maskEmail(unsubscribe.email),
        status: outcome?.kind === 'response' ? outcome.status : undefined,
        durationMs: Math.round(durationMs),
        verdict: verdict.verdict,
      };
      if (verdict.verdict === 'success' || verdict.verdict === 'success_already_done') {
        await record(base, durationMs);
        log.info(
          logFields,
          verdict.verdict === 'success' ? 'delivered' : 'delivered (the CRM had it already)',
        );
        return;
      }
      if (verdict.verdict === 'fail' || verdict.verdict === 'refresh_auth') {
        await record(base, durationMs);
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
        await record({ ...base, verdict: 'fail', errorCode: code, reason }, durationMs);
        log.warn({ ...logFields, code }, 'delivery failed: %s', reason);
        throw new UnrecoverableError(`${code}: ${reason}`);
      }
      const nextAttemptAt = now + plan.delayMs;
      await record(
        {
          ...base,
          nextAttemptAt: new Date(nextAttemptAt).toISOString(),
          ...(plan.deadlineNear ? { deadlineNear: true } : {}),
        },
        durationMs,
      );
      if (plan.deadlineNear)
        log.warn(
          { ...logFields, code: waiting.code, nextAttemptAt },
          'delivery still failing close to its deadline',
        );
      else
        log.info(
          { ...logFields, code: waiting.code, delayMs: plan.delayMs },
          'delivery will retry: %s',
          verdict.reason,
        );
      if (waiting.verdict === 'rate_limited' && token) {
        // Waiting out a rate limit is not a failed attempt: move the job without spending one.
        await job.moveToDelayed(nextAttemptAt, token);
        throw new DelayedError();
      }
      throw new RetryableDeliveryError(waiting.code, verdict.reason, plan.delayMs);
    }
  };
}

/** The attempt record of one exchange: redacted request, status, bounded secret-free excerpt. */
function attemptFields(request: RenderedRequest, outcome: SendOutcome, verdict: Verdict): AttemptFields {
  const redacted = redactRequest(request);
  const fields: AttemptFields = {
    request: { method: redacted.method, url: redacted.url, headers: redacted.headers },
    verdict: verdict.verdict,
    reason: verdict.reason,
    ...('code' in verdict ? { errorCode: verdict.code } : {}),
  };
  if (outcome.kind === 'error') return fields;
  // A CRM may echo the request (and so a key) back in an error body: scrub the whole body, then cut.
  const excerpt = scrubSecrets(outcome.body, request.secrets, { truncated: outcome.bodyTruncated }).slice(
    0,
    EXCERPT_BYTES,
  );
  return { ...fields, status: outcome.status, responseExcerpt: excerpt };
}

/** BullMQ backoff strategy `connection`: the delay the processor planned for this failure. */
export function connectionBackoff(_attemptsMade: number, _type?: string, error?: Error): number {
  return error instanceof RetryableDeliveryError && error.retryAfterMs !== undefined
    ? error.retryAfterMs
    : 5_000;
}
