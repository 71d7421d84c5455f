import type { Job, JobType } from 'bullmq';
import type { DeliveryQueues } from '../queue/queues.js';
import {
  readDeliveryJob,
  type StoredDeliveryJob,
  type Attempt,
  type DeliveryStatus,
} from '../domain/delivery.js';
import type { Unsubscribe } from '../domain/unsubscribe.js';
import { ConflictError, NotFoundError } from '../errors.js';
import type { AttemptStore } from './attempt-store.js';
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
 * attempt list kept beside them, so there is one source of truth for "what happened to this
 * delivery"; the account and campaign come from the unsubscribe's ledger entry the job refers to.
 */
export class DeliveryRecords {
  constructor(
    private readonly queues: DeliveryQueues,
    private readonly attempts: AttemptStore,
    private readonly ledger: LedgerRecords,
    private readonly retention: { failedMs: number },
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
        // A job removed between the listing and the read comes back empty.
        const jobs = page.filter((job): job is Job => Boolean(job));
        for (const read of await this.read(jobs)) {
          const summary = summarize(read, status);
          if (filter.connection && summary.connectionId !== filter.connection) continue;
          if (filter.since && new Date(summary.createdAt) < filter.since) continue;
          if (filter.until && new Date(summary.createdAt) > filter.until) continue;
          if (filter.campaign !== undefined && summary.campaign !== filter.campaign) continue;
          if (filter.errorCode !== undefined && errorCodeOf(summary.failedReason) !== filter.errorCode)
            continue;
          found.push(summary);
          if (found.length >= limit) break;
        }
        if (page.length < PAGE) break;
      }
    }
    return found;
  }

  async get(id: string): Promise<DeliveryDetail> {
    const queue = this.queues.ofDelivery(id);
    // The state first, then the job: read the other way round, a delivery that fails for good in
    // between shows as failed with its previous attempt's reason. A finished state does not change,
    // so the job read after it carries that state's own reason.
    const stateFirst = await queue.getJobState(id);
    const job = await queue.getJob(id);
    if (!job) {
      // A delivery an operator moved or discarded keeps its attempt list, ending with why.
      const last = (await this.attempts.list(id)).at(-1);
      if (last && (last.errorCode === 'MOVED' || last.errorCode === 'DISCARDED'))
        throw new NotFoundError(`delivery ${id} is gone: ${last.reason} at ${last.startedAt}`);
      throw new NotFoundError(`no delivery ${id} (it may have expired; see RETENTION_* in README)`);
    }
    // 'unknown': the job was added between the two reads.
    const state = stateFirst === 'unknown' ? await job.getState() : stateFirst;
    const [read] = await this.read([job]);
    const summary = summarize(read!, statusOf(state));
    return { ...summary, attempts: await this.attempts.list(id) };
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
    // The job's data as stored (either shape), so only the pin changes.
    const data = job.data as Record<string, unknown>;
    const { unsubscribeId } = readDeliveryJob(job);
    if (mode === 'original') {
      const attempts = await this.attempts.list(id);
      const first = [...attempts].sort((a, b) => a.startedAt.localeCompare(b.startedAt))[0];
      if (!first)
        throw new ConflictError(`delivery ${id} has no recorded attempt: its original version is unknown`);
      await job.updateData({ ...data, pinVersion: first.connectionVersion });
    } else if (data.pinVersion !== undefined) {
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
    attemptsMade: job.attemptsMade,
    createdAt: new Date(job.timestamp).toISOString(),
    ...(job.finishedOn ? { finishedAt: new Date(job.finishedOn).toISOString() } : {}),
    ...(job.failedReason ? { failedReason: job.failedReason } : {}),
    ...(typeof (job.returnvalue as { mergedInto?: unknown } | null)?.mergedInto === 'string'
      ? { mergedInto: (job.returnvalue as { mergedInto: string }).mergedInto }
      : {}),
  };
}
