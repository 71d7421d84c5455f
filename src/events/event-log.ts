import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { InputError } from '../errors.js';
import { logEmail } from '../logging.js';
import type { Keyspace } from '../store/keys.js';
import {
  operationalEventSchema,
  type EventSink,
  type OperationalEvent,
  type OperationalEventInput,
  type OperationalEventType,
} from './operational-event.js';

export interface EventLogOptions {
  /** Entries kept in the stream (approximately: `XADD ... MAXLEN ~`). Default 10,000. */
  maxLen?: number;
  /** The clock for `at`. Default `Date.now`. */
  clock?: () => number;
}

export interface EventQuery {
  connection?: string;
  type?: OperationalEventType;
  /** Logged at or after this time (the stream entry's time, which is Redis's clock). */
  since?: Date;
  /** 1–1,000; default 100. */
  limit?: number;
}

const DEFAULT_MAX_LEN = 10_000;
const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1_000;
/** Entries read per XREVRANGE when filtering. */
const PAGE = 500;
/** A filtered list never reads more than this many entries (twice the default cap). */
const MAX_SCANNED = 2 * DEFAULT_MAX_LEN;

/** Events that call for a look are logged at warn, the rest (recoveries, operator actions) at info. */
const WARN_TYPES = new Set<OperationalEventType>([
  'connection_failing',
  'circuit_opened',
  'rate_limited',
  'delivery_exhausted',
  'deadline_near',
  'connection_conflict',
]);

const inputSchema = operationalEventSchema.omit({ id: true, at: true });

/** Anything shaped like an address; events must carry none, so any that slips in is masked. */
const EMAIL_LIKE = /[^\s@"'<>()[\],;:]+@[^\s@"'<>()[\],;:]+\.[^\s@"'<>()[\],;:]{2,}/gu;
const maskEmails = (text: string) => text.replace(EMAIL_LIKE, (address) => logEmail(address));

/**
 * The durable operational event log: a capped Redis stream (`keys.events`), read newest first by
 * the admin API and the CLI and relayed to `EVENTS_WEBHOOK_URL` by `EventWebhookRelay`. Each event is
 * also logged (warn for trouble, info otherwise), so it is in the process logs even when Redis is not.
 */
export class EventLog implements EventSink {
  private readonly maxLen: number;
  private readonly clock: () => number;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Pick<Keyspace, 'events'>,
    private readonly logger: Logger,
    options: EventLogOptions = {},
  ) {
    this.maxLen = options.maxLen ?? DEFAULT_MAX_LEN;
    this.clock = options.clock ?? Date.now;
  }

  /** Fire-and-forget: never throws, never waits for Redis. A failed write is logged at warn. */
  emit(input: OperationalEventInput): void {
    try {
      const parsed = inputSchema.safeParse(input);
      if (!parsed.success) {
        this.logger.warn(
          {
            eventType: typeof input?.type === 'string' ? input.type : undefined,
            fields: parsed.error.issues.map((issue) => issue.path.join('.') || '(event)'),
          },
          'operational event dropped: it does not match the event schema',
        );
        return;
      }
      const event = {
        ...parsed.data,
        message: maskEmails(parsed.data.message),
        details: Object.fromEntries(
          Object.entries(parsed.data.details).map(([k, v]) => [k, typeof v === 'string' ? maskEmails(v) : v]),
        ),
        at: new Date(this.clock()).toISOString(),
      };
      this.logger[WARN_TYPES.has(event.type) ? 'warn' : 'info'](
        {
          eventType: event.type,
          connectionId: event.connectionId,
          deliveryId: event.deliveryId,
          unsubscribeId: event.unsubscribeId,
          details: event.details,
        },
        `${event.type}: ${event.message}`,
      );
      const fields = ['type', event.type, 'at', event.at, 'connectionId', event.connectionId];
      if (event.deliveryId !== undefined) fields.push('deliveryId', event.deliveryId);
      if (event.unsubscribeId !== undefined) fields.push('unsubscribeId', event.unsubscribeId);
      fields.push('message', event.message, 'details', JSON.stringify(event.details));
      this.redis
        .xadd(this.keys.events, 'MAXLEN', '~', this.maxLen, '*', ...fields)
        .catch((error: unknown) => this.writeFailed(event.type, event.connectionId, error));
    } catch (error) {
      this.writeFailed(input?.type, input?.connectionId, error);
    }
  }

  /** Events newest first, filtered; reads at most `MAX_SCANNED` entries, so a filter that matches little stays cheap. */
  async list(query: EventQuery = {}): Promise<OperationalEvent[]> {
    const limit = Math.min(Math.max(Math.trunc(query.limit ?? DEFAULT_LIMIT), 1), MAX_LIMIT);
    let min = '-';
    if (query.since) {
      const ms = query.since.getTime();
      if (Number.isNaN(ms)) throw new InputError('since is not a valid time', { since: 'not a valid time' });
      min = String(Math.max(ms, 0));
    }
    const filtered = query.connection !== undefined || query.type !== undefined;
    const page = filtered ? PAGE : limit;
    const events: OperationalEvent[] = [];
    let max = '+';
    let scanned = 0;
    let invalid = 0;
    while (events.length < limit && scanned < MAX_SCANNED) {
      const entries = await this.redis.xrevrange(this.keys.events, max, min, 'COUNT', page);
      scanned += entries.length;
      for (const [id, fields] of entries) {
        const event = parseEntry(id, fields);
        if (!event) {
          invalid += 1;
          continue;
        }
        if (query.connection !== undefined && event.connectionId !== query.connection) continue;
        if (query.type !== undefined && event.type !== query.type) continue;
        events.push(event);
        if (events.length === limit) break;
      }
      const last = entries.at(-1);
      if (!last || entries.length < page) break;
      max = `(${last[0]}`;
    }
    if (invalid > 0)
      this.logger.warn({ invalid }, 'event log entries skipped: they do not match the event schema');
    return events;
  }

  private writeFailed(type: unknown, connectionId: unknown, error: unknown): void {
    try {
      this.logger.warn(
        {
          eventType: typeof type === 'string' ? type : undefined,
          connectionId: typeof connectionId === 'string' ? connectionId : undefined,
          // The error's name, code and message only: no stack, no client options (which hold the Redis URL).
          err: describeError(error),
        },
        'operational event not written to the event log',
      );
    } catch {
      // A logger that throws must not reach the delivery path either.
    }
  }
}

/** A stream entry (`[id, [field, value, ...]]`) as a validated event, or undefined if it is not one. */
export function parseEntry(
  id: string,
  fields: readonly string[] | null | undefined,
): OperationalEvent | undefined {
  if (!fields) return undefined;
  const pairs: Array<[string, unknown]> = [];
  for (let i = 0; i + 1 < fields.length; i += 2) pairs.push([fields[i]!, fields[i + 1]]);
  pairs.push(['id', id]); // last, so the stream id always wins
  // fromEntries defines own properties, so no field name can reach a prototype.
  const record: Record<string, unknown> = Object.fromEntries(pairs);
  if (typeof record.details === 'string') {
    try {
      record.details = JSON.parse(record.details) as unknown;
    } catch {
      return undefined;
    }
  }
  const parsed = operationalEventSchema.safeParse(record);
  return parsed.success ? parsed.data : undefined;
}

export function describeError(error: unknown): { name?: string; code?: string; message?: string } {
  if (!(error instanceof Error)) return { message: String(error) };
  const code = (error as { code?: unknown }).code;
  return { name: error.name, ...(typeof code === 'string' ? { code } : {}), message: error.message };
}
