import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Redis } from 'ioredis';
import { applyConnections, type ApplyItem } from '../../src/config/apply-connections.js';
import { applyConnectionFiles } from '../../src/config/apply-files.js';
import { connectionSchema, type Connection } from '../../src/config/connection-schema.js';
import type { OperationalEventInput } from '../../src/events/operational-event.js';
import { createLogger } from '../../src/logging.js';
import { ConnectionConflicts } from '../../src/store/connection-conflicts.js';
import { ConnectionIndex } from '../../src/store/connection-index.js';
import { ConnectionStore, untilUnchanged } from '../../src/store/connection-store.js';
import { keyspace } from '../../src/store/keys.js';
import { cleanPrefix, eventually, testRedis, uniquePrefix } from '../helpers/redis.js';

const prefix = uniquePrefix('connection-store');
const keys = keyspace(prefix);
const logger = createLogger('silent');
const noSecrets = { get: () => undefined };
let redis: Redis;
let subscriber: Redis;
let store: ConnectionStore;
let stores: { store: ConnectionStore; conflicts: ConnectionConflicts };
let index: ConnectionIndex;

const connection = (
  id: string,
  campaigns: string[] | '*',
  url = 'https://api.example.com/unsubscribe',
  name = id,
): Connection => connectionSchema.parse({ id, account: 'acme', name, campaigns, request: { url } });
const hash = (c: Connection) =>
  (c.name + c.request.url + JSON.stringify(c.campaigns))
    .padEnd(64, '0')
    .replace(/[^0-9a-f]/g, 'a')
    .slice(0, 64);
const loaded = (...connections: Connection[]) =>
  connections.map((c) => ({ connection: c, file: `connections/${c.id}.yaml`, fileHash: hash(c) }));
const start = (...connections: Connection[]) =>
  applyConnectionFiles(stores, loaded(...connections), noSecrets, logger);

beforeAll(async () => {
  redis = testRedis();
  subscriber = testRedis();
  store = new ConnectionStore(redis, keys);
  stores = { store, conflicts: new ConnectionConflicts(redis, keys) };
  index = new ConnectionIndex(store, subscriber, keys, logger, 60_000);
  await index.start();
});
afterAll(async () => {
  await index.stop();
  redis.disconnect();
  await cleanPrefix(prefix);
});

describe('the shared connection store', () => {
  it('versions changes, keeps unchanged ones, and records where each version came from', async () => {
    await start(connection('a', ['spring']), connection('b', '*'));
    expect((await store.list()).map((s) => [s.connection.id, s.version])).toEqual([
      ['a', 1],
      ['b', 1],
    ]);
    await eventually('the index to see both', () => index.linked('acme', 'spring').length === 2);
    const changed = connection('a', ['spring'], 'https://api.example.com/v2/unsubscribe');
    const report = await start(changed, connection('b', '*'));
    expect(report.changed).toEqual([{ id: 'a', from: 1, to: 2, fields: ['request.url'] }]);
    const a = await store.get('a');
    expect(a?.version).toBe(2);
    expect(a?.origin).toMatchObject({ via: 'start', file: 'connections/a.yaml', fileHash: hash(changed) });
    await start(changed, connection('b', '*'));
    expect((await store.get('a'))?.version).toBe(2);
  });

  it('a file whose connection is gone from the directory does not delete it: deleting is an operator\u2019s act', async () => {
    await start(connection('a', ['spring'], 'https://api.example.com/v2/unsubscribe'));
    expect(await store.get('b')).toBeDefined();
  });

  it('a campaign linked through the API survives a restart with the file changed in another field (the defect)', async () => {
    const file = connection('kept', ['c1']);
    await start(file);
    // `npx unsub-relay link kept c2`: a new version made through the API.
    const linked = await store.get('kept');
    await store.put({ ...linked!.connection, campaigns: ['c1', 'c2'] }, { via: 'cli', by: 'jane@cli' });
    // Restart with the file's name changed: c2 stays linked, the name changes.
    const report = await start(connection('kept', ['c1'], undefined, 'Kept - renamed'));
    expect(report.changed).toEqual([{ id: 'kept', from: 2, to: 3, fields: ['name'] }]);
    const now = await store.get('kept');
    expect(now?.connection.campaigns).toEqual(['c1', 'c2']);
    expect(now?.connection.name).toBe('Kept - renamed');
    expect((await store.getVersion('kept', 2))?.origin).toEqual({ via: 'cli', by: 'jane@cli' });
    // The file unlinks c1 and links c3: c2 (linked through the API) stays.
    await start(connection('kept', ['c3'], undefined, 'Kept - renamed'));
    expect((await store.get('kept'))?.connection.campaigns).toEqual(['c2', 'c3']);
    await eventually('the index to route c2 to kept', () =>
      index.linked('acme', 'c2').some((s) => s.connection.id === 'kept'),
    );
  });

  it('a field changed in both places is a conflict: stored as is, reported once as an event, resolved by --force', async () => {
    await start(connection('clash', ['c1']));
    const current = await store.get('clash');
    await store.put(
      {
        ...current!.connection,
        request: { ...current!.connection.request, url: 'https://api.example.com/api-set' },
      },
      { via: 'api', by: 'ops' },
    );
    const events: OperationalEventInput[] = [];
    const sink = { emit: (e: OperationalEventInput) => void events.push(e) };
    const fileNow = connection('clash', ['c1'], 'https://api.example.com/file-set');
    const items: ApplyItem[] = [
      { connection: fileNow, file: 'connections/clash.yaml', fileHash: hash(fileNow) },
    ];
    const first = await applyConnections(stores, items, { origin: { via: 'cli', by: 'jane' }, events: sink });
    expect(first.conflicts).toMatchObject([
      {
        id: 'clash',
        file: 'connections/clash.yaml',
        fields: [
          {
            path: 'request.url',
            lastApplied: 'https://api.example.com/unsubscribe',
            file: 'https://api.example.com/file-set',
            stored: 'https://api.example.com/api-set',
          },
        ],
      },
    ]);
    expect((await store.get('clash'))?.connection.request.url).toBe('https://api.example.com/api-set');
    expect(await stores.conflicts.get('clash')).toBeDefined();
    expect(events.map((e) => e.type)).toEqual(['connection_conflict']);
    expect(events[0]?.message).toContain('connections/clash.yaml');
    expect(events[0]?.message).toContain('request.url');
    // The same conflict again (every start) is reported in the answer, but is not news.
    await applyConnections(stores, items, { origin: { via: 'start' }, events: sink });
    expect(events).toHaveLength(1);
    // --force: the file wins; the conflict is gone.
    const forced = await applyConnections(stores, items, {
      origin: { via: 'cli' },
      force: new Set(['clash']),
    });
    expect(forced.changed).toMatchObject([{ id: 'clash', fields: ['request.url'] }]);
    expect((await store.get('clash'))?.connection.request.url).toBe('https://api.example.com/file-set');
    expect(await stores.conflicts.get('clash')).toBeUndefined();
  });

  it('editing the file to agree with the store resolves a conflict', async () => {
    await start(connection('agree', ['c1']));
    const current = await store.get('agree');
    await store.put({ ...current!.connection, name: 'Set through the API' });
    expect((await start(connection('agree', ['c1'], undefined, 'Set in the file'))).conflicts).toHaveLength(
      1,
    );
    const report = await start(connection('agree', ['c1'], undefined, 'Set through the API'));
    expect(report.conflicts).toEqual([]);
    expect(await stores.conflicts.get('agree')).toBeUndefined();
    // And the next change of the file applies again.
    await start(connection('agree', ['c1'], 'https://api.example.com/next', 'Set through the API'));
    expect((await store.get('agree'))?.connection.request.url).toBe('https://api.example.com/next');
  });

  it('a deleted connection stays deleted across restarts and reconnects; a changed file is a conflict; --force brings it back', async () => {
    const file = connection('gone', ['c1']);
    await start(file);
    expect(await store.remove('gone', 'jane@cli')).toBe(true);
    await eventually(
      'the index to drop it',
      () => !index.linked('acme', 'c1').some((s) => s.connection.id === 'gone'),
    );
    const again = await start(file);
    expect(again.deleted).toMatchObject([{ id: 'gone', by: 'jane@cli' }]);
    expect(await store.get('gone')).toBeUndefined();
    const edited = connection('gone', ['c1'], 'https://api.example.com/edited');
    const report = await start(edited);
    expect(report.conflicts).toMatchObject([{ id: 'gone', fields: [{ path: '(deleted)' }] }]);
    expect(await store.get('gone')).toBeUndefined();
    const forced = await applyConnections(
      stores,
      [{ connection: edited, file: 'connections/gone.yaml', fileHash: hash(edited) }],
      { origin: { via: 'cli' }, force: new Set(['gone']) },
    );
    expect(forced.created).toMatchObject([{ id: 'gone' }]);
    expect(await store.deleted('gone')).toBeUndefined();
  });

  it('two engines starting at once with different files: one apply wins whole, no link made meanwhile is lost', async () => {
    await start(connection('shared', ['c1']));
    const otherRedis = testRedis();
    try {
      const other = {
        store: new ConnectionStore(otherRedis, keys),
        conflicts: new ConnectionConflicts(otherRedis, keys),
      };
      const fileA = connection('shared', ['c1', 'a1']);
      const fileB = connection('shared', ['c1', 'b1'], 'https://api.example.com/b');
      const links = Array.from({ length: 10 }, (_, i) => `api${i}`);
      // Engine A and engine B apply at once, while an operator links ten campaigns one by one.
      await Promise.all([
        applyConnectionFiles(stores, loaded(fileA), noSecrets, logger),
        applyConnectionFiles(other, loaded(fileB), noSecrets, logger),
        (async () => {
          for (const campaign of links)
            // As the admin API links: read, change, put guarded by the version read, redo if beaten.
            await untilUnchanged(async () => {
              const current = await store.get('shared');
              await store.put(
                {
                  ...current!.connection,
                  campaigns: [...(current!.connection.campaigns as string[]), campaign],
                },
                { via: 'cli' },
                { expectedVersion: current!.version },
              );
            });
        })(),
      ]);
      const stored = (await store.get('shared'))!.connection;
      const last = (await store.lastApplied('shared'))!;
      // Whichever engine applied last, its file is the last applied and its change is stored whole;
      // the other's link is unlinked as that file's change (kubectl's rule), never half of each.
      const winner = last.fileHash === hash(fileB) ? fileB : fileA;
      expect(stored.request.url).toBe(winner.request.url);
      for (const campaign of ['c1', ...(winner.campaigns as string[]), ...links])
        expect(stored.campaigns).toContain(campaign);
      // History is one version per change: numbers contiguous, none claimed twice.
      const versions = (await store.versions('shared')).map((v) => v.version);
      expect(versions).toEqual(Array.from({ length: versions.length }, (_, i) => i + 1));
    } finally {
      otherRedis.disconnect();
    }
  });

  it('an older copy of a file (a rolling deploy\u2019s old engine restarting) does not undo the newer one', async () => {
    const old = connection('rolling', ['c1']);
    const newer = connection('rolling', ['c1', 'c2']);
    await start(old);
    await start(newer);
    const report = await start(old);
    expect(report.conflicts).toMatchObject([{ id: 'rolling', fields: [{ path: '(file)' }] }]);
    expect(report.conflicts[0]?.reason).toContain('older than the one last applied');
    expect((await store.get('rolling'))?.connection.campaigns).toEqual(['c1', 'c2']);
    // The newer engine's next start finds its file unchanged, and the conflict resolved.
    expect((await start(newer)).conflicts).toEqual([]);
    expect(await stores.conflicts.get('rolling')).toBeUndefined();
  });

  it('prune deletes only connections once applied from a file, never ones created through the API', async () => {
    await store.put(connection('api-made', '*'), { via: 'api', by: 'ops' });
    const report = await applyConnections(stores, [], { origin: { via: 'cli' }, prune: true });
    const removed = report.removed.map((r) => r.id);
    expect(removed).toContain('a');
    expect(removed).not.toContain('api-made');
    expect(await store.get('api-made')).toBeDefined();
    expect(await store.deleted('a')).toMatchObject({ by: 'cli' });
  });
});
