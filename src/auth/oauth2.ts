import { createHash, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RenderedRequest } from '../domain/delivery.js';
import { PermanentDeliveryError, RetryableDeliveryError, UnsubRelayError } from '../errors.js';
import type { SendLimits, Sender } from '../http/sender.js';
import { readTokenResponse, TOKEN_ERROR, type IssuedToken } from './token-response.js';

/** When a cached token is too old to use; from the connection's `refreshBefore` and `defaultTtl`. */
export interface TokenPolicy {
  /** Fetch a new token this long before the current one expires. */
  refreshBeforeMs: number;
  /** Lifetime assumed when the token response has no `expires_in`. */
  defaultTtlMs: number;
}

/** A token to put in the delivery request. `expiresAt` is epoch ms. */
export interface AccessToken {
  accessToken: string;
  expiresAt: number;
}

export interface OAuth2TokensOptions {
  /** Epoch ms; injectable so tests can move through a token's lifetime. Default `Date.now`. */
  clock?: () => number;
  /**
   * How long the fetch lock lives if its holder dies. Default: the token request's whole send
   * deadline (connect + headers + body timeouts) plus 5 s, so a live holder never loses it.
   */
  lockTtlMs?: number;
  /** Longest a caller waits for another worker's fetch before giving up (retryable). Default: lock TTL + 5 s. */
  waitMs?: number;
  /**
   * How long a failed fetch is remembered, so the other workers fail at once instead of each asking
   * the endpoint again. A retryable failure uses the endpoint's `Retry-After` (at most 60 s) if it
   * sent one. Default 5 s.
   */
  failureTtlMs?: number;
  logger?: Pick<Logger, 'info' | 'warn'>;
}

/** The Redis keys of one (connection, token request): the cached token, its fetch lock, the last failure. */
export interface OAuth2Keys {
  token: string;
  lock: string;
  failed: string;
}

/**
 * Keys under `${prefix}:oauth2:<connectionId>:<sha256>`. The hash covers the token URL, body and
 * Authorization header, i.e. everything that carries the client id, secret, scope and parameters,
 * so a connection whose credentials change never reuses the old credentials' token.
 */
export function oauth2Keys(prefix: string, connectionId: string, tokenRequest: RenderedRequest): OAuth2Keys {
  const authorization =
    Object.entries(tokenRequest.headers).find(([name]) => name.toLowerCase() === 'authorization')?.[1] ?? '';
  const hash = createHash('sha256')
    .update(JSON.stringify([tokenRequest.url, tokenRequest.body ?? '', authorization]))
    .digest('hex');
  const token = `${prefix}:oauth2:${connectionId}:${hash}`;
  return { token, lock: `${token}:lock`, failed: `${token}:failed` };
}

/** What the token key holds. `issuedAt` lets short-lived tokens be refreshed at half their life. */
interface StoredToken extends AccessToken {
  issuedAt?: number;
}

interface StoredFailure {
  retryable: boolean;
  code: string;
  message: string;
  retryAfterMs?: number;
}

const POLL_MS = 50;
const MAX_FAILURE_TTL_MS = 60_000;

// Compare-and-delete: only the owner releases its lock (an expired lock may already be someone else's).
const RELEASE_LOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

// Drops the token only if it is still the refused one: N workers refused with the same token cause
// one refresh, and a token another worker already replaced survives. Unreadable values are dropped.
const DROP_IF_SAME = `local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, token = pcall(cjson.decode, raw)
if ok and type(token) == 'table' and token.accessToken ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])`;

/**
 * OAuth2 client-credentials tokens, cached in Redis for every worker and process. A token is fetched
 * once for all of them: the fetcher holds a Redis lock (`SET NX PX`), the others poll the cache until
 * it is stored, and take over if the holder dies and its lock expires. Within one process, concurrent
 * callers share one promise. Tokens, secrets and token bodies are never logged or put in errors.
 */
export class OAuth2Tokens {
  private readonly clock: () => number;
  private readonly inflight = new Map<string, Promise<AccessToken>>();

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly sender: Sender,
    private readonly opts: OAuth2TokensOptions = {},
  ) {
    this.clock = opts.clock ?? Date.now;
  }

  /**
   * A valid token for this connection, from the shared cache or fetched once for all workers.
   * Throws `RetryableDeliveryError` (`AUTH_TOKEN_UNAVAILABLE`) when the endpoint is down, slow or
   * busy, and `PermanentDeliveryError` (`AUTH_TOKEN_REFUSED`, `AUTH_TOKEN_INVALID`, `TARGET_REFUSED`)
   * when the connection's credentials or token URL are wrong.
   */
  get(
    connectionId: string,
    tokenRequest: RenderedRequest,
    policy: TokenPolicy,
    limits: SendLimits,
  ): Promise<AccessToken> {
    const keys = oauth2Keys(this.prefix, connectionId, tokenRequest);
    const running = this.inflight.get(keys.token);
    if (running) return running;
    const promise = this.obtain(connectionId, keys, tokenRequest, policy, limits).finally(() => {
      if (this.inflight.get(keys.token) === promise) this.inflight.delete(keys.token);
    });
    this.inflight.set(keys.token, promise);
    return promise;
  }

  /**
   * The CRM refused `rejectedToken` (401): drop it so the next get() fetches a new one — unless
   * another worker already replaced it.
   */
  async invalidate(
    connectionId: string,
    tokenRequest: RenderedRequest,
    rejectedToken: string,
  ): Promise<void> {
    const keys = oauth2Keys(this.prefix, connectionId, tokenRequest);
    // A get() already running here may have read the refused token; later callers must not join it.
    this.inflight.delete(keys.token);
    await this.redis.eval(DROP_IF_SAME, 1, keys.token, rejectedToken);
  }

  private async obtain(
    connectionId: string,
    keys: OAuth2Keys,
    tokenRequest: RenderedRequest,
    policy: TokenPolicy,
    limits: SendLimits,
  ): Promise<AccessToken> {
    const { connect, headers, body } = limits.timeouts;
    const lockTtlMs = this.opts.lockTtlMs ?? connect + headers + body + 5_000;
    const waitMs = this.opts.waitMs ?? lockTtlMs + 5_000;
    // Real time, not the injected clock: this bounds how long a job sits here, not a token's age.
    const deadline = performance.now() + waitMs;
    for (;;) {
      const [rawToken, rawFailure] = await this.redis.mget(keys.token, keys.failed);
      const cached = readToken(rawToken);
      const now = this.clock();
      if (cached && isFresh(cached, now, policy)) return publicToken(cached);
      // In the refresh window the old token still works: use it rather than wait for a new one.
      const stillValid = cached && now < cached.expiresAt ? publicToken(cached) : undefined;
      const failure = parseJson<StoredFailure>(rawFailure);
      if (failure) {
        if (stillValid) return stillValid;
        throw restoreFailure(failure);
      }
      const owner = randomUUID();
      if (await this.redis.set(keys.lock, owner, 'PX', lockTtlMs, 'NX')) {
        try {
          return await this.fetchAndStore(connectionId, keys, tokenRequest, policy, limits);
        } catch (error) {
          if (!stillValid || !(error instanceof UnsubRelayError)) throw error;
          this.opts.logger?.warn(
            { connectionId, code: error.code, expiresInMs: stillValid.expiresAt - now },
            'OAuth2 token refresh failed; using the current token until it expires',
          );
          return stillValid;
        } finally {
          await this.redis.eval(RELEASE_LOCK, 1, keys.lock, owner);
        }
      }
      if (stillValid) return stillValid;
      if (performance.now() >= deadline) {
        throw new RetryableDeliveryError(
          TOKEN_ERROR.unavailable,
          `another worker has been fetching the OAuth2 token for connection ${connectionId} for more than ${waitMs} ms`,
        );
      }
      await sleep(POLL_MS);
    }
  }

  /** Runs under the lock. A failure is remembered briefly so waiting workers do not repeat it. */
  private async fetchAndStore(
    connectionId: string,
    keys: OAuth2Keys,
    tokenRequest: RenderedRequest,
    policy: TokenPolicy,
    limits: SendLimits,
  ): Promise<AccessToken> {
    // Another process may have stored a token (and released its lock) between our read and our lock.
    const current = readToken(await this.redis.get(keys.token));
    if (current && isFresh(current, this.clock(), policy)) return publicToken(current);

    // Measured from before the request: the endpoint's clock started no later than that.
    const issuedAt = this.clock();
    let issued: IssuedToken;
    try {
      const outcome = await this.sender.send(tokenRequest, limits);
      issued = readTokenResponse(outcome, tokenRequest, policy.defaultTtlMs, this.clock());
    } catch (error) {
      if (error instanceof RetryableDeliveryError || error instanceof PermanentDeliveryError) {
        this.opts.logger?.warn(
          { connectionId, code: error.code, reason: error.message },
          'OAuth2 token fetch failed',
        );
        await this.rememberFailure(keys, error);
      }
      throw error;
    }
    const stored: StoredToken = {
      accessToken: issued.accessToken,
      expiresAt: issuedAt + issued.lifetimeMs,
      issuedAt,
    };
    await this.redis
      .multi()
      .set(keys.token, JSON.stringify(stored), 'PX', issued.lifetimeMs)
      .del(keys.failed)
      .exec();
    this.opts.logger?.info({ connectionId, expiresInMs: issued.lifetimeMs }, 'OAuth2 token fetched');
    return publicToken(stored);
  }

  private async rememberFailure(
    keys: OAuth2Keys,
    error: RetryableDeliveryError | PermanentDeliveryError,
  ): Promise<void> {
    const fallback = this.opts.failureTtlMs ?? 5_000;
    const retryAfterMs = error instanceof RetryableDeliveryError ? error.retryAfterMs : undefined;
    const ttl = Math.max(1, Math.min(retryAfterMs ?? fallback, MAX_FAILURE_TTL_MS));
    const failure: StoredFailure = {
      retryable: error.retryable,
      code: error.code,
      message: error.message,
      retryAfterMs,
    };
    try {
      await this.redis.set(keys.failed, JSON.stringify(failure), 'PX', ttl);
    } catch {
      // Only an optimisation: the caller must still see the endpoint's error, not Redis's.
    }
  }
}

/**
 * Fresh until `refreshBefore` ahead of expiry. A token that lives less than twice `refreshBefore`
 * is refreshed at half its life instead, or every get() would fetch a new one.
 */
function isFresh(token: StoredToken, now: number, policy: TokenPolicy): boolean {
  const margin =
    token.issuedAt === undefined
      ? policy.refreshBeforeMs
      : Math.min(policy.refreshBeforeMs, (token.expiresAt - token.issuedAt) / 2);
  return now < token.expiresAt - margin;
}

function publicToken(token: StoredToken): AccessToken {
  return { accessToken: token.accessToken, expiresAt: token.expiresAt };
}

function restoreFailure(failure: StoredFailure): UnsubRelayError {
  return failure.retryable
    ? new RetryableDeliveryError(failure.code, failure.message, failure.retryAfterMs)
    : new PermanentDeliveryError(failure.code, failure.message);
}

/** A token value we wrote; anything else counts as absent (and is overwritten by the next fetch). */
function readToken(raw: string | null | undefined): StoredToken | undefined {
  const token = parseJson<Partial<StoredToken>>(raw);
  if (typeof token?.accessToken !== 'string' || typeof token.expiresAt !== 'number') return undefined;
  const issuedAt = typeof token.issuedAt === 'number' ? token.issuedAt : undefined;
  return {
    accessToken: token.accessToken,
    expiresAt: token.expiresAt,
    ...(issuedAt === undefined ? {} : { issuedAt }),
  };
}

function parseJson<T>(raw: string | null | undefined): T | undefined {
  if (!raw) return undefined;
  try {
    const value: unknown = JSON.parse(raw);
    return value && typeof value === 'object' ? (value as T) : undefined;
  } catch {
    return undefined;
  }
}
