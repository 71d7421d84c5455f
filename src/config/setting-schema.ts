import { z } from 'zod';

// A connection's `settings` values as files write them (connection-schema.ts uses `settingValue`).
const settingScalar = z.union([z.string(), z.number(), z.boolean()]);

/**
 * A setting read from the environment of the process that loads the file (`{ env: ACME_LIST_ID }`),
 * so one file serves production and a sandbox. Resolved by the loader (config/setting-sources.ts)
 * before validation; settings are not secrets: they appear in attempt records.
 */
export const settingFromEnv = z
  .object({
    env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'an environment variable name: letters, digits and "_"')
      .meta({
        description:
          'The environment variable whose value this setting takes, read when the file is loaded (not a secret: settings appear in attempt records).',
        examples: ['ACME_LIST_ID'],
      }),
    /** Used when the variable is unset or empty. */
    default: settingScalar.optional().meta({
      description:
        'The value used when the variable is unset or empty; without one, an unset variable is an error.',
      examples: ['12345'],
    }),
  })
  .strict()
  .meta({ description: 'A setting read from the environment: { env: NAME, default: ... }.' });
export type SettingFromEnv = z.infer<typeof settingFromEnv>;

// The file format takes `{ env: NAME }`; a validated connection holds only plain values. One that
// reaches validation unresolved (sent to the admin API, say) is refused: only files are resolved.
export const settingValue = z
  .union([settingScalar, settingFromEnv], {
    error: 'use a string, number or boolean, or { env: NAME, default: ... } to read it from the environment',
  })
  .transform((value, ctx) => {
    if (typeof value !== 'object') return value;
    ctx.addIssue({
      code: 'custom',
      message: `{ env: ${value.env} } is read when a connection file is loaded; send the value itself`,
    });
    return z.NEVER;
  });
