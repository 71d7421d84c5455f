import { randomUUID } from 'node:crypto';
import { Job, Worker } from 'bullmq';
import type { Logger } from 'pino';
import type { Connection, StoredConnection } from '../config/connection-schema.js';
import {
  BATCH_JOB_PREFIX,
  isDelivered,
  batchJobSchema,
  partsOfDeliveryId,
  type BatchJob,
  type DeliveryJob,
  type Verdict,
} from '../domain/delivery.js';
import type { AttemptStore } from '../store/attempt-store.js';
import { FORM_SCRIPT, type BatchBuffer } from '../store/batch-buffer.js';
import {
  usefulInFlight,
  type Admission,
  type ConnectionControl,
  type HealthOutcome,
} from '../store/connection-control.js';
import { StoreUnavailableError } from '../errors.js';
import type { LedgerRecords } from '../store/ledger.js';
import type { Metrics } from '../observe/metrics.js';
import {
  templateContext,
  type CompiledConnection,
  type TemplateContext,
} from '../templates/render-request.js';
import {
  authRefused,
  itemNotRendered,
  refusedWhole,
  unsentVerdict,
  type AttemptInFlight,
  type AttemptResult,
  type Outcomes,
} from './delivery-outcome.js';
import { sharedRequest } from './attempt-fields.js';
import { connectionSourceName } from '../config/connection-origin.js';
import { healthOf } from './delivery-health.js';
import { halfOf } from './batcher.js';
import { deliverEach, settledAll } from './each-delivery.js';
import { decideSplit, type SplitOf } from './split-refusal.js';
import { exchange, type Exchange, type ExchangeDeps } from './exchange.js';
import type { RequestSlots } from './request-slots.js';
import type { DeliveryQueues } from './queues.js';
import { ruleValueResolver } from './rule-values.js';

/** Gives one delivery a BullMQ job of its own (DeliveryProducer.handOver). */
export type HandOver = (
  deliveryId: string,
  connection: Connection,
  data: DeliveryJob,
  delayMs?: number,
) => Promise<void>;

export interface BatchJobDeps {
  ledger: LedgerRecords;
  buffer: BatchBuffer;
  handOver: HandOver;
  /** The ids among these with no job of their own. */
  withoutJob: (deliveryIds: readonly string[]) => Promise<string[]>;
  attempts: AttemptStore;
  control: ConnectionControl;
  engine: { sandboxUrl: string };
  logger: Logger;
  /** How long succeeded deliveries are listed (RETENTION_SUCCEEDED). */
  /** `failedMs`: how long a batch's shared request is kept beside its attempts. */
  retention: { succeededMs: number; failedMs?: number };
  metrics?: Metrics;
  slowDown: (connectionId: string, ms: number) => Promise<void>;
  clock: () => number;
  sleep: (ms: number) => Promise<void>;
  outcomes: Outcomes;
  exchangeDeps: ExchangeDeps;
  /** This process's requests open per connection (an unbatched connection's batch job takes one per delivery). */
  slots: RequestSlots;
  /** True once this process is shutting down (see ProcessorDeps). */
  stopping?: () => boolean;
  compile: (stored: StoredConnection) => CompiledConnection;
  /** The version of a connection the processor last read (undefined: none yet). */
  lastSeen: (connectionId: string) => StoredConnection | undefined;
  /** The processor's: the connection as it is now and its admission (holds a deleted or disabled one). */
  admitted: (
    connectionId: string,
    /** Its logger, made only if a line is logged. */
    log: () => Logger,
    admit: (connection: Connection, version: number) => Promise<Admission>,
  ) => Promise<{ stored: StoredConnection; admission: Exclude<Admission, { kind: 'stale' }> }>;
  merged: (d: AttemptInFlight, into: string) => Promise<void>;
  recordRefused: (d: AttemptInFlight, refused: NonNullable<Exchange['refused']>) => Promise<void>;
  /** Records that a batch that did not render goes on in halves; answers the new size. */
  recordRenderSplit: (d: AttemptInFlight, verdict: Verdict, size: number) => Promise<number>;
  recordSplit: (d: AttemptInFlight, result: Exchange, verdict: Verdict, size: number) => Promise<number>;
}

/**
 * Delivers a batch job: every delivery in it, in one request. Each delivery still gets its own
 * admission to the duplicate window, its own attempt record and its own verdict (per-item results).
 * One that is not delivered leaves the batch for a job of its own, which carries on exactly as a
 * delivery sent alone: retried after its planned delay (in smaller batches when the CRM refused the
 * whole request for its content), or kept as failed for replay. The request itself is admitted once
 * (rate limit, circuit) and tells the circuit once how the CRM is.
 */
export function createBatchJobProcessor(deps: BatchJobDeps): (job: Job, token?: string) => Promise<unknown> {
  const { clock, outcomes } = deps;

  return async function processBatch(job: Job): Promise<unknown> {
    const { batch: batchId, connectionId, resumed } = batchJobSchema.parse(job.data);
    let batchLog: Logger | undefined;
    const log = () => (batchLog ??= deps.logger.child({ batchId, connectionId }));
    const requestId = job.id!;
    const admit = () =>
      deps.admitted(connectionId, log, (connection, version) =>
        // An unbatched connection's batch job is no request: its deliveries each meet the throttle.
        deps.control.admit(requestOf(connection), requestId, '', clock(), {
          version,
          throttle: connection.batch !== undefined,
        }),
      );
    /**
     * The request's own answer about the CRM (and the half-open probe it may hold). An unbatched
     * connection's batch job took nothing at its admission: each delivery answered for itself.
     */
    const settle = async (control: Connection, health: HealthOutcome, reopened = false) => {
      if (!control.batch) return;
      await outcomes.announce(
        control,
        await deps.control.settle(control, requestId, '', health, { releaseClaim: false, reopened }, clock()),
        {},
      );
    };
    // Known unbatched, its admission takes nothing (a version check), so it is asked while the
    // batch's deliveries are read: one round trip fewer before the first request.
    const known = deps.lastSeen(connectionId)?.connection;
    const [members, current] =
      known?.enabled && !known.batch
        ? await Promise.all([deps.buffer.members(batchId), admit()])
        : [await deps.buffer.members(batchId), undefined];
    let ids = members;
    if (ids.length === 0) {
      // Run again after it had finished (a worker crashed before BullMQ heard), or formed when
      // another process had just taken what waited: nothing to send. (A batched connection's
      // request, had it just become one, gives back what its admission took.)
      if (current) await settle(current.stored.connection, 'neutral');
      await deps.buffer.close(connectionId, batchId);
      return { deliveries: 0 };
    }
    const { stored, admission } = current ?? (await admit());
    const control = stored.connection;
    // An unbatched connection's batch job sends each delivery in a request of its own (each admitted
    // on its own); a batched connection's sends them all in one.
    const each = !control.batch;
    if (resumed || job.stalledCounter > 0 || job.attemptsMade > 0) {
      // Run again (its worker stopped mid-batch, or its job was lost): what an earlier run recorded
      // goes on from its record, and only what nothing happened to yet is sent.
      ids = await carryOnFromRecords(deps, control, ids);
      if (ids.length === 0) {
        await settle(control, 'neutral');
        await deps.buffer.close(connectionId, batchId);
        return { deliveries: 0 };
      }
    }
    if (admission.kind === 'wait') {
      // The whole batch waits at the head of the queue, as one delivery would; no attempt is spent.
      deps.metrics?.rateLimitWaits.inc({ connection: connectionId, reason: admission.reason });
      await deps.slowDown(connectionId, admission.waitMs);
      throw Worker.RateLimitError();
    }

    // Every delivery is answered for before the batch closes: settled here, or handed over.
    const answered = new Set<string>();
    // Delivered here (or merged into one that was): listed as succeeded once the batch closes.
    const delivered: string[] = [];
    const handOver = async (id: string, data: DeliveryJob, delayMs?: number) => {
      await deps.handOver(id, control, data, delayMs);
      answered.add(id);
    };
    try {
      if (admission.kind === 'go' && admission.waitMs > 0) await deps.sleep(admission.waitMs);
      const startedAt = clock();
      const records = await deps.ledger.getMany(ids.map((id) => partsOfDeliveryId(id).unsubscribeId));
      let items: AttemptInFlight[] = [];
      for (const [i, id] of ids.entries()) {
        const unsubscribeId = partsOfDeliveryId(id).unsubscribeId;
        const unsubscribe = records[i]?.unsubscribe;
        if (!unsubscribe) {
          const reason = `unsubscribe ${unsubscribeId} is no longer in the ledger (RETENTION_UNSUBSCRIBES): nothing to deliver`;
          await outcomes.record(
            { deliveryId: id, unsubscribeId, startedAt, version: stored.version },
            { verdict: 'fail', errorCode: 'UNSUBSCRIBE_EXPIRED', reason },
            0,
          );
          await handOver(id, { priorAttempts: 1, failedAs: { code: 'UNSUBSCRIBE_EXPIRED', reason } });
          continue;
        }
        let child: Logger | undefined;
        items.push({
          deliveryId: id,
          unsubscribeId,
          unsubscribe,
          connectionId,
          connection: control,
          control,
          version: stored.version,
          attemptNumber: 1,
          startedAt,
          inBatch: !each,
          // Made when a line is logged about it (a warning, or info per delivery), not for each.
          get log() {
            return (child ??= log().child({ deliveryId: id, unsubscribeId }));
          },
        });
      }
      if (each) return await deliverGroup(items);
      if (control.dedupe.window > 0) items = await withoutDuplicates(items, control, answered, delivered);
      if (items.length === 0) {
        await settle(control, 'neutral');
        await finish();
        return { deliveries: ids.length, delivered: 0 };
      }

      // The request every one of them travels in, as each attempt records it.
      const batch = { id: batchId, size: items.length };
      items.forEach((d, i) => {
        d.batch = batch;
        d.itemIndex = i;
      });
      const contexts: TemplateContext[] = items.map((d) =>
        templateContext(d.unsubscribe, control, d.attemptNumber, deps.engine),
      );
      const resolvers = contexts.map((context) => ruleValueResolver(context));
      let result: Exchange;
      try {
        result = await exchange(
          deps.exchangeDeps,
          control,
          deps.compile(stored),
          contexts[0]!,
          resolvers[0]!,
          {
            contexts,
            resolvers,
          },
        );
      } catch (error) {
        // Rendering or the OAuth2 token failed before anything reached the CRM.
        const verdict = unsentVerdict(error, connectionSourceName(stored));
        if (items.length > 1 && itemNotRendered(error)) {
          // One unsubscribe's data may not render: the deliveries go on in halves, each as a job of
          // its own (src/queue/processor.ts splits further), without spending an attempt.
          return splitInHalves(items, (d) => deps.recordRenderSplit(d, verdict, items.length));
        }
        await settledAll(
          items.map(async (d) =>
            carryOn(
              d,
              await outcomes.conclude(d, verdict, undefined, undefined, clock() - startedAt, 'neutral'),
            ),
          ),
        );
        await settle(control, 'neutral');
        await finish();
        return { deliveries: ids.length, delivered: 0 };
      }
      const { refused } = result;
      // The request they all shared, kept once (each attempt keeps only its own item).
      const keptShared = deps.attempts.keepShared(
        batchId,
        sharedRequest(result.request),
        deps.retention.failedMs ?? deps.retention.succeededMs,
      );
      if (refused) await settledAll(items.map((d) => deps.recordRefused(d, refused)));
      await keptShared;
      deps.metrics?.attemptSeconds.observe({ connection: connectionId }, result.outcome.durationMs / 1000);
      const requestVerdict = authRefused(result.verdict);
      let failedAs: Verdict | undefined;
      if (items.length > 1 && refusedWhole(result)) {
        // Refused for what is in it: the deliveries go on in halves, each as a job of its own
        // (src/queue/processor.ts splits further), without spending an attempt; unless its rule
        // says `split: false` (src/queue/split-refusal.ts).
        const split = await decideSplit(deps.control, control, batchId, result, requestVerdict, undefined);
        if (split.kind === 'split')
          return splitInHalves(
            items,
            (d) => deps.recordSplit(d, result, requestVerdict, items.length),
            split.splitOf,
          );
        failedAs = split.verdict;
      }
      await settle(
        control,
        healthOf(requestVerdict, result.outcome),
        // The request that reopened a throttled CRM and was not throttled again: the rate resumes.
        admission.kind === 'go' && admission.reopening && requestVerdict.verdict !== 'rate_limited',
      );
      let throttledFor = 0;
      const concluded = await settledAll(
        items.map((d, i) =>
          outcomes.conclude(
            d,
            failedAs ?? authRefused(result.verdicts[i] ?? result.verdict),
            result.request,
            result.outcome,
            result.outcome.durationMs,
            'neutral',
          ),
        ),
      );
      await settledAll(concluded.map((outcome, i) => carryOn(items[i]!, outcome)));
      for (const outcome of concluded)
        if (outcome.kind === 'retry' && outcome.rateLimited)
          throttledFor = Math.max(throttledFor, outcome.delayMs);
      if (throttledFor > 0) await outcomes.throttled(connectionId, throttledFor, items[0]!.deliveryId);
      await finish();
      log().info(
        {
          deliveries: ids.length,
          delivered: delivered.length,
          status: result.outcome.kind === 'response' ? result.outcome.status : undefined,
        },
        'batch sent',
      );
      return { deliveries: ids.length, delivered: delivered.length };
    } catch (error) {
      // Whatever went wrong, no delivery is left inside a batch nobody will run: those not yet
      // answered for go on as jobs of their own, which retry and record on their own.
      log().error({ err: error }, 'batch job failed; its deliveries go on one job each');
      // The request's probe, if it took the half-open circuit's, is freed (or its lease runs out).
      await settle(control, 'neutral').catch(() => undefined);
      // Only what is still in the batch: one put back in the buffer (even by a call whose answer was
      // lost) is there already, and would be sent twice.
      const still = new Set(await deps.buffer.members(batchId));
      const unanswered = ids.filter((id) => !answered.has(id) && still.has(id));
      // What was recorded before the failure goes on from its record; the rest starts afresh.
      const fresh = await carryOnFromRecords(deps, control, unanswered);
      await settledAll(fresh.map((id) => handOver(id, {})));
      await finish();
      return { deliveries: ids.length, handedOver: unanswered.length };
    }

    /**
     * Each delivery in a request of its own (an unbatched connection). Those the connection said not
     * now to go back to the head of the buffer, and the connection waits as long as it asked.
     */
    async function deliverGroup(items: AttemptInFlight[]) {
      const { notStarted, heldBack } = await deliverEach(deps, stored, deps.compile(stored), items, carryOn);
      await deps.buffer.putBack(
        connectionId,
        batchId,
        notStarted.map((d) => d.deliveryId),
      );
      for (const d of notStarted) answered.add(d.deliveryId);
      if (heldBack?.reason === 'crm_rate_limited')
        await outcomes.throttled(connectionId, heldBack.waitMs, heldBack.deliveryId);
      else if (heldBack) await deps.slowDown(connectionId, heldBack.waitMs);
      await finish();
      return { deliveries: ids.length, delivered: delivered.length, notStarted: notStarted.length };
    }

    /** Every delivery goes on in a job of its own, in smaller batches, without spending an attempt. */
    async function splitInHalves(
      items: readonly AttemptInFlight[],
      record: (d: AttemptInFlight) => Promise<number>,
      splitOf?: SplitOf,
    ) {
      await settledAll(
        items.map(async (d) =>
          handOver(d.deliveryId, { batchSplit: await record(d), ...(splitOf ? { splitOf } : {}) }),
        ),
      );
      await settle(control, 'neutral');
      await finish();
      return { deliveries: ids.length, delivered: 0, split: items.length };
    }

    /** Lists what was delivered and closes the batch (every delivery in it is answered for), in one step. */
    async function finish(): Promise<void> {
      await deps.buffer.close(connectionId, batchId, {
        deliveryIds: delivered,
        now: clock(),
        keepMs: deps.retention.succeededMs,
      });
    }

    /** A delivery the batch did not deliver goes on in a job of its own. */
    async function carryOn(d: AttemptInFlight, outcome: AttemptResult): Promise<void> {
      if (outcome.kind === 'delivered') {
        delivered.push(d.deliveryId);
        return void answered.add(d.deliveryId);
      }
      if (outcome.kind === 'failed')
        return handOver(d.deliveryId, {
          priorAttempts: d.attemptNumber,
          failedAs: { code: outcome.code, reason: outcome.reason },
        });
      // A CRM's throttle spends no attempt; a retry spent this one.
      return handOver(
        d.deliveryId,
        outcome.rateLimited ? {} : { priorAttempts: d.attemptNumber },
        outcome.delayMs,
      );
    }
  };

  /** Takes each delivery's duplicate claim; a duplicate is recorded as merged and leaves the batch. */
  async function withoutDuplicates(
    items: AttemptInFlight[],
    control: Connection,
    answered: Set<string>,
    delivered: string[],
  ): Promise<AttemptInFlight[]> {
    // Only the window: the request took the rate limit and the circuit.
    const claimOnly = { ...control, limits: {}, circuit: { ...control.circuit, enabled: false } };
    const now = clock();
    const admissions = await settledAll(
      items.map((d) =>
        deps.control.admit(claimOnly, d.deliveryId, d.unsubscribe.email, now, { throttle: false }),
      ),
    );
    const going: AttemptInFlight[] = [];
    for (const [i, admission] of admissions.entries()) {
      const d = items[i]!;
      if (admission.kind === 'merged') {
        await deps.merged(d, admission.into);
        answered.add(d.deliveryId);
        delivered.push(d.deliveryId);
      } else going.push(d);
    }
    return going;
  }
}

/**
 * What a batch job is admitted as. A batched connection's is one request: the rate limit and the
 * circuit, not the duplicate window (each delivery takes its own claim). An unbatched connection's
 * is no request at all (each delivery is admitted on its own): only the connection's version is
 * checked, and nothing is taken.
 */
function requestOf(connection: Connection): Connection {
  if (connection.batch) return { ...connection, dedupe: { window: 0 } };
  return {
    ...connection,
    limits: {},
    dedupe: { window: 0 },
    circuit: { ...connection.circuit, enabled: false },
  };
}

/**
 * For the deliveries of a batch run again (its worker stopped, its job failed or was lost): each
 * that has a job of its own already goes on there; each whose attempt this batch recorded goes on
 * from that record (delivered, kept failed, or retried when its record said); answers the rest,
 * to which nothing has happened yet. The records are the truth: they are written before anything
 * else is done about an outcome.
 */
export async function carryOnFromRecords(
  deps: Pick<BatchJobDeps, 'withoutJob' | 'attempts' | 'handOver' | 'buffer' | 'retention' | 'clock'>,
  connection: Connection,
  deliveryIds: readonly string[],
): Promise<string[]> {
  const jobless = await deps.withoutJob(deliveryIds);
  const lasts = await deps.attempts.lastOf(jobless);
  const rest: string[] = [];
  const delivered: string[] = [];
  await Promise.all(
    jobless.map(async (id, i) => {
      const last = lasts[i];
      // No record, or only the refused exchange before a token refresh: nothing concluded yet.
      if (!last || last.verdict === 'refresh_auth') return void rest.push(id);
      if (isDelivered(last.verdict)) return void delivered.push(id);
      // An operator moved or discarded it (and the move queued it at its new connection).
      if (last.errorCode === 'MOVED' || last.errorCode === 'DISCARDED') return;
      if (last.verdict === 'fail')
        return deps.handOver(id, connection, {
          priorAttempts: 1,
          failedAs: { code: last.errorCode ?? 'FAILED', reason: last.reason },
        });
      // A refused batch's split record names the batch it split; one that did not render sent
      // nothing and names none, so it goes on at half this batch.
      if (last.errorCode === 'BATCH_SPLIT')
        return deps.handOver(id, connection, { batchSplit: halfOf(last.batch?.size ?? deliveryIds.length) });
      const delayMs = last.nextAttemptAt ? Math.max(0, Date.parse(last.nextAttemptAt) - deps.clock()) : 0;
      return deps.handOver(id, connection, last.verdict === 'retry' ? { priorAttempts: 1 } : {}, delayMs);
    }),
  );
  await deps.buffer.noteDelivered(connection.id, delivered, deps.clock(), deps.retention.succeededMs);
  return rest;
}

/**
 * Most deliveries in one batch job of an unbatched connection. Queueing costs one BullMQ job per
 * batch, so a backlog drains at up to this many deliveries per job; a worker that stops mid-batch
 * leaves the rest to be run again from their records.
 */
export const EACH_BATCH_MAX = 100;
/** Batches a batched connection has formed and not finished, across processes, when `limits.concurrency` does not say. */
export const BATCHES_OPEN = 8;
const FORM_COMMAND = 'urFormBatch';
const BATCH_JOB_OPTIONS = {
  // A batch job only fails for Redis being away; after that its deliveries get jobs of their own (recover).
  attempts: 5,
  backoff: { type: 'connection' },
  // Its deliveries keep their own records; a finished batch job is nothing to look at.
  removeOnComplete: true,
  // Kept until recovery hands its deliveries over and removes it. (An age here would not do: BullMQ
  // trims the whole failed set by the age of the job that fails, delivery jobs kept for replay too.)
  removeOnFail: false,
};
/** A batch open this long with no job lost its job (removed by hand, or Redis lost it). */
const ORPHAN_AFTER_MS = 30_000;
/**
 * The shortest time between two looks an announcement asks for. A delivery to an idle connection
 * goes into a batch at once; at a few hundred a second, each batch job takes what arrived in the
 * last few milliseconds instead of one delivery each, so the fixed cost of a BullMQ job and its
 * batch is paid per few deliveries, and the process has the CPU to keep its latency down
 * (measured in docs/performance.md, "Batch jobs for every connection").
 */
const GATHER_MS = 5;

export interface BatchFormerDeps {
  buffer: BatchBuffer;
  queues: DeliveryQueues;
  handOver: HandOver;
  /** To carry on a failed batch's deliveries from their records (carryOnFromRecords). */
  attempts: AttemptStore;
  retention: { succeededMs: number };
  logger: Logger;
  /**
   * Batches an unbatched connection may have open, across processes, when `limits.concurrency`
   * does not say (WORKER_CONCURRENCY): as many as a process runs jobs at once.
   */
  eachOpen?: number;
  clock?: () => number;
}

/**
 * Puts a connection's waiting deliveries into batches, in this process: a batch when `maxSize`
 * are waiting, or `maxWait` after the first of them was seen, while fewer than `limits.concurrency`
 * (or BATCHES_OPEN) batches are open. Each batch becomes one BullMQ job on the connection's queue.
 * Nothing is formed while the queue is paused or the connection disabled, so a held backlog stays
 * in the buffer, where a move or discard takes it. Several processes form at once safely: a batch
 * takes its deliveries out of the buffer in one script.
 */
export class BatchFormer {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private immediate: ReturnType<typeof setImmediate> | undefined;
  private dueAt = 0;
  private lastLookAt = 0;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private firstSeenAt: number | undefined;
  private lastRecovery = 0;
  private lastWarning = -Infinity;
  private readonly clock: () => number;
  private readonly eachOpen: number;

  constructor(
    private readonly deps: BatchFormerDeps,
    private connection: Connection,
  ) {
    this.clock = deps.clock ?? Date.now;
    this.eachOpen = deps.eachOpen ?? 50;
  }

  start(): void {
    this.schedule(0);
  }

  update(connection: Connection): void {
    this.connection = connection;
    this.nudge();
  }

  /** Look now (a batch finished, so another may open). */
  nudge(): void {
    if (this.closed) return;
    if (this.running) this.again = true;
    else this.schedule(0);
  }

  /**
   * Ingest announced deliveries in a buffer that had none: look now, or GATHER_MS after the last
   * look if that was more recent (unless a look is due sooner anyway).
   */
  announced(): void {
    if (this.closed) return;
    if (this.running) return void (this.again = true);
    const now = this.clock();
    const wait = Math.max(0, this.lastLookAt + GATHER_MS - now);
    if (!this.immediate && !(this.timer && this.dueAt <= now + wait)) this.schedule(wait);
  }

  async stop(): Promise<void> {
    this.closed = true;
    this.cancel();
    await this.running;
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    this.cancel();
    const run = () => {
      this.timer = this.immediate = undefined;
      this.running = this.tick().finally(() => {
        this.running = undefined;
      });
    };
    // Now means this turn's end, not a timer's millisecond: an announced delivery waits for nothing.
    this.dueAt = this.clock() + ms;
    if (ms === 0) this.immediate = setImmediate(run).unref();
    else this.timer = setTimeout(run, ms).unref();
  }

  private cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = this.immediate = undefined;
  }

  private async tick(): Promise<void> {
    this.lastLookAt = this.clock();
    let waiting = false;
    try {
      if (this.clock() - this.lastRecovery >= ORPHAN_AFTER_MS) {
        this.lastRecovery = this.clock();
        await this.recover();
      }
      waiting = await this.formWhatIsDue();
    } catch (error) {
      // Once a minute at most: it ticks many times a second while Redis is away.
      if (this.clock() - this.lastWarning >= 60_000) {
        this.lastWarning = this.clock();
        this.deps.logger.warn(
          { err: error, connectionId: this.connection.id },
          'batch former: Redis failed; trying again',
        );
      }
    }
    const again = this.again;
    this.again = false;
    const { batch } = this.connection;
    const idle = batch ? Math.min(100, Math.max(5, Math.floor(batch.maxWait / 4))) : 1_000;
    this.schedule(again ? 0 : waiting ? Math.min(idle, 20) : idle);
  }

  /** Forms the batches that are due; answers whether deliveries are still waiting. */
  async formWhatIsDue(): Promise<boolean> {
    const connection = this.connection;
    const { buffer } = this.deps;
    if (!connection.enabled) return false;
    const status = await buffer.status(connection.id);
    if (status.waiting === 0) {
      this.firstSeenAt = undefined;
      return false;
    }
    if (status.paused) return false;
    const now = this.clock();
    this.firstSeenAt ??= now;
    const cap = this.openCap(connection);
    let { open, waiting: left } = status;
    while (open < cap && left > 0) {
      // A part-filled batch waits for more until maxWait after its first delivery was seen.
      if (
        connection.batch &&
        left < connection.batch.maxSize &&
        now - this.firstSeenAt < connection.batch.maxWait
      )
        break;
      const took = await this.formOne(connection.id, this.sizeOf(connection, left, cap), now);
      if (took === 0) break;
      open += 1;
      left -= took;
    }
    if (left <= 0) this.firstSeenAt = undefined;
    return left > 0;
  }

  /**
   * How many waiting deliveries the next batch takes. An unbatched connection's batch job sends its
   * deliveries side by side (request slots keep them to WORKER_CONCURRENCY), so it takes what waits,
   * up to EACH_BATCH_MAX; with `limits.concurrency` set it sends them one after another, so what
   * waits is shared out over as many batches as may be open, and a burst is not left to one of them
   * while the others could take part of it.
   */
  private sizeOf(connection: Connection, waiting: number, cap: number): number {
    if (connection.batch) return connection.batch.maxSize;
    const share = connection.limits.concurrency === undefined ? waiting : Math.ceil(waiting / cap);
    // A rate limit's deliveries in flight, shared over its batches (see openCap).
    const paced = Math.ceil(usefulInFlight(connection.limits) / cap);
    return Math.min(EACH_BATCH_MAX, paced, share);
  }

  /**
   * How many batches the connection may have formed and not finished, across processes. A rate
   * limit can use only so many deliveries at once (`usefulInFlight`); past those a batch would take
   * deliveries only to put them back at the head of the buffer, ahead of older ones another batch
   * put back. So a rate-limited connection gets only as many batches as its rate can fill, at least
   * two, so that two processes share the work.
   */
  private openCap(connection: Connection): number {
    const { limits, batch } = connection;
    if (limits.concurrency !== undefined) return limits.concurrency;
    if (batch) return BATCHES_OPEN;
    const paced = Math.max(2, Math.ceil(usefulInFlight(limits) / EACH_BATCH_MAX));
    return Math.min(this.eachOpen, paced);
  }

  /**
   * One batch and its job, in one MULTI: up to `max` deliveries out of the buffer into the batch's
   * list, and the job that names it, so no batch is ever left without a job. Answers how many it
   * took (none: another process took them first, and the job finds its batch empty).
   */
  private async formOne(connectionId: string, max: number, now: number): Promise<number> {
    const { queues, buffer } = this.deps;
    const batchId = `${BATCH_JOB_PREFIX}${randomUUID()}`;
    const multi = (await queues.transactions({ [FORM_COMMAND]: { keys: 4, lua: FORM_SCRIPT } })).multi();
    multi.runCommand(FORM_COMMAND, buffer.formArgs(connectionId, batchId, max, now));
    const data: BatchJob = { batch: batchId, connectionId };
    await new Job(queues.for(connectionId), 'batch', data, BATCH_JOB_OPTIONS, batchId).addJob(multi);
    const results = await multi.exec();
    const failed = results?.find(([error]) => error !== null);
    if (!results || failed)
      throw new StoreUnavailableError(`Redis refused the batch: ${failed?.[0]?.message ?? 'aborted'}`);
    return Number(results[0]![1]);
  }

  /** Adds the job of a batch whose job was lost (recover). */
  private async addJob(connectionId: string, batchId: string, resumed = false): Promise<void> {
    const data: BatchJob = { batch: batchId, connectionId, ...(resumed ? { resumed } : {}) };
    await this.deps.queues.for(connectionId).add('batch', data, { jobId: batchId, ...BATCH_JOB_OPTIONS });
  }

  /**
   * Batches whose job is gone get it again; those whose job failed hand their deliveries over to
   * jobs of their own, each from its record.
   */
  async recover(): Promise<void> {
    const { buffer, queues, handOver } = this.deps;
    const connection = this.connection;
    const queue = queues.for(connection.id);
    for (const { batchId, formedAt } of await buffer.open(connection.id)) {
      if (this.clock() - formedAt < ORPHAN_AFTER_MS) continue;
      const state = await queue.getJobState(batchId);
      if (state !== 'unknown' && state !== 'failed' && state !== 'completed') continue;
      const members = await buffer.members(batchId);
      if (state === 'unknown' && members.length > 0) {
        // Its job never got added, or went: a new one, which goes on from what was recorded.
        await this.addJob(connection.id, batchId, true);
        continue;
      }
      const fresh = await carryOnFromRecords(
        {
          withoutJob: (ids) => queues.withoutJob(ids),
          attempts: this.deps.attempts,
          handOver,
          buffer,
          retention: this.deps.retention,
          clock: this.clock,
        },
        connection,
        members,
      );
      await Promise.all(fresh.map((id) => handOver(id, connection, {})));
      // The job first: stopped in between, the batch is still open, its job gone, and the next
      // recovery re-adds it to find every delivery handed over.
      if (state === 'failed') await queue.remove(batchId);
      await buffer.close(connection.id, batchId);
      if (members.length > 0)
        this.deps.logger.warn(
          { connectionId: connection.id, batchId, deliveries: members.length, state },
          'batch job %s: its deliveries go on one job each',
          state,
        );
    }
  }
}
