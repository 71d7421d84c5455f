import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { applyConnections } from '../../src/config/apply-connections.js';
import { connectionSchema, type Connection } from '../../src/config/connection-schema.js';
import { createLogger } from '../../src/logging.js';
import { ConnectionIndex } from '../../src/store/connection-index.js';
import { ConnectionStore } from '../../src/store/connection-store.js';
import { keyspace } from '../../src/store/keys.js';
import { cleanPrefix, eventually, testRedis, uniquePrefix } from '../helpers/redis.js';

const prefix = uniquePrefix('connection-store');
const keys = keyspace(prefix);
const logger = createLogger('silent');
const noSecrets = { get: () => undefined };
let redis: Redis;
let subscriber: Redis;
let store: ConnectionStore;
let index: ConnectionIndex;

const connection = (
  id: string,
  campaigns: string[] | '*',
  url = 'https://api.example.com/unsubscribe',
): Connection => connectionSchema.parse({ id, account: 'acme', name: id, campaigns, request: { url } });
const loaded = (...connections: Connection[]) =>
  connections.map((c) => ({ connection: c, file: `${c.id}.yaml` }));

beforeAll(async () => {
  redis = testRedis();
  subscriber = testRedis();
  store = new ConnectionStore(redis, keys);
  index = new ConnectionIndex(store, subscriber, keys, logger, 60_000);
  await index.start();
});
afterAll(async () => {
  await index.stop();
  redis.disconnect();
  await cleanPrefix(prefix);
});

describe('the shared connection store', () => {
  it('versions changes, keeps unchanged ones, and removes connections whose file is gone', async () => {
    await applyConnections(
      store,
      loaded(connection('a', ['spring']), connection('b', '*')),
      noSecrets,
      logger,
    );
    expect((await store.list()).map((s) => [s.connection.id, s.version])).toEqual([
      ['a', 1],
      ['b', 1],
    ]);
    await eventually('the index to see both', () => index.linked('acme', 'spring').length === 2);

    await applyConnections(
      store,
      loaded(connection('a', ['spring'], 'https://api.example.com/v2/unsubscribe')),
      noSecrets,
      logger,
    );
    expect((await store.list()).map((s) => [s.connection.id, s.version])).toEqual([['a', 2]]);
    // Every process's index hears of the removal at once (pub/sub), not at its next timed reload.
    await eventually(
      'the index to drop b',
      () =>
        index
          .linked('acme', 'spring')
          .map((s) => s.connection.id)
          .join() === 'a',
    );

    await applyConnections(
      store,
      loaded(connection('a', ['spring'], 'https://api.example.com/v2/unsubscribe')),
      noSecrets,
      logger,
    );
    expect((await store.get('a'))?.version).toBe(2);
  });

  it('keeps what operators changed through the admin API when an unchanged file is applied again', async () => {
    const file = connection('kept', ['spring']);
    await applyConnections(store, loaded(file), noSecrets, logger);
    // An operator links a campaign through the admin API.
    await store.put({ ...file, campaigns: ['spring', 'summer'] }, 'admin-api');
    const apiOnly = connection('api-only', '*');
    await store.put(apiOnly, 'admin-api');
    // Restart with the same file: the link and the API-created connection survive.
    await applyConnections(store, loaded(file), noSecrets, logger);
    expect((await store.get('kept'))?.connection.campaigns).toEqual(['spring', 'summer']);
    expect(await store.get('api-only')).toBeDefined();
    // A changed file wins again.
    await applyConnections(store, loaded(connection('kept', ['winter'])), noSecrets, logger);
    expect((await store.get('kept'))?.connection.campaigns).toEqual(['winter']);
    await store.remove('api-only');
  });

  it('links by campaign, "*" and account', async () => {
    await applyConnections(
      store,
      loaded(connection('only-spring', ['spring']), connection('all', '*')),
      noSecrets,
      logger,
    );
    await eventually('index reloaded', () => index.linked('acme', 'spring').length === 2);
    await eventually(
      'index drops the removed file connection',
      () => index.linked('acme', 'winter').length === 1,
    );
    expect(index.linked('acme', 'winter').map((s) => s.connection.id)).toEqual(['all']);
    expect(index.linked('acme', undefined).map((s) => s.connection.id)).toEqual(['all']);
    expect(index.linked('globex', 'spring')).toEqual([]);
  });
});
