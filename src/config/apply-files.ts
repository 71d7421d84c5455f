import { hostname } from 'node:os';
import type { Logger } from 'pino';
import {
  applyConnections,
  describeConflict,
  type ApplyReport,
  type ApplyStores,
} from './apply-connections.js';
import type { LoadedConnection } from './load-connections.js';
import type { EventSink } from '../events/operational-event.js';
import { referencedSecrets, type SecretSource } from '../templates/render-request.js';

/**
 * Applies the connections directory at start (and again when Redis comes back without its data),
 * three-way like `apply`, and says what it did: one log line per connection, a warning for each
 * conflict naming the file and fields, and one for each connection whose secrets are not set.
 * A connection once applied from a file whose file is gone stays: deleting is an operator's act.
 */
export async function applyConnectionFiles(
  stores: ApplyStores,
  loaded: readonly LoadedConnection[],
  secrets: SecretSource,
  logger: Logger,
  events?: EventSink,
): Promise<ApplyReport> {
  const report = await applyConnections(
    stores,
    loaded.map(({ connection, file, fileHash }) => ({ connection, file, fileHash })),
    { origin: { via: 'start', by: hostname() }, ...(events ? { events } : {}) },
  );
  const versions = new Map<string, { version: number; changed: boolean; fields?: string[] }>([
    ...report.created.map((c) => [c.id, { version: c.version, changed: true }] as const),
    ...report.changed.map((c) => [c.id, { version: c.to, changed: true, fields: c.fields }] as const),
    ...report.unchanged.map((c) => [c.id, { version: c.version, changed: false }] as const),
  ]);
  for (const { connection, file } of loaded) {
    const outcome = versions.get(connection.id);
    if (!outcome) continue;
    const missing = referencedSecrets(connection).filter((name) => secrets.get(name) === undefined);
    const line = {
      connectionId: connection.id,
      account: connection.account,
      file,
      ...outcome,
      ...(missing.length ? { missingSecrets: missing } : {}),
    };
    const linked = connection.campaigns === '*' || connection.campaigns.length > 0;
    if (missing.length > 0 && linked && connection.enabled) {
      logger.warn(
        line,
        `connection ${connection.id}: secrets ${missing.join(', ')} not set; its deliveries will fail until they are`,
      );
    } else {
      const what = outcome.fields
        ? `changed ${outcome.fields.join(', ')}`
        : outcome.changed
          ? 'loaded'
          : 'unchanged';
      logger.info(
        line,
        `connection ${connection.id} ${what} (version ${outcome.version}): ${connection.name}`,
      );
    }
  }
  for (const conflict of report.conflicts)
    logger.warn(
      { connectionId: conflict.id, file: conflict.file, fields: conflict.fields.map((f) => f.path) },
      describeConflict(conflict),
    );
  for (const deleted of report.deleted)
    logger.info(
      { connectionId: deleted.id, deletedAt: deleted.at, deletedBy: deleted.by },
      `connection ${deleted.id} stays deleted (by ${deleted.by} at ${deleted.at}); its file is unchanged since it was last applied`,
    );
  const inFiles = new Set(loaded.map((l) => l.connection.id));
  const stored = new Set(await stores.store.ids());
  for (const id of await stores.store.appliedIds()) {
    if (inFiles.has(id) || !stored.has(id)) continue;
    logger.info(
      { connectionId: id },
      `connection ${id} stays: it was applied from a file this engine does not have; delete it with npx unsub-relay connections delete ${id} --yes if it should go`,
    );
  }
  await stores.store.markApplied();
  return report;
}
