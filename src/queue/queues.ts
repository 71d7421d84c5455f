import { createRequire } from 'node:module';
import { Queue, createIORedisClient, type IRedisClient } from 'bullmq';
import type { Redis } from 'ioredis';
import { partsOfDeliveryId } from '../domain/delivery.js';
import { deliveryQueueName, type Keyspace } from '../store/keys.js';
import { waitReady } from '../store/redis.js';

export { deliveryQueueName };

// BullMQ's own job-adding scripts, under the names its job code calls them by (`<name>:<version>`):
// a job now, and a job after a delay (a batch's delivery handed over to retry, issue 7).
const require = createRequire(import.meta.url);
const { addStandardJob, addDelayedJob } = require('bullmq/dist/cjs/scripts/index.js') as Record<
  'addStandardJob' | 'addDelayedJob',
  { name: string; keys: number; content: string }
>;
const { version: bullmqVersion } = require('bullmq/dist/cjs/version.js') as { version: string };

/**
 * One BullMQ queue per connection (`deliveries.<connection id>`), so each connection has its own
 * backlog, pause switch, global concurrency and rate-limit window: a CRM that is down, slow or
 * throttling holds back only its own deliveries (see docs/architecture.md, "Isolation").
 *
 * Queue objects are cheap (they share one Redis client) and cached. Every connection that ever had
 * a delivery queued is in the set `<prefix>:delivery-queues`, so backlogs of deleted connections
 * stay findable.
 *
 * The queues share a client of their own, duplicated from the one given: BullMQ defines its 64
 * scripts on the client a queue uses, and ioredis copies every script of a client into each
 * pipeline it builds. The given client auto-pipelines the hot path's commands (a pipeline per
 * event-loop turn), and with BullMQ's scripts on it that copying was 6% of a drain's CPU
 * (docs/performance.md).
 */
export class DeliveryQueues {
  private readonly queues = new Map<string, Queue>();
  private queueClient: Redis | undefined;

  constructor(
    /** The caller's command client (the set of delivery queues is read with it). */
    readonly redis: Redis,
    private readonly keys: Keyspace,
  ) {}

  /** The client every queue shares (commands, not blocking reads; no auto-pipelining). */
  private get bullRedis(): Redis {
    if (!this.queueClient) {
      this.queueClient = this.redis.duplicate({
        connectionName: 'unsub-relay:queues',
        enableAutoPipelining: false,
      });
      // A failed command reports it; the client reconnects.
      this.queueClient.on('error', () => undefined);
    }
    return this.queueClient;
  }

  /** The queue of one connection. */
  for(connectionId: string): Queue {
    let queue = this.queues.get(connectionId);
    if (!queue) {
      queue = new Queue(deliveryQueueName(connectionId), {
        connection: this.bullRedis,
        prefix: this.keys.bullPrefix,
      });
      // Errors surface on the command that failed; an unhandled 'error' event would crash the process.
      queue.on('error', () => undefined);
      this.queues.set(connectionId, queue);
    }
    return queue;
  }

  /**
   * Holds every worker of a connection's queue, in every process, back for `ms`: BullMQ's queue-wide
   * rate-limit window. Jobs handed back meanwhile keep their place at the head of the queue.
   */
  async slowDown(connectionId: string, ms: number): Promise<void> {
    if (ms >= 1) await this.for(connectionId).rateLimit(Math.ceil(ms));
  }

  /** The queue a delivery id belongs to (`<unsubscribe id>:<connection id>`). */
  ofDelivery(deliveryId: string): Queue {
    return this.for(partsOfDeliveryId(deliveryId).connectionId);
  }

  /** The delivery ids among these that have no job (one EXISTS each, sent together). */
  async withoutJob(deliveryIds: readonly string[]): Promise<string[]> {
    const exists = await Promise.all(
      deliveryIds.map((id) => this.bullRedis.exists(this.ofDelivery(id).toKey(id))),
    );
    return deliveryIds.filter((_, i) => exists[i] === 0);
  }

  /** Every connection id that has (or had) a delivery queue, sorted. */
  async connectionIds(): Promise<string[]> {
    return (await this.redis.smembers(this.keys.deliveryQueues)).sort();
  }

  /** Queues of every connection that has (or had) one. */
  async all(): Promise<Queue[]> {
    return (await this.connectionIds()).map((id) => this.for(id));
  }

  /**
   * A client for the producer's transactions, as BullMQ sees it (with `runCommand`), so one MULTI can
   * hold the ledger entry and jobs for several connections' queues.
   *
   * Its own connection, with only BullMQ's two add-job scripts defined: ioredis copies every script of a
   * client onto each MULTI it opens, and a queue's client has BullMQ's 64, which cost 80 µs per
   * accepted unsubscribe (a tenth of ingest's CPU in the profile, docs/performance.md). Jobs are
   * added with `Job.addJob` on this MULTI, exactly as before; only the client is lighter.
   */
  async transactions(scripts: Record<string, { keys?: number; lua: string }> = {}): Promise<IRedisClient> {
    if (!this.producer) {
      const raw = this.redis.duplicate({ connectionName: 'unsub-relay:producer' });
      raw.on('error', () => undefined); // a failed command reports it; the client reconnects
      for (const script of [addStandardJob, addDelayedJob])
        raw.defineCommand(`${script.name}:${bullmqVersion}`, {
          numberOfKeys: script.keys,
          lua: script.content,
        });
      this.producer = { raw, wrapped: createIORedisClient(raw) };
    }
    const producer = this.producer;
    // The caller's own scripts, defined once, so its MULTI can run them beside the jobs. One without
    // `keys` takes its number of keys as its first argument.
    for (const [name, script] of Object.entries(scripts))
      if (!(name in producer.raw))
        producer.raw.defineCommand(name, {
          ...(script.keys === undefined ? {} : { numberOfKeys: script.keys }),
          lua: script.lua,
        });
    // Waited for once (concurrent first callers share it); after that a dropped connection fails the
    // MULTI itself, at once (no offline queue), and the caller answers 503.
    producer.ready ??= waitReady(producer.raw, 2_000).catch((error: unknown) => {
      producer.ready = undefined;
      throw error;
    });
    await producer.ready;
    return producer.wrapped;
  }
  private producer: { raw: Redis; wrapped: IRedisClient; ready?: Promise<void> } | undefined;

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((queue) => queue.close()));
    this.queues.clear();
    this.queueClient?.disconnect();
    this.queueClient = undefined;
    this.producer?.raw.disconnect();
    this.producer = undefined;
  }
}
