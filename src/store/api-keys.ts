import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Keyspace } from './keys.js';

/**
 * Account API keys. A key reads `urk_<id>_<secret>`: the id finds the record in one HGET, and only a
 * sha256 of the secret is stored, compared in constant time. Revoking deletes the record, so the
 * next request with that key is refused (there is no cache to go stale).
 */
const KEY_FORMAT = /^urk_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/;

export const apiKeyRecordSchema = z.object({
  id: z.string(),
  account: z.string(),
  prefix: z.string(),
  hash: z.string(),
  createdAt: z.string(),
  /** Whose systems use the key: the platform's, or the advertiser's own (their unsubscribes are not echoed back). */
  origin: z.enum(['platform', 'advertiser']).default('platform'),
});
export type ApiKeyRecord = z.infer<typeof apiKeyRecordSchema>;
export type ApiKeyInfo = Omit<ApiKeyRecord, 'hash'>;

const sha256 = (value: string) => createHash('sha256').update(value).digest();

export class ApiKeyStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keyspace,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async create(
    account: string,
    origin: ApiKeyRecord['origin'] = 'platform',
  ): Promise<{ info: ApiKeyInfo; key: string }> {
    const id = randomBytes(6).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const record: ApiKeyRecord = {
      id,
      account,
      prefix: `urk_${id}`,
      hash: sha256(secret).toString('hex'),
      createdAt: this.clock().toISOString(),
      origin,
    };
    await this.redis.hset(this.keys.apiKeys, id, JSON.stringify(record));
    const { hash: _hash, ...info } = record;
    return { info, key: `urk_${id}_${secret}` };
  }

  /** The key's account and origin, or undefined for a malformed, unknown or revoked key. */
  async verify(key: string): Promise<Pick<ApiKeyRecord, 'account' | 'origin'> | undefined> {
    const match = KEY_FORMAT.exec(key);
    if (!match) return undefined;
    const raw = await this.redis.hget(this.keys.apiKeys, match[1]!);
    if (raw === null) return undefined;
    const record = apiKeyRecordSchema.parse(JSON.parse(raw));
    const expected = Buffer.from(record.hash, 'hex');
    return timingSafeEqual(sha256(match[2]!), expected)
      ? { account: record.account, origin: record.origin }
      : undefined;
  }

  async list(): Promise<ApiKeyInfo[]> {
    const all = await this.redis.hvals(this.keys.apiKeys);
    return all
      .map((raw) => {
        const { hash: _hash, ...info } = apiKeyRecordSchema.parse(JSON.parse(raw));
        return info;
      })
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** True when a key with that id existed; it stops working immediately. */
  async revoke(id: string): Promise<boolean> {
    return (await this.redis.hdel(this.keys.apiKeys, id)) === 1;
  }
}
