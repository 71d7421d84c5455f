import type { FastifyInstance } from 'fastify';
import type { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { buildApp } from './api/app.js';
import type { Env } from './config/env.js';
import { loadConnections } from './config/load-connections.js';
import { OAuth2Tokens } from './auth/oauth2.js';
import { createSender, type Sender } from './http/sender.js';
import { createProcessor } from './queue/processor.js';
import { DeliveryProducer } from './queue/producer.js';
import { createDeliveryQueue, createDeliveryWorker } from './queue/worker.js';
import { ensureRedis, type RedisBootstrap } from './redis-bootstrap.js';
import { ApiKeyStore } from './store/api-keys.js';
import { AttemptStore } from './store/attempt-store.js';
import { ConnectionIndex } from './store/connection-index.js';
import { ConnectionStore } from './store/connection-store.js';
import { DeliveryRecords } from './store/delivery-records.js';
import { keyspace } from './store/keys.js';
import { createRedis, waitReady } from './store/redis.js';
import { referencedSecrets } from './templates/render-request.js';
import { loadSecrets } from './config/secrets.js';

export interface Engine {
  /** The API's base URL, when this process serves the API. */
  url?: string;
  close(): Promise<void>;
}

/**
 * Builds and starts the roles this process runs. Order matters: Redis first, then connections
 * (validated all-or-nothing and applied to the shared store), then workers, then the API, so a
 * process never answers 201 before it can deliver.
 */
export async function startEngine(env: Env, logger: Logger): Promise<Engine> {
  const closers: Array<{ name: string; close: () => Promise<unknown> }> = [];
  const keys = keyspace(env.REDIS_PREFIX);
  const redisBootstrap: RedisBootstrap = await ensureRedis(env.REDIS_URL, logger);
  closers.push({ name: 'private redis', close: () => redisBootstrap.stop() });

  try {
    const redis = createRedis(env.REDIS_URL, 'request', 'commands');
    redis.on('error', (error) => logger.warn({ err: error }, 'redis connection error'));
    closers.unshift({ name: 'redis', close: () => redis.quit() });
    await waitReady(redis, 10_000);

    const store = new ConnectionStore(redis, keys);
    const attempts = new AttemptStore(redis, keys);
    const loaded = await loadConnections(env.CONNECTIONS_DIR);
    const secrets = loadSecrets();
    for (const { connection, file } of loaded) {
      const { version, changed } = await store.put(connection, file);
      const missing = referencedSecrets(connection).filter((name) => secrets.get(name) === undefined);
      const line = {
        connectionId: connection.id,
        account: connection.account,
        version,
        changed,
        enabled: connection.enabled,
        campaigns: connection.campaigns,
        file,
      };
      const linked = connection.campaigns === '*' || connection.campaigns.length > 0;
      if (missing.length > 0 && linked && connection.enabled) {
        logger.warn(
          { ...line, missingSecrets: missing },
          `connection ${connection.id}: secrets ${missing.join(', ')} not set; its deliveries will fail until they are`,
        );
      } else {
        const note = linked ? '' : ' (linked to no campaign yet)';
        logger.info(
          { ...line, ...(missing.length ? { missingSecrets: missing } : {}) },
          `connection ${connection.id} loaded: ${connection.name}${note}`,
        );
      }
    }

    const sandboxHost = `127.0.0.1:${env.PORT}`;
    const engineInfo = { sandboxUrl: `http://${sandboxHost}/sandbox/crm` };
    const retention = {
      succeededMs: env.RETENTION_SUCCEEDED,
      failedMs: env.RETENTION_FAILED,
      unsubscribesMs: env.RETENTION_UNSUBSCRIBES,
    };

    let worker: Worker | undefined;
    let sender: Sender | undefined;
    if (env.ROLES.has('worker')) {
      sender = createSender({
        allowPrivateTargets: env.ALLOW_PRIVATE_TARGETS,
        allowedHosts: env.SANDBOX ? [sandboxHost] : [],
      });
      const workerRedis = createRedis(env.REDIS_URL, 'worker', 'worker');
      workerRedis.on('error', (error) => logger.warn({ err: error }, 'worker redis connection error'));
      const processor = createProcessor({
        connections: store,
        attempts,
        sender,
        tokens: new OAuth2Tokens(redis, keys.prefix, sender, { logger }),
        secrets,
        engine: engineInfo,
        retention,
        logger,
      });
      worker = createDeliveryWorker(processor, {
        connection: workerRedis,
        bullPrefix: keys.bullPrefix,
        concurrency: env.WORKER_CONCURRENCY,
        lockDurationMs: env.WORKER_LOCK_DURATION,
      });
      worker.on('error', (error) => logger.error({ err: error }, 'delivery worker error'));
      void worker.run();
      const runningWorker = worker;
      const runningSender = sender;
      closers.unshift({ name: 'sender', close: () => runningSender.close() });
      closers.unshift({ name: 'worker redis', close: () => workerRedis.quit() });
      closers.unshift({
        name: 'delivery worker',
        close: () => closeWorker(runningWorker, env.SHUTDOWN_TIMEOUT, logger),
      });
      logger.info({ concurrency: env.WORKER_CONCURRENCY }, 'delivery workers running');
    }

    let app: FastifyInstance | undefined;
    let url: string | undefined;
    if (env.ROLES.has('api')) {
      const subscriber = createRedis(env.REDIS_URL, 'worker', 'subscriber');
      subscriber.on('error', (error) => logger.warn({ err: error }, 'subscriber redis connection error'));
      const index = new ConnectionIndex(store, subscriber, keys, logger);
      await index.start();
      const queue: Queue = createDeliveryQueue(redis, keys.bullPrefix);
      closers.unshift({ name: 'queue', close: () => queue.close() });
      closers.unshift({ name: 'connection index', close: () => index.stop() });
      app = buildApp({
        logger,
        apiKeys: new ApiKeyStore(redis, keys),
        index,
        producer: new DeliveryProducer(redis, queue, keys, retention),
        sandbox: env.SANDBOX,
        ...(env.ADMIN_TOKEN
          ? { admin: { adminToken: env.ADMIN_TOKEN, deliveries: new DeliveryRecords(queue, attempts) } }
          : {}),
        readiness: () => readiness(redis, index, worker),
      });
      const runningApp = app;
      closers.unshift({ name: 'http', close: () => runningApp.close() });
      url = await app.listen({ port: env.PORT, host: env.HOST });
      url = url.replace('0.0.0.0', '127.0.0.1');
      logger.info({ url }, `unsub-relay API listening on ${url}`);
      if (env.SANDBOX) {
        logger.warn(
          'sandbox CRM receiver is on at /sandbox/crm (for the demo connection); set SANDBOX=off in production',
        );
      }
      if (loaded.some(({ connection }) => connection.account === 'demo')) {
        logger.info(
          `try it: npx unsub-relay keys create --account demo, then curl -H "Authorization: <key>" -H "Content-Type: application/json" -d '{"email":"jane@example.com"}' ${url}/v1/unsubscribes, and see ${url}/sandbox/crm/unsubscribes`,
        );
      }
    }

    return { ...(url ? { url } : {}), close: () => closeAll(closers, logger) };
  } catch (error) {
    await closeAll(closers, logger);
    throw error;
  }
}

async function readiness(redis: Redis, index: ConnectionIndex, worker: Worker | undefined) {
  const checks: Record<string, { ok: boolean; detail?: string }> = {};
  try {
    checks.redis = { ok: (await redis.ping()) === 'PONG' };
  } catch (error) {
    checks.redis = { ok: false, detail: (error as Error).message };
  }
  checks.connections = index.isLoaded ? { ok: true } : { ok: false, detail: 'connections not loaded yet' };
  if (worker)
    checks.workers = worker.isRunning() ? { ok: true } : { ok: false, detail: 'delivery worker stopped' };
  return checks;
}

/** Lets in-flight deliveries finish, up to `timeoutMs`; then stops anyway (BullMQ re-queues them as stalled). */
async function closeWorker(worker: Worker, timeoutMs: number, logger: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const result = await Promise.race([worker.close().then(() => 'closed' as const), timedOut]);
  clearTimeout(timer);
  if (result === 'timeout') {
    logger.warn(
      { timeoutMs },
      'in-flight deliveries did not finish in time; they will be retried by another worker',
    );
    await worker.close(true);
  }
}

async function closeAll(
  closers: Array<{ name: string; close: () => Promise<unknown> }>,
  logger: Logger,
): Promise<void> {
  for (const { name, close } of closers) {
    try {
      await close();
    } catch (error) {
      logger.warn({ err: error, component: name }, 'error while closing');
    }
  }
}
