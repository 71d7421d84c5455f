import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { deleteByPrefix } from '../../src/store/redis.js';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export function benchRedis(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, connectionName: 'unsub-relay:bench' });
}

/** `INFO <section>` as a map of field → value. */
export async function info(redis: Redis, section: string): Promise<Record<string, string>> {
  const text = await redis.info(section);
  const fields: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const at = line.indexOf(':');
    if (at > 0 && !line.startsWith('#')) fields[line.slice(0, at)] = line.slice(at + 1);
  }
  return fields;
}

export async function usedMemory(redis: Redis): Promise<number> {
  return Number((await info(redis, 'memory')).used_memory);
}

/** CPU time Redis has used since it started (user + system), in ms. */
export async function redisCpuMs(redis: Redis): Promise<number> {
  const cpu = await info(redis, 'cpu');
  return (Number(cpu.used_cpu_user) + Number(cpu.used_cpu_sys)) * 1000;
}

/** A run id unique to this invocation, usable in a Redis prefix. */
export function newRunId(): string {
  const stamp = new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14);
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

export { deleteByPrefix };
