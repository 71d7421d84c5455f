import { createHash, randomUUID } from 'node:crypto';
import { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Connection } from '../config/connection-schema.js';
import { canonicalJson } from '../domain/canonical-json.js';
import { deliveryId, partsOfDeliveryId, type DeliveryJob } from '../domain/delivery.js';
import type { Unsubscribe } from '../domain/unsubscribe.js';
import { BatchBuffer } from '../store/batch-buffer.js';
import { ledgerValue, type LedgerRecord } from '../store/ledger.js';
import { StoreUnavailableError } from '../errors.js';
import type { Keyspace } from '../store/keys.js';
import { emailUnsubscribesKey } from '../store/unsubscribes.js';
import { accountsKey, campaignsKey, seenCampaignValue } from '../store/campaigns.js';
import type { DeliveryQueues } from './queues.js';

/** What the producer keeps, and for how long (finished jobs' retention is the workers'). */
export interface Retention {
  /** A ledger entry (and its indexes, and Idempotency-Keys) after acceptance. */
  unsubscribesMs: number;
  /** At least this long from a late enqueue (backfill, move): a failed delivery may be kept so long. */
  failedMs: number;
}

export type AcceptResult =
  | { outcome: 'accepted'; id: string; deliveries: number }
  | { outcome: 'replayed'; id: string }
  | { outcome: 'conflict'; id: string };

/**
 * Everything an accepted unsubscribe writes besides its jobs, as one script in the MULTI (one
 * command, not eleven: each costs the ingest path CPU to build and send).
 * - the ledger entry, expiring with RETENTION_UNSUBSCRIBES;
 * - the account's index and the email's index (suppression lookup, issue 5; see
 *   src/store/unsubscribes.ts), each trimmed to the retention and expiring with it, so a quiet
 *   account's or address's index goes too;
 * - the accounts and campaigns seen on unsubscribes (issue 5, src/store/campaigns.ts);
 * - the set of connections with a delivery queue;
 * - each connection's delivery, appended to its batch buffer only when the ledger entry is new: a
 *   list, unlike a job id, would take the same delivery twice when a request with an
 *   Idempotency-Key is stored again. A buffer that was empty is announced (`deliveriesWaiting`), so
 *   the workers' batch formers put it in a batch job at once rather than at their next look.
 * KEYS: ledger, account index, email index, accounts, account campaigns, delivery queues, a batch
 * buffer per connection... ARGV: record, retention ms, now ms, oldest kept ms, id, account,
 * campaign ('': none), campaign value, how many connections, connection ids..., a delivery id per
 * connection..., the channel that announces waiting deliveries.
 */
const RECORD_COMMAND = 'urRecordUnsubscribe';
const RECORD_SCRIPT = {
  lua: `
local fresh = redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX')
for i = 2, 3 do
  redis.call('ZADD', KEYS[i], 'NX', ARGV[3], ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[4])
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
redis.call('SADD', KEYS[4], ARGV[6])
if ARGV[7] ~= '' then redis.call('HSETNX', KEYS[5], ARGV[7], ARGV[8]) end
local n = tonumber(ARGV[9])
for i = 10, 9 + n do redis.call('SADD', KEYS[6], ARGV[i]) end
if fresh then
  for k = 7, #KEYS do
    if redis.call('RPUSH', KEYS[k], ARGV[9 + n + k - 6]) == 1 then
      redis.call('PUBLISH', ARGV[#ARGV], ARGV[9 + k - 6])
    end
  end
end
return 1
`,
};

/** What a caller asked for, without the parts the engine fills in (id, receivedAt). */
export type UnsubscribeRequest = Omit<Unsubscribe, 'id' | 'receivedAt'>;

/** A stable UUID for (account, Idempotency-Key), so a retried request lands on the same records. */
export function idempotentId(account: string, idempotencyKey: string): string {
  const hex = createHash('sha256').update(`${account}\0${idempotencyKey}`).digest('hex');
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** Independent of key order: the same body sent again with its keys shuffled is the same request. */
function fingerprint(request: UnsubscribeRequest): string {
  return createHash('sha256').update(canonicalJson(request)).digest('hex');
}

/**
 * Accepts an unsubscribe: the ledger entry, the account index and one delivery job per linked
 * connection (for a batched connection, an entry in its batch buffer) go to Redis in ONE MULTI/EXEC,
 * so either all of it is stored or none of it is, and the caller's 201 means every delivery is queued.
 * Job ids are `${unsubscribeId}:${connectionId}`, so a repeated MULTI (an idempotent retry racing the
 * first) queues no job twice.
 */
export class DeliveryProducer {
  constructor(
    private readonly redis: Redis,
    private readonly queues: DeliveryQueues,
    private readonly keys: Keyspace,
    private readonly retention: Retention,
    private readonly clock: () => Date = () => new Date(),
  ) {
    this.batches = new BatchBuffer(redis, keys);
  }
  /** Where a batched connection's deliveries are while they have no job of their own. */
  private readonly batches: BatchBuffer;

  async accept(
    request: UnsubscribeRequest,
    connections: readonly Connection[],
    idempotencyKey?: string,
  ): Promise<AcceptResult> {
    const id = idempotencyKey ? idempotentId(request.account, idempotencyKey) : randomUUID();
    // Not connected: say so now rather than wait for a reconnect the caller cannot see.
    if (this.redis.status !== 'ready') throw new StoreUnavailableError(`Redis is ${this.redis.status}`);
    try {
      if (!idempotencyKey) {
        await this.store(id, request, connections);
        return { outcome: 'accepted', id, deliveries: connections.length };
      }
      const print = fingerprint(request);
      // Claim the key with its body's fingerprint first, atomically: of concurrent requests with
      // one key, exactly one claims it, and the others learn at once whether theirs is the same body.
      const claimed = await this.redis.set(
        this.keys.idempotency(id),
        print,
        'PX',
        this.retention.unsubscribesMs,
        'NX',
        'GET',
      );
      if (claimed === null) {
        await this.store(id, request, connections);
        return { outcome: 'accepted', id, deliveries: connections.length };
      }
      if (claimed !== print) return { outcome: 'conflict', id };
      // The same request again. If the first one never got its transaction through (it crashed, or
      // it is still in flight), store it now: the ledger write and the job ids make this a no-op
      // when it did.
      if ((await this.redis.exists(this.keys.unsubscribe(id))) === 0)
        await this.store(id, request, connections);
      return { outcome: 'replayed', id };
    } catch (error) {
      if (error instanceof StoreUnavailableError) throw error;
      throw new StoreUnavailableError(`Redis is unavailable: ${(error as Error).message}`, true, {
        cause: error,
      });
    }
  }

  /** The ledger entry, the account index and every delivery, in one MULTI/EXEC. */
  private async store(
    id: string,
    request: UnsubscribeRequest,
    connections: readonly Connection[],
  ): Promise<void> {
    const now = this.clock();
    const unsubscribe: Unsubscribe = { ...request, id, receivedAt: now.toISOString() };
    // The request's fingerprint is not in the ledger entry: it lives only in the Idempotency-Key
    // claim, the one place it is compared.
    const record: LedgerRecord = { unsubscribe, connections: connections.map((c) => c.id) };
    // Jobs for several connections' queues go into one MULTI on the transactions client.
    const multi = (await this.queues.transactions({ [RECORD_COMMAND]: RECORD_SCRIPT })).multi();
    const nowMs = now.getTime();
    // Fresh deliveries wait in their connections' batch buffers, to travel many to a BullMQ job.
    multi.runCommand(RECORD_COMMAND, [
      6 + connections.length,
      this.keys.unsubscribe(id),
      this.keys.accountUnsubscribes(request.account),
      emailUnsubscribesKey(this.keys, request.account, request.email),
      accountsKey(this.keys),
      campaignsKey(this.keys, request.account),
      this.keys.deliveryQueues,
      ...connections.map((c) => this.keys.batchBuffer(c.id)),
      ledgerValue(record),
      this.retention.unsubscribesMs,
      nowMs,
      nowMs - this.retention.unsubscribesMs,
      id,
      request.account,
      request.campaign ?? '',
      request.campaign ? seenCampaignValue(now) : '',
      connections.length,
      ...connections.map((c) => c.id),
      ...connections.map((c) => deliveryId(id, c.id)),
      this.keys.deliveriesWaiting,
    ]);
    const results = await multi.exec();
    if (results === null) throw new StoreUnavailableError('Redis aborted the transaction');
    const failed = results.find(([error]) => error !== null);
    // MULTI does not roll back: commands before the failing one may have applied.
    if (failed) throw new StoreUnavailableError(`Redis refused the unsubscribe: ${failed[0]!.message}`, true);
  }

  /**
   * Queues one delivery of an already stored unsubscribe (campaign backfill, issue 5; a backlog
   * moved to another connection, issue 6) with the same job id and options as `accept`: returns
   * false when that delivery already exists, as a job or in a batch (nothing queued twice). The ledger entry is kept at
   * least RETENTION_FAILED from now, since the new delivery refers to it however late in its life it
   * comes.
   */
  async enqueueExisting(unsubscribeId: string, connection: Connection): Promise<boolean> {
    const id = deliveryId(unsubscribeId, connection.id);
    if (await this.queues.for(connection.id).getJob(id)) return false;
    if (await this.batches.holds(id)) return false;
    await this.addDeliveryJob(id, connection, {});
    return true;
  }

  /**
   * Gives a delivery that travelled in a batch job a job of its own: to retry after `delayMs`,
   * split into smaller batches, or kept as failed for replay (`failedAs`). Adding it again (a batch
   * job run twice after a crash) queues nothing twice: the id is the delivery's.
   */
  async handOver(
    deliveryIdOf: string,
    connection: Connection,
    data: DeliveryJob,
    delayMs = 0,
  ): Promise<void> {
    await this.addDeliveryJob(deliveryIdOf, connection, data, delayMs);
  }

  private async addDeliveryJob(
    id: string,
    connection: Connection,
    data: DeliveryJob,
    delayMs = 0,
  ): Promise<void> {
    const { unsubscribeId } = partsOfDeliveryId(id);
    // Added like `store` does (Job.addJob), which takes our `<unsubscribe>:<connection>` ids.
    const multi = (await this.queues.transactions()).multi();
    multi.runCommand('sadd', [this.keys.deliveryQueues, connection.id]);
    multi.runCommand('pexpire', [this.keys.unsubscribe(unsubscribeId), this.retention.failedMs, 'GT']);
    const options = {
      ...deliveryJobOptions(connection),
      ...(delayMs > 0 ? { delay: Math.ceil(delayMs) } : {}),
    };
    await new Job(this.queues.for(connection.id), connection.id, data, options, id).addJob(multi);
    const results = await multi.exec();
    const failed = results?.find(([error]) => error !== null);
    if (!results || failed)
      throw new StoreUnavailableError(
        `Redis refused the delivery: ${failed?.[0]?.message ?? 'aborted'}`,
        true,
      );
  }
}

/**
 * A delivery job's options: only what differs per connection. How long finished jobs are kept is
 * the workers' setting (DeliveryWorkers), not the job's: with these two options and the ledger
 * reference as data, every value of a queued job's hash is under Redis' 64-byte listpack limit, and
 * the hash takes a third of the memory (docs/performance.md, "Memory").
 */
export function deliveryJobOptions(connection: Connection) {
  return {
    // The whole budget even for a delivery a batch job handed over: the processor counts the
    // batch's attempt (priorAttempts) and gives up first, and a replay starts the budget afresh.
    attempts: connection.retry.attempts,
    // The delay is computed by the worker (retry policy + Retry-After) and carried on the error.
    backoff: { type: 'connection' },
  };
}
