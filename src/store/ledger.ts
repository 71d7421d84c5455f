import type { Redis } from 'ioredis';
import { z } from 'zod';
import { unsubscribeSchema } from '../domain/unsubscribe.js';
import type { Keyspace } from './keys.js';

/**
 * The ledger entry (`unsub:<id>`): the unsubscribe and the connections it was fanned out to. It is
 * the one copy of the unsubscribe: delivery jobs carry only its id, so a fan-out to a hundred
 * connections stores the unsubscribe once, and a queued job's hash stays small enough for Redis to
 * keep it as a listpack (docs/performance.md, "Memory").
 */
export const ledgerRecordSchema = z.object({
  unsubscribe: unsubscribeSchema,
  connections: z.array(z.string()).default([]),
});
export type LedgerRecord = z.infer<typeof ledgerRecordSchema>;

/** The stored form: what the producer writes and `parseLedgerRecord` reads. */
export function ledgerValue(record: LedgerRecord): string {
  return JSON.stringify(record);
}

/** A stored value, or undefined when there is none or it is not a ledger record. */
export function parseLedgerRecord(raw: string | null | undefined): LedgerRecord | undefined {
  if (!raw) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const parsed = ledgerRecordSchema.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

/**
 * Reads ledger entries by id, and keeps one alive as long as a delivery still needs it.
 *
 * An entry expires RETENTION_UNSUBSCRIBES after it was accepted, which is longer than a failed
 * delivery is kept (the environment check holds RETENTION_UNSUBSCRIBES ≥ RETENTION_FAILED). A
 * delivery can still come later in the entry's life: retries past the retention, a replay, a
 * backfill or a backlog move. Each of those calls `keepFor`, so the entry lives at least
 * RETENTION_FAILED past the last of them. What it does not cover: a backlog held (its connection
 * disabled or deleted) for longer than RETENTION_UNSUBSCRIBES; its deliveries then fail, visibly,
 * as UNSUBSCRIBE_EXPIRED when they are finally taken.
 */
export class LedgerRecords {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keyspace,
  ) {}

  async get(unsubscribeId: string): Promise<LedgerRecord | undefined> {
    return parseLedgerRecord(await this.redis.get(this.keys.unsubscribe(unsubscribeId)));
  }

  /** In the order asked; undefined where an entry is gone. One MGET. */
  async getMany(unsubscribeIds: readonly string[]): Promise<Array<LedgerRecord | undefined>> {
    if (unsubscribeIds.length === 0) return [];
    const values = await this.redis.mget(unsubscribeIds.map((id) => this.keys.unsubscribe(id)));
    return values.map((value) => parseLedgerRecord(value));
  }

  /** Makes the entry live at least `ms` from now; never shortens it (PEXPIRE GT). */
  async keepFor(unsubscribeId: string, ms: number): Promise<void> {
    await this.redis.pexpire(this.keys.unsubscribe(unsubscribeId), Math.ceil(ms), 'GT');
  }
}
