import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { StartupError } from '../errors.js';
import { AttemptStore } from '../store/attempt-store.js';
import { ApiKeyStore } from '../store/api-keys.js';
import { DeliveryRecords } from '../store/delivery-records.js';
import { DELIVERY_QUEUE, keyspace } from '../store/keys.js';
import { createRedis, waitReady } from '../store/redis.js';

export interface RedisOptions {
  redisUrl: string;
  prefix: string;
}

export interface CliContext {
  redis: Redis;
  apiKeys: ApiKeyStore;
  deliveries: DeliveryRecords;
}

/** Opens the stores a CLI command needs against the same Redis (and key prefix) as the engine. */
export async function withContext<T>(
  options: RedisOptions,
  run: (context: CliContext) => Promise<T>,
): Promise<T> {
  const redis = createRedis(options.redisUrl, 'request', 'cli');
  redis.on('error', () => undefined);
  const keys = keyspace(options.prefix);
  const queue = new Queue(DELIVERY_QUEUE, { connection: redis, prefix: keys.bullPrefix });
  try {
    try {
      await waitReady(redis, 5_000);
    } catch {
      throw new StartupError(
        `cannot reach Redis at ${new URL(options.redisUrl).host}: start Redis or pass --redis-url (or set REDIS_URL)`,
      );
    }
    const attempts = new AttemptStore(redis, keys);
    return await run({
      redis,
      apiKeys: new ApiKeyStore(redis, keys),
      deliveries: new DeliveryRecords(queue, attempts),
    });
  } finally {
    await queue.close().catch(() => undefined);
    redis.disconnect();
  }
}
