import { settingFromEnv } from './setting-schema.js';
import type { ConfigIssue } from '../errors.js';
import { isSecretNameAllowed } from '../templates/context.js';

/**
 * Resolves `settings: { listId: { env: ACME_LIST_ID, default: ... } }` from the environment of the
 * process loading the file. An empty variable counts as unset, as it does for secrets.
 */
export function resolveSettingSources(
  settings: unknown,
  env: NodeJS.ProcessEnv,
): { settings: unknown; issues: ConfigIssue[] } {
  if (!isPlainObject(settings)) return { settings, issues: [] };
  const issues: ConfigIssue[] = [];
  const resolved: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(settings)) {
    const field = `settings.${name}`;
    const ref = isPlainObject(value) && 'env' in value ? settingFromEnv.safeParse(value) : undefined;
    if (!ref) {
      resolved[name] = value;
      continue;
    }
    if (!ref.success) {
      for (const issue of ref.error.issues) {
        const keys = issue.code === 'unrecognized_keys' ? issue.keys : [undefined];
        for (const key of keys)
          issues.push({
            field: [field, ...issue.path.map(String), ...(key ? [key] : [])].join('.'),
            reason: key
              ? 'unknown field: write { env: NAME } or { env: NAME, default: value }'
              : issue.message,
          });
      }
      continue;
    }
    const variable = ref.data.env;
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
