import { settingFromEnv } from './connection-schema.js';
import type { ConfigIssue } from '../errors.js';
import { isSecretNameAllowed } from '../templates/context.js';

/**
 * Resolves `settings: { listId: { env: ACME_LIST_ID, default: ... } }` from the environment of the
 * process loading the file. An entry that is not a well-formed reference is left for the schema to
 * report. An empty variable counts as unset, as it does for secrets.
 */
export function resolveSettingSources(
  settings: unknown,
  env: NodeJS.ProcessEnv,
): { settings: unknown; issues: ConfigIssue[] } {
  if (!isPlainObject(settings)) return { settings, issues: [] };
  const issues: ConfigIssue[] = [];
  const resolved: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(settings)) {
    const ref = isPlainObject(value) && 'env' in value ? settingFromEnv.safeParse(value) : undefined;
    if (!ref?.success) {
      resolved[name] = value;
      continue;
    }
    const variable = ref.data.env;
    const field = `settings.${name}`;
    if (!isSecretNameAllowed(variable)) {
      issues.push({
        field,
        reason: `${variable} is the engine's or the system's own variable: use another name`,
      });
      continue;
    }
    const fromEnv = Object.hasOwn(env, variable) ? env[variable] : undefined;
    if (fromEnv !== undefined && fromEnv !== '') resolved[name] = fromEnv;
    else if (ref.data.default !== undefined) resolved[name] = ref.data.default;
    else
      issues.push({
        field,
        reason: `environment variable ${variable} is not set (set it, or give a default)`,
      });
  }
  return { settings: resolved, issues };
}

/** True when any setting is written `{ env: ... }`, so the file needs resolving before validation. */
export function hasSettingSources(settings: unknown): boolean {
  return (
    isPlainObject(settings) && Object.values(settings).some((value) => isPlainObject(value) && 'env' in value)
  );
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
