import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiKeyStore } from '../../src/store/api-keys.js';
import { keyspace } from '../../src/store/keys.js';
import { startFakeCrm, type FakeCrm } from '../helpers/crm-server.js';
import { crmConnection, writeConnections } from '../helpers/engine.js';
import { spawnEngine, type EngineProcess } from '../helpers/processes.js';
import { cleanPrefix, eventually, testRedis, uniquePrefix } from '../helpers/redis.js';

// Two engine processes on one Redis share one connection's limit: the CRM, counting what it
// receives per second, must never see more than the connection allows, whichever process sent it.
const PER_SECOND = 10;
const BURST = 2;
const COUNT = 40;
const prefix = uniquePrefix('e2e-rate-limit');
let crm: FakeCrm;
let dir: string;
const engines: EngineProcess[] = [];

beforeAll(async () => {
  crm = await startFakeCrm();
  dir = await mkdtemp(path.join(tmpdir(), 'unsub-relay-e2e-rate-'));
  await writeConnections(dir, [
    crmConnection('limited', crm.url, {
      limits: { perSecond: PER_SECOND, burst: BURST },
      dedupe: { window: 0 },
    }),
  ]);
  const env = {
    REDIS_PREFIX: prefix,
    CONNECTIONS_DIR: dir,
    ALLOW_PRIVATE_TARGETS: 'true',
    SANDBOX: 'off',
    TEST_CRM_TOKEN: 'e2e-rate-limit-token',
    ADMIN_TOKEN: 'test-admin-token-0123456789',
    WORKER_CONCURRENCY: '20',
    LOG_FORMAT: 'json',
  };
  engines.push(await spawnEngine(env), await spawnEngine(env));
}, 60_000);

afterAll(async () => {
  for (const engine of engines) engine.child.kill('SIGTERM');
  await Promise.all(engines.map((engine) => engine.exited));
  await crm?.close();
  await rm(dir, { recursive: true, force: true });
  await cleanPrefix(prefix);
});

describe('a connection limit shared by two worker processes', () => {
  it('holds at the CRM, counted per second, while both processes deliver', async () => {
    const redis = testRedis();
    const { key } = await new ApiKeyStore(redis, keyspace(prefix)).create('acme');
    redis.disconnect();
    // Half the unsubscribes to each process's API, all at once.
    const answers = await Promise.all(
      Array.from({ length: COUNT }, (_, i) =>
        fetch(`${engines[i % 2]!.url}/v1/unsubscribes`, {
          method: 'POST',
          headers: { authorization: key, 'content-type': 'application/json' },
          body: JSON.stringify({ email: `r${i}@example.com` }),
        }),
      ),
    );
    expect(answers.every((answer) => answer.status === 201)).toBe(true);
    await eventually(`the CRM received all ${COUNT}`, () => crm.received.length === COUNT, 60_000);

    const at = crm.received.map((request) => request.at).sort((a, b) => a - b);
    let busiest = 0;
    for (const start of at)
      busiest = Math.max(busiest, at.filter((t) => t >= start && t < start + 1000).length);
    // The schedule allows BURST + PER_SECOND in any second; one more for a timer that fires late
    // under load (late sends can bunch up, early ones cannot happen).
    expect(busiest).toBeLessThanOrEqual(PER_SECOND + BURST + 1);
    expect(at.at(-1)! - at[0]!).toBeGreaterThanOrEqual(((COUNT - BURST) / PER_SECOND) * 1000 - 150);

    // The CRM answers before the engine logs the delivery: wait for every log line.
    const deliveredBy = await eventually('every delivery logged', () => {
      const counts = engines.map(
        (engine) =>
          engine
            .logs()
            .split('\n')
            .filter((line) => line.includes('"msg":"delivered"')).length,
      );
      return counts[0]! + counts[1]! === COUNT ? counts : undefined;
    });
    expect(Math.min(...deliveredBy)).toBeGreaterThan(0);
  }, 90_000);
});
