import type { ConnectionOrigin } from './connection-origin.js';
import { connectionSchema, type Connection } from './connection-schema.js';
import { mergeConnection, type FieldConflict } from './three-way-merge.js';
import type { EventSink } from '../events/operational-event.js';
import type { ConnectionConflict, ConnectionConflicts } from '../store/connection-conflicts.js';
import {
  connectionHash,
  untilUnchanged,
  type ConnectionStore,
  type LastApplied,
} from '../store/connection-store.js';

/** One connection to apply, and the file it came from (none when sent as JSON to the admin API). */
export interface ApplyItem {
  connection: Connection;
  file?: string;
  /** sha256 (hex) of the file's text. */
  fileHash?: string;
}

export interface ApplyOptions {
  /** Who applies: the engine at start, or a client of the admin API (and its operator). */
  origin: Pick<ConnectionOrigin, 'via' | 'by'>;
  /** `apply --force <id>`: the file wins its conflicts; a deleted connection is created again. */
  force?: ReadonlySet<string>;
  /** Also delete stored connections once applied from a file and not in this set. */
  prune?: boolean;
  events?: EventSink;
  clock?: () => Date;
}

/** What an apply did to each connection. */
export interface ApplyReport {
  created: Array<{ id: string; version: number }>;
  changed: Array<{ id: string; from: number; to: number; fields: string[] }>;
  unchanged: Array<{ id: string; version: number }>;
  removed: Array<{ id: string; version: number }>;
  /** Left as stored: the file and the store both changed these fields since the last apply. */
  conflicts: ConnectionConflict[];
  /** Deleted through the admin API and their file unchanged since: they stay deleted. */
  deleted: Array<{ id: string; at: string; by: string }>;
}

export interface ApplyStores {
  store: ConnectionStore;
  conflicts: ConnectionConflicts;
}

/**
 * Applies connections the way `kubectl apply` applies manifests (docs/connections.md, "Files and
 * the store"): the store is the truth, and each connection is changed only by what its file changed
 * since it was last applied. Used at start and by the admin API's `POST /apply`.
 */
export async function applyConnections(
  stores: ApplyStores,
  items: readonly ApplyItem[],
  options: ApplyOptions,
): Promise<ApplyReport> {
  const report: ApplyReport = {
    created: [],
    changed: [],
    unchanged: [],
    removed: [],
    conflicts: [],
    deleted: [],
  };
  // Two engines or operators at once: each re-reads and redoes its merge.
  for (const item of items) await untilUnchanged(() => applyOne(stores, item, options, report));
  if (options.prune) {
    const wanted = new Set(items.map((i) => i.connection.id));
    const by = options.origin.by ?? options.origin.via;
    for (const id of await stores.store.appliedIds()) {
      if (wanted.has(id)) continue;
      const stored = await stores.store.get(id);
      if (stored && (await stores.store.remove(id, by))) report.removed.push({ id, version: stored.version });
    }
  }
  return report;
}

async function applyOne(
  { store, conflicts }: ApplyStores,
  item: ApplyItem,
  options: ApplyOptions,
  report: ApplyReport,
): Promise<void> {
  const { connection: file } = item;
  const id = file.id;
  const now = (options.clock ?? (() => new Date()))().toISOString();
  const [stored, lastApplied, tombstone, conflict] = await Promise.all([
    store.get(id),
    store.lastApplied(id),
    store.deleted(id),
    conflicts.get(id),
  ]);
  const force = options.force?.has(id) ?? false;
  const origin: ConnectionOrigin = {
    ...options.origin,
    ...(item.file ? { file: item.file } : {}),
    ...(item.fileHash ? { fileHash: item.fileHash } : {}),
  };
  const applied: LastApplied = {
    connection: file,
    ...(item.file ? { file: item.file } : {}),
    ...(item.fileHash ? { fileHash: item.fileHash } : {}),
    at: now,
  };
  const expectedVersion = stored?.version ?? 0;
  const outcome = mergeConnection({
    file,
    deleted: !stored && tombstone !== undefined,
    force,
    ...(lastApplied ? { lastApplied: lastApplied.connection } : {}),
    ...(stored ? { stored: stored.connection } : {}),
  });

  const refuse = async (fields: FieldConflict[], reason?: string) => {
    const record: ConnectionConflict = {
      id,
      ...(item.file ? { file: item.file } : {}),
      ...(item.fileHash ? { fileHash: item.fileHash } : {}),
      fields,
      ...(reason ? { reason } : {}),
      ...(stored ? { storedVersion: stored.version } : {}),
      at: now,
    };
    if (await conflicts.record(record)) options.events?.emit(conflictEvent(record));
    report.conflicts.push(record);
  };

  // An engine started with an older copy of the file (a rolling deploy's old process restarting):
  // applied as a change, it would undo what the newer file did. It waits for an operator instead.
  const older = force ? undefined : await olderFile(store, item, lastApplied);
  if (older)
    return refuse(
      [{ path: '(file)' }],
      `this copy of ${item.file ?? 'the file'} is older than the one last applied (at ${lastApplied?.at ?? '?'}): it made version ${older.version} at ${older.at}`,
    );

  switch (outcome.kind) {
    case 'create': {
      const { version } = await store.put(file, origin, {
        expectedVersion,
        lastApplied: applied,
        undelete: true,
      });
      report.created.push({ id, version });
      return;
    }
    case 'update': {
      const merged = connectionSchema.safeParse(outcome.merged);
      if (!merged.success) {
        const reason = `the file's changes (${outcome.fields.join(', ')}) and the stored connection do not make a valid connection together: ${merged.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`;
        return refuse(
          outcome.fields.map((path) => ({ path })),
          reason,
        );
      }
      const { version } = await store.put(merged.data, origin, { expectedVersion, lastApplied: applied });
      report.changed.push({ id, from: expectedVersion, to: version, fields: outcome.fields });
      return;
    }
    case 'unchanged': {
      // The file's own record moves on (its changes are in the store already), and any conflict it
      // had is resolved: the file was edited to agree with the store.
      const behind =
        !lastApplied ||
        connectionHash(lastApplied.connection) !== connectionHash(file) ||
        lastApplied.file !== item.file ||
        lastApplied.fileHash !== item.fileHash;
      if (behind || conflict)
        await store.put(undefined, origin, { id, expectedVersion, lastApplied: applied });
      report.unchanged.push({ id, version: expectedVersion });
      return;
    }
    case 'deleted': {
      if (conflict)
        await store.put(undefined, origin, { id, expectedVersion, lastApplied: lastApplied ?? applied });
      report.deleted.push({ id, at: tombstone?.at ?? '', by: tombstone?.by ?? '' });
      return;
    }
    case 'conflict':
      return refuse(
        outcome.conflicts,
        !stored && tombstone
          ? `deleted by ${tombstone.by} at ${tombstone.at}, and its file changed since it was last applied`
          : undefined,
      );
  }
}

/**
 * The stored version an earlier apply of this very file text made, when a different file has been
 * applied since: then this file is an older copy, not a new change.
 */
async function olderFile(
  store: ConnectionStore,
  item: ApplyItem,
  lastApplied: LastApplied | undefined,
): Promise<{ version: number; at: string } | undefined> {
  if (!item.fileHash || !lastApplied || lastApplied.fileHash === item.fileHash) return undefined;
  const earlier = (await store.versions(item.connection.id)).find(
    (v) => v.origin?.fileHash === item.fileHash,
  );
  return earlier && { version: earlier.version, at: earlier.updatedAt };
}

/** The operational event for a new conflict: which file, which fields, how to resolve it. */
function conflictEvent(conflict: ConnectionConflict) {
  return {
    type: 'connection_conflict' as const,
    connectionId: conflict.id,
    message: describeConflict(conflict),
    details: {
      fields: conflict.fields.map((f) => f.path).join(', '),
      ...(conflict.file ? { file: conflict.file } : {}),
      ...(conflict.storedVersion ? { storedVersion: conflict.storedVersion } : {}),
    },
  };
}

/** One line for a conflict, naming the file and fields and what to do (logs, CLI). */
export function describeConflict(conflict: ConnectionConflict): string {
  const fields = conflict.fields.map((f) => f.path).join(', ');
  const where = conflict.file ? `${conflict.file}: ` : '';
  const why =
    conflict.reason ?? `${fields} changed in the file and through the admin API since it was last applied`;
  return `${where}connection ${conflict.id} not applied: ${why}; edit the file to agree with the store, or run apply --force ${conflict.id}`;
}
