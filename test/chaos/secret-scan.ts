import type { Redis } from 'ioredis';

/** The forms a secret may leak in: as is, URL-encoded, base64, base64url and JSON-escaped. */
export function secretForms(value: string): Record<string, string> {
  return {
    raw: value,
    urlencoded: encodeURIComponent(value),
    base64: Buffer.from(value).toString('base64'),
    base64url: Buffer.from(value).toString('base64url'),
    jsonEscaped: value.replace(/\//g, '\\/'),
  };
}

/**
 * Every value under `prefix`, read by type (strings, hashes, lists, sets, sorted sets, streams:
 * BullMQ jobs are hashes, events a stream), as one text per key with the key's name in it.
 */
export async function redisValues(redis: Redis, prefix: string): Promise<Array<[string, string]>> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  const values: Array<[string, string]> = [];
  for (const key of keys) {
    const type = await redis.type(key);
    let value: unknown;
    if (type === 'string') value = await redis.get(key);
    else if (type === 'hash') value = await redis.hgetall(key);
    else if (type === 'list') value = await redis.lrange(key, 0, -1);
    else if (type === 'set') value = await redis.smembers(key);
    else if (type === 'zset') value = await redis.zrange(key, 0, -1, 'WITHSCORES');
    else if (type === 'stream') value = await redis.xrange(key, '-', '+');
    else if (type === 'none') continue;
    else value = `unread type ${type}`;
    // The raw text too: JSON.stringify would escape what a value holds verbatim.
    values.push([key, `${key}\n${flatten(value)}`]);
  }
  return values;
}

function flatten(value: unknown): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map(flatten).join('\n');
  if (value && typeof value === 'object')
    return Object.entries(value)
      .map(([k, v]) => `${k}\n${flatten(v)}`)
      .join('\n');
  return String(value);
}
