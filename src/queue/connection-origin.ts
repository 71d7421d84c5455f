import path from 'node:path';
import type { StoredConnection } from '../config/connection-schema.js';

/**
 * Where a stored connection came from, as a delivery error names it: its file (relative to the
 * working directory when inside it, as `connections/acme.yaml`), or `connection acme (admin-api)`.
 * The one place that reads `source`, so a richer provenance only changes this function.
 */
export function connectionOrigin(stored: Pick<StoredConnection, 'connection' | 'source'>): string {
  const { source } = stored;
  if (source && /\.ya?ml$/i.test(source)) {
    const relative = path.relative(process.cwd(), source);
    return relative && !relative.startsWith('..') && !path.isAbsolute(relative) ? relative : source;
  }
  return `connection ${stored.connection.id}${source ? ` (${source})` : ''}`;
}
