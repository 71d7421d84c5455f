import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { StoredConnection } from '../config/connection-schema.js';
import type { ConnectionStore } from './connection-store.js';
import { coalesced } from './coalesced.js';
import type { Keyspace } from './keys.js';

/**
 * The ingest side's in-memory view of which connections each account has, so the fan-out costs no
 * Redis round trip. It reloads when the store announces a change (pub/sub) and, because pub/sub
 * messages are lost while a subscriber reconnects, also on a timer.
 */
export class ConnectionIndex {
  private byAccount = new Map<string, StoredConnection[]>();
  private loaded = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** One reload at a time; a change announced during one gets another after it. */
  private readonly reloads = coalesced(
    () => this.reload(),
    (error) => this.logger.warn({ err: error }, 'connection index reload failed; keeping the last one'),
    () => this.stopped,
  );

  constructor(
    private readonly store: ConnectionStore,
    private readonly subscriber: Redis,
    private readonly keys: Keyspace,
    private readonly logger: Logger,
    private readonly refreshMs = 10_000,
  ) {}

  async start(): Promise<void> {
    this.subscriber.on('message', (channel: string) => {
      if (channel === this.keys.connectionsChanged) this.reloads.request();
    });
    await this.subscriber.subscribe(this.keys.connectionsChanged);
    await this.reload();
    this.timer = setInterval(() => this.reloads.request(), this.refreshMs);
    this.timer.unref();
  }

  get isLoaded(): boolean {
    return this.loaded;
  }

  /** Enabled connections of `account` linked to `campaign` (or to every campaign, "*"). */
  linked(account: string, campaign: string | undefined): StoredConnection[] {
    return (this.byAccount.get(account) ?? []).filter(
      ({ connection }) =>
        connection.enabled &&
        (connection.campaigns === '*' || (campaign !== undefined && connection.campaigns.includes(campaign))),
    );
  }

  async reload(): Promise<void> {
    const all = await this.store.list();
    const next = new Map<string, StoredConnection[]>();
    for (const stored of all) {
      const list = next.get(stored.connection.account) ?? [];
      list.push(stored);
      next.set(stored.connection.account, list);
    }
    this.byAccount = next;
    this.loaded = true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.reloads.running();
    await this.subscriber.quit().catch(() => undefined);
  }
}
