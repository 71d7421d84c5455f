import type { Command } from 'commander';
import type { ApplyReport } from '../../config/apply-connections.js';
import { loadConnections } from '../../config/load-connections.js';
import { UnsubRelayError } from '../../errors.js';
import type { ConnectionConflict } from '../../store/connection-conflicts.js';
import { admin, print } from '../shared.js';

/** Some connections were left as stored: the operator must resolve their conflicts. */
class ApplyConflictError extends UnsubRelayError {
  readonly code = 'APPLY_CONFLICT';
}

const show = (value: unknown) => (value === undefined ? '(absent)' : JSON.stringify(value));

/** One conflict, field by field: the value last applied, the file's and the store's. */
export function formatConflict(conflict: ConnectionConflict): string[] {
  const fields = conflict.fields.map((f) => f.path).join(', ');
  const lines = [
    `conflict   ${conflict.id}${conflict.file ? ` (${conflict.file})` : ''}: ${conflict.reason ?? `${fields} changed in the file and through the admin API since it was last applied`}`,
  ];
  for (const field of conflict.fields) {
    if (field.file === undefined && field.stored === undefined) continue;
    lines.push(
      `             ${field.path}: last applied ${show(field.lastApplied)}, file ${show(field.file)}, stored ${show(field.stored)}`,
    );
  }
  return lines;
}

function formatReport(report: ApplyReport): string {
  const lines = [
    ...report.created.map((c) => `created    ${c.id} (version ${c.version})`),
    ...report.changed.map((c) => `changed    ${c.id} (version ${c.from} → ${c.to}): ${c.fields.join(', ')}`),
    ...report.unchanged.map((c) => `unchanged  ${c.id} (version ${c.version})`),
    ...report.deleted.map((d) => `deleted    ${d.id} stays deleted (by ${d.by} at ${d.at})`),
    ...report.removed.map((c) => `removed    ${c.id} (was version ${c.version})`),
    ...report.conflicts.flatMap(formatConflict),
  ];
  lines.push(
    `${report.created.length} created, ${report.changed.length} changed, ${report.unchanged.length} unchanged, ` +
      `${report.removed.length} removed, ${report.deleted.length} kept deleted, ${report.conflicts.length} conflict(s)`,
  );
  return lines.join('\n');
}

/**
 * `apply [dir]`: validates the files (all or nothing) and applies them three-way: each connection
 * changes only by what its file changed since it was last applied. Exits non-zero naming the
 * connections left as stored because of a conflict.
 */
export function registerApplyCommand(program: Command): void {
  program
    .command('apply')
    .description(
      'apply the connection files in a directory to the running engine: each file as the change it made since it was last applied',
    )
    .argument('[dir]', 'connections directory', process.env.CONNECTIONS_DIR ?? 'connections')
    .option('--prune', 'also delete stored connections once applied from a file that is no longer there')
    .option(
      '--force <id>',
      'the file wins this connection\u2019s conflicts (and creates it again if deleted); repeat or comma-separate for more',
      (value: string, previous: string[] = []) => [...previous, ...value.split(',').filter(Boolean)],
    )
    .option('--dry-run', 'validate the files only; send nothing')
    .option('--json', 'machine-readable output')
    .action(
      async (
        dir: string,
        options: { prune?: boolean; force?: string[]; dryRun?: boolean; json?: boolean },
        command: Command,
      ) => {
        const loaded = await loadConnections(dir); // throws every issue: nothing is sent
        if (options.dryRun) {
          const ids = loaded.map((l) => l.connection.id);
          return print(
            { valid: ids },
            options.json,
            () => `${ids.length} connection(s) valid: ${ids.join(', ')}; nothing applied (--dry-run)`,
          );
        }
        const force = options.force ?? [];
        const report = await admin(command).request<ApplyReport>('POST', '/apply', {
          connections: loaded.map((l) => l.connection),
          files: loaded.map((l) => ({ file: l.file, hash: l.fileHash })),
          force,
          prune: options.prune ?? false,
        });
        print(report, options.json, () => formatReport(report));
        if (report.conflicts.length > 0) {
          const ids = report.conflicts.map((c) => c.id);
          throw new ApplyConflictError(
            `${ids.length} connection(s) left as stored because of conflicts: ${report.conflicts
              .map((c) => `${c.id} (${c.file ?? 'no file'}: ${c.fields.map((f) => f.path).join(', ')})`)
              .join('; ')}. Edit the file to agree with the store, or run apply --force ${ids.join(' ')}`,
          );
        }
      },
    );
}
