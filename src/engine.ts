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
import { shutdown, type Drainable, type Releasable } from './shutdown.js';
import { resolveAdminToken } from './admin-token.js';
import { CampaignStore } from './store/campaigns.js'; // issue 5
import { ApiKeyStore } from './store/api-keys.js';
import { AttemptStore } from './store/attempt-store.js';
import { ConnectionIndex } from './store/connection-index.js';
import { ConnectionStore } from './store/connection-store.js';
import { DeliveryRecords } from './store/delivery-records.js';
import { keyspace } from './store/keys.js';
import { UnsubscribeLedger } from './store/unsubscribes.js';
import { ReplayStore } from './store/replays.js';
import { TestRunStore } from './store/test-runs.js';
import { createRedis, waitReady } from './store/redis.js';
import { applyConnections } from './config/apply-connections.js';
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
  // Drained together under SHUTDOWN_TIMEOUT, then released in order (the most dependent first).
  const drainables: Drainable[] = [];
  const closers: Releasable[] = [];
  const keys = keyspace(env.REDIS_PREFIX);
  const redisBootstrap: RedisBootstrap = await ensureRedis(env.REDIS_URL, logger);
  closers.push({ name: 'private redis', release: () => redisBootstrap.stop() });

  try {
    const redis = createRedis(env.REDIS_URL, 'request', 'commands');
    redis.on('error', (error) => logger.warn({ err: error }, 'redis connection error'));
    closers.unshift({ name: 'redis', release: () => redis.quit() });
    await waitReady(redis, 10_000);

    const store = new ConnectionStore(redis, keys);
    const attempts = new AttemptStore(redis, keys);
    const loaded = await loadConnections(env.CONNECTIONS_DIR);
    const secrets = loadSecrets();
    await applyConnections(store, loaded, secrets, logger);
    // If Redis comes back empty (restarted without persistence), put the connections back at once
    // rather than accept unsubscribes that fan out to nothing.
    // (The client is ready already, so any later 'ready' is a reconnect.)
    redis.on('ready', () => {
      void store
        .list()
        .then((stored) =>
          stored.length < loaded.length ? applyConnections(store, loaded, secrets, logger) : undefined,
        )
        .catch((error: unknown) =>
          logger.warn({ err: error }, 'could not re-apply connections after reconnect'),
        );
    });

    const sandbox =
      env.SANDBOX === 'auto'
        ? loaded.some(({ connection }) => JSON.stringify(connection.request).includes('engine.sandboxUrl'))
        : env.SANDBOX;
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
        allowedHosts: sandbox ? [sandboxHost] : [],
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
      closers.unshift({ name: 'sender', release: () => runningSender.close() });
      closers.unshift({ name: 'worker redis', release: () => workerRedis.quit() });
      drainables.push({
        name: 'delivery worker',
        drain: () => runningWorker.close(),
        // Abort the CRM requests in flight; BullMQ hands their jobs to another worker.
        force: async () => {
          await runningSender.destroy();
          await runningWorker.close(true);
        },
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
      const apiKeys = new ApiKeyStore(redis, keys);
      closers.unshift({ name: 'queue', release: () => queue.close() });
      closers.unshift({ name: 'connection index', release: () => index.stop() });
      const admin = resolveAdminToken(env.ADMIN_TOKEN);
      if (admin.generated) {
        logger.info(
          { file: admin.generated },
          `admin API token kept in ${admin.generated} (set ADMIN_TOKEN in production)`,
        );
      }
      // Connection test runs (issue 5) send through the same guarded sender and token cache as
      // workers; an API-only process gets its own sender.
      let testSender = sender;
      if (!testSender) {
        const own = createSender({
          allowPrivateTargets: env.ALLOW_PRIVATE_TARGETS,
          allowedHosts: sandbox ? [sandboxHost] : [],
        });
        closers.unshift({ name: 'test sender', release: () => own.close() });
        testSender = own;
      }
      const producer = new DeliveryProducer(redis, queue, keys, retention); // shared with campaign backfill (issue 5)
      app = await buildApp({
        logger,
        apiKeys,
        index,
        producer,
        sandbox,
        admin: {
          adminToken: admin.token,
          deliveries: new DeliveryRecords(queue, attempts),
          apiKeys,
          // Unsubscribes view, suppressions and audit export (issue 5).
          unsubscribes: new UnsubscribeLedger(redis, queue, keys, attempts),
          // Connection test runs and bulk replay records (issue 5).
          testing: {
            connections: store,
            runs: new TestRunStore(redis, keys.prefix),
            sender: testSender,
            tokens: new OAuth2Tokens(redis, keys.prefix, testSender, { logger }),
            secrets,
            clock: Date.now,
            engine: engineInfo,
          },
          replays: new ReplayStore(redis, keys.prefix),
          // Connections, apply, accounts, campaigns and links (issue 5).
          connectionAdmin: { store, campaigns: new CampaignStore(redis, keys), producer, redis, keys },
        },
        readiness: () => readiness(redis, store, loaded.length, index, worker),
      });
      const runningApp = app;
      drainables.push({
        name: 'http',
        drain: () => runningApp.close(),
        force: () => runningApp.server.closeAllConnections(),
      });
      url = await app.listen({ port: env.PORT, host: env.HOST });
      url = url.replace('0.0.0.0', '127.0.0.1');
      logger.info({ url }, `unsub-relay API listening on ${url}`);
      if (sandbox) {
        logger.warn(
          'sandbox CRM receiver is on at /sandbox/crm for the demo connection; remove connections/demo-sandbox.yaml in production',
        );
      }
      if (loaded.some(({ connection }) => connection.account === 'demo')) {
        logger.info(
          `try it: npx unsub-relay keys create --account demo, then curl -H "Authorization: <key>" -H "Content-Type: application/json" -d '{"email":"jane@example.com"}' ${url}/v1/unsubscribes, and see ${url}/sandbox/crm/unsubscribes`,
        );
      }
    }

    return {
      ...(url ? { url } : {}),
      close: () => shutdown(drainables, closers, env.SHUTDOWN_TIMEOUT, logger),
    };
  } catch (error) {
    await shutdown(drainables, closers, env.SHUTDOWN_TIMEOUT, logger);
    throw error;
  }
}

async function readiness(
  redis: Redis,
  store: ConnectionStore,
  expected: number,
  index: ConnectionIndex,
  worker: Worker | undefined,
) {
  const checks: Record<string, { ok: boolean; detail?: string }> = {};
  try {
    checks.redis = { ok: (await redis.ping()) === 'PONG' };
    const stored = await store.count();
    checks.connections = !index.isLoaded
      ? { ok: false, detail: 'connections not loaded yet' }
      : stored < expected
        ? { ok: false, detail: `the store holds ${stored} of ${expected} connections (Redis lost data?)` }
        : { ok: true };
  } catch (error) {
    checks.redis = { ok: false, detail: (error as Error).message };
  }
  if (worker)
    checks.workers = worker.isRunning() ? { ok: true } : { ok: false, detail: 'delivery worker stopped' };
  return checks;
}
