import path from 'node:path';
import { z } from 'zod';

/**
 * Where a version of a connection came from, recorded with the version: a file (its path and the
 * sha256 of its text) applied at start or by `apply`, or a change through the admin API, the CLI or
 * the console, and who made it (the `X-Operator` name; the admin token itself names no one).
 */
export const connectionOriginSchema = z.object({
  /** What wrote it: the engine applying its directory at start, or a client of the admin API. */
  via: z.enum(['start', 'api', 'cli', 'console']),
  /** Who: the operator's name for API, CLI and console changes; the engine's host for `start`. */
  by: z.string().max(100).optional(),
  /** The connection file applied, as its path was given. */
  file: z.string().max(500).optional(),
  /** sha256 (hex) of the file's text as applied. */
  fileHash: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
});
export type ConnectionOrigin = z.infer<typeof connectionOriginSchema>;

/** The clients the admin API tells apart (`X-Unsub-Relay-Client`); anything else is `api`. */
export const ADMIN_CLIENTS = ['cli', 'console'] as const;

/** One line for people: `file connections/acme.yaml (sha256 1a2b3c4d5e6f) via start (host-1)`, `cli (jane@cli)`. */
export function describeOrigin(origin: ConnectionOrigin | undefined, legacySource?: string): string {
  if (!origin) return legacySource ?? 'unknown';
  const who = origin.by ? `${origin.via} (${origin.by})` : origin.via;
  if (!origin.file) return who;
  const hash = origin.fileHash ? ` (sha256 ${origin.fileHash.slice(0, 12)})` : '';
  return `file ${origin.file}${hash} via ${who}`;
}

/** The file a stored version came from, if it came from one (older records said so in `source`). */
export function originFile(record: { origin?: ConnectionOrigin; source?: string }): string | undefined {
  if (record.origin) return record.origin.file;
  return record.source && record.source !== 'admin-api' ? record.source : undefined;
}

/**
 * Where a stored connection came from, as a delivery error names it: the file its version was applied
 * from (relative to the working directory when inside it, as `connections/acme.yaml`), or
 * `connection acme (cli, jane@cli)` for a version made through the admin API.
 */
export function connectionSourceName(stored: {
  connection: { id: string };
  origin?: ConnectionOrigin;
  source?: string;
}): string {
  const file = originFile(stored);
  if (file) {
    const relative = path.relative(process.cwd(), file);
    return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : file;
  }
  const how = stored.origin ? describeOrigin(stored.origin) : stored.source;
  return `connection ${stored.connection.id}${how ? ` (${how})` : ''}`;
}
