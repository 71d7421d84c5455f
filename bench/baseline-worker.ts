/**
 * The drain baseline: the bare stack the engine is built on. One BullMQ Worker on the same queue
 * (same jobs, queued by the same producer), POSTing the same JSON body with undici to the same CRM,
 * at the same concurrency; no templates, no admission script, no attempt records, no metrics.
 *
 * Like any worker of these jobs, it reads each job's unsubscribe from the ledger entry the job
 * its id names (one GET): the job does not carry it.
 *
 * Env: BENCH_REDIS_URL, BENCH_PREFIX (the engine's key prefix), BENCH_QUEUE, BENCH_TARGET_URL,
 * BENCH_CRM_KEY, WORKER_CONCURRENCY (default 50).
 */
import { Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { partsOfDeliveryId, type DeliveryJob } from '../src/domain/delivery.js';
import type { Unsubscribe } from '../src/domain/unsubscribe.js';
import { keyspace } from '../src/store/keys.js';
import { baselineBody, CRM_KEY_HEADER } from './lib/connections.js';

const target = process.env.BENCH_TARGET_URL!;
const key = process.env.BENCH_CRM_KEY ?? '';
const keys = keyspace(process.env.BENCH_PREFIX!);
const connection = new Redis(process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379', {
  maxRetriesPerRequest: null,
});

async function deliver(job: Job<DeliveryJob>): Promise<void> {
  // The job refers to its unsubscribe; reading it is part of delivering it, for any worker.
  const { unsubscribeId } = partsOfDeliveryId(job.id!);
  const ledger = await connection.get(keys.unsubscribe(unsubscribeId));
  if (!ledger) throw new Error(`no ledger entry for ${unsubscribeId}`);
  const response = await request(target, {
    method: 'POST',
    headers: { 'content-type': 'application/json', [CRM_KEY_HEADER]: key },
    body: baselineBody((JSON.parse(ledger) as { unsubscribe: Unsubscribe }).unsubscribe),
  });
  await response.body.text();
  if (response.statusCode < 200 || response.statusCode >= 300)
    throw new Error(`CRM answered ${response.statusCode}`);
}

const worker = new Worker<DeliveryJob>(process.env.BENCH_QUEUE!, deliver, {
  connection,
  prefix: keys.bullPrefix,
  concurrency: Number(process.env.WORKER_CONCURRENCY ?? 50),
});
worker.on('error', (error) => process.stderr.write(`baseline worker: ${String(error)}\n`));

async function stop(): Promise<void> {
  await worker.close();
  await connection.quit();
  process.exit(0);
}
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
