import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { buildApp } from './api/app.js';
import type { Env } from './config/env.js';
import { loadConnections } from './config/load-connections.js';
import { OAuth2Tokens } from './auth/oauth2.js';
import { createSender, type Sender } from './http/sender.js';
import { createProcessor } from './queue/processor.js';
import { DeliveryProducer } from './queue/producer.js';
import { DeliveryWorkers } from './queue/delivery-workers.js';
import { DeliveryQueues } from './queue/queues.js';
import { ConnectionOperations } from './queue/connection-operations.js';
import { Metrics } from './observe/metrics.js';
import { Backlogs, type Backlog } from './store/backlogs.js';
import { ConnectionControl } from './store/connection-control.js';
import { EventLog } from './events/event-log.js';
import { EventWebhookRelay } from './events/webhook-relay.js';
import { ensureRedis, type RedisBootstrap } from './redis-bootstrap.js';
import { shutdown, type Drainable, type Releasable } from './shutdown.js';
import { configureEmailLogging } from './logging.js';
import { resolveAdminToken } from './admin-token.js';
import { CampaignStore } from './store/campaigns.js'; // issue 5
import { ApiKeyStore } from './store/api-keys.js';
import { AttemptStore } from './store/attempt-store.js';
import { LedgerRecords } from './store/ledger.js';
import { BatchBuffer } from './store/batch-buffer.js';
import type { HandOver } from './queue/batch-jobs.js';
import { ConnectionIndex } from './store/connection-index.js';
import { ConnectionStore } from './store/connection-store.js';
import { DeliveryRecords } from './store/delivery-records.js';
import { keyspace } from './store/keys.js';
import { UnsubscribeLedger } from './store/unsubscribes.js';
import { ReplayStore } from './store/replays.js';
import { TestRunStore } from './store/test-runs.js';
import { createRedis, waitReady } from './store/redis.js';
import { applyConnectionFiles } from './config/apply-files.js';
import { ConnectionConflicts } from './store/connection-conflicts.js';
import { loadSecrets } from './config/secrets.js';
import { missingSecrets } from './observe/missing-secrets.js';
import type { SecretSource } from './templates/render-request.js';
import type { ConnectionHealth } from './api/admin/health.js';

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
  configureEmailLogging(env.LOG_EMAILS);
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
    const ledger = new LedgerRecords(redis, keys);
    const queues = new DeliveryQueues(redis, keys);
    closers.unshift({ name: 'queues', release: () => queues.close() });
    const control = new ConnectionControl(redis, keys);
    const buffer = new BatchBuffer(redis, keys);
    const backlogs = new Backlogs(queues, store, control, buffer);
    const metrics = new Metrics(backlogs);
    const events = new EventLog(redis, keys, logger);
    if (env.EVENTS_WEBHOOK_URL) {
      // Every process runs the relay; its consumer group sends each event once per install. It
      // blocks on its own client, which it disconnects on stop.
      const relayRedis = createRedis(env.REDIS_URL, 'worker', 'events-relay');
      relayRedis.on('error', (error) => logger.warn({ err: error }, 'events relay redis connection error'));
      const relay = new EventWebhookRelay({
        connection: relayRedis,
        keys,
        url: env.EVENTS_WEBHOOK_URL,
        secret: env.EVENTS_WEBHOOK_SECRET,
        logger,
      });
      await relay.start();
      closers.unshift({ name: 'events webhook relay', release: () => relay.stop() });
    }
    const loaded = await loadConnections(env.CONNECTIONS_DIR);
    const secrets = loadSecrets();
    const applyStores = { store, conflicts: new ConnectionConflicts(redis, keys) };
    await applyConnectionFiles(applyStores, loaded, secrets, logger, events);
    // If Redis comes back without its data (restarted without persistence), apply the files again at
    // once rather than accept unsubscribes that fan out to nothing. Anything else a reconnect leaves
    // alone: a deleted connection stays deleted. (The client is ready already, so a later 'ready' is
    // a reconnect.)
    redis.on('ready', () => {
      void store
        .wasApplied()
        .then((kept) => {
          if (kept) return undefined;
          logger.warn('Redis came back without the connections: applying the connection files again');
          return applyConnectionFiles(applyStores, loaded, secrets, logger, events);
        })
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

    // Ingest, campaign backfill (issue 5), backlog moves (issue 6) and batch jobs handing a delivery over (issue 7).
    const producer = new DeliveryProducer(redis, queues, keys, retention);
    const handOver: HandOver = (id, connection, data, delayMs) =>
      producer.handOver(id, connection, data, delayMs);

    let workers: DeliveryWorkers | undefined;
    let sender: Sender | undefined;
    if (env.ROLES.has('worker')) {
      sender = createSender({
        allowPrivateTargets: env.ALLOW_PRIVATE_TARGETS,
        allowedTargets: sandbox ? [engineInfo.sandboxUrl] : [],
        // As many sockets per CRM as deliveries a connection may have in flight: with fewer, the
        // rest wait in the pool, and a CRM that answers in 100 ms got 16 per 100 ms, not 50
        // (docs/performance.md, "Batch").
        connectionsPerOrigin: env.WORKER_CONCURRENCY,
      });
      const workerRedis = createRedis(env.REDIS_URL, 'worker', 'worker');
      workerRedis.on('error', (error) => logger.warn({ err: error }, 'worker redis connection error'));
      const workerSubscriber = createRedis(env.REDIS_URL, 'worker', 'subscriber');
      workerSubscriber.on('error', (error) =>
        logger.warn({ err: error }, 'worker subscriber redis connection error'),
      );
      const processor = createProcessor({
        connections: store,
        ledger,
        attempts,
        sender,
        tokens: new OAuth2Tokens(redis, keys.prefix, sender, { logger }),
        secrets,
        engine: engineInfo,
        retention,
        logger,
        control,
        events,
        buffer,
        handOver,
        withoutJob: (ids) => queues.withoutJob(ids),
        requestSlots: env.WORKER_CONCURRENCY,
        stopping: () => pool.closing,
        metrics,
        slowDown: (connectionId, ms) => queues.slowDown(connectionId, ms),
        // The pool is built below with this processor; holds only happen once it runs.
        hold: (connectionId, reason) => pool.hold(connectionId, reason),
      });
      const pool = new DeliveryWorkers({
        store,
        queues,
        control,
        events,
        connection: workerRedis,
        subscriber: workerSubscriber,
        keys,
        processor,
        buffer,
        handOver,
        attempts,
        concurrency: env.WORKER_CONCURRENCY,
        lockDurationMs: env.WORKER_LOCK_DURATION,
        retention,
        logger,
      });
      workers = pool;
      const runningWorkers = pool;
      const runningSender = sender;
      closers.unshift({ name: 'sender', release: () => runningSender.close() });
      closers.unshift({ name: 'worker redis', release: () => workerRedis.quit() });
      closers.unshift({ name: 'worker subscriber', release: () => workerSubscriber.quit() });
      drainables.push({
        name: 'delivery workers',
        drain: () => runningWorkers.close(),
        // Abort the CRM requests in flight; BullMQ hands their jobs to another worker.
        force: async () => {
          await runningSender.destroy();
          await runningWorkers.close(true);
        },
      });
      await pool.start();
      logger.info({ concurrency: env.WORKER_CONCURRENCY }, 'delivery workers running');
    }

    let app: FastifyInstance | undefined;
    let url: string | undefined;
    if (env.ROLES.has('api')) {
      const subscriber = createRedis(env.REDIS_URL, 'worker', 'subscriber');
      subscriber.on('error', (error) => logger.warn({ err: error }, 'subscriber redis connection error'));
      const index = new ConnectionIndex(store, subscriber, keys, logger);
      await index.start();
      const apiKeys = new ApiKeyStore(redis, keys);
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
          allowedTargets: sandbox ? [engineInfo.sandboxUrl] : [],
        });
        closers.unshift({ name: 'test sender', release: () => own.close() });
        testSender = own;
      }
      app = await buildApp({
        logger,
        apiKeys,
        index,
        producer,
        sandbox,
        admin: {
          adminToken: admin.token,
          bodyLimit: env.ADMIN_BODY_LIMIT,
          deliveries: new DeliveryRecords(queues, attempts, ledger, retention, buffer),
          apiKeys,
          // Unsubscribes view, suppressions and audit export (issue 5).
          unsubscribes: new UnsubscribeLedger(redis, queues, keys, attempts, buffer),
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
          connectionAdmin: {
            store,
            campaigns: new CampaignStore(redis, keys),
            producer,
            redis,
            keys,
            conflicts: applyStores.conflicts,
            events,
          },
          // Delivery control, operational events and the queue dashboard (issue 6).
          events,
          deliveryControl: {
            backlogs,
            missingSecrets: () => missingSecrets(store, secrets),
            operations: new ConnectionOperations({
              queues,
              store,
              control,
              attempts,
              producer,
              buffer,
              events,
              retention,
            }),
          },
          queues: () => queues.all(),
        },
        metrics,
        readiness: (options) =>
          readiness(redis, store, index, workers, options?.detail ? { backlogs, secrets } : undefined),
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
  index: ConnectionIndex,
  workers: DeliveryWorkers | undefined,
  /** Given for the admin health view only: the public /readyz says ready or not, nothing more. */
  detail: { backlogs: Backlogs; secrets: SecretSource } | undefined,
) {
  const checks: Record<string, { ok: boolean; detail?: string }> = {};
  let connections: Record<string, ConnectionHealth> | undefined;
  try {
    checks.redis = { ok: (await redis.ping()) === 'PONG' };
    // Deleting connections never makes a process unready; losing the store does (Redis restarted
    // without its data), until the files are applied again.
    checks.connections = !index.isLoaded
      ? { ok: false, detail: 'connections not loaded yet' }
      : !(await store.wasApplied())
        ? {
            ok: false,
            detail: 'Redis lost the connections (restarted without its data?); applying the files again',
          }
        : { ok: true };
  } catch (error) {
    checks.redis = { ok: false, detail: (error as Error).message };
  }
  if (workers)
    checks.workers = workers.isRunning()
      ? { ok: true, detail: `${workers.running.length} connection workers` }
      : { ok: false, detail: 'a delivery worker stopped' };
  if (!detail) return { checks };
  try {
    const [backlogs, missing] = await Promise.all([
      detail.backlogs.backlogs(),
      missingSecrets(store, detail.secrets),
    ]);
    connections = Object.fromEntries(
      backlogs.map((b) => [b.connectionId, health(b, missing.get(b.connectionId))]),
    );
  } catch (error) {
    checks.connectionHealth = { ok: false, detail: (error as Error).message };
  }
  return { checks, ...(connections ? { connections } : {}) };
}

function health(backlog: Backlog, missing: string[] | undefined): ConnectionHealth {
  const { control, counts } = backlog;
  const status: ConnectionHealth['status'] =
    backlog.connection !== 'active'
      ? backlog.connection
      : backlog.queuePaused
        ? 'paused'
        : missing
          ? 'misconfigured'
          : control.circuit === 'open'
            ? 'circuit_open'
            : control.circuit === 'half_open'
              ? 'probing'
              : control.failing
                ? 'failing'
                : 'healthy';
  return {
    status,
    circuit: control.circuit,
    consecutiveFailures: control.consecutiveFailures,
    pending: counts.waiting + counts.paused + counts.delayed + counts.active,
    failed: counts.failed,
    oldestPendingAgeSeconds: Math.round(backlog.oldestPendingAgeSeconds),
    ...(control.paused ? { paused: control.paused } : {}),
    ...(missing ? { missingSecrets: missing } : {}),
  };
}
