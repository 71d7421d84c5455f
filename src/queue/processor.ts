import { UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { StoredConnection } from '../config/connection-schema.js';
import {
  deliveryJobSchema,
  type Attempt,
  type RenderedRequest,
  type SendOutcome,
  type Verdict,
} from '../domain/delivery.js';
import { RetryableDeliveryError, TemplateError, UnsubRelayError } from '../errors.js';
import type { Sender } from '../http/sender.js';
import { retryDelay } from '../rules/backoff.js';
import { classify } from '../rules/classify.js';
import type { AttemptStore } from '../store/attempt-store.js';
import type { ConnectionStore } from '../store/connection-store.js';
import { redactRequest } from '../templates/redact.js';
import {
  compileConnection,
  renderRequest,
  templateContext,
  type CompiledConnection,
  type SecretSource,
} from '../templates/render-request.js';
import { maskEmail } from '../logging.js';

/** Bytes of response body kept in an attempt record: enough to read an error, not a whole page. */
const EXCERPT_BYTES = 2_048;

export interface ProcessorDeps {
  connections: ConnectionStore;
  attempts: AttemptStore;
  sender: Sender;
  secrets: SecretSource;
  engine: { sandboxUrl: string };
  retention: { succeededMs: number; failedMs: number };
  logger: Logger;
  clock?: () => number;
  random?: () => number;
}

/**
 * Delivers one unsubscribe to one connection: fetch the connection's current version from the shared
 * store, render, send, classify, record the attempt, then tell BullMQ what happens next by how this
 * function ends: return (delivered), `RetryableDeliveryError` (retry after the computed delay, see the
 * worker's backoff strategy) or `UnrecoverableError` (failed now, kept for replay).
 */
export function createProcessor(deps: ProcessorDeps): (job: Job) => Promise<void> {
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

  return async function processDelivery(job: Job): Promise<void> {
    const { unsubscribe, connectionId } = deliveryJobSchema.parse(job.data);
    const id = job.id!;
    const log = deps.logger.child({ deliveryId: id, unsubscribeId: unsubscribe.id, connectionId });
    const startedAt = clock();
    const attemptNumber = job.attemptsMade + 1;
    const attemptsAllowed = job.opts.attempts ?? 1;

    const record = async (
      fields: Omit<Attempt, 'deliveryId' | 'number' | 'startedAt' | 'durationMs' | 'connectionVersion'>,
      version: number,
      durationMs: number,
    ) => {
      const ttl = fields.verdict === 'success' ? deps.retention.succeededMs : deps.retention.failedMs;
      const number = await deps.attempts.append(
        {
          deliveryId: id,
          startedAt: new Date(startedAt).toISOString(),
          durationMs,
          connectionVersion: version,
          ...fields,
        },
        ttl,
      );
      return number;
    };

    const stored = await deps.connections.get(connectionId);
    if (!stored || !stored.connection.enabled) {
      const code = stored ? 'CONNECTION_DISABLED' : 'CONNECTION_MISSING';
      const reason = stored
        ? `connection ${connectionId} is disabled`
        : `connection ${connectionId} no longer exists`;
      await record({ verdict: 'fail', errorCode: code, reason }, stored?.version ?? 0, 0);
      log.warn({ code }, 'delivery failed: %s', reason);
      throw new UnrecoverableError(`${code}: ${reason}`);
    }
    const { connection, version } = stored;

    let request: RenderedRequest;
    try {
      request = renderRequest(
        compile(stored),
        templateContext(unsubscribe, connection, attemptNumber, deps.engine),
        deps.secrets,
      );
    } catch (error) {
      const reason = error instanceof UnsubRelayError ? error.message : `template failed: ${String(error)}`;
      await record({ verdict: 'fail', errorCode: 'TEMPLATE_ERROR', reason }, version, clock() - startedAt);
      log.error(
        { code: 'TEMPLATE_ERROR', field: error instanceof TemplateError ? error.field : undefined },
        'delivery failed: %s',
        reason,
      );
      throw new UnrecoverableError(`TEMPLATE_ERROR: ${reason}`);
    }

    const outcome = await deps.sender.send(request, {
      timeouts: connection.request.timeouts,
      maxResponseBytes: connection.request.maxResponseBytes,
    });
    const verdict = classify(connection.response.rules, outcome, clock());
    const exhausted = verdict.verdict === 'retry' && attemptNumber >= attemptsAllowed;
    const delayMs =
      verdict.verdict === 'retry'
        ? retryDelay(connection.retry, attemptNumber, verdict.retryAfterMs, deps.random)
        : undefined;

    const redacted = redactRequest(request);
    const number = await record(
      {
        request: { method: redacted.method, url: redacted.url, headers: redacted.headers },
        ...responseFields(outcome, request),
        verdict: exhausted ? 'fail' : verdict.verdict,
        ...(verdict.verdict === 'success' ? {} : { errorCode: verdict.code }),
        reason: exhausted ? `gave up after ${attemptsAllowed} attempts: ${verdict.reason}` : verdict.reason,
        ...(delayMs !== undefined && !exhausted
          ? { nextAttemptAt: new Date(clock() + delayMs).toISOString() }
          : {}),
      },
      version,
      outcome.durationMs,
    );

    const fields = {
      attempt: number,
      connectionVersion: version,
      email: maskEmail(unsubscribe.email),
      status: outcome.kind === 'response' ? outcome.status : undefined,
      durationMs: Math.round(outcome.durationMs),
      verdict: verdict.verdict,
    };
    settle(verdict, exhausted, delayMs, log, fields);
  };
}

function settle(
  verdict: Verdict,
  exhausted: boolean,
  delayMs: number | undefined,
  log: Logger,
  fields: object,
): void {
  switch (verdict.verdict) {
    case 'success':
      log.info(fields, 'delivered');
      return;
    case 'fail':
      log.warn({ ...fields, code: verdict.code }, 'delivery failed: %s', verdict.reason);
      throw new UnrecoverableError(`${verdict.code}: ${verdict.reason}`);
    case 'retry':
      if (exhausted) {
        log.warn(
          { ...fields, code: verdict.code },
          'delivery failed after its last attempt: %s',
          verdict.reason,
        );
        throw new UnrecoverableError(`${verdict.code}: gave up after the last attempt: ${verdict.reason}`);
      }
      log.info({ ...fields, code: verdict.code, delayMs }, 'delivery will retry: %s', verdict.reason);
      throw new RetryableDeliveryError(verdict.code, verdict.reason, delayMs);
  }
}

/** The response part of an attempt record: status and a bounded, secret-free excerpt. */
function responseFields(
  outcome: SendOutcome,
  request: RenderedRequest,
): Pick<Attempt, 'status' | 'responseExcerpt'> {
  if (outcome.kind === 'error') return {};
  let excerpt = outcome.body.slice(0, EXCERPT_BYTES);
  // A CRM may echo the request (and so a key) back in an error body.
  for (const secret of request.secrets) if (secret) excerpt = excerpt.split(secret).join('[redacted]');
  return { status: outcome.status, responseExcerpt: excerpt };
}

/** BullMQ backoff strategy `connection`: the delay the processor computed for this failure. */
export function connectionBackoff(_attemptsMade: number, _type?: string, error?: Error): number {
  return error instanceof RetryableDeliveryError && error.retryAfterMs !== undefined
    ? error.retryAfterMs
    : 5_000;
}
