import type { ChainableCommander, Redis } from 'ioredis';
import { partsOfDeliveryId } from '../domain/delivery.js';
import type { Keyspace } from './keys.js';
import { parseLedgerRecord } from './ledger.js';

// KEYS: buffer, batch list, open batches, the queue's BullMQ meta. ARGV: most to take, batch id, now ms.
// Moves up to ARGV[1] ids from the head of the buffer to the batch's own list and registers the
// batch as open, in one step: an id is always in exactly one place. Nothing is formed once the queue
// is paused (by hand, or held for a disabled or deleted connection): a backlog move or discard lists
// the buffer after pausing, and a former that has not heard of the pause yet must not take from it.
export const FORM_SCRIPT = `
if redis.call('HEXISTS', KEYS[4], 'paused') == 1 then return 0 end
local ids = redis.call('LPOP', KEYS[1], ARGV[1])
if not ids then return 0 end
redis.call('RPUSH', KEYS[2], unpack(ids))
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return #ids
`;

// KEYS: delivered set, buffer, open batches. ARGV: delivery id, batch list key prefix.
// Answers where a job-less batched delivery is: 1 waiting, 2 in an open batch, 3 delivered by a
// batch, 0 nowhere. One step, so a delivery the former moves from the buffer to a batch meanwhile
// is still found.
const LOCATE_SCRIPT = `
if redis.call('LPOS', KEYS[2], ARGV[1]) then return 1 end
for _, batch in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if redis.call('LPOS', ARGV[2] .. batch, ARGV[1]) then return 2 end
end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 3 end
return 0
`;
// KEYS: buffer, batch list. ARGV: delivery ids, oldest first. Takes each out of the batch and back
// to the head of the buffer, keeping their order, in one step (an id is always in exactly one place).
// One no longer in the batch is left where it is. Answers how many went back.
const PUT_BACK_SCRIPT = `
local n = 0
for i = #ARGV, 1, -1 do
  if redis.call('LREM', KEYS[2], 1, ARGV[i]) > 0 then
    redis.call('LPUSH', KEYS[1], ARGV[i])
    n = n + 1
  end
end
return n
`;
// KEYS: buffer, the queue's BullMQ meta, open batches. Answers {waiting, paused (0|1), open}: what a
// former looks at before it forms, in one round trip.
const STATUS_SCRIPT = `
return {redis.call('LLEN', KEYS[1]), redis.call('HEXISTS', KEYS[2], 'paused'), redis.call('ZCARD', KEYS[3])}
`;
interface WithForm {
  urBatchStatus(buffer: string, meta: string, open: string): Promise<[number, number, number]>;
  urBatchPutBack(buffer: string, batch: string, ...deliveryIds: string[]): Promise<number>;
  urBatchLocate(
    delivered: string,
    buffer: string,
    open: string,
    deliveryId: string,
    batchPrefix: string,
  ): Promise<number>;
  urFormBatch(...keysThenArgs: (string | number)[]): Promise<number>;
}

/**
 * Where a batched connection's deliveries wait before they travel (issue 7). Ingest appends each
 * delivery id to the connection's buffer, in the same MULTI as its ledger entry; a former
 * (src/queue/batch-jobs.ts) moves up to `maxSize` of them at a time into a batch, a list of its own
 * that one BullMQ job refers to. A batch stays open (in `openBatches`) until its job has settled
 * every delivery in it, so a batch whose job was never added (a crash in between) is found again.
 */
export class BatchBuffer {
  private readonly scripted: WithForm;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keyspace,
  ) {
    if (!('urFormBatch' in redis)) redis.defineCommand('urFormBatch', { numberOfKeys: 4, lua: FORM_SCRIPT });
    if (!('urBatchLocate' in redis))
      redis.defineCommand('urBatchLocate', { numberOfKeys: 3, lua: LOCATE_SCRIPT });
    if (!('urBatchPutBack' in redis))
      redis.defineCommand('urBatchPutBack', { numberOfKeys: 2, lua: PUT_BACK_SCRIPT });
    if (!('urBatchStatus' in redis))
      redis.defineCommand('urBatchStatus', { numberOfKeys: 3, lua: STATUS_SCRIPT });
    this.scripted = redis as unknown as WithForm;
  }

  /** Deliveries waiting to be put in a batch. */
  async length(connectionId: string): Promise<number> {
    return this.redis.llen(this.keys.batchBuffer(connectionId));
  }

  /** How many deliveries wait, whether the connection's queue is paused, and how many batches are open. */
  async status(connectionId: string): Promise<{ waiting: number; paused: boolean; open: number }> {
    const [waiting, paused, open] = await this.scripted.urBatchStatus(
      this.keys.batchBuffer(connectionId),
      this.keys.deliveryQueueMeta(connectionId),
      this.keys.openBatches(connectionId),
    );
    return { waiting, paused: paused === 1, open };
  }

  /** Waiting deliveries, oldest first. */
  async waiting(connectionId: string, start = 0, stop = -1): Promise<string[]> {
    return this.redis.lrange(this.keys.batchBuffer(connectionId), start, stop);
  }

  /** FORM_SCRIPT's keys and arguments, for a MULTI that also adds the batch's job. */
  formArgs(connectionId: string, batchId: string, max: number, now: number): (string | number)[] {
    return [
      this.keys.batchBuffer(connectionId),
      this.keys.batch(batchId),
      this.keys.openBatches(connectionId),
      this.keys.deliveryQueueMeta(connectionId),
      max,
      batchId,
      now,
    ];
  }

  /** Moves up to `max` waiting deliveries into the batch `batchId`; answers how many it took. */
  async form(connectionId: string, batchId: string, max: number, now: number): Promise<number> {
    return this.scripted.urFormBatch(...this.formArgs(connectionId, batchId, max, now));
  }

  /** The delivery ids of one batch, in the order they were queued. */
  async members(batchId: string): Promise<string[]> {
    return this.redis.lrange(this.keys.batch(batchId), 0, -1);
  }

  /** Open batches (formed, not yet finished) with when each was formed, oldest first. */
  async open(connectionId: string): Promise<Array<{ batchId: string; formedAt: number }>> {
    const flat = await this.redis.zrange(this.keys.openBatches(connectionId), 0, -1, 'WITHSCORES');
    const open: Array<{ batchId: string; formedAt: number }> = [];
    for (let i = 0; i < flat.length; i += 2) open.push({ batchId: flat[i]!, formedAt: Number(flat[i + 1]) });
    return open;
  }

  async openCount(connectionId: string): Promise<number> {
    return this.redis.zcard(this.keys.openBatches(connectionId));
  }

  /** Every delivery of the open batches, with its batch (for backlog views and moves). */
  async inOpenBatches(connectionId: string): Promise<Array<{ batchId: string; deliveryIds: string[] }>> {
    const open = await this.open(connectionId);
    return Promise.all(
      open.map(async ({ batchId }) => ({ batchId, deliveryIds: await this.members(batchId) })),
    );
  }

  /**
   * Puts deliveries a batch job did not start back at the head of the buffer (their connection said
   * not now: its rate limit, its open circuit, or its CRM throttling it), so the next batch takes
   * them first. Answers how many went back.
   */
  async putBack(connectionId: string, batchId: string, deliveryIds: readonly string[]): Promise<number> {
    if (deliveryIds.length === 0) return 0;
    return this.scripted.urBatchPutBack(
      this.keys.batchBuffer(connectionId),
      this.keys.batch(batchId),
      ...deliveryIds,
    );
  }

  /**
   * The batch is done: every delivery in it is settled or has a job of its own. `delivered` are
   * noted as delivered in the same step (see `noteDelivered`).
   */
  async close(
    connectionId: string,
    batchId: string,
    delivered?: { deliveryIds: readonly string[]; now: number; keepMs: number },
  ): Promise<void> {
    const multi = this.redis.multi();
    if (delivered?.deliveryIds.length) this.addDelivered(multi, connectionId, delivered);
    await multi.del(this.keys.batch(batchId)).zrem(this.keys.openBatches(connectionId), batchId).exec();
  }

  /** Where a delivery with no job of its own is: waiting to be batched, in an open batch, or neither. */
  async locate(deliveryId: string): Promise<'waiting' | 'in_batch' | undefined> {
    const where = await this.where(deliveryId);
    return where === 1 ? 'waiting' : where === 2 ? 'in_batch' : undefined;
  }

  /** When the oldest waiting delivery's unsubscribe was accepted (ms), if one waits. */
  async oldestWaitingSince(connectionId: string): Promise<number | undefined> {
    const head = await this.redis.lindex(this.keys.batchBuffer(connectionId), 0);
    return head ? this.acceptedAt(head) : undefined;
  }

  /** When a delivery's unsubscribe was accepted (ms), while its ledger entry lives. */
  async acceptedAt(deliveryId: string): Promise<number | undefined> {
    const record = parseLedgerRecord(
      await this.redis.get(this.keys.unsubscribe(partsOfDeliveryId(deliveryId).unsubscribeId)),
    );
    return record ? Date.parse(record.unsubscribe.receivedAt) : undefined;
  }

  /** Takes one waiting delivery out (a backlog moved or discarded); false if it was not waiting. */
  async takeWaiting(connectionId: string, deliveryId: string): Promise<boolean> {
    return (await this.redis.lrem(this.keys.batchBuffer(connectionId), 1, deliveryId)) > 0;
  }

  /** Takes one delivery out of a batch whose job is not running; false if it was not in it. */
  async takeFromBatch(batchId: string, deliveryId: string): Promise<boolean> {
    return (await this.redis.lrem(this.keys.batch(batchId), 1, deliveryId)) > 0;
  }

  /**
   * Notes deliveries a batch job delivered, kept as long as succeeded deliveries are: a delivered
   * job lists an unbatched delivery as succeeded, and this lists a batched one.
   */
  async noteDelivered(
    connectionId: string,
    deliveryIds: readonly string[],
    now: number,
    keepMs: number,
  ): Promise<void> {
    if (deliveryIds.length === 0) return;
    await this.addDelivered(this.redis.multi(), connectionId, { deliveryIds, now, keepMs }).exec();
  }

  private addDelivered(
    multi: ChainableCommander,
    connectionId: string,
    { deliveryIds, now, keepMs }: { deliveryIds: readonly string[]; now: number; keepMs: number },
  ): ChainableCommander {
    const key = this.keys.batchDelivered(connectionId);
    return multi
      .zadd(key, ...deliveryIds.flatMap((id) => [now, id]))
      .zremrangebyscore(key, '-inf', now - keepMs)
      .pexpire(key, keepMs);
  }

  /** Deliveries batch jobs delivered, newest first, with when. */
  async delivered(
    connectionId: string,
    start: number,
    stop: number,
  ): Promise<Array<{ deliveryId: string; at: number }>> {
    const flat = await this.redis.zrange(
      this.keys.batchDelivered(connectionId),
      start,
      stop,
      'REV',
      'WITHSCORES',
    );
    const out: Array<{ deliveryId: string; at: number }> = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ deliveryId: flat[i]!, at: Number(flat[i + 1]) });
    return out;
  }

  /**
   * Whether a batched delivery exists without a job of its own: waiting, in a batch, or delivered
   * by one (as long as succeeded deliveries are listed), so it is not queued again.
   */
  async holds(deliveryId: string): Promise<boolean> {
    return (await this.where(deliveryId)) !== 0;
  }

  private async where(deliveryId: string): Promise<number> {
    const { connectionId } = partsOfDeliveryId(deliveryId);
    return this.scripted.urBatchLocate(
      this.keys.batchDelivered(connectionId),
      this.keys.batchBuffer(connectionId),
      this.keys.openBatches(connectionId),
      deliveryId,
      this.keys.batch(''),
    );
  }
}
