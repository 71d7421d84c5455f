import { isBatchJob, isDelivered, partsOfDeliveryId } from '../domain/delivery.js';
import type { EventSink } from '../events/operational-event.js';
import { ConflictError, NotFoundError } from '../errors.js';
import type { AttemptStore } from '../store/attempt-store.js';
import type { BatchBuffer } from '../store/batch-buffer.js';
import type { ConnectionControl } from '../store/connection-control.js';
import type { ConnectionStore } from '../store/connection-store.js';
import { holdConnection } from './hold.js';
import type { DeliveryProducer } from './producer.js';
import type { DeliveryQueues } from './queues.js';

interface BacklogEntry {
  id: string;
  /** Takes it out of the backlog; false when it was no longer there (see `take`). */
  remove: () => Promise<boolean>;
}

/** States a held backlog is taken from: everything not yet delivered and not in flight. */
const PENDING = ['waiting', 'prioritized', 'delayed'] as const;
const takenStates = (selection: BacklogSelection) =>
  selection.includeFailed ? [...PENDING, 'failed' as const] : [...PENDING];
const PAGE = 500;
const SAMPLE = 10;

export interface BacklogSelection {
  /** Also take the connection's failed deliveries (kept for replay), not only the pending ones. */
  includeFailed?: boolean;
}

/**
 * Deliveries a worker is sending as the backlog is listed (a job it holds, or a batch job it runs):
 * not taken. Each ends delivered, or back in the backlog (retried, failed, or put back in the buffer
 * because the connection said not now), where taking the backlog again finds it.
 */
interface SendingNow {
  sendingNow: number;
}

export interface BacklogPreview extends SendingNow {
  count: number;
  sample: string[];
}

/**
 * What an operator does to a connection's deliveries as a whole: pause and resume it (every worker,
 * every process; the backlog stays), close its circuit by hand, and empty the backlog of a deleted
 * or disabled connection by moving it to another connection or discarding it, on the record.
 */
export class ConnectionOperations {
  constructor(
    private readonly deps: {
      queues: DeliveryQueues;
      store: ConnectionStore;
      control: ConnectionControl;
      attempts: AttemptStore;
      producer: DeliveryProducer;
      buffer: BatchBuffer;
      events: EventSink;
      retention: { failedMs: number };
      clock?: () => Date;
    },
  ) {}

  private now(): Date {
    return this.deps.clock?.() ?? new Date();
  }

  async pause(connectionId: string, who: string, reason: string): Promise<void> {
    await this.mustExist(connectionId);
    await this.deps.control.markPaused(connectionId, who, reason, this.now());
    await this.deps.queues.for(connectionId).pause();
    this.deps.events.emit({
      type: 'connection_paused',
      connectionId,
      message: `${connectionId} paused by ${who}${reason ? `: ${reason}` : ''}; its deliveries wait until it is resumed`,
      details: { by: who },
    });
  }

  async resume(connectionId: string, who: string): Promise<void> {
    const stored = await this.mustExist(connectionId);
    if (!stored.connection.enabled)
      throw new ConflictError(
        `connection ${connectionId} is disabled: enable it (connections enable ${connectionId}) and its deliveries resume`,
      );
    await this.deps.control.clearPaused(connectionId);
    await this.deps.queues.for(connectionId).resume();
    this.deps.events.emit({
      type: 'connection_resumed',
      connectionId,
      message: `${connectionId} resumed by ${who}: its deliveries flow again`,
      details: { by: who },
    });
  }

  async closeCircuit(connectionId: string, who: string): Promise<void> {
    await this.mustExist(connectionId);
    await this.deps.control.closeCircuit(connectionId, this.now().getTime());
    // Lift the wait the open circuit put on the queue, so deliveries go at once.
    await this.deps.queues.for(connectionId).removeRateLimitKey();
    this.deps.events.emit({
      type: 'circuit_closed',
      connectionId,
      message: `circuit of ${connectionId} closed by ${who}`,
      details: { by: who },
    });
  }

  /** What a discard or move would take, without changing anything. */
  async preview(connectionId: string, selection: BacklogSelection = {}): Promise<BacklogPreview> {
    const { entries, sendingNow } = await this.backlog(connectionId, selection);
    return { count: entries.length, sample: entries.slice(0, SAMPLE).map((entry) => entry.id), sendingNow };
  }

  /**
   * Gives up on a held backlog for good. Each delivery's attempt list keeps a DISCARDED entry (who,
   * why) for the failed retention, so `deliveries show` explains where it went.
   */
  async discard(
    connectionId: string,
    who: string,
    reason: string,
    selection: BacklogSelection = {},
  ): Promise<{ discarded: string[] } & SendingNow> {
    await this.mustBeHeld(connectionId);
    const discarded: string[] = [];
    const { entries, sendingNow } = await this.backlog(connectionId, selection);
    for (const entry of entries) {
      // Taken first: one that left the backlog meanwhile is not on the record as discarded.
      if (!(await this.take(connectionId, entry, selection))) continue;
      await this.note(entry.id, 'DISCARDED', `discarded by ${who}: ${reason || 'no reason given'}`);
      discarded.push(entry.id);
    }
    await this.closeEmptiedBatches(connectionId);
    return { discarded, sendingNow };
  }

  /**
   * Sends a held backlog to another connection instead: each unsubscribe gets a delivery there (its
   * id `<unsubscribe>:<target>`, so a second move queues nothing twice) and the old one is removed,
   * with a MOVED entry in its attempts.
   */
  async move(
    connectionId: string,
    targetId: string,
    who: string,
    selection: BacklogSelection = {},
  ): Promise<{ moved: string[]; alreadyThere: number } & SendingNow> {
    await this.mustBeHeld(connectionId);
    const target = await this.deps.store.get(targetId);
    if (!target) throw new NotFoundError(`no connection ${targetId} to move deliveries to`);
    if (!target.connection.enabled)
      throw new ConflictError(`connection ${targetId} is disabled: enable it before moving deliveries to it`);
    if (targetId === connectionId) throw new ConflictError('a backlog cannot be moved to its own connection');
    const moved: string[] = [];
    let alreadyThere = 0;
    const { entries, sendingNow } = await this.backlog(connectionId, selection);
    for (const entry of entries) {
      const { unsubscribeId } = partsOfDeliveryId(entry.id);
      // Queued at the target before it leaves here, so a crash in between loses nothing.
      if (await this.deps.producer.enqueueExisting(unsubscribeId, target.connection)) moved.push(entry.id);
      else alreadyThere += 1;
      if (await this.take(connectionId, entry, selection))
        await this.note(entry.id, 'MOVED', `moved by ${who} to connection ${targetId}`);
    }
    await this.closeEmptiedBatches(connectionId);
    return { moved, alreadyThere, sendingNow };
  }

  /**
   * Takes a listed delivery out. One that left its place since it was listed (a failed batch's
   * recovery gave it a job of its own) is taken from there; one found nowhere pending was not taken.
   */
  private async take(
    connectionId: string,
    entry: BacklogEntry,
    selection: BacklogSelection,
  ): Promise<boolean> {
    if (await entry.remove()) return true;
    const job = await this.deps.queues.for(connectionId).getJob(entry.id);
    if (!job) return false;
    const state = await job.getState();
    if (!(takenStates(selection) as readonly string[]).includes(state)) return false;
    await job.remove();
    return true;
  }

  private async note(deliveryId: string, code: string, reason: string): Promise<void> {
    await this.deps.attempts.append(
      {
        deliveryId,
        startedAt: this.now().toISOString(),
        durationMs: 0,
        connectionVersion: 0,
        verdict: 'fail',
        errorCode: code,
        reason,
      },
      this.deps.retention.failedMs,
    );
  }

  /**
   * Every delivery of the held backlog, with how to take it out: jobs of their own, deliveries
   * waiting in the batch buffer, and those in batch jobs not running now (issue 7); and how many a
   * worker is sending now, which are left to it.
   */
  private async backlog(
    connectionId: string,
    selection: BacklogSelection,
  ): Promise<{ entries: BacklogEntry[] } & SendingNow> {
    const { queues, buffer, attempts } = this.deps;
    const queue = queues.for(connectionId);
    const states = takenStates(selection);
    const entries: BacklogEntry[] = [];
    let sendingNow = 0;
    // Deliveries with a job of their own. A running batch's delivery it handed over to one (a retry)
    // stays in the batch's list until the batch closes: it is not counted as being sent there too.
    const ownJobs = new Set<string>();
    for (let start = 0; ; start += PAGE) {
      const page = await queue.getJobs(states, start, start + PAGE - 1, true);
      for (const job of page)
        if (job && !isBatchJob(job)) {
          ownJobs.add(job.id!);
          entries.push({ id: job.id!, remove: async () => (await job.remove(), true) });
        }
      if (page.length < PAGE) break;
    }
    // A job left active by a worker that died holds no lock. Other workers of the queue would put it
    // back (BullMQ's stalled check), but a deleted connection has none left: it is taken as it is.
    for (const job of await queue.getJobs(['active'], 0, -1, true)) {
      if (!job || isBatchJob(job)) continue;
      if (!(await this.locked(connectionId, job.id!)))
        entries.push({ id: job.id!, remove: async () => (await job.remove(), true) });
      else sendingNow += 1;
      ownJobs.add(job.id!);
    }
    for (const { batchId, deliveryIds } of await buffer.inOpenBatches(connectionId)) {
      const running = await this.running(connectionId, batchId);
      // A batch job that stopped part-way (failed, or waiting to run again) delivered some already;
      // one running now may have.
      const last = await attempts.lastOf(deliveryIds);
      deliveryIds.forEach((id, i) => {
        if (last[i] && isDelivered(last[i].verdict)) return;
        if (running) sendingNow += ownJobs.has(id) ? 0 : 1;
        else entries.push({ id, remove: () => buffer.takeFromBatch(batchId, id) });
      });
    }
    for (const id of await buffer.waiting(connectionId))
      entries.push({ id, remove: () => buffer.takeWaiting(connectionId, id) });
    return { entries, sendingNow };
  }

  /** Whether a worker runs the job now: active, and holding its lock (renewed while it runs). */
  private async running(connectionId: string, jobId: string): Promise<boolean> {
    if ((await this.deps.queues.for(connectionId).getJobState(jobId)) !== 'active') return false;
    return this.locked(connectionId, jobId);
  }

  private async locked(connectionId: string, jobId: string): Promise<boolean> {
    const { queues } = this.deps;
    return (await queues.redis.exists(`${queues.for(connectionId).toKey(jobId)}:lock`)) > 0;
  }

  /** Batches a move or discard emptied: their jobs have nothing left to send. */
  private async closeEmptiedBatches(connectionId: string): Promise<void> {
    const { queues, buffer } = this.deps;
    for (const { batchId, deliveryIds } of await buffer.inOpenBatches(connectionId)) {
      if (deliveryIds.length > 0 || (await this.running(connectionId, batchId))) continue;
      await queues.for(connectionId).remove(batchId);
      await buffer.close(connectionId, batchId);
    }
  }

  private async mustExist(connectionId: string) {
    const stored = await this.deps.store.get(connectionId);
    if (!stored) throw new NotFoundError(`no connection ${connectionId} (see connections list)`);
    return stored;
  }

  /**
   * Only a backlog nothing is working on: its connection paused, or disabled or deleted. A disabled
   * or deleted one's queue is paused here if no worker has done it yet, so no batch forms from the
   * buffer while its deliveries are taken (forming checks the pause in the same step).
   */
  private async mustBeHeld(connectionId: string): Promise<void> {
    const known = await this.deps.queues.connectionIds();
    if (!known.includes(connectionId))
      throw new NotFoundError(`connection ${connectionId} has no deliveries`);
    if (await this.deps.queues.for(connectionId).isPaused()) return;
    const stored = await this.deps.store.get(connectionId);
    if (stored?.connection.enabled)
      throw new ConflictError(
        `connection ${connectionId} is delivering: pause it first (connections pause ${connectionId})`,
      );
    await holdConnection(this.deps, connectionId, stored ? 'disabled' : 'deleted');
  }
}
