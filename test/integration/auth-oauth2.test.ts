import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  oauth2Keys,
  OAuth2Tokens,
  type OAuth2TokensOptions,
  type TokenPolicy,
} from '../../src/auth/oauth2.js';
import type { RenderedRequest } from '../../src/domain/delivery.js';
import { PermanentDeliveryError, RetryableDeliveryError } from '../../src/errors.js';
import { createSender, type SendLimits, type Sender } from '../../src/http/sender.js';
import { deleteByPrefix } from '../../src/store/redis.js';
import { startFakeCrm, type CrmReply, type FakeCrm } from '../helpers/crm-server.js';
import { testRedis, uniquePrefix } from '../helpers/redis.js';

const SECRET = 's3cret-Cl1ent-value';
const limits: SendLimits = {
  timeouts: { connect: 1_000, headers: 1_000, body: 1_000 },
  maxResponseBytes: 65_536,
};
const policy: TokenPolicy = { refreshBeforeMs: 60_000, defaultTtlMs: 3_600_000 };

/** What `renderTokenRequest` produces for a form-encoded, client-credentials-in-body connection. */
function tokenRequest(url: string, secret = SECRET): RenderedRequest {
  return {
    method: 'POST',
    url: `${url}/oauth/token`,
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: `grant_type=client_credentials&client_id=acme&client_secret=${encodeURIComponent(secret)}`,
    secrets: [secret],
  };
}

/** Issues `tok-0`, `tok-1`, ... slowly enough that concurrent callers overlap the fetch. */
const issuing =
  (extra: Record<string, unknown> = { expires_in: 3600 }, delayMs = 100) =>
  (_req: unknown, index: number): CrmReply => ({
    status: 200,
    delayMs,
    body: JSON.stringify({ access_token: `tok-${index}`, token_type: 'Bearer', ...extra }),
  });

let redis: Redis;
let prefix: string;
let sender: Sender;
let server: FakeCrm;
let clients: Redis[] = [];
let seq = 0;
let connectionId: string;

/** Another "worker": its own Redis connection, sharing the key prefix and the sender. */
function worker(opts: OAuth2TokensOptions = {}): OAuth2Tokens {
  const client = testRedis();
  clients.push(client);
  return new OAuth2Tokens(client, prefix, sender, opts);
}

beforeAll(() => {
  redis = testRedis();
  prefix = uniquePrefix('auth-oauth2');
  sender = createSender({ allowPrivateTargets: true });
});

afterAll(async () => {
  await deleteByPrefix(redis, prefix);
  redis.disconnect();
  await sender.close();
});

beforeEach(async () => {
  connectionId = `conn-${seq++}`;
  server = await startFakeCrm(issuing());
});

afterEach(async () => {
  await server.close();
  for (const client of clients) client.disconnect();
  clients = [];
});

describe('OAuth2Tokens: shared cache', () => {
  it('fetches once, caches in Redis with a TTL, and another worker reuses the token', async () => {
    const request = tokenRequest(server.url);
    const first = await worker().get(connectionId, request, policy, limits);
    expect(first.accessToken).toBe('tok-0');
    expect(server.received).toHaveLength(1);
    expect(server.received[0]!.body).toContain('grant_type=client_credentials');

    const keys = oauth2Keys(prefix, connectionId, request);
    expect(keys.token).toMatch(new RegExp(`^${prefix}:oauth2:${connectionId}:[0-9a-f]{64}$`));
    expect(JSON.parse((await redis.get(keys.token))!)).toMatchObject({
      accessToken: 'tok-0',
      expiresAt: first.expiresAt,
    });
    const ttl = await redis.pttl(keys.token);
    expect(ttl).toBeGreaterThan(3_590_000);
    expect(ttl).toBeLessThanOrEqual(3_600_000);
    expect(await redis.exists(keys.lock)).toBe(0);

    const second = await worker().get(connectionId, request, policy, limits);
    expect(second).toEqual(first);
    expect(server.received).toHaveLength(1);
  });

  it('20 concurrent get() across 3 workers make exactly one token request', async () => {
    const workers = [worker(), worker(), worker()];
    const request = tokenRequest(server.url);
    const tokens = await Promise.all(
      Array.from({ length: 20 }, (_, i) => workers[i % 3]!.get(connectionId, request, policy, limits)),
    );
    expect(new Set(tokens.map((t) => t.accessToken))).toEqual(new Set(['tok-0']));
    expect(server.received).toHaveLength(1);
  });

  it('without expires_in the token lives defaultTtl', async () => {
    server.respond(issuing({}));
    const now = 1_700_000_000_000;
    const token = await worker({ clock: () => now }).get(
      connectionId,
      tokenRequest(server.url),
      policy,
      limits,
    );
    expect(token.expiresAt).toBe(now + policy.defaultTtlMs);
  });

  it('a changed client secret does not reuse the cached token', async () => {
    const tokens = worker();
    const old = await tokens.get(connectionId, tokenRequest(server.url), policy, limits);
    const rotated = await tokens.get(
      connectionId,
      tokenRequest(server.url, 'rotated-secret'),
      policy,
      limits,
    );
    expect([old.accessToken, rotated.accessToken]).toEqual(['tok-0', 'tok-1']);
    expect(server.received).toHaveLength(2);
    expect(server.received[1]!.body).toContain('client_secret=rotated-secret');
  });
});

describe('OAuth2Tokens: refresh before expiry', () => {
  it('uses the token until refreshBefore ahead of expiry, then fetches a new one', async () => {
    server.respond(issuing({ expires_in: 2 }, 0));
    let now = 1_700_000_000_000;
    const tokens = worker({ clock: () => now });
    const short: TokenPolicy = { refreshBeforeMs: 1_000, defaultTtlMs: 3_600_000 };
    const request = tokenRequest(server.url);

    expect(await tokens.get(connectionId, request, short, limits)).toEqual({
      accessToken: 'tok-0',
      expiresAt: now + 2_000,
    });
    now += 999;
    expect((await tokens.get(connectionId, request, short, limits)).accessToken).toBe('tok-0');
    expect(server.received).toHaveLength(1);

    now += 1;
    expect((await tokens.get(connectionId, request, short, limits)).accessToken).toBe('tok-1');
    expect(server.received).toHaveLength(2);
  });

  it('while another worker holds the refresh lock, the old token is used until it expires', async () => {
    let now = 1_700_000_000_000;
    const tokens = worker({ clock: () => now });
    const request = tokenRequest(server.url);
    await tokens.get(connectionId, request, policy, limits);
    await redis.set(oauth2Keys(prefix, connectionId, request).lock, 'another-worker', 'PX', 5_000);

    now += 3_600_000 - 30_000; // inside refreshBefore (60 s), not yet expired
    expect((await tokens.get(connectionId, request, policy, limits)).accessToken).toBe('tok-0');
    expect(server.received).toHaveLength(1);
  });

  it('a failed refresh keeps using the current token until it expires', async () => {
    let now = 1_700_000_000_000;
    const tokens = worker({ clock: () => now });
    const request = tokenRequest(server.url);
    await tokens.get(connectionId, request, policy, limits);
    server.respond(() => ({ status: 503, body: '' }));

    now += 3_600_000 - 30_000;
    expect((await tokens.get(connectionId, request, policy, limits)).accessToken).toBe('tok-0');
    expect(server.received).toHaveLength(2);
    now += 30_000; // expired: the endpoint's failure now reaches the caller
    await expect(tokens.get(connectionId, request, policy, limits)).rejects.toBeInstanceOf(
      RetryableDeliveryError,
    );
  });
});

describe('OAuth2Tokens: invalidate', () => {
  it('10 workers refused with the same token cause exactly one new fetch', async () => {
    const workers = [worker(), worker()];
    const request = tokenRequest(server.url);
    const { accessToken: rejected } = await workers[0]!.get(connectionId, request, policy, limits);

    const tokens = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const tokens = workers[i % 2]!;
        await tokens.invalidate(connectionId, request, rejected);
        return tokens.get(connectionId, request, policy, limits);
      }),
    );
    expect(new Set(tokens.map((t) => t.accessToken))).toEqual(new Set(['tok-1']));
    expect(server.received).toHaveLength(2);

    // A late 401 with the token that was already replaced leaves the new token alone.
    await workers[1]!.invalidate(connectionId, request, rejected);
    expect((await workers[0]!.get(connectionId, request, policy, limits)).accessToken).toBe('tok-1');
    expect(server.received).toHaveLength(2);
  });
});

describe('OAuth2Tokens: single flight across processes', () => {
  it('waits for a live holder and uses the token it stores', async () => {
    const request = tokenRequest(server.url);
    const keys = oauth2Keys(prefix, connectionId, request);
    await redis.set(keys.lock, 'another-worker', 'PX', 5_000);
    const waiting = worker().get(connectionId, request, policy, limits);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const stored = { accessToken: 'from-other-worker', expiresAt: Date.now() + 3_600_000 };
    await redis.set(keys.token, JSON.stringify(stored), 'PX', 3_600_000);
    await redis.del(keys.lock);

    expect(await waiting).toEqual(stored);
    expect(server.received).toHaveLength(0);
  });

  it('concurrent callers in one process share one promise', async () => {
    const tokens = worker();
    const request = tokenRequest(server.url);
    const first = tokens.get(connectionId, request, policy, limits);
    const same = tokens.get(connectionId, request, policy, limits);
    const other = tokens.get(connectionId, tokenRequest(server.url, 'other-secret'), policy, limits);
    expect(same).toBe(first);
    expect(other).not.toBe(first);
    await Promise.all([first, other]);
    expect(server.received).toHaveLength(2);
  });

  it('a token stored between our cache read and our lock is used, not fetched again', async () => {
    const request = tokenRequest(server.url);
    const keys = oauth2Keys(prefix, connectionId, request);
    const stored = { accessToken: 'stored-meanwhile', expiresAt: Date.now() + 3_600_000 };
    const client = testRedis();
    clients.push(client);
    // Another process finishes its fetch (stores, releases) right after our first read.
    let reads = 0;
    const racing = new Proxy(client, {
      get(target, name, receiver) {
        if (name !== 'mget') return Reflect.get(target, name, receiver) as unknown;
        return async (...args: string[]) => {
          const result = await target.mget(...args);
          if (reads++ === 0) await redis.set(keys.token, JSON.stringify(stored), 'PX', 3_600_000);
          return result;
        };
      },
    });
    const token = await new OAuth2Tokens(racing, prefix, sender).get(connectionId, request, policy, limits);
    expect(token).toEqual(stored);
    expect(server.received).toHaveLength(0);
  });

  it('when the lock holder dies, a waiter fetches once its lock expires', async () => {
    const request = tokenRequest(server.url);
    await redis.set(oauth2Keys(prefix, connectionId, request).lock, 'dead-worker', 'PX', 400);
    const started = Date.now();
    const token = await worker({ waitMs: 5_000 }).get(connectionId, request, policy, limits);
    expect(token.accessToken).toBe('tok-0');
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    expect(server.received).toHaveLength(1);
  });

  it('gives up (retryable) when the holder keeps the lock past waitMs', async () => {
    const request = tokenRequest(server.url);
    await redis.set(oauth2Keys(prefix, connectionId, request).lock, 'slow-worker', 'PX', 5_000);
    const error = await worker({ waitMs: 200 })
      .get(connectionId, request, policy, limits)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetryableDeliveryError);
    expect(error).toMatchObject({ code: 'AUTH_TOKEN_UNAVAILABLE' });
    expect(server.received).toHaveLength(0);
  });
});

describe('OAuth2Tokens: token endpoint errors', () => {
  const fail = (tokens: OAuth2Tokens, request = tokenRequest(server.url)) =>
    tokens.get(connectionId, request, policy, limits).then(
      () => expect.unreachable('get() should have failed'),
      (e: unknown) => e as RetryableDeliveryError | PermanentDeliveryError,
    );

  it('500 is retryable, honours Retry-After, and other workers reuse the failure briefly', async () => {
    server.respond(() => ({
      status: 500,
      headers: { 'retry-after': '7' },
      body: '{"error":"temporarily_unavailable"}',
    }));
    const error = await fail(worker());
    expect(error).toBeInstanceOf(RetryableDeliveryError);
    expect(error).toMatchObject({ code: 'AUTH_TOKEN_UNAVAILABLE', retryAfterMs: 7_000 });
    expect(error.message).toContain('status 500: temporarily_unavailable');

    const again = await fail(worker());
    expect(again).toBeInstanceOf(RetryableDeliveryError);
    expect(again).toMatchObject({ code: 'AUTH_TOKEN_UNAVAILABLE', retryAfterMs: 7_000 });
    expect(server.received).toHaveLength(1);
  });

  it('a network failure is retryable', async () => {
    const request = tokenRequest(server.url);
    await server.close();
    const error = await fail(worker(), request);
    expect(error).toBeInstanceOf(RetryableDeliveryError);
    expect(error.code).toBe('AUTH_TOKEN_UNAVAILABLE');
    expect(error.message).toMatch(/^NETWORK: token endpoint 127\.0\.0\.1:\d+: ECONNREFUSED/);
  });

  it('401 is permanent and its message carries no secret and no token', async () => {
    server.respond(() => ({
      status: 401,
      body: JSON.stringify({
        error: 'invalid_client',
        error_description: `client_secret ${SECRET} is wrong`,
        access_token: 'leaked-token-value',
      }),
    }));
    const error = await fail(worker());
    expect(error).toBeInstanceOf(PermanentDeliveryError);
    expect(error.code).toBe('AUTH_TOKEN_REFUSED');
    expect(error.message).toMatch(
      /^token endpoint 127\.0\.0\.1:\d+ refused the client credentials \(status 401: invalid_client \(client_secret \[redacted\] is wrong\)\): check the connection's clientId\/clientSecret secrets$/,
    );
    expect(error.message).not.toContain(SECRET);
    expect(error.message).not.toContain('leaked-token-value');
    expect(server.received).toHaveLength(1);
  });

  it('a 2xx without access_token is permanent', async () => {
    server.respond(() => ({ status: 200, body: JSON.stringify({ token_type: 'Bearer', expires_in: 3600 }) }));
    const error = await fail(worker());
    expect(error).toBeInstanceOf(PermanentDeliveryError);
    expect(error.code).toBe('AUTH_TOKEN_INVALID');
    expect(await redis.exists(oauth2Keys(prefix, connectionId, tokenRequest(server.url)).token)).toBe(0);
  });
});
