import type { Redis } from 'ioredis';
import type { Connection } from '../config/connection-schema.js';
import type { Unsubscribe } from '../domain/unsubscribe.js';
import type { Keyspace } from './keys.js';
import { LedgerRecords } from './ledger.js';

/**
 * Accounts and their campaigns (issue 5). A campaign is registered by the admin API/CLI, or seen on
 * an incoming unsubscribe (the producer adds it in the same MULTI that stores the unsubscribe).
 * Keys: `<prefix>:accounts` (set of account ids) and `<prefix>:account:<account>:campaigns`
 * (hash campaign id → JSON {name?, registeredAt, via}).
 */
export const accountsKey = (keys: Keyspace) => keys.accounts;
export const campaignsKey = (keys: Keyspace, account: string) => keys.accountCampaigns(account);

export interface Campaign {
  id: string;
  name?: string;
  registeredAt: string;
  /** `api` when registered by an operator, `unsubscribe` when first seen on an incoming unsubscribe. */
  via: 'api' | 'unsubscribe';
}

/** The HSETNX value the producer writes for a campaign first seen on an unsubscribe. */
export function seenCampaignValue(at: Date): string {
  return JSON.stringify({ registeredAt: at.toISOString(), via: 'unsubscribe' });
}

/** Does `connection` link `campaign`? (`*` links every campaign.) */
export function links(connection: Connection, campaign: string): boolean {
  return connection.campaigns === '*' || connection.campaigns.includes(campaign);
}

export class CampaignStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keyspace,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /** Registers (or renames) a campaign of an account; returns it and whether it is new. */
  async register(
    account: string,
    id: string,
    name?: string,
  ): Promise<{ campaign: Campaign; created: boolean }> {
    const key = campaignsKey(this.keys, account);
    const existing = await this.redis.hget(key, id);
    const previous = existing ? (JSON.parse(existing) as Omit<Campaign, 'id'>) : undefined;
    const campaign: Campaign = {
      id,
      ...(name ? { name } : previous?.name ? { name: previous.name } : {}),
      registeredAt: previous?.registeredAt ?? this.clock().toISOString(),
      via: previous?.via ?? 'api',
    };
    const { id: _id, ...value } = campaign;
    await this.redis
      .multi()
      .sadd(accountsKey(this.keys), account)
      .hset(key, id, JSON.stringify(value))
      .exec();
    return { campaign, created: !previous };
  }

  async accounts(): Promise<string[]> {
    return (await this.redis.smembers(accountsKey(this.keys))).sort();
  }

  async campaigns(account: string): Promise<Campaign[]> {
    const all = await this.redis.hgetall(campaignsKey(this.keys, account));
    return Object.entries(all)
      .map(([id, raw]) => ({ id, ...(JSON.parse(raw) as Omit<Campaign, 'id'>) }))
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  async addAccount(account: string): Promise<void> {
    await this.redis.sadd(accountsKey(this.keys), account);
  }
}

/** The unsubscribes of `account` for `campaign` still in the ledger (campaign backfill), oldest first. */
export async function ledgerUnsubscribes(
  redis: Redis,
  keys: Keyspace,
  account: string,
  campaign: string,
): Promise<Unsubscribe[]> {
  const ids = await redis.zrange(keys.accountUnsubscribes(account), 0, -1);
  const ledger = new LedgerRecords(redis, keys);
  const found: Unsubscribe[] = [];
  for (let i = 0; i < ids.length; i += 500) {
    for (const record of await ledger.getMany(ids.slice(i, i + 500)))
      if (record?.unsubscribe.campaign === campaign) found.push(record.unsubscribe);
  }
  return found;
}
