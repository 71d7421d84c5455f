import { z } from 'zod';
import { applyConnections, type ApplyItem } from '../../config/apply-connections.js';
import type { ConfigIssue } from '../../errors.js';
import { InputError } from '../../errors.js';
import { connectionConflictSchema } from '../../store/connection-conflicts.js';
import { validateConnection } from './connection-validation.js';
import type { ConnectionAdminDeps } from './connections.js';
import type { AdminApp } from './index.js';
import { originOf } from './operator.js';
import { errorBody } from './schemas.js';

const versionRef = z.object({ id: z.string(), version: z.number() });

const applyBody = z
  .object({
    connections: z.array(z.unknown()).max(10_000),
    /**
     * The file each connection came from, in the same order (what `unsub-relay apply` sends): each
     * version records its file and the hash of its text.
     */
    files: z
      .array(
        z
          .object({
            file: z.string().min(1).max(500),
            hash: z.string().regex(/^[0-9a-f]{64}$/, 'the sha256 of the file, 64 hex digits'),
          })
          .strict(),
      )
      .optional(),
    /** Ids whose conflicts the file wins (and deleted ones it creates again). */
    force: z.array(z.string().min(1)).max(10_000).default([]),
    /** Also delete stored connections once applied from a file and missing from this set. */
    prune: z.boolean().default(false),
  })
  .strict();

/**
 * `POST /apply` (the `apply` command) and `GET /conflicts`: connections applied three-way, as the
 * engine applies its directory at start (docs/connections.md, "Files and the store").
 */
export function registerApplyRoutes(admin: AdminApp, deps: ConnectionAdminDeps): void {
  admin.post(
    '/apply',
    {
      schema: {
        summary:
          'Apply connection files three-way (what each file changed since it was last applied); validated all or nothing; answers created, changed, unchanged, removed, conflicts and kept-deleted',
        tags: ['connections'],
        body: applyBody,
        response: {
          200: z.object({
            created: z.array(versionRef),
            changed: z.array(
              z.object({ id: z.string(), from: z.number(), to: z.number(), fields: z.array(z.string()) }),
            ),
            unchanged: z.array(versionRef),
            removed: z.array(versionRef),
            conflicts: z.array(connectionConflictSchema),
            deleted: z.array(z.object({ id: z.string(), at: z.string(), by: z.string() })),
          }),
          400: errorBody,
        },
      },
    },
    async (request) => {
      const { connections, files, force, prune } = request.body;
      if (files && files.length !== connections.length)
        throw new InputError('files must name one file per connection, in the same order', {
          files: `${files.length} given for ${connections.length} connection(s)`,
        });
      const issues: Array<ConfigIssue & { index: number }> = [];
      const items: ApplyItem[] = [];
      const seen = new Map<string, number>();
      connections.forEach((input, index) => {
        const result = validateConnection(input);
        issues.push(...result.issues.map((issue) => ({ ...issue, index })));
        if (!result.connection) return;
        const other = seen.get(result.connection.id);
        if (other !== undefined) {
          issues.push({
            index,
            field: 'id',
            reason: `"${result.connection.id}" is already used by connections[${other}]`,
          });
          return;
        }
        seen.set(result.connection.id, index);
        const from = files?.[index];
        items.push({
          connection: result.connection,
          ...(from ? { file: from.file, fileHash: from.hash } : {}),
        });
      });
      if (issues.length > 0) {
        const fields = Object.fromEntries(
          issues.map((i) => {
            const file = files?.[i.index]?.file;
            if (file) return [`${file}: ${i.field || '(connection)'}`, i.reason];
            return [`connections[${i.index}]${i.field ? `.${i.field}` : ''}`, i.reason];
          }),
        );
        throw new InputError(
          `${issues.length} problem(s) found; nothing was applied: ${Object.keys(fields).join(', ')}`,
          fields,
        );
      }
      const unknown = force.filter((id) => !seen.has(id));
      if (unknown.length > 0)
        throw new InputError(`--force names connections not in this apply: ${unknown.join(', ')}`, {
          force: `not in the set: ${unknown.join(', ')}`,
        });
      const report = await applyConnections({ store: deps.store, conflicts: deps.conflicts }, items, {
        origin: originOf(request),
        force: new Set(force),
        prune,
        ...(deps.events ? { events: deps.events } : {}),
      });
      for (const account of new Set(items.map((i) => i.connection.account)))
        await deps.campaigns.addAccount(account);
      request.log.info(
        {
          created: report.created.length,
          changed: report.changed.length,
          removed: report.removed.length,
          conflicts: report.conflicts.map((c) => c.id),
        },
        'connections applied',
      );
      return report;
    },
  );

  admin.get(
    '/conflicts',
    {
      schema: {
        summary:
          'Connection files that conflict with changes made through the API, waiting for apply --force or an edited file',
        tags: ['connections'],
        response: { 200: z.object({ conflicts: z.array(connectionConflictSchema) }) },
      },
    },
    async () => ({ conflicts: await deps.conflicts.list() }),
  );
}
