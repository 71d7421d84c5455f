import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { StartupError } from '../errors.js';
import type { Keyspace } from '../store/keys.js';
import { describeError, parseEntry } from './event-log.js';
import type { OperationalEvent } from './operational-event.js';
import { WebhookPoster } from './webhook-post.js';

export interface EventWebhookRelayOptions {
  /**
   * The relay's own connection (ioredis with `maxRetriesPerRequest: null` and no `commandTimeout`):
   * it blocks on it in XREADGROUP, and `stop()` disconnects it.
   */
  connection: Redis;
  keys: Pick<Keyspace, 'events'>;
  /** `EVENTS_WEBHOOK_URL`. Only its host is ever logged. */
  url: string;
  /** `EVENTS_WEBHOOK_SECRET`: when set, each POST carries Standard Webhooks signature headers. */
  secret?: string;
  logger: Logger;
  /** undici dispatcher for the POSTs. Default: the relay's own Agent (5 s connect timeout). */
  dispatcher?: Dispatcher;
  /** Consumer name in the group; unique per process. Default `<hostname>:<pid>:<random>`. */
  consumer?: string;
  /** Consumer group: one per install, so each event is delivered once however many processes run. Default `webhook`. */
  group?: string;
  /** How long one XREADGROUP waits for new events. Default 5 s. */
  blockMs?: number;
  /** An entry pending this long without its consumer touching it is taken over (XAUTOCLAIM). Default 60 s. */
  minIdleMs?: number;
  /** How often to look for such entries. Default `minIdleMs / 2`. */
  claimEveryMs?: number;
  /** First retry delay after a failed POST; it doubles on each failure. Default 1 s. */
  retryDelayMs?: number;
  /** Longest retry delay. Default 5 min. */
  maxRetryDelayMs?: number;
  /** On stop, how long a POST in flight may finish (and be acknowledged) before it is aborted. Default 5 s. */
  stopGraceMs?: number;
  clock?: () => number;
}

/** One entry this consumer holds: read or claimed, not yet acknowledged. */
interface Held {
  id: string;
  /** Undefined when the entry is not a valid event (nothing to send). */
  event?: OperationalEvent;
  attempts: number;
  dueAt: number;
  /** The webhook answered 2xx; only the XACK is left. */
  delivered: boolean;
}

const BATCH = 10;
const MAX_REDIS_RETRY_MS = 30_000;
/** Consumers with nothing pending and silent this long are removed from the group (dead processes). */
const CONSUMER_MAX_IDLE_MS = 86_400_000;

/** 1 if `consumer` still holds entry `id` (and it still exists), resetting its idle time; 0 otherwise. */
const OWN_SCRIPT = `
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
return #redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
`;

/** Removes other consumers that hold nothing and have been idle for ARGV[3] ms; atomic, so none loses an entry. */
const PRUNE_SCRIPT = `
local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['name'] ~= ARGV[2] and info['pending'] == 0 and info['idle'] > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
`;

type StreamEntries = Array<[string, string[] | null]>;

/**
 * Delivers every operational event in the stream to `EVENTS_WEBHOOK_URL`, once per install: all
 * engine processes share one consumer group, so each entry goes to one of them. An entry is
 * acknowledged (XACK) after a 2xx answer; otherwise it stays pending and this consumer retries it
 * (1 s doubling to 5 min), touching it meanwhile so no one else takes it. Entries a dead process
 * held are taken over by XAUTOCLAIM once idle for `minIdleMs`. Receivers should still deduplicate
 * on `webhook-id` (the event id): a process that stalls past `minIdleMs` mid-POST can cause a repeat.
 */
export class EventWebhookRelay {
  private readonly connection: Redis;
  private readonly key: string;
  private readonly poster: WebhookPoster;
  private readonly logger: Logger;
  readonly consumer: string;
  readonly group: string;
  private readonly blockMs: number;
  private readonly minIdleMs: number;
  private readonly claimEveryMs: number;
  private readonly touchEveryMs: number;
  private readonly retryDelayMs: number;
  private readonly maxRetryDelayMs: number;
  private readonly stopGraceMs: number;
  private readonly clock: () => number;

  private readonly backlog: Held[] = [];
  private loop: Promise<void> | undefined;
  private stopping = false;
  private reading = false;
  private groupMissing = false;
  private wake: (() => void) | undefined;
  private inflight: AbortController | undefined;
  private nextClaimAt = 0;
  private claimCursor = '0-0';

  constructor(options: EventWebhookRelayOptions) {
    const { commandTimeout } = options.connection.options;
    if (commandTimeout !== undefined && commandTimeout <= (options.blockMs ?? 5_000)) {
      throw new StartupError(
        'the events webhook relay needs its own Redis connection without a command timeout (a "worker" client): it blocks on it',
      );
    }
    this.poster = new WebhookPoster({
      url: options.url,
      ...(options.secret !== undefined ? { secret: options.secret } : {}),
      ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
      ...(options.clock ? { clock: options.clock } : {}),
    });
    this.connection = options.connection;
    this.key = options.keys.events;
    this.logger = options.logger;
    this.consumer = options.consumer ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.group = options.group ?? 'webhook';
    this.blockMs = options.blockMs ?? 5_000;
    this.minIdleMs = options.minIdleMs ?? 60_000;
    this.claimEveryMs = options.claimEveryMs ?? Math.ceil(this.minIdleMs / 2);
    this.touchEveryMs = Math.max(Math.floor(this.minIdleMs / 3), 1);
    this.retryDelayMs = options.retryDelayMs ?? 1_000;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 300_000;
    this.stopGraceMs = options.stopGraceMs ?? 5_000;
    this.clock = options.clock ?? Date.now;
  }

  /**
   * Creates the consumer group on first start (at `$`: events logged before the webhook was ever
   * configured are not sent), then relays in the background until `stop()`.
   */
  async start(): Promise<void> {
    if (this.loop || this.stopping) return;
    await this.ensureGroup();
    if (this.stopping) return;
    this.loop = this.run();
    this.logger.info(
      { target: this.poster.target, group: this.group, consumer: this.consumer, signed: this.poster.signed },
      `operational events are relayed to the webhook at ${this.poster.target}`,
    );
  }

  /**
   * Ends the blocking read at once (disconnects the relay's connection), lets a POST in flight
   * finish for up to `stopGraceMs`, then aborts it (the entry stays pending for another consumer).
   */
  async stop(): Promise<void> {
    if (this.stopping) {
      await this.loop;
      return;
    }
    this.stopping = true;
    this.wake?.();
    if (this.reading || !this.loop) this.connection.disconnect();
    if (this.loop && !(await settlesWithin(this.loop, this.stopGraceMs))) {
      this.inflight?.abort();
      this.connection.disconnect();
      await this.loop;
    }
    this.connection.disconnect();
    await this.poster.close();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      try {
        await this.step();
        failures = 0;
      } catch (error) {
        if (this.stopping) break;
        if (describeError(error).message?.startsWith('NOGROUP')) this.groupMissing = true;
        failures += 1;
        const delay = Math.min(this.retryDelayMs * 2 ** (failures - 1), MAX_REDIS_RETRY_MS);
        this.logger.warn(
          { err: describeError(error), retryInMs: delay },
          'event webhook relay: a Redis command failed; retrying',
        );
        await this.sleep(delay);
      }
    }
  }

  /** One bounded piece of work: an attempt (or a wait) for the oldest held entry, a claim, or a read. */
  private async step(): Promise<void> {
    if (this.groupMissing) {
      // The stream was deleted (Redis flushed): start again from what comes next.
      this.backlog.length = 0;
      await this.ensureGroup();
      this.groupMissing = false;
    }
    const head = this.backlog[0];
    if (head) return this.attempt(head);
    if (this.clock() >= this.nextClaimAt) {
      this.nextClaimAt = this.clock() + this.claimEveryMs;
      if (await this.claimAbandoned()) return;
    }
    await this.readNew();
  }

  private async attempt(head: Held): Promise<void> {
    const wait = head.dueAt - this.clock();
    if (wait > 0) {
      await this.sleep(Math.min(wait, this.touchEveryMs));
      // Still waiting: touch the entry so no other consumer takes over one we are retrying.
      if (!this.stopping && head.dueAt > this.clock() && !(await this.own(head))) this.drop(head);
      return;
    }
    if (head.delivered) return this.ack(head);
    if (!(await this.own(head))) return this.drop(head);
    if (!head.event) {
      this.logger.warn(
        { eventId: head.id },
        'event log entry is not a valid event; acknowledged without sending',
      );
      return this.ack(head);
    }
    if (this.stopping) return;
    const inflight = new AbortController();
    this.inflight = inflight;
    const outcome = await this.poster.post(head.event, inflight.signal).finally(() => {
      this.inflight = undefined;
    });
    if (outcome.ok) {
      head.delivered = true;
      this.logger.debug(
        { eventId: head.id, eventType: head.event.type, status: outcome.status, attempt: head.attempts + 1 },
        'operational event delivered to the webhook',
      );
      return this.ack(head);
    }
    if (this.stopping && outcome.aborted) return; // left pending for whoever runs next
    head.attempts += 1;
    const delay = Math.min(this.retryDelayMs * 2 ** (head.attempts - 1), this.maxRetryDelayMs);
    head.dueAt = this.clock() + delay;
    this.logger.warn(
      {
        eventId: head.id,
        eventType: head.event.type,
        connectionId: head.event.connectionId,
        target: this.poster.target,
        attempt: head.attempts,
        ...(outcome.status !== undefined ? { status: outcome.status } : { errorCode: outcome.code }),
        retryInMs: delay,
      },
      'operational event not accepted by the webhook; it will be sent again',
    );
  }

  private async ack(head: Held): Promise<void> {
    await this.connection.xack(this.key, this.group, head.id);
    this.backlog.shift();
  }

  /** The entry was acknowledged or taken over by another consumer, or trimmed from the stream. */
  private drop(head: Held): void {
    this.logger.debug({ eventId: head.id }, 'event entry no longer held by this consumer');
    this.backlog.shift();
  }

  private async own(head: Held): Promise<boolean> {
    const held = await this.connection.eval(OWN_SCRIPT, 1, this.key, this.group, head.id, this.consumer);
    return held === 1;
  }

  private async claimAbandoned(): Promise<boolean> {
    const [cursor, entries] = (await this.connection.xautoclaim(
      this.key,
      this.group,
      this.consumer,
      this.minIdleMs,
      this.claimCursor,
      'COUNT',
      BATCH,
    )) as [string, StreamEntries, string[]?];
    this.claimCursor = cursor;
    for (const [id, fields] of entries) this.hold(id, fields);
    if (entries.length > 0) {
      this.logger.info(
        { count: entries.length, consumer: this.consumer },
        'event webhook relay: took over events left pending by a stopped process',
      );
    }
    if (cursor === '0-0') {
      const removed = await this.connection.eval(
        PRUNE_SCRIPT,
        1,
        this.key,
        this.group,
        this.consumer,
        CONSUMER_MAX_IDLE_MS,
      );
      if (removed) this.logger.debug({ removed }, 'event webhook relay: removed idle consumers');
    }
    return entries.length > 0;
  }

  private async readNew(): Promise<void> {
    if (this.stopping) return;
    // No await between the check above and sending the command: stop() sees `reading` and disconnects.
    this.reading = true;
    let reply: Array<[string, StreamEntries]> | null;
    try {
      reply = (await this.connection.xreadgroup(
        'GROUP',
        this.group,
        this.consumer,
        'COUNT',
        BATCH,
        'BLOCK',
        this.blockMs,
        'STREAMS',
        this.key,
        '>',
      )) as Array<[string, StreamEntries]> | null;
    } finally {
      this.reading = false;
    }
    for (const [, entries] of reply ?? []) for (const [id, fields] of entries) this.hold(id, fields);
  }

  private hold(id: string, fields: string[] | null): void {
    const event = parseEntry(id, fields);
    this.backlog.push({ id, ...(event ? { event } : {}), attempts: 0, dueAt: 0, delivered: false });
  }

  private async ensureGroup(): Promise<void> {
    try {
      await this.connection.xgroup('CREATE', this.key, this.group, '$', 'MKSTREAM');
      this.logger.info({ group: this.group }, 'event webhook consumer group created');
    } catch (error) {
      if (!describeError(error).message?.startsWith('BUSYGROUP')) throw error;
    }
  }

  /** A timer that `stop()` cuts short. */
  private sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
