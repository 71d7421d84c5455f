import { keyspace } from './keys.js';
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

export interface ReplayFilter {
  connection?: string;
  campaign?: string;
  status?: 'failed';
  errorCode?: string;
  since?: string;
  until?: string;
}

export type ReplayMode = 'rerender' | 'original';

export interface ReplayRecord {
  id: string;
  /** The operator: the admin caller's `X-Operator` header, else `admin-api`. */
  who: string;
  when: string;
  filter: ReplayFilter;
  mode: ReplayMode;
  perSecond: number;
  /** Deliveries put back on the queue. */
  count: number;
  ids: string[];
}

/** Replays kept in the record (newest first). */
const KEPT = 500;

/**
 * Bulk replays (issue 5): `${prefix}:replays` is a hash id → JSON record, `${prefix}:replays:order`
 * a list of ids, newest first, trimmed to the last 500.
 */
export class ReplayStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async record(fields: Omit<ReplayRecord, 'id'>): Promise<ReplayRecord> {
    const record: ReplayRecord = { id: randomUUID(), ...fields };
    const hash = keyspace(this.prefix).replays;
    const order = keyspace(this.prefix).replaysOrder;
    await this.redis.multi().hset(hash, record.id, JSON.stringify(record)).lpush(order, record.id).exec();
    // Drop the records of ids trimmed off the list.
    const dropped = await this.redis.lrange(order, KEPT, -1);
    if (dropped.length)
      await this.redis
        .multi()
        .ltrim(order, 0, KEPT - 1)
        .hdel(hash, ...dropped)
        .exec();
    return record;
  }

  async list(limit = 100): Promise<ReplayRecord[]> {
    const ids = await this.redis.lrange(keyspace(this.prefix).replaysOrder, 0, limit - 1);
    if (!ids.length) return [];
    const raw = await this.redis.hmget(keyspace(this.prefix).replays, ...ids);
    return raw
      .filter((item): item is string => item !== null)
      .map((item) => JSON.parse(item) as ReplayRecord);
  }
}
