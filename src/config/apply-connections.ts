import type { Logger } from 'pino';
import type { Connection } from './connection-schema.js';
import { connectionHash, type ConnectionStore } from '../store/connection-store.js';
import { referencedSecrets, type SecretSource } from '../templates/render-request.js';
import type { LoadedConnection } from './load-connections.js';

/** Source recorded for versions written through the admin API (links, enable/disable, PUT, apply). */
export const ADMIN_SOURCE = 'admin-api';

/**
 * Applies the connections directory at start. Files and the admin API share the store, so:
 * - a new or changed file is stored (a change gets a new version) and wins;
 * - an unchanged file does not undo what operators did since through the admin API (a link, a
 *   disable): the file is skipped when it equals the version last applied from it;
 * - a connection whose file is gone is removed only if a file was its last writer; connections
 *   created or last changed through the admin API stay. Pending deliveries of a removed connection
 *   fail visibly as CONNECTION_MISSING and can be replayed once it is back.
 * One log line per connection.
 */
export async function applyConnections(
  store: ConnectionStore,
  loaded: readonly LoadedConnection[],
  secrets: SecretSource,
  logger: Logger,
): Promise<void> {
  for (const { connection, file } of loaded) {
    const current = await store.get(connection.id);
    if (current && current.source === ADMIN_SOURCE) {
      const fromFile = (await store.versions(connection.id)).filter((v) => v.source === file).at(-1);
      if (fromFile && fromFile.hash === connectionHash(connection)) {
        logger.info(
          { connectionId: connection.id, version: current.version, file },
          `connection ${connection.id} kept at version ${current.version}: changed through the admin API since ${file} was applied`,
        );
        continue;
      }
    }
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
  const wanted = new Set(loaded.map(({ connection }) => connection.id));
  for (const stored of await store.list()) {
    if (wanted.has(stored.connection.id) || stored.source === ADMIN_SOURCE) continue;
    await store.remove(stored.connection.id);
    logger.warn(
      { connectionId: stored.connection.id, version: stored.version },
      `connection ${stored.connection.id} removed: its file is no longer in the connections directory`,
    );
  }
}

/** What an apply did: created, changed (with old and new version), left alone, and removed (prune). */
export interface ApplyDiff {
  created: Array<{ id: string; version: number }>;
  changed: Array<{ id: string; from: number; to: number }>;
  unchanged: Array<{ id: string; version: number }>;
  removed: Array<{ id: string; version: number }>;
}

/**
 * Applies an already validated set (admin API `POST /apply`, issue 5): every new or changed connection
 * gets a new version; with `prune`, stored connections not in the set are removed.
 */
export async function applyConnectionSet(
  store: ConnectionStore,
  connections: readonly Connection[],
  prune: boolean,
  source = ADMIN_SOURCE,
): Promise<ApplyDiff> {
  const diff: ApplyDiff = { created: [], changed: [], unchanged: [], removed: [] };
  for (const connection of connections) {
    const before = await store.get(connection.id);
    const { version, changed } = await store.put(connection, source);
    if (!before) diff.created.push({ id: connection.id, version });
    else if (changed) diff.changed.push({ id: connection.id, from: before.version, to: version });
    else diff.unchanged.push({ id: connection.id, version });
  }
  if (prune) {
    const wanted = new Set(connections.map((c) => c.id));
    for (const stored of await store.list()) {
      if (wanted.has(stored.connection.id)) continue;
      if (await store.remove(stored.connection.id))
        diff.removed.push({ id: stored.connection.id, version: stored.version });
    }
  }
  return diff;
}
