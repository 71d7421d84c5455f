import type { Redis } from 'ioredis';
import { attemptSchema, type Attempt } from '../domain/delivery.js';
import type { Keyspace } from './keys.js';

/** Enough history to see a pattern at 3 a.m., bounded so a delivery retried for days cannot grow forever. */
const MAX_ATTEMPTS_KEPT = 100;

// The number comes from a counter bumped in the same script, so it stays right after old attempts
// are trimmed and when a crashed worker's attempt races its successor's. It is spliced in as text
// because cjson would re-encode the record (and turn [] into {}).
const APPEND_SCRIPT = `
local n = redis.call('INCR', KEYS[2])
redis.call('RPUSH', KEYS[1], '{"number":' .. n .. ',' .. string.sub(ARGV[1], 2))
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return n
`;

/** Attempt records, one Redis list per delivery, expiring with the delivery's retention. */
// Registered as a command so ioredis sends the script once and EVALSHA after: this runs for every
// attempt, on the delivery hot path.
interface WithAppendAttempt {
  urAppendAttempt(key: string, counter: string, record: string, keep: number, ttlMs: number): Promise<number>;
}

export class AttemptStore {
  private readonly scripted: WithAppendAttempt;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keyspace,
  ) {
    if (!('urAppendAttempt' in redis))
      redis.defineCommand('urAppendAttempt', { numberOfKeys: 2, lua: APPEND_SCRIPT });
    this.scripted = redis as unknown as WithAppendAttempt;
  }

  /** Appends the attempt and returns its number (1-based, counting replays too). */
  async append(attempt: Omit<Attempt, 'number'>, ttlMs: number): Promise<number> {
    const key = this.keys.attempts(attempt.deliveryId);
    return this.scripted.urAppendAttempt(key, `${key}:n`, JSON.stringify(attempt), MAX_ATTEMPTS_KEPT, ttlMs);
  }

  /** Every kept attempt, oldest first, numbered. */
  async list(deliveryId: string): Promise<Attempt[]> {
    const raw = await this.redis.lrange(this.keys.attempts(deliveryId), 0, -1);
    return raw.map((entry) => attemptSchema.parse(JSON.parse(entry)));
  }

  /** Keeps a succeeded delivery's attempts only as long as the succeeded retention. */
  async expire(deliveryId: string, ttlMs: number): Promise<void> {
    const key = this.keys.attempts(deliveryId);
    await this.redis.multi().pexpire(key, ttlMs).pexpire(`${key}:n`, ttlMs).exec();
  }
}
