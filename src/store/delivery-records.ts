import type { Job, JobType } from 'bullmq';
import type { DeliveryQueues } from '../queue/queues.js';
import {
  isBatchJob,
  isDelivered,
  partsOfDeliveryId,
  readDeliveryJob,
  type StoredDeliveryJob,
  type Attempt,
  type DeliveryStatus,
  type SharedRequest,
} from '../domain/delivery.js';
import type { Unsubscribe } from '../domain/unsubscribe.js';
import { ConflictError, NotFoundError } from '../errors.js';
import type { AttemptStore } from './attempt-store.js';
import type { BatchBuffer } from './batch-buffer.js';
import type { LedgerRecords } from './ledger.js';

export interface DeliverySummary {
  id: string;
  unsubscribeId: string;
  connectionId: string;
  /** From the unsubscribe's ledger entry; absent only if that entry is gone (see LedgerRecords). */
  account?: string;
  campaign?: string;
  status: DeliveryStatus;
  attemptsMade: number;
  createdAt: string;
  finishedAt?: string;
  failedReason?: string;
  /** A duplicate merged into this other delivery (same email, same connection, within the window). */
  mergedInto?: string;
}

export interface DeliveryDetail extends DeliverySummary {
  attempts: Attempt[];
  /**
   * The requests its batched attempts travelled in, by `batch.id`, as every delivery of the batch
   * shared them (each `$each` list replaced by a marker): its own item is in its attempt.
   */
  batchRequests?: Record<string, SharedRequest>;
}

export interface DeliveryFilter {
  status?: DeliveryStatus;
  connection?: string;
  /** Only deliveries created (accepted) at or after this time. */
  since?: Date;
  /** Only deliveries created (accepted) at or before this time. */
  until?: Date;
  /** Only deliveries of unsubscribes for this campaign. */
  campaign?: string;
  /** Only deliveries whose failure reason carries this code (`HTTP_STATUS`, `NETWORK`, ...). */
  errorCode?: string;
  limit?: number;
}

const STATES: Record<DeliveryStatus, JobType[]> = {
  pending: ['waiting', 'active', 'prioritized', 'waiting-children'],
  retrying: ['delayed'],
  succeeded: ['completed'],
  failed: ['failed'],
};

/** Jobs scanned per page while filtering; filters that match little stop after `MAX_SCANNED`. */
const PAGE = 500;
const MAX_SCANNED = 50_000;

/**
 * Delivery records are the BullMQ jobs themselves (state, attempts made, failure reason) plus the
 * attempt list kept beside them; the account and campaign come from the unsubscribe's ledger entry
 * the job refers to. A batched connection's delivery has no job until it leaves its batch (issue
 * 7): until then its place in the batch buffer or an open batch stands for the job (pending), and
 * once a batch delivered it, its attempt and the connection's delivered set do (succeeded).
 */
export class DeliveryRecords {
  constructor(
    private readonly queues: DeliveryQueues,
    private readonly attempts: AttemptStore,
    private readonly ledger: LedgerRecords,
    private readonly retention: { failedMs: number },
    private readonly buffer: BatchBuffer,
  ) {}

  /** Each job read, with its unsubscribe (one MGET for those that refer to the ledger). */
  private async read(jobs: readonly Job[]): Promise<ReadDelivery[]> {
    const read = jobs.map((job) => readDeliveryJob(job));
    const records = await this.ledger.getMany(read.filter((d) => !d.unsubscribe).map((d) => d.unsubscribeId));
    let next = 0;
    return read.map((delivery, i) => ({
      job: jobs[i]!,
      delivery,
      unsubscribe: delivery.unsubscribe ?? records[next++]?.unsubscribe,
    }));
  }

  /** Newest first, across every connection's queue (or only the filtered connection's). */
  async list(filter: DeliveryFilter = {}): Promise<DeliverySummary[]> {
    const limit = filter.limit ?? 100;
    const connections = filter.connection ? [filter.connection] : await this.queues.connectionIds();
    const found: DeliverySummary[] = [];
    for (const connection of connections) found.push(...(await this.listQueue(connection, filter, limit)));
    return found.sort((a, b) => b.createdAt.localeCompare(a.createdAt)).slice(0, limit);
  }

  private async listQueue(connection: string, filter: DeliveryFilter, limit: number) {
    const queue = this.queues.for(connection);
    const statuses = filter.status ? [filter.status] : (Object.keys(STATES) as DeliveryStatus[]);
    const found: DeliverySummary[] = [];
    for (const status of statuses) {
      for (let start = 0; start < MAX_SCANNED && found.length < limit; start += PAGE) {
        const page = await queue.getJobs(STATES[status], start, start + PAGE - 1, false);
        // A job removed between the listing and the read comes back empty. A batch job is not a
        // delivery: the deliveries it carries are listed as pending below.
        const jobs = page.filter((job): job is Job => Boolean(job) && !isBatchJob(job));
        for (const read of await this.read(jobs)) {
          const summary = summarize(read, status);
          if (!matches(summary, filter)) continue;
          found.push(summary);
          if (found.length >= limit) break;
        }
        if (page.length < PAGE) break;
      }
      if (status === 'pending' && found.length < limit)
        found.push(...(await this.batchedPending(connection, filter, limit - found.length)));
      if (status === 'succeeded' && found.length < limit)
        found.push(...(await this.batchedDelivered(connection, filter, limit - found.length)));
    }
    return found;
  }

  /** Deliveries batch jobs delivered (they have no job of their own), newest first. */
  private async batchedDelivered(
    connection: string,
    filter: DeliveryFilter,
    limit: number,
  ): Promise<DeliverySummary[]> {
    const found: DeliverySummary[] = [];
    for (let start = 0; start < MAX_SCANNED && found.length < limit; start += PAGE) {
      const page = await this.buffer.delivered(connection, start, start + PAGE - 1);
      await this.summarizeBatched(page, 'succeeded', filter, limit, found);
      if (page.length < PAGE) break;
    }
    return found;
  }

  /** A batched connection's deliveries waiting for, or travelling in, a batch job (issue 7). */
  private async batchedPending(
    connection: string,
    filter: DeliveryFilter,
    limit: number,
  ): Promise<DeliverySummary[]> {
    const ids = [
      ...(await this.buffer.inOpenBatches(connection)).flatMap((b) => b.deliveryIds),
      ...(await this.buffer.waiting(connection, 0, MAX_SCANNED - 1)),
    ];
    const found: DeliverySummary[] = [];
    for (let start = 0; start < ids.length && found.length < limit; start += PAGE) {
      const page = ids.slice(start, start + PAGE).map((deliveryId) => ({ deliveryId }));
      await this.summarizeBatched(page, 'pending', filter, limit, found);
    }
    return found;
  }

  /** Adds to `found`, up to `limit`, the summaries of job-less batched deliveries the filter takes. */
  private async summarizeBatched(
    page: ReadonlyArray<{ deliveryId: string; at?: number }>,
    status: 'pending' | 'succeeded',
    filter: DeliveryFilter,
    limit: number,
    found: DeliverySummary[],
  ): Promise<void> {
    const records = await this.ledger.getMany(page.map((d) => partsOfDeliveryId(d.deliveryId).unsubscribeId));
    for (const [i, { deliveryId, at }] of page.entries()) {
      if (found.length >= limit) return;
      // Delivered by a batch: its one attempt there (a merged one's is its merge record).
      const summary = batchedSummary(
        deliveryId,
        records[i]?.unsubscribe,
        status,
        status === 'succeeded' ? 1 : 0,
      );
      if (at !== undefined) summary.finishedAt = new Date(at).toISOString();
      if (matches(summary, filter)) found.push(summary);
    }
  }

  async get(id: string): Promise<DeliveryDetail> {
    const queue = this.queues.ofDelivery(id);
    // The state first, then the job: read the other way round, a delivery that fails for good in
    // between shows as failed with its previous attempt's reason. A finished state does not change,
    // so the job read after it carries that state's own reason.
    const stateFirst = await queue.getJobState(id);
    const job = await queue.getJob(id);
    if (!job) {
      const attempts = await this.attempts.list(id);
      const last = attempts.at(-1);
      // A delivery an operator moved or discarded keeps its attempt list, ending with why.
      if (last && (last.errorCode === 'MOVED' || last.errorCode === 'DISCARDED'))
        throw new NotFoundError(`delivery ${id} is gone: ${last.reason} at ${last.startedAt}`);
      // A batched connection's delivery has a job of its own only when it leaves its batch: until
      // then it waits in the buffer or travels in a batch job, and a delivered one has its attempts.
      const where = await this.buffer.locate(id);
      const deliveredLast = isDelivered(last?.verdict);
      if (where || deliveredLast) {
        const record = await this.ledger.get(partsOfDeliveryId(id).unsubscribeId);
        const summary = batchedSummary(
          id,
          record?.unsubscribe,
          where ? 'pending' : 'succeeded',
          // The refused exchange before an OAuth2 token refresh is recorded, but spent no attempt.
          attempts.filter((a) => a.verdict !== 'refresh_auth').length,
        );
        if (!where && last) summary.finishedAt = finishedAt(last);
        if (!where && last?.mergedInto) summary.mergedInto = last.mergedInto;
        return { ...summary, attempts, ...(await this.batchRequests(attempts)) };
      }
      throw new NotFoundError(`no delivery ${id} (it may have expired; see RETENTION_* in README)`);
    }
    // 'unknown': the job was added between the two reads.
    const state = stateFirst === 'unknown' ? await job.getState() : stateFirst;
    const [read] = await this.read([job]);
    const summary = summarize(read!, statusOf(state));
    const attempts = await this.attempts.list(id);
    return { ...summary, attempts, ...(await this.batchRequests(attempts)) };
  }

  /** The shared requests of the batched attempts among these, if any (one read for all). */
  private async batchRequests(attempts: readonly Attempt[]): Promise<Pick<DeliveryDetail, 'batchRequests'>> {
    const ids = attempts.flatMap((a) => (a.batch ? [a.batch.id] : []));
    if (ids.length === 0) return {};
    const found = await this.attempts.sharedOf(ids);
    return Object.keys(found).length > 0 ? { batchRequests: found } : {};
  }

  /**
   * Puts a failed delivery back on the queue under the same id, with a fresh set of attempts. It
   * re-renders with the connection's current version, since the fix is usually in the connection.
   * Only a failed delivery can be replayed, so a replay never runs beside a pending copy of itself.
   */
  async replay(id: string): Promise<void> {
    await this.replayWithMode(id, 'rerender');
  }

  /** Replays every failed delivery that matches; returns the ids replayed. */
  async replayMatching(filter: Omit<DeliveryFilter, 'status'>): Promise<string[]> {
    const failed = await this.list({ ...filter, status: 'failed', limit: filter.limit ?? MAX_SCANNED });
    const replayed: string[] = [];
    for (const delivery of failed) {
      try {
        await this.replay(delivery.id);
        replayed.push(delivery.id);
      } catch (error) {
        // Replayed by someone else meanwhile, or expired: not an error for a bulk replay.
        if (!(error instanceof ConflictError || error instanceof NotFoundError)) throw error;
      }
    }
    return replayed;
  }

  /**
   * Replays one failed delivery. `original` pins the job to the connection version its first
   * attempt used (`pinVersion` on the job data, which the processor honours); `rerender` (the
   * default) clears any pin so the current version renders it.
   */
  async replayWithMode(id: string, mode: 'rerender' | 'original'): Promise<void> {
    const job = await this.queues.ofDelivery(id).getJob(id);
    if (!job) throw new NotFoundError(`no delivery ${id} (it may have expired; see RETENTION_* in README)`);
    const state = await job.getState();
    if (state !== 'failed')
      throw new ConflictError(
        `delivery ${id} is ${statusOf(state)}, not failed: only failed deliveries are replayed`,
      );
    // The job's data as stored (either shape), so only the pin changes. What a batch job handed
    // over with it (the attempts it made, its failure) belongs to the failed run, not the replay.
    const { priorAttempts, failedAs, ...data } = job.data as Record<string, unknown>;
    const { unsubscribeId } = readDeliveryJob(job);
    if (mode === 'original') {
      const attempts = await this.attempts.list(id);
      const first = [...attempts].sort((a, b) => a.startedAt.localeCompare(b.startedAt))[0];
      if (!first)
        throw new ConflictError(`delivery ${id} has no recorded attempt: its original version is unknown`);
      await job.updateData({ ...data, pinVersion: first.connectionVersion });
    } else if (data.pinVersion !== undefined || priorAttempts !== undefined || failedAs !== undefined) {
      const { pinVersion: _pin, ...rest } = data;
      await job.updateData(rest);
    }
    // Back in the queue, it needs its unsubscribe for as long as a failed delivery is kept.
    await this.ledger.keepFor(unsubscribeId, this.retention.failedMs);
    await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
  }
}

/** The stable code a failure reason starts with: `HTTP_STATUS: status 404 is permanent` → `HTTP_STATUS`. */
export function errorCodeOf(failedReason: string | undefined): string | undefined {
  return failedReason ? /^([A-Z][A-Z0-9_]*):/.exec(failedReason)?.[1] : undefined;
}

function statusOf(state: string): DeliveryStatus {
  for (const [status, states] of Object.entries(STATES))
    if ((states as string[]).includes(state)) return status as DeliveryStatus;
  return 'pending';
}

/** A job, what its data says, and its unsubscribe (absent only if its ledger entry is gone). */
interface ReadDelivery {
  job: Job;
  delivery: StoredDeliveryJob;
  unsubscribe: Unsubscribe | undefined;
}

function summarize({ job, delivery, unsubscribe }: ReadDelivery, status: DeliveryStatus): DeliverySummary {
  const { deliveryId, unsubscribeId, connectionId } = delivery;
  return {
    id: deliveryId,
    unsubscribeId,
    connectionId,
    ...(unsubscribe ? { account: unsubscribe.account } : {}),
    ...(unsubscribe?.campaign ? { campaign: unsubscribe.campaign } : {}),
    status,
    // A delivery handed over by a batch job counts the attempt it made there (and one failed there
    // made none since: its job only keeps it failed).
    attemptsMade: (delivery.failedAs ? 0 : job.attemptsMade) + (delivery.priorAttempts ?? 0),
    createdAt: new Date(job.timestamp).toISOString(),
    ...(job.finishedOn ? { finishedAt: new Date(job.finishedOn).toISOString() } : {}),
    ...(job.failedReason ? { failedReason: job.failedReason } : {}),
    ...(typeof (job.returnvalue as { mergedInto?: unknown } | null)?.mergedInto === 'string'
      ? { mergedInto: (job.returnvalue as { mergedInto: string }).mergedInto }
      : {}),
  };
}

function matches(summary: DeliverySummary, filter: DeliveryFilter): boolean {
  if (filter.connection && summary.connectionId !== filter.connection) return false;
  if (filter.since && new Date(summary.createdAt) < filter.since) return false;
  if (filter.until && new Date(summary.createdAt) > filter.until) return false;
  if (filter.campaign !== undefined && summary.campaign !== filter.campaign) return false;
  if (filter.errorCode !== undefined && errorCodeOf(summary.failedReason) !== filter.errorCode) return false;
  return true;
}

/** A batched delivery with no job of its own: created when its unsubscribe was accepted. */
function batchedSummary(
  id: string,
  unsubscribe: Unsubscribe | undefined,
  status: DeliveryStatus,
  attemptsMade: number,
): DeliverySummary {
  const { unsubscribeId, connectionId } = partsOfDeliveryId(id);
  return {
    id,
    unsubscribeId,
    connectionId,
    ...(unsubscribe ? { account: unsubscribe.account } : {}),
    ...(unsubscribe?.campaign ? { campaign: unsubscribe.campaign } : {}),
    status,
    attemptsMade,
    createdAt: unsubscribe?.receivedAt ?? new Date(0).toISOString(),
  };
}

function finishedAt(attempt: Attempt): string {
  return new Date(Date.parse(attempt.startedAt) + Math.round(attempt.durationMs)).toISOString();
}
