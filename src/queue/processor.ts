import { randomUUID } from 'node:crypto';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { OAuth2Tokens } from '../auth/oauth2.js';
import type { Connection, StoredConnection } from '../config/connection-schema.js';
import { isBatchJob, readDeliveryJob, type Verdict } from '../domain/delivery.js';
import { RetryableDeliveryError } from '../errors.js';
import type { Sender } from '../http/sender.js';
import { logEmail } from '../logging.js';
import type { AttemptStore } from '../store/attempt-store.js';
import type { ConnectionStore } from '../store/connection-store.js';
import type { LedgerRecords } from '../store/ledger.js';
import type { EventSink } from '../events/operational-event.js';
import type { BatchBuffer } from '../store/batch-buffer.js';
import type { Metrics } from '../observe/metrics.js';
import type { Admission, ConnectionControl } from '../store/connection-control.js';
import {
  compileConnection,
  templateContext,
  type CompiledConnection,
  type SecretSource,
  type TemplateContext,
} from '../templates/render-request.js';
import { attemptFields, sharedRequest, type AttemptFields } from './attempt-fields.js';
import { Batcher, GroupNotSent, batchCap, halfOf } from './batcher.js';
import { createBatchJobProcessor, type HandOver } from './batch-jobs.js';
import { healthOf } from './delivery-health.js';
import {
  authRefused,
  createOutcomes,
  itemNotRendered,
  refusedWhole,
  unsentVerdict,
  type AttemptInFlight,
  type AttemptResult,
} from './delivery-outcome.js';
import { exchange, type Exchange } from './exchange.js';
import { connectionSourceName } from '../config/connection-origin.js';
import { RequestSlots } from './request-slots.js';
import { decideSplit, stoppedSplit, type SplitOf } from './split-refusal.js';
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
  /** Batched connections' deliveries, and how one leaves a batch job for a job of its own (issue 7). */
  buffer: BatchBuffer;
  handOver: HandOver;
  /** The delivery ids among these with no job of their own. */
  withoutJob: (deliveryIds: readonly string[]) => Promise<string[]>;
  /**
   * Requests one connection may have open at once in this process (WORKER_CONCURRENCY): what an
   * unbatched connection's deliveries take, one each, whether their job is their own or a batch job.
   */
  requestSlots: number;
  /** True once this process is shutting down: a batch job starts nothing more, and puts the rest back. */
  stopping?: () => boolean;
  metrics?: Metrics;
  clock?: () => number;
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** How long a connection whose backlog is held (disabled or deleted) keeps its workers off the queue. */
const HOLD_RECHECK_MS = 5_000;

/**
 * Runs a connection's jobs: a batch job (many deliveries in one request, src/queue/batch-jobs.ts),
 * or one delivery, as follows. Delivers one unsubscribe to one connection: the connection's
 * current version from the shared store, then render, send, classify, record the attempt, and tell
 * BullMQ what happens next by how this function ends: return (delivered); `RetryableDeliveryError`
 * (retry after the planned delay, see `connectionBackoff`); `DelayedError` after moving the job
 * (rate limited: waits without spending an attempt); `UnrecoverableError` (failed now, kept for replay).
 */
export function createProcessor(deps: ProcessorDeps): (job: Job, token?: string) => Promise<unknown> {
  const clock = deps.clock ?? Date.now;
  const sleep = deps.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const exchangeDeps = { sender: deps.sender, tokens: deps.tokens, secrets: deps.secrets, clock };
  // A request grouped here gets an id of its own, which its deliveries' attempts record (`batch`).
  const batcher = new Batcher<BatchEntry, { id: string; exchange: Exchange }>(async (entries) => {
    const [first] = entries as [BatchEntry, ...BatchEntry[]];
    await takeRequestSlot(first.control);
    const sent = await exchange(
      exchangeDeps,
      first.connection,
      first.compiled,
      first.context,
      first.resolve,
      {
        contexts: entries.map((entry) => entry.context),
        resolvers: entries.map((entry) => entry.resolve),
      },
    );
    const id = `request-${randomUUID()}`;
    // The request its deliveries shared, kept once (each attempt keeps only its own item).
    await deps.attempts.keepShared(id, sharedRequest(sent.request), deps.retention.failedMs);
    return { id, exchange: sent };
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
      // Its deliveries were each admitted already (one of them reopens a throttled CRM).
      const slot = await deps.control.admit(requestOnly, `batch:${randomUUID()}`, '', clock(), {
        throttle: false,
      });
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

  const outcomes = createOutcomes({ ...deps, clock });
  const slots = new RequestSlots(deps.requestSlots);
  // Batch jobs (src/queue/batch-jobs.ts) deliver many at once with the same steps.
  const processBatch = createBatchJobProcessor({
    ...deps,
    clock,
    sleep,
    outcomes,
    exchangeDeps,
    slots,
    compile,
    lastSeen: (connectionId) => lastSeen.get(connectionId),
    admitted,
    merged,
    recordRefused,
    recordSplit,
    recordRenderSplit,
  });

  return async function processDelivery(job: Job, token?: string): Promise<unknown> {
    if (isBatchJob(job)) return processBatch(job, token);
    const data = readDeliveryJob(job);
    const { deliveryId: id, unsubscribeId, connectionId, pinVersion, batchSplit, splitOf } = data;
    // Made when a line is logged about this delivery (most are not): a pino child costs its redaction setup.
    let child: Logger | undefined;
    const logger = () => (child ??= deps.logger.child({ deliveryId: id, unsubscribeId, connectionId }));
    const startedAt = clock();
    // A delivery handed over by a batch job counts the attempts it made there.
    const attemptNumber = job.attemptsMade + 1 + (data.priorAttempts ?? 0);
    if (data.failedAs) {
      // Failed for good in a batch job, its attempt recorded there: kept here, as failed, for replay.
      throw new UnrecoverableError(`${data.failedAs.code}: ${data.failedAs.reason}`);
    }
    const failNow = async (code: string, reason: string) => {
      const fields: AttemptFields = { verdict: 'fail', errorCode: code, reason };
      // Before the connection is read: recorded against version 0 (no connection).
      await outcomes.record(
        { deliveryId: id, unsubscribeId, startedAt, version: 0 },
        fields,
        clock() - startedAt,
      );
      logger().warn({ code, attempt: attemptNumber }, 'delivery failed: %s', reason);
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
    const current = await admitted(connectionId, logger, (connection, version) =>
      // Limits, circuit and duplicates follow the connection as it is now, even for a pinned replay;
      // a batched connection's rate limit counts requests, so it is taken per batch, not per delivery.
      deps.control.admit(
        connection.batch ? { ...connection, limits: {} } : connection,
        id,
        unsubscribe.email,
        clock(),
        {
          version,
        },
      ),
    );
    const { admission } = current;
    const used = pinned ?? current.stored;
    const { connection } = used;
    const control = current.stored.connection;
    const d: AttemptInFlight = {
      deliveryId: id,
      unsubscribeId,
      unsubscribe,
      connectionId,
      connection,
      control,
      version: used.version,
      attemptNumber,
      startedAt,
      get log() {
        return logger();
      },
    };

    if (admission.kind === 'merged') {
      await merged(d, admission.into);
      return { mergedInto: admission.into };
    }
    if (admission.kind === 'wait') {
      // Not an attempt: the job goes back to the front of the queue and the whole connection waits.
      deps.metrics?.rateLimitWaits.inc({ connection: connectionId, reason: admission.reason });
      await deps.slowDown(connectionId, admission.waitMs);
      throw Worker.RateLimitError();
    }
    if (admission.waitMs > 0) await sleep(admission.waitMs);
    if (admission.reopening) d.reopening = true;

    // Split from a refused batch whose halves were refused alike: the rest of its line fails as it did.
    const stopped = connection.batch ? await stoppedSplit(deps.control, connectionId, splitOf) : undefined;
    if (stopped) return endJob(await outcomes.conclude(d, stopped, undefined, undefined, 0, 'neutral'));

    const context = templateContext(unsubscribe, connection, attemptNumber, deps.engine);
    let result: Exchange;
    // In a batch, this delivery's place in the request: its verdict, and whether it speaks for the
    // request's health (one request is one answer about the CRM, however many it carried).
    let item = { index: 0, size: 1 };
    try {
      const resolve = ruleValueResolver(context);
      if (connection.batch) {
        // Halved for each attempt made, a batch job's included.
        const cap = batchCap(connection.batch.maxSize, attemptNumber - 1, batchSplit);
        const batched = await batcher.submit(
          `${connectionId}:${used.version}:${cap}`,
          { connection, control, compiled: compile(used), context, resolve },
          cap,
          connection.batch.maxWait,
        );
        result = batched.result.exchange;
        item = { index: batched.index, size: batched.size };
        d.batch = { id: batched.result.id, size: batched.size };
        d.itemIndex = batched.index;
      } else
        // Ahead of batch jobs' deliveries still waiting: this one is admitted already (its rate-limit
        // slot, and maybe the circuit's probe lease, are running).
        result = await slots.run(
          connectionId,
          () => exchange(exchangeDeps, connection, compile(used), context, resolve),
          { first: true },
        );
    } catch (error) {
      const notSent = error instanceof GroupNotSent ? error : undefined;
      const verdict = unsentVerdict(notSent ? notSent.cause : error, connectionSourceName(used));
      if (notSent && notSent.size > 1 && itemNotRendered(notSent.cause)) {
        // One unsubscribe's data may not render (a date a helper cannot read): try again in halves,
        // without spending an attempt, until the one that does not render goes alone and fails alone.
        return goAgainIn(await recordRenderSplit(d, verdict, notSent.size));
      }
      // Nothing reached the CRM, so this says nothing about its health (but frees the probe).
      return endJob(
        await outcomes.conclude(d, verdict, undefined, undefined, clock() - startedAt, 'neutral'),
      );
    }
    if (result.refused) await recordRefused(d, result.refused);
    let verdict = authRefused(result.verdicts[item.index] ?? result.verdict);
    if (item.size > 1 && refusedWhole(result)) {
      // The CRM refused the whole batch for what is in it (a per-item answer would have told some
      // apart): it may be one bad address, so try again in halves, without spending an attempt,
      // until the address it refuses goes alone and fails alone; unless the rule or the halves
      // say it is the connection that is wrong (src/queue/split-refusal.ts).
      const split = await decideSplit(deps.control, connection, d.batch!.id, result, verdict, splitOf);
      if (split.kind === 'split')
        return goAgainIn(await recordSplit(d, result, verdict, item.size), split.splitOf);
      verdict = split.verdict;
    }
    deps.metrics?.attemptSeconds.observe({ connection: connectionId }, result.outcome.durationMs / 1000);
    return endJob(
      await outcomes.conclude(
        d,
        verdict,
        result.request,
        result.outcome,
        result.outcome.durationMs,
        item.index === 0 ? healthOf(verdict, result.outcome) : 'neutral',
      ),
    );

    /** Back to the queue in smaller batches, without spending an attempt. */
    async function goAgainIn(batchSplit: number, splitFrom?: SplitOf): Promise<never> {
      await job.updateData({ ...job.data, batchSplit, ...(splitFrom ? { splitOf: splitFrom } : {}) });
      throw Worker.RateLimitError();
    }

    /** How the BullMQ job ends for what the attempt concluded. */
    async function endJob(result: AttemptResult): Promise<undefined> {
      if (result.kind === 'delivered') return undefined;
      if (result.kind === 'failed') throw new UnrecoverableError(`${result.code}: ${result.reason}`);
      if (result.rateLimited && token) {
        // The CRM throttles the connection, not this one delivery: hold the whole connection back
        // until its window passes, and put this delivery back without spending an attempt.
        await outcomes.throttled(connectionId, result.delayMs, id);
        throw Worker.RateLimitError();
      }
      throw new RetryableDeliveryError(result.code, result.reason, result.delayMs);
    }
  };

  /**
   * The connection as it is now, and its admission. The version last seen here is checked inside
   * the admission script, so an unchanged connection costs no read of its own; a held one is read
   * again, since it may be back. A deleted or disabled connection's deliveries are not failed or
   * dropped: they go back to its queue, which is held, and stay there as a visible backlog an
   * operator moves or discards.
   */
  async function admitted(
    connectionId: string,
    log: () => Logger,
    admit: (connection: Connection, version: number) => Promise<Admission>,
  ): Promise<{ stored: StoredConnection; admission: Exclude<Admission, { kind: 'stale' }> }> {
    let current = lastSeen.get(connectionId);
    if (!current?.connection.enabled) current = await readCurrent(connectionId);
    for (;;) {
      if (!current) return holdBack(connectionId, 'deleted', log);
      if (!current.connection.enabled) return holdBack(connectionId, 'disabled', log);
      const admission = await admit(current.connection, current.version);
      if (admission.kind !== 'stale') {
        if (admission.kind !== 'merged' && admission.halfOpened) outcomes.halfOpened(connectionId);
        return { stored: current, admission };
      }
      current = admission.record
        ? remember(deps.connections.parse(connectionId, admission.record))
        : forget(connectionId);
    }
  }

  async function holdBack(
    connectionId: string,
    reason: 'disabled' | 'deleted',
    log: () => Logger,
  ): Promise<never> {
    log().warn({ reason }, 'delivery held: its connection is %s', reason);
    await deps.hold(connectionId, reason);
    await deps.slowDown(connectionId, HOLD_RECHECK_MS);
    throw Worker.RateLimitError();
  }

  /** A duplicate within the window: delivered by the delivery that holds the claim. */
  async function merged(d: AttemptInFlight, into: string): Promise<void> {
    await outcomes.record(
      d,
      {
        verdict: 'success_already_done',
        reason: `merged into delivery ${into}: the same email went to this connection within ${Math.round(d.control.dedupe.window / 1000)}s`,
        mergedInto: into,
      },
      0,
    );
    deps.metrics?.deliveries.inc({ connection: d.connectionId, verdict: 'merged' });
    d.log.info(
      { mergedInto: into, email: logEmail(d.unsubscribe.email) },
      'delivery merged into a duplicate',
    );
  }

  /** The exchange before an OAuth2 token refresh: its own attempt record. */
  async function recordRefused(d: AttemptInFlight, refused: NonNullable<Exchange['refused']>): Promise<void> {
    await outcomes.record(
      d,
      attemptFields(refused.request, refused.outcome, refused.verdict, d.batch, d.itemIndex),
      refused.outcome.durationMs,
    );
  }

  /** Records that a batch that did not render goes again in halves (no attempt spent); answers the new size. */
  async function recordRenderSplit(d: AttemptInFlight, verdict: Verdict, size: number): Promise<number> {
    const splitTo = halfOf(size);
    await outcomes.record(
      d,
      {
        verdict: 'retry',
        errorCode: 'BATCH_SPLIT',
        reason: `a batch of ${size} did not render (${verdict.reason}); retrying in batches of ${splitTo}`,
      },
      clock() - d.startedAt,
    );
    return splitTo;
  }

  /** Records that a refused batch goes again in halves (no attempt spent); answers the new size. */
  async function recordSplit(
    d: AttemptInFlight,
    result: Exchange,
    verdict: Verdict,
    size: number,
  ): Promise<number> {
    const splitTo = halfOf(size);
    await outcomes.recordAndSettle(
      d,
      {
        ...attemptFields(result.request, result.outcome, verdict, d.batch, d.itemIndex),
        verdict: 'retry',
        errorCode: 'BATCH_SPLIT',
        reason: `the CRM refused a batch of ${size} (${verdict.reason}); retrying in batches of ${splitTo}`,
      },
      result.outcome.durationMs,
      'neutral',
      false,
    );
    return splitTo;
  }
}

/** BullMQ backoff strategy `connection`: the delay the processor planned for this failure. */
export function connectionBackoff(_attemptsMade: number, _type?: string, error?: Error): number {
  return error instanceof RetryableDeliveryError && error.retryAfterMs !== undefined
    ? error.retryAfterMs
    : 5_000;
}
