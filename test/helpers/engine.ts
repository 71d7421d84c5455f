import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { stringify } from 'yaml';
import type { ConnectionInput } from '../../src/config/connection-schema.js';
import { parseEnv } from '../../src/config/env.js';
import { startEngine, type Engine } from '../../src/engine.js';
import { createLogger } from '../../src/logging.js';
import { ApiKeyStore } from '../../src/store/api-keys.js';
import { AttemptStore } from '../../src/store/attempt-store.js';
import { DeliveryRecords } from '../../src/store/delivery-records.js';
import { LedgerRecords } from '../../src/store/ledger.js';
import { BatchBuffer } from '../../src/store/batch-buffer.js';
import { DeliveryQueues } from '../../src/queue/queues.js';
import { keyspace } from '../../src/store/keys.js';
import { cleanPrefix, REDIS_URL, testRedis } from './redis.js';

/** The engine's default RETENTION_FAILED: how long a replayed delivery keeps its ledger entry. */
const TEST_RETENTION = { failedMs: parseEnv({}).RETENTION_FAILED };

export interface TestEngine {
  url: string;
  prefix: string;
  connectionsDir: string;
  redis: Redis;
  records: DeliveryRecords;
  /** Every connection's delivery queue under this prefix. */
  queues: DeliveryQueues;
  apiKeys: ApiKeyStore;
  engine: Engine;
  /** POST /v1/unsubscribes with a key of `account` (created on first use). */
  unsubscribe(
    account: string,
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: Record<string, unknown> }>;
  close(): Promise<void>;
}

export async function writeConnections(dir: string, connections: ConnectionInput[]): Promise<void> {
  for (const connection of connections)
    await writeFile(path.join(dir, `${connection.id}.yaml`), stringify(connection));
}

/** The real engine (same wiring as `npm start`), in-process, on its own key prefix and a free port. */
export async function startTestEngine(
  prefix: string,
  connections: ConnectionInput[],
  env: Record<string, string> = {},
): Promise<TestEngine> {
  const connectionsDir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-connections-'));
  await writeConnections(connectionsDir, connections);
  const engine = await startEngine(
    parseEnv({
      PORT: '0',
      HOST: '127.0.0.1',
      REDIS_URL,
      REDIS_PREFIX: prefix,
      CONNECTIONS_DIR: connectionsDir,
      ALLOW_PRIVATE_TARGETS: 'true',
      SANDBOX: 'off',
      WORKER_LOCK_DURATION: '5s',
      SHUTDOWN_TIMEOUT: '2s',
      ADMIN_TOKEN: 'test-admin-token-0123456789',
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      ...env,
    }),
    createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'),
  );
  const redis = testRedis();
  const keys = keyspace(prefix);
  const queues = new DeliveryQueues(redis, keys);
  const records = new DeliveryRecords(
    queues,
    new AttemptStore(redis, keys),
    new LedgerRecords(redis, keys),
    TEST_RETENTION,
    new BatchBuffer(redis, keys),
  );
  const apiKeys = new ApiKeyStore(redis, keys);
  const accountKeys = new Map<string, string>();
  return {
    url: engine.url!,
    prefix,
    connectionsDir,
    redis,
    records,
    queues,
    apiKeys,
    engine,
    async unsubscribe(account, body, headers = {}) {
      let key = accountKeys.get(account);
      if (!key) {
        key = (await apiKeys.create(account)).key;
        accountKeys.set(account, key);
      }
      const response = await fetch(`${engine.url}/v1/unsubscribes`, {
        method: 'POST',
        headers: { authorization: key, 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    },
    async close() {
      await engine.close();
      await queues.close();
      redis.disconnect();
      await rm(connectionsDir, { recursive: true, force: true });
      await cleanPrefix(prefix);
    },
  };
}

/** Delivery records of the install under `prefix`, read straight from Redis (no CLI start-up per poll). */
export function deliveryRecords(prefix: string): { records: DeliveryRecords; close: () => Promise<void> } {
  const redis = testRedis();
  const keys = keyspace(prefix);
  const queues = new DeliveryQueues(redis, keys);
  return {
    records: new DeliveryRecords(
      queues,
      new AttemptStore(redis, keys),
      new LedgerRecords(redis, keys),
      TEST_RETENTION,
      new BatchBuffer(redis, keys),
    ),
    close: async () => {
      await queues.close();
      redis.disconnect();
    },
  };
}

/** A connection to a fake CRM at `url`, with fast retries for tests. */
export function crmConnection(
  id: string,
  url: string,
  overrides: Partial<ConnectionInput> = {},
): ConnectionInput {
  return {
    id,
    account: 'acme',
    name: `Acme ${id}`,
    campaigns: '*',
    request: {
      method: 'POST',
      url: `${url}/v3/suppressions/{{email}}`,
      auth: { type: 'bearer', token: "{{secret 'TEST_CRM_TOKEN'}}" },
      headers: { 'X-Campaign': "{{default campaign 'none'}}" },
      body: { json: { recipient_emails: ['{{email}}'], source: 'unsub-relay' } },
      timeouts: { connect: '1s', headers: '1s', body: '1s' },
    },
    retry: { attempts: 3, backoff: 'fixed', delay: '50ms', jitter: false, maxRetryAfter: '2s' },
    ...overrides,
  };
}
