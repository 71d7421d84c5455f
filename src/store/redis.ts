import { Redis } from 'ioredis';
import { StartupError } from '../errors.js';

/**
 * Two kinds of Redis client:
 * - `request`: fails fast (no offline queue, bounded command time) so an API caller gets a 503 at once
 *   when Redis is away, instead of a request that hangs and maybe stores later.
 * - `worker`: BullMQ workers block on Redis and must ride out reconnects, so they retry forever.
 */
export function createRedis(url: string, kind: 'request' | 'worker', name: string): Redis {
  const common = { connectionName: `unsub-relay:${name}`, lazyConnect: false };
  if (kind === 'worker')
    return new Redis(url, { ...common, maxRetriesPerRequest: null, enableReadyCheck: true });
  return new Redis(url, {
    ...common,
    // Every delivery and every accepted unsubscribe makes a few small commands; sent in the same
    // tick they share one socket write instead of a syscall each (the profile's largest single cost).
    enableAutoPipelining: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 5_000,
    retryStrategy: (times) => Math.min(times * 200, 2_000),
  });
}

/** Resolves once the client is ready, or rejects after `timeoutMs` (used at start-up and by the CLI). */
export async function waitReady(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new StartupError(`Redis did not become ready within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off('ready', onReady);
    };
    redis.on('ready', onReady);
  });
}

/** Deletes every key under `prefix:` (tests and `unsub-relay` resets). SCAN, never KEYS. */
export async function deleteByPrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}
