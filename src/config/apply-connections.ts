import type { Logger } from 'pino';
import type { ConnectionStore } from '../store/connection-store.js';
import { referencedSecrets, type SecretSource } from '../templates/render-request.js';
import type { LoadedConnection } from './load-connections.js';

/**
 * Makes the shared store hold exactly the connections in the files: new and changed ones are stored
 * (a change gets a new version), ones whose file is gone are removed (their pending deliveries then
 * fail visibly as CONNECTION_MISSING and can be replayed once it is back). One line per connection.
 */
export async function applyConnections(
  store: ConnectionStore,
  loaded: readonly LoadedConnection[],
  secrets: SecretSource,
  logger: Logger,
): Promise<void> {
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
  const wanted = new Set(loaded.map(({ connection }) => connection.id));
  for (const stored of await store.list()) {
    if (wanted.has(stored.connection.id)) continue;
    await store.remove(stored.connection.id);
    logger.warn(
      { connectionId: stored.connection.id, version: stored.version },
      `connection ${stored.connection.id} removed: its file is no longer in the connections directory`,
    );
  }
}
