import type { DeliveryQueues } from '../queue/queues.js';
import type { BacklogSource } from '../observe/metrics.js';
import type { BatchBuffer } from './batch-buffer.js';
import type { ConnectionControl, ControlStatus } from './connection-control.js';
import type { ConnectionStore } from './connection-store.js';

export type BacklogCounts = Record<'waiting' | 'delayed' | 'active' | 'paused' | 'failed', number>;

/** One connection's queue as an operator needs to see it. */
export interface Backlog {
  connectionId: string;
  /** `deleted`: the queue outlived its connection; its deliveries wait to be moved or discarded. */
  connection: 'active' | 'disabled' | 'deleted';
  counts: BacklogCounts;
  /** Seconds the oldest waiting delivery has waited (0 when none waits). */
  oldestPendingAgeSeconds: number;
  queuePaused: boolean;
  control: ControlStatus;
  /** Global concurrency set on the queue (the connection's `limits.concurrency`). */
  concurrency?: number;
}

/**
 * Reads every connection's queue: depth by state, the oldest waiting delivery, pause and circuit.
 * Feeds the metrics scrape, /readyz and the admin API's backlog views.
 */
export class Backlogs implements BacklogSource {
  constructor(
    private readonly queues: DeliveryQueues,
    private readonly store: ConnectionStore,
    private readonly control: ConnectionControl,
    private readonly buffer: BatchBuffer,
    private readonly clock: () => number = Date.now,
  ) {}

  async backlogs(): Promise<Backlog[]> {
    const [known, stored] = await Promise.all([this.queues.connectionIds(), this.store.list()]);
    const ids = new Set([...known, ...stored.map((s) => s.connection.id)]);
    const byId = new Map(stored.map((s) => [s.connection.id, s.connection]));
    return Promise.all(
      [...ids].sort().map((id) => {
        const connection = byId.get(id);
        return this.read(id, !connection ? 'deleted' : connection.enabled ? 'active' : 'disabled');
      }),
    );
  }

  async of(connectionId: string): Promise<Backlog> {
    const stored = await this.store.get(connectionId);
    return this.read(connectionId, !stored ? 'deleted' : stored.connection.enabled ? 'active' : 'disabled');
  }

  private async read(connectionId: string, connection: Backlog['connection']): Promise<Backlog> {
    const queue = this.queues.for(connectionId);
    const [counts, paused, control, concurrency, oldestJob, buffered, batches, oldestBuffered] =
      await Promise.all([
        queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'failed'),
        queue.isPaused(),
        this.control.status(connectionId),
        queue.getGlobalConcurrency(),
        this.oldestWaiting(connectionId),
        this.buffer.length(connectionId),
        this.buffer.inOpenBatches(connectionId),
        this.buffer.oldestWaitingSince(connectionId),
      ]);
    // A batch job counts once in BullMQ's counts: count each delivery it carries in its job's state.
    // A failed batch job failed for Redis, not for its deliveries: they wait for the former to hand
    // them over (each from its record, as `deliveries list` shows them: pending), so they are
    // waiting, and the batch job itself is no failed delivery. Deliveries waiting to be batched are
    // waiting.
    let waiting = (counts.waiting ?? 0) + (counts.prioritized ?? 0) + buffered;
    // A waiting batch's age is its first delivery's (batches take the buffer's oldest first), not
    // its job's, which is when the batch formed.
    const since = [oldestJob, oldestBuffered];
    for (const { batchId, deliveryIds } of batches) {
      const state = await queue.getJobState(batchId);
      const extra = state === 'unknown' ? deliveryIds.length : deliveryIds.length - 1;
      if (state === 'active') counts.active = (counts.active ?? 0) + extra;
      else if (state === 'delayed') counts.delayed = (counts.delayed ?? 0) + extra;
      else if (state === 'failed' || state === 'waiting' || state === 'prioritized' || state === 'unknown') {
        if (state === 'failed') {
          counts.failed = (counts.failed ?? 0) - 1;
          waiting += deliveryIds.length;
        } else waiting += extra;
        if (deliveryIds[0]) since.push(await this.buffer.acceptedAt(deliveryIds[0]));
      }
    }
    const known = since.filter((at): at is number => at !== undefined);
    const oldest = known.length > 0 ? Math.min(...known) : undefined;
    return {
      connectionId,
      connection,
      // A paused queue keeps its jobs in the wait list; they are reported as paused, not waiting.
      counts: {
        waiting: paused ? 0 : waiting,
        paused: paused ? waiting : 0,
        delayed: counts.delayed ?? 0,
        active: counts.active ?? 0,
        failed: counts.failed ?? 0,
      },
      oldestPendingAgeSeconds: oldest === undefined ? 0 : Math.max(0, (this.clock() - oldest) / 1000),
      queuePaused: paused,
      control,
      ...(concurrency ? { concurrency: Number(concurrency) } : {}),
    };
  }

  /** Wait lists take new jobs on the left and hand out from the right: the right end is the oldest. */
  private async oldestWaiting(connectionId: string): Promise<number | undefined> {
    const queue = this.queues.for(connectionId);
    const client = this.queues.redis;
    const id = await client.lindex(queue.keys.wait!, -1);
    if (!id) return undefined;
    const timestamp = await client.hget(queue.toKey(id), 'timestamp');
    return timestamp ? Number(timestamp) : undefined;
  }
}
