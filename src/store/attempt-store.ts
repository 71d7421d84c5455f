import type { Redis } from 'ioredis';
import { attemptSchema, sharedRequestSchema, type Attempt, type SharedRequest } from '../domain/delivery.js';
import type { Keyspace } from './keys.js';
import { TurnBatch, eachItemCall, forEachItem, type ScriptItem } from './turn-batch.js';

/** Enough history to see a pattern at 3 a.m., bounded so a delivery retried for days cannot grow forever. */
const MAX_ATTEMPTS_KEPT = 100;

// The number comes from a counter bumped in the same script, so it stays right after old attempts
// are trimmed and when a crashed worker's attempt races its successor's. It is spliced in as text
// because cjson would re-encode the record (and turn [] into {}).
/**
 * The Lua that appends one attempt, given where its list key, counter key, record, number of records
 * kept and TTL are in KEYS/ARGV; leaves the attempt's number in `n`. Shared with the settle script
 * (`ConnectionControl.settle`), so a delivery's outcome is one round trip.
 */
export function appendAttemptLua(w: AttemptWriteSlots): string {
  return `
local n = redis.call('INCR', ${w.counter})
redis.call('RPUSH', ${w.list}, '{"number":' .. n .. ',' .. string.sub(${w.record}, 2))
redis.call('LTRIM', ${w.list}, -tonumber(${w.keep}), -1)
redis.call('PEXPIRE', ${w.list}, ${w.ttlMs})
redis.call('PEXPIRE', ${w.counter}, ${w.ttlMs})
`;
}
type AttemptWriteSlots = Record<keyof AttemptWrite, string>;

const APPEND_SCRIPT = `${appendAttemptLua({
  list: 'KEYS[1]',
  counter: 'KEYS[2]',
  record: 'ARGV[1]',
  keep: 'ARGV[2]',
  ttlMs: 'ARGV[3]',
})}
return n
`;

/** One attempt, ready to be written by `appendAttemptLua` (here, or inside another script). */
export interface AttemptWrite {
  list: string;
  counter: string;
  record: string;
  keep: number;
  ttlMs: number;
}

/** The fields a batch's deliveries share, behind a delivery's own fields (`withOwnItem`). */
const SHARED = Symbol('shared attempt fields');

type AttemptTail = Omit<Attempt, keyof AttemptHead | 'number'>;

/**
 * A batched delivery's attempt fields: the shared ones plus its own `$each` item. The store still
 * serialises the shared part once for the whole batch and splices the item in.
 */
export function withOwnItem<T extends AttemptTail>(shared: T, item: string, truncated: boolean): T {
  const own = { ...shared, requestItem: item, ...(truncated ? { requestItemTruncated: true } : {}) };
  Object.defineProperty(own, SHARED, { value: shared, enumerable: false });
  return own;
}

/** Whose attempt a record is: the part each delivery of a batch has of its own. */
export type AttemptHead = Pick<Attempt, 'deliveryId' | 'startedAt' | 'durationMs' | 'connectionVersion'>;

/** Attempt records, one Redis list per delivery, expiring with the delivery's retention. */
// Registered as a command so ioredis sends the script once and EVALSHA after: this runs for every
// attempt, on the delivery hot path, and every append made in one turn of the event loop goes in one
// call (a batch job records up to maxSize at once).
interface WithAppendAttempts {
  urAppendAttempts(numberOfKeys: number, ...keysThenArgs: (string | number)[]): Promise<number[]>;
}

export class AttemptStore {
  private readonly appends: TurnBatch<ScriptItem, number>;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keyspace,
  ) {
    if (!('urAppendAttempts' in redis))
      redis.defineCommand('urAppendAttempts', { lua: forEachItem(APPEND_SCRIPT, 2, 3) });
    const scripted = redis as unknown as WithAppendAttempts;
    this.appends = new TurnBatch(eachItemCall(redis, scripted.urAppendAttempts, 2));
  }

  /** Appends the attempt and returns its number (1-based, counting replays too). */
  async append(attempt: Omit<Attempt, 'number'>, ttlMs: number): Promise<number> {
    return this.write(this.prepare(attempt, ttlMs));
  }

  async write(w: AttemptWrite): Promise<number> {
    return this.appends.call({ keys: [w.list, w.counter], args: [w.record, w.keep, w.ttlMs] });
  }

  /** The attempt as a write, for `write` or for a script that also does other work. */
  prepare(attempt: Omit<Attempt, 'number'>, ttlMs: number): AttemptWrite {
    const list = this.keys.attempts(attempt.deliveryId);
    return { list, counter: `${list}:n`, record: JSON.stringify(attempt), keep: MAX_ATTEMPTS_KEPT, ttlMs };
  }

  /**
   * The same, from whose attempt it is and what it says, kept apart: the deliveries of a batch share
   * one `fields` object (the request, the answer, the verdict), which is serialised once for all.
   */
  prepareFor(head: AttemptHead, fields: AttemptTail, ttlMs: number): AttemptWrite {
    // A delivery's own item, spliced in before the fields its batch shares.
    const shared = (fields as { [SHARED]?: AttemptTail })[SHARED];
    const own = shared
      ? `"requestItem":${JSON.stringify(fields.requestItem)},${fields.requestItemTruncated ? '"requestItemTruncated":true,' : ''}`
      : '';
    const common = shared ?? fields;
    // Only a batched request's fields are shared (by every delivery it carried): those are kept.
    let tail = common.batch ? this.serialised.get(common) : undefined;
    if (tail === undefined) {
      tail = JSON.stringify(common).slice(1);
      if (common.batch) this.serialised.set(common, tail);
    }
    tail = own + tail;
    const list = this.keys.attempts(head.deliveryId);
    // The head written out field by field (what JSON.stringify(head) gives, without walking an
    // object per attempt); `verdict` and `reason` are never absent, so the tail always has a field
    // to splice in.
    const record = `{"deliveryId":${JSON.stringify(head.deliveryId)},"startedAt":${JSON.stringify(head.startedAt)},"durationMs":${JSON.stringify(head.durationMs)},"connectionVersion":${JSON.stringify(head.connectionVersion)},${tail}`;
    return { list, counter: `${list}:n`, record, keep: MAX_ATTEMPTS_KEPT, ttlMs };
  }
  private readonly serialised = new WeakMap<object, string>();

  /** Each delivery's last attempt (undefined where it has none), read together. */
  async lastOf(deliveryIds: readonly string[]): Promise<Array<Attempt | undefined>> {
    const raw = await Promise.all(deliveryIds.map((id) => this.redis.lindex(this.keys.attempts(id), -1)));
    return raw.map((entry) => (entry ? attemptSchema.parse(JSON.parse(entry)) : undefined));
  }

  /** Every kept attempt, oldest first, numbered. */
  async list(deliveryId: string): Promise<Attempt[]> {
    const raw = await this.redis.lrange(this.keys.attempts(deliveryId), 0, -1);
    return raw.map((entry) => attemptSchema.parse(JSON.parse(entry)));
  }

  /**
   * Keeps the request a batch's deliveries shared, once for all of them (each attempt keeps only its
   * own item, and names the request by `batch.id`).
   */
  async keepShared(requestId: string, request: SharedRequest, ttlMs: number): Promise<void> {
    await this.redis.set(this.sharedKey(requestId), JSON.stringify(request), 'PX', Math.max(1, ttlMs));
  }

  /** The shared requests of these batched requests, by id (those still kept). */
  async sharedOf(requestIds: readonly string[]): Promise<Record<string, SharedRequest>> {
    const ids = [...new Set(requestIds)];
    if (ids.length === 0) return {};
    const raw = await this.redis.mget(ids.map((id) => this.sharedKey(id)));
    const found: Record<string, SharedRequest> = {};
    ids.forEach((id, i) => {
      if (raw[i]) found[id] = sharedRequestSchema.parse(JSON.parse(raw[i]));
    });
    return found;
  }

  private sharedKey(requestId: string): string {
    // Under the attempts' own prefix: a request id never looks like a delivery id (`<uuid>:<connection>`).
    return this.keys.attempts(`shared-request:${requestId}`);
  }

  /** Keeps a succeeded delivery's attempts only as long as the succeeded retention. */
  async expire(deliveryId: string, ttlMs: number): Promise<void> {
    const key = this.keys.attempts(deliveryId);
    await this.redis.multi().pexpire(key, ttlMs).pexpire(`${key}:n`, ttlMs).exec();
  }
}
