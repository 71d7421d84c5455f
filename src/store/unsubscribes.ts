import type { Redis } from 'ioredis';
import { deliveryId, isDelivered, type Attempt, type DeliveryStatus } from '../domain/delivery.js';
import { emailKey, type Unsubscribe } from '../domain/unsubscribe.js';
import { InputError, NotFoundError } from '../errors.js';
import type { DeliveryQueues } from '../queue/queues.js';
import type { AttemptStore } from './attempt-store.js';
import type { Keyspace } from './keys.js';
import type { BatchBuffer } from './batch-buffer.js';
import { LedgerRecords, type LedgerRecord } from './ledger.js';

/**
 * Per (account, email) index of unsubscribe ids scored by receivedAt ms, written by the producer in
 * the same MULTI as the ledger entry. A sorted set per email (not one hash per account) so each one
 * can carry its own PEXPIRE: Redis 7.0 has no per-field expiry, and this keeps the index bounded by
 * RETENTION_UNSUBSCRIBES without a sweeper. Emails are lowercased (lookups are case-insensitive).
 */
export function emailUnsubscribesKey(keys: Keyspace, account: string, email: string): string {
  return keys.emailUnsubscribes(account, email);
}

/** A delivery's status as seen from its unsubscribe: `expired` once its job was removed by retention. */
export type LedgerDeliveryStatus = DeliveryStatus | 'expired';

export interface UnsubscribeDelivery {
  id: string;
  connectionId: string;
  status: LedgerDeliveryStatus;
}

export interface UnsubscribeView extends Unsubscribe {
  deliveries: UnsubscribeDelivery[];
}

export interface UnsubscribeFilter {
  email?: string;
  campaign?: string;
  since?: Date;
  until?: Date;
  limit?: number;
  /** Opaque: the `nextCursor` of the previous page. */
  cursor?: string;
}

export interface UnsubscribePage {
  unsubscribes: UnsubscribeView[];
  nextCursor?: string;
}

export interface Suppression {
  suppressed: boolean;
  since?: string;
  unsubscribeIds: string[];
}

/** One row of the audit export: one unsubscribe × one connection. */
export interface AuditRow {
  unsubscribeId: string;
  email: string;
  campaign: string;
  receivedAt: string;
  connectionId: string;
  status: LedgerDeliveryStatus;
  /** When the CRM answered the successful attempt (its start + duration); empty if none. */
  acknowledgedAt: string;
  attempts: number;
  lastErrorCode: string;
}

interface Entry {
  id: string;
  score: number;
}

/** Index entries read per round trip while filtering, and the most one request will examine. */
const BATCH = 200;
const MAX_SCANNED = 20_000;
/** The audit export's cap on unsubscribes (× connections rows). */
const MAX_AUDIT = 10_000;

const STATE_STATUS: Record<string, LedgerDeliveryStatus> = {
  waiting: 'pending',
  active: 'pending',
  prioritized: 'pending',
  'waiting-children': 'pending',
  delayed: 'retrying',
  completed: 'succeeded',
  failed: 'failed',
  unknown: 'expired',
};

/**
 * The read side of the ledger (`unsub:<id>` records, the per-account index sorted by receivedAt and
 * the per-email index): the Unsubscribes view, the suppression lookup and the audit export.
 */
export class UnsubscribeLedger {
  constructor(
    private readonly redis: Redis,
    private readonly queues: DeliveryQueues,
    private readonly keys: Keyspace,
    private readonly attempts: AttemptStore,
    private readonly buffer: BatchBuffer,
  ) {
    this.records = new LedgerRecords(redis, keys);
  }
  private readonly records: LedgerRecords;

  /** Newest first. The cursor is `<score>:<id>` of the last item returned; pages never repeat or skip. */
  async list(account: string, filter: UnsubscribeFilter = {}): Promise<UnsubscribePage> {
    const limit = filter.limit ?? 50;
    const records: LedgerRecord[] = [];
    let last: Entry | undefined;
    let more = false;
    for await (const { entry, record } of this.scan(account, filter)) {
      if (records.length === limit) {
        more = true;
        break;
      }
      records.push(record);
      last = entry;
    }
    const views = await this.withStatuses(records);
    return { unsubscribes: views, ...(more && last ? { nextCursor: `${last.score}:${last.id}` } : {}) };
  }

  async get(account: string, id: string): Promise<UnsubscribeView> {
    const record = await this.records.get(id);
    if (!record || record.unsubscribe.account !== account)
      throw new NotFoundError(`no unsubscribe ${id} for account ${account} (it may have expired)`);
    return (await this.withStatuses([record]))[0]!;
  }

  /** Is this email unsubscribed for this account, since when, and by which unsubscribes (oldest first)? */
  async suppression(account: string, email: string): Promise<Suppression> {
    const raw = await this.redis.zrange(emailUnsubscribesKey(this.keys, account, email), 0, -1, 'WITHSCORES');
    const ids: string[] = [];
    let first: number | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      ids.push(raw[i]!);
      first ??= Number(raw[i + 1]);
    }
    if (first === undefined) return { suppressed: false, unsubscribeIds: [] };
    return { suppressed: true, since: new Date(first).toISOString(), unsubscribeIds: ids };
  }

  /** For an email or a time range: one row per unsubscribe × connection, newest unsubscribe first. */
  async audit(
    account: string,
    filter: Pick<UnsubscribeFilter, 'email' | 'since' | 'until'>,
  ): Promise<AuditRow[]> {
    if (!filter.email && !filter.since)
      throw new InputError('give an email, or a time range (since, and optionally until)', {
        email: 'give email=... or since=...',
      });
    const records: LedgerRecord[] = [];
    for await (const { record } of this.scan(account, filter)) {
      if (records.length >= MAX_AUDIT)
        throw new InputError(`more than ${MAX_AUDIT} unsubscribes match: narrow the time range`, {
          since: 'narrow the time range',
        });
      records.push(record);
    }
    const pairs = records.flatMap((r) => r.connections.map((c) => ({ record: r, connectionId: c })));
    const ids = pairs.map((p) => deliveryId(p.record.unsubscribe.id, p.connectionId));
    const [states, attempts] = await Promise.all([
      this.states(ids),
      Promise.all(ids.map((id) => this.attempts.list(id))),
    ]);
    return pairs.map(({ record, connectionId }, i) => {
      const u = record.unsubscribe;
      const kept = attempts[i]!;
      return {
        unsubscribeId: u.id,
        email: u.email,
        campaign: u.campaign ?? '',
        receivedAt: u.receivedAt,
        connectionId,
        status: states[i]!,
        acknowledgedAt: acknowledgedAt(kept),
        attempts: kept.length,
        lastErrorCode: kept.findLast((a) => a.errorCode)?.errorCode ?? '',
      };
    });
  }

  /** Index entries newest first, with their ledger records, filtered; resumes after `filter.cursor`. */
  private async *scan(
    account: string,
    filter: UnsubscribeFilter,
  ): AsyncGenerator<{ entry: Entry; record: LedgerRecord }> {
    const key = filter.email
      ? emailUnsubscribesKey(this.keys, account, filter.email)
      : this.keys.accountUnsubscribes(account);
    const min = filter.since ? filter.since.getTime() : '-inf';
    let max: number | string = filter.until ? filter.until.getTime() : '+inf';
    let after: Entry | undefined;
    if (filter.cursor) {
      after = parseCursor(filter.cursor);
      if (typeof max === 'string' || after.score < max) max = after.score;
    }
    const email = filter.email === undefined ? undefined : emailKey(filter.email);
    let offset = 0;
    for (let scanned = 0; scanned < MAX_SCANNED;) {
      const raw = await this.redis.zrevrangebyscore(key, max, min, 'WITHSCORES', 'LIMIT', offset, BATCH);
      const entries: Entry[] = [];
      for (let i = 0; i < raw.length; i += 2) entries.push({ id: raw[i]!, score: Number(raw[i + 1]) });
      if (entries.length === 0) return;
      offset += entries.length;
      scanned += entries.length;
      // Equal scores come back in reverse id order, so "after the cursor" is score < s, or score = s and id < id.
      const fresh = after
        ? entries.filter((e) => e.score < after.score || (e.score === after.score && e.id < after.id))
        : entries;
      if (fresh.length === 0) continue;
      const records = await this.records.getMany(fresh.map((e) => e.id));
      for (let i = 0; i < fresh.length; i++) {
        const record = records[i];
        // The ledger entry expires on its own; the index is trimmed on the next write.
        if (!record) continue;
        const u = record.unsubscribe;
        if (u.account !== account) continue;
        if (email && emailKey(u.email) !== email) continue;
        if (filter.campaign !== undefined && u.campaign !== filter.campaign) continue;
        yield { entry: fresh[i]!, record };
      }
      if (entries.length < BATCH) return;
    }
  }

  private async withStatuses(records: LedgerRecord[]): Promise<UnsubscribeView[]> {
    const ids = records.flatMap((r) => r.connections.map((c) => deliveryId(r.unsubscribe.id, c)));
    const states = await this.states(ids);
    let i = 0;
    return records.map((r) => ({
      ...r.unsubscribe,
      deliveries: r.connections.map((connectionId) => {
        const id = deliveryId(r.unsubscribe.id, connectionId);
        return { id, connectionId, status: states[i++]! };
      }),
    }));
  }

  /** Job states, all requests issued at once (ioredis sends them back to back on one connection). */
  private async states(ids: string[]): Promise<LedgerDeliveryStatus[]> {
    const states = await Promise.all(ids.map((id) => this.queues.ofDelivery(id).getJobState(id)));
    return Promise.all(
      states.map((state, i) =>
        state === 'unknown' ? this.withoutJob(ids[i]!) : (STATE_STATUS[state] ?? 'pending'),
      ),
    );
  }

  /**
   * A delivery with no job: a batched connection's waits in its buffer or travels in a batch job,
   * and one delivered there has only its attempts (issue 7); otherwise its job has expired.
   */
  private async withoutJob(id: string): Promise<LedgerDeliveryStatus> {
    const [last] = await this.attempts.lastOf([id]);
    if (isDelivered(last?.verdict)) return 'succeeded';
    return (await this.buffer.locate(id)) ? 'pending' : 'expired';
  }
}

function acknowledgedAt(attempts: Attempt[]): string {
  const success = attempts.findLast((a) => isDelivered(a.verdict));
  if (!success) return '';
  return new Date(new Date(success.startedAt).getTime() + Math.round(success.durationMs)).toISOString();
}

function parseCursor(cursor: string): Entry {
  const match = /^(\d+):(.+)$/.exec(cursor);
  if (!match)
    throw new InputError('bad cursor: pass the nextCursor of the previous page', { cursor: 'invalid' });
  return { score: Number(match[1]), id: match[2]! };
}

const CSV_COLUMNS: Array<keyof AuditRow> = [
  'unsubscribeId',
  'email',
  'campaign',
  'receivedAt',
  'connectionId',
  'status',
  'acknowledgedAt',
  'attempts',
  'lastErrorCode',
];

/** RFC 4180: CRLF line ends, a header row, fields with `"`, `,`, CR or LF quoted and `"` doubled. */
export function auditCsv(rows: readonly AuditRow[]): string {
  const cell = (value: string | number) => {
    const text = String(value);
    return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  return [CSV_COLUMNS.join(','), ...rows.map((row) => CSV_COLUMNS.map((c) => cell(row[c])).join(','))]
    .map((line) => `${line}\r\n`)
    .join('');
}
