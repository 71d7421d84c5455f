import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { StartupError } from './errors.js';

const HOW_TO_GET_REDIS =
  'Install Redis 7 (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), ' +
  'or run one with Docker (docker compose up redis), or point REDIS_URL at a running Redis.';

/** Whether a Redis answers PING at `url` within a second (one try, no retries). */
export async function redisAnswers(url: string): Promise<boolean> {
  const probe = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 1_000,
    retryStrategy: () => null,
  });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    return (await probe.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

export interface RedisBootstrap {
  /** Set when this process started its own redis-server. */
  child?: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Makes sure a Redis answers at `url`. For a newcomer's `npm start` with no Redis running, start a
 * private `redis-server` (AOF on, data under .unsub-relay/redis) that lives as long as the engine;
 * with no binary either, stop with instructions. A remote REDIS_URL is never second-guessed.
 */
export async function ensureRedis(
  url: string,
  logger: Logger,
  dataRoot = '.unsub-relay',
): Promise<RedisBootstrap> {
  const none: RedisBootstrap = { stop: async () => undefined };
  if (await redisAnswers(url)) return none;
  const target = new URL(url);
  const local = ['127.0.0.1', 'localhost', '::1', '[::1]'].includes(target.hostname);
  if (!local)
    throw new StartupError(`No Redis answers at ${target.host}. Check REDIS_URL and that Redis is running.`);
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    throw new StartupError(
      `No Redis answers at ${target.host} and no redis-server is on the PATH. ${HOW_TO_GET_REDIS}`,
    );
  }
  const port = target.port || '6379';
  const dir = path.resolve(dataRoot, 'redis');
  mkdirSync(dir, { recursive: true });
  const child = spawn(
    'redis-server',
    [
      '--port',
      port,
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--appendonly',
      'yes',
      '--save',
      '',
      '--maxmemory-policy',
      'noeviction',
    ],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 50; i += 1) {
    if (await redisAnswers(url)) {
      logger.warn(
        { pid: child.pid, port: Number(port), dataDir: dir },
        `no Redis answered on port ${port}: started a private redis-server (AOF on); it stops with the engine`,
      );
      return {
        child,
        stop: () =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      };
    }
    if (child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill('SIGKILL');
  throw new StartupError(`Started redis-server on port ${port}, but it did not answer. ${HOW_TO_GET_REDIS}`);
}
