import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { StartupError } from './errors.js';

/** Where a locally generated admin token is kept, for the CLI on the same machine to find. */
export const LOCAL_ADMIN_TOKEN_FILE = path.join('.unsub-relay', 'admin-token');

/**
 * The admin API always has a token. Production sets ADMIN_TOKEN. On a developer's machine, without
 * it, one is generated once and kept in `.unsub-relay/admin-token` (mode 600) — every engine process
 * started there shares it, and `npx unsub-relay` reads it — so `npm start` needs no setup.
 */
export function resolveAdminToken(
  configured: string | undefined,
  file = LOCAL_ADMIN_TOKEN_FILE,
): { token: string; generated?: string } {
  if (configured) return { token: configured };
  const existing = readLocalAdminToken(file);
  if (existing) return { token: existing, generated: file };
  const token = randomBytes(24).toString('base64url');
  try {
    mkdirSync(path.dirname(file), { recursive: true });
  } catch (error) {
    throw new StartupError(
      `cannot create ${path.dirname(file)} for a local admin token (${(error as NodeJS.ErrnoException).code}): set ADMIN_TOKEN`,
    );
  }
  try {
    writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
    return { token, generated: file };
  } catch {
    // Another process wrote it first: use theirs, so all processes share one token.
    return { token: readLocalAdminToken(file) ?? token, generated: file };
  }
}

export function readLocalAdminToken(file = LOCAL_ADMIN_TOKEN_FILE): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
