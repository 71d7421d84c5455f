import { keyspace } from './keys.js';
import type { Redis } from 'ioredis';
import type { TestRun } from '../testing/run-test.js';

/** Test runs kept per connection (newest first); older ones fall off. */
export const TEST_RUNS_KEPT = 20;

/**
 * Connection test runs (issue 5): `${prefix}:test-runs:${connectionId}`, a list of JSON records,
 * newest first, trimmed to the last 20. Kept apart from deliveries: a test run is never a job,
 * an attempt or a ledger entry.
 */
export class TestRunStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  private key(connectionId: string): string {
    return keyspace(this.prefix).testRuns(connectionId);
  }

  async add(run: TestRun): Promise<void> {
    await this.redis
      .multi()
      .lpush(this.key(run.connectionId), JSON.stringify(run))
      .ltrim(this.key(run.connectionId), 0, TEST_RUNS_KEPT - 1)
      .exec();
  }

  async list(connectionId: string): Promise<TestRun[]> {
    const raw = await this.redis.lrange(this.key(connectionId), 0, TEST_RUNS_KEPT - 1);
    return raw.map((item) => JSON.parse(item) as TestRun);
  }
}
