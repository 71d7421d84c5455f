import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { DELIVERY_QUEUE } from '../store/keys.js';
import { connectionBackoff } from './processor.js';

export interface WorkerOptions {
  connection: Redis;
  bullPrefix: string;
  concurrency: number;
  lockDurationMs: number;
}

/**
 * The BullMQ worker for deliveries. Retries use the `connection` backoff strategy: the processor has
 * already computed the wait (retry policy, Retry-After) and carries it on the error.
 */
export function createDeliveryWorker(processor: (job: Job) => Promise<void>, options: WorkerOptions): Worker {
  return new Worker(DELIVERY_QUEUE, processor, {
    connection: options.connection,
    prefix: options.bullPrefix,
    concurrency: options.concurrency,
    lockDuration: options.lockDurationMs,
    // Check for stalled jobs (a crashed worker's) at the lock's pace, so recovery takes about one lock.
    stalledInterval: Math.max(1_000, Math.floor(options.lockDurationMs / 2)),
    maxStalledCount: 5,
    settings: { backoffStrategy: connectionBackoff },
    autorun: false,
  });
}

export function createDeliveryQueue(connection: Redis, bullPrefix: string): Queue {
  return new Queue(DELIVERY_QUEUE, { connection, prefix: bullPrefix });
}
