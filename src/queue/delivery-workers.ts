import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Connection, StoredConnection } from '../config/connection-schema.js';
import { isBatchJob } from '../domain/delivery.js';
import type { EventSink } from '../events/operational-event.js';
import { usefulInFlight, type ConnectionControl } from '../store/connection-control.js';
import type { ConnectionStore } from '../store/connection-store.js';
import { coalesced } from '../store/coalesced.js';
import type { Keyspace } from '../store/keys.js';
import type { AttemptStore } from '../store/attempt-store.js';
import type { BatchBuffer } from '../store/batch-buffer.js';
import { BatchFormer, type HandOver } from './batch-jobs.js';
import { DISABLED_BY, holdConnection } from './hold.js';
import { connectionBackoff } from './processor.js';
import { deliveryQueueName, type DeliveryQueues } from './queues.js';

export interface DeliveryWorkersOptions {
  store: ConnectionStore;
  queues: DeliveryQueues;
  control: ConnectionControl;
  events: EventSink;
  /** The worker role's Redis client (BullMQ duplicates it for each worker's blocking reads). */
  connection: Redis;
  /** Announces connection changes (pub/sub): workers start, stop and re-tune at once. */
  subscriber: Redis;
  keys: Keyspace;
  processor: (job: Job, token?: string) => Promise<unknown>;
  /** Batched connections' waiting deliveries, which a former per connection puts into batch jobs. */
  buffer: BatchBuffer;
  handOver: HandOver;
  attempts: AttemptStore;
  /** Deliveries in flight per connection in this process (the connection's `limits.concurrency` may lower it). */
  concurrency: number;
  lockDurationMs: number;
  /** How long finished deliveries are kept (RETENTION_SUCCEEDED, RETENTION_FAILED). */
  retention: { succeededMs: number; failedMs: number };
  logger: Logger;
  /** Re-read the store this often too, since pub/sub loses messages while reconnecting. */
  resyncMs?: number;
}

/**
 * Batches of a batched connection a process keeps filling or in flight from deliveries in jobs of
 * their own (retries, splits, replays, backfills and moves; fresh ones travel in batch jobs, see
 * src/queue/batch-jobs.ts). Two kept an instant CRM busy, but against one that answers in 100 ms
 * the next batch was still filling (a job at a time) when the CRM was ready for it.
 */
const BATCHES_IN_FLIGHT = 4;

// BullMQ only honours a queue-wide rate-limit window (queue.rateLimit, used by every slow-down)
// when the worker has a limiter. This one never limits by itself (the connection's own rate is
// GCRA in ConnectionControl, which reserves slots instead of bouncing jobs), and with duration 0
// its per-job counter expires at once, so a handed-back job never waits on a stale counter window.
const HONOUR_RATE_LIMIT_WINDOWS = { max: 1e15, duration: 0 };

/**
 * One BullMQ worker per connection in this process, kept in step with the shared connection store:
 * a new connection gets a worker, a deleted one loses it (its queue and backlog stay), a disabled
 * one has its queue paused, and `limits.concurrency` becomes the queue's global concurrency, so it
 * holds across every process.
 */
export class DeliveryWorkers {
  private readonly workers = new Map<string, Worker>();
  private readonly formers = new Map<string, BatchFormer>();
  private readonly applied = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** One sync at a time; a change announced during one gets another after it. */
  private readonly syncs = coalesced(
    () => this.sync(),
    (error) =>
      this.options.logger.warn({ err: error }, 'delivery workers: sync with the store failed; retrying'),
    () => this.closed,
  );

  constructor(private readonly options: DeliveryWorkersOptions) {}

  async start(): Promise<void> {
    const { subscriber, keys } = this.options;
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === keys.connectionsChanged) this.syncs.request();
      // Ingest announces a buffer that had nothing waiting: batch it now, not at the former's next look.
      else if (channel === keys.deliveriesWaiting) this.formers.get(message)?.announced();
    });
    await subscriber.subscribe(keys.connectionsChanged, keys.deliveriesWaiting);
    await this.sync();
    this.timer = setInterval(() => this.syncs.request(), this.options.resyncMs ?? 10_000);
    this.timer.unref();
  }

  /** Set once the process stops taking work: batch jobs start no more deliveries (they go back to wait). */
  get closing(): boolean {
    return this.closed;
  }

  /** Connection ids with a running worker here. */
  get running(): string[] {
    return [...this.workers.keys()].sort();
  }

  isRunning(): boolean {
    return !this.closed && [...this.workers.values()].every((worker) => worker.isRunning());
  }

  /** Takes a connection's queue out of service because it was disabled or deleted; the backlog stays. */
  async hold(connectionId: string, reason: 'disabled' | 'deleted'): Promise<void> {
    await holdConnection(this.options, connectionId, reason);
  }

  async sync(): Promise<void> {
    if (this.closed) return;
    const stored = await this.options.store.list();
    const present = new Set<string>();
    for (const connection of stored) {
      present.add(connection.connection.id);
      await this.tune(connection);
    }
    for (const [id, worker] of this.workers) {
      if (present.has(id)) continue;
      // Deleted: stop taking its jobs here; they stay in its queue as a visible backlog.
      this.workers.delete(id);
      this.applied.delete(id);
      await this.formers.get(id)?.stop();
      this.formers.delete(id);
      await worker.close();
      this.options.logger.info({ connectionId: id }, 'connection deleted: its delivery worker stopped');
    }
  }

  async close(force = false): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.syncs.running();
    await Promise.all([...this.formers.values()].map((former) => former.stop()));
    this.formers.clear();
    await Promise.all([...this.workers.values()].map((worker) => worker.close(force)));
    this.workers.clear();
  }

  private async tune(stored: StoredConnection): Promise<void> {
    const { connection } = stored;
    const { queues, control, logger } = this.options;
    const queue = queues.for(connection.id);
    // Limits count requests; BullMQ counts deliveries. A batched request carries up to maxSize of
    // them, and a process keeps BATCHES_IN_FLIGHT batches filling or in flight.
    const perRequest = connection.batch?.maxSize ?? 1;
    const global = connection.limits.concurrency ? connection.limits.concurrency * perRequest : undefined;
    const perProcess = Math.min(
      Math.max(this.options.concurrency, connection.batch ? BATCHES_IN_FLIGHT * perRequest : 1),
      global ?? Infinity,
      usefulInFlight(connection.limits) * perRequest,
    );
    const wanted = JSON.stringify([connection.enabled, global ?? null, perProcess, stored.version]);
    let worker = this.workers.get(connection.id);
    if (worker && this.applied.get(connection.id) === wanted) return;
    this.former(connection);

    if (global) await queue.setGlobalConcurrency(global);
    else await queue.removeGlobalConcurrency();
    if (!connection.enabled) await this.hold(connection.id, 'disabled');
    else if ((await control.status(connection.id)).paused?.by === DISABLED_BY) {
      await control.clearPaused(connection.id);
      await queue.resume();
      this.options.events.emit({
        type: 'connection_resumed',
        connectionId: connection.id,
        message: `${connection.id} is enabled again: its held deliveries flow`,
        details: { by: DISABLED_BY },
      });
    }

    if (!worker) {
      worker = new Worker(deliveryQueueName(connection.id), this.options.processor, {
        connection: this.options.connection,
        prefix: this.options.keys.bullPrefix,
        concurrency: perProcess,
        lockDuration: this.options.lockDurationMs,
        // Check for stalled jobs (a crashed worker's) at the lock's pace, so recovery takes about one lock.
        stalledInterval: Math.max(1_000, Math.floor(this.options.lockDurationMs / 2)),
        maxStalledCount: 5,
        limiter: HONOUR_RATE_LIMIT_WINDOWS,
        settings: { backoffStrategy: connectionBackoff },
        // The worker's, not each job's: job options that fit a listpack keep a queued job small
        // (DeliveryProducer.jobOptions). Jobs queued with their own (earlier versions) keep theirs.
        removeOnComplete: { age: Math.ceil(this.options.retention.succeededMs / 1000) },
        removeOnFail: { age: Math.ceil(this.options.retention.failedMs / 1000) },
        autorun: false,
      });
      worker.on('error', (error) =>
        logger.error({ err: error, connectionId: connection.id }, 'delivery worker error'),
      );
      // A finished batch leaves room for the next one.
      worker.on('completed', (job) => {
        if (isBatchJob(job)) this.formers.get(connection.id)?.nudge();
      });
      this.workers.set(connection.id, worker);
      void worker
        .run()
        .catch((error: unknown) =>
          logger.error({ err: error, connectionId: connection.id }, 'delivery worker stopped'),
        );
    } else worker.concurrency = perProcess;
    this.applied.set(connection.id, wanted);
  }

  /** The connection's batch former here: every connection has one, since a buffer outlives a batch setting. */
  private former(connection: Connection): void {
    const existing = this.formers.get(connection.id);
    if (existing) return existing.update(connection);
    const former = new BatchFormer(
      {
        buffer: this.options.buffer,
        queues: this.options.queues,
        handOver: this.options.handOver,
        attempts: this.options.attempts,
        retention: this.options.retention,
        logger: this.options.logger,
        eachOpen: this.options.concurrency,
      },
      connection,
    );
    this.formers.set(connection.id, former);
    former.start();
  }
}
