import type { ConnectionStore } from '../store/connection-store.js';
import { referencedSecrets, type SecretSource } from '../templates/render-request.js';

/**
 * Each stored connection that reads a secret this process does not have, with the missing names
 * (never values): every delivery of it would fail with TEMPLATE_ERROR, so health calls it misconfigured.
 */
export async function missingSecrets(
  store: Pick<ConnectionStore, 'list'>,
  secrets: SecretSource,
): Promise<Map<string, string[]>> {
  const missing = new Map<string, string[]>();
  for (const { connection } of await store.list()) {
    const names = referencedSecrets(connection).filter((name) => secrets.get(name) === undefined);
    if (names.length > 0) missing.set(connection.id, names);
  }
  return missing;
}
