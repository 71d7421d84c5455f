import { z } from 'zod';
import { durationMs } from './duration.js';
import { InputError } from '../errors.js';
import { standardWebhookKey } from '../auth/hmac.js';

const flag = z
  .union([z.boolean(), z.string()])
  .transform((value) =>
    typeof value === 'boolean' ? value : ['1', 'true', 'yes', 'on'].includes(value.toLowerCase()),
  );

/** The engine's environment. Every variable is documented in README.md ("Environment"). */
export const envSchema = z
  .object({
    PORT: z.coerce.number().int().min(0).max(65_535).default(8080),
    HOST: z.string().default('0.0.0.0'),
    REDIS_URL: z.string().url().default('redis://127.0.0.1:6379'),
    /** Every Redis key (BullMQ's too) starts with this, so several installs can share one Redis. */
    REDIS_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]+$/, 'use letters, digits, "_", ".", ":" or "-"')
      .default('ur'),
    CONNECTIONS_DIR: z.string().default('./connections'),
    /** Which overlay files apply (`overlay: { environment: sandbox }`); none when unset. */
    CONNECTIONS_ENV: z.preprocess(
      (value) => (value === '' ? undefined : value), // `CONNECTIONS_ENV=` in an env file: none
      z
        .string()
        .regex(
          /^[a-z0-9][a-z0-9_-]{0,62}$/,
          'use lowercase letters, digits, "-" or "_" (an overlay\'s environment)',
        )
        .optional(),
    ),
    /** Connection secrets: one file per secret in this directory (Docker/Kubernetes secrets). */
    SECRETS_DIR: z.string().optional(),
    /** Connection secrets: a .json/.yaml map or NAME=value lines. The environment is read last. */
    SECRETS_FILE: z.string().optional(),
    /** Guards the admin API. Without it the admin API is not served. */
    ADMIN_TOKEN: z.string().min(16, 'use at least 16 characters').optional(),
    /** Largest admin API body in bytes: `apply` sends every connection file in one request. */
    ADMIN_BODY_LIMIT: z.coerce
      .number()
      .int()
      .min(16 * 1024, 'use at least 16384 bytes')
      .default(8 * 1024 * 1024),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** `json` lines, `pretty` for people, or `auto`: pretty on a terminal, JSON otherwise. */
    LOG_FORMAT: z.enum(['json', 'pretty', 'auto']).default('auto'),
    /** Emails in log lines: `masked` (j***@example.com) or `hashed` (a stable sha256 prefix). Never in full. */
    LOG_EMAILS: z.enum(['masked', 'hashed']).default('masked'),
    /** Allow delivery to loopback, private, link-local and metadata addresses. Off in production. */
    ALLOW_PRIVATE_TARGETS: flag.default(false),
    /** Which roles this process runs: the HTTP API, the delivery workers, or both. */
    ROLES: z
      .string()
      .default('api,worker')
      .transform((value) => new Set(value.split(',').map((role) => role.trim())))
      .refine((roles) => [...roles].every((role) => role === 'api' || role === 'worker') && roles.size > 0, {
        message: 'list "api", "worker" or both, comma-separated',
      }),
    WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(1_000).default(50),
    /** How long a worker may go silent before its jobs are taken over by another (crash recovery). */
    WORKER_LOCK_DURATION: durationMs.default(30_000),
    /** On SIGTERM, how long in-flight deliveries get to finish before the process exits anyway. */
    SHUTDOWN_TIMEOUT: durationMs.default(25_000),
    /**
     * The built-in sandbox CRM receiver used by the demo connection: `auto` serves it only when a loaded
     * connection delivers to it (`{{engine.sandboxUrl}}`), so removing the demo connection turns it off.
     */
    SANDBOX: z.union([z.literal('auto'), flag]).default('auto'),
    /** How long delivered jobs and their attempts are kept. */
    RETENTION_SUCCEEDED: durationMs.default(7 * 86_400_000),
    /** How long failed deliveries (and their attempts) are kept for replay. */
    RETENTION_FAILED: durationMs.default(30 * 86_400_000),
    /** How long accepted unsubscribes (and idempotency keys) are kept in the ledger. */
    RETENTION_UNSUBSCRIBES: durationMs.default(90 * 86_400_000),
    /** Where operational events are POSTed (JSON), each once per install. Without it they are logged, not sent. */
    EVENTS_WEBHOOK_URL: z.url({ protocol: /^https?$/, error: 'use an http:// or https:// URL' }).optional(),
    /** Signs the events webhook (Standard Webhooks); `whsec_<base64>` is decoded, any other value used as is. */
    EVENTS_WEBHOOK_SECRET: z
      .string()
      .min(16, 'use at least 16 characters')
      .refine((secret) => !secret.startsWith('whsec_') || isStandardWebhookKey(secret), {
        message: 'a whsec_ secret must be followed by base64 text',
      })
      .optional(),
  })
  .superRefine((env, ctx) => {
    // Deliveries refer to their unsubscribe's ledger entry: a failed one kept for replay must not
    // outlive it (LedgerRecords keeps entries alive beyond this when a delivery needs it later).
    if (env.RETENTION_UNSUBSCRIBES < env.RETENTION_FAILED)
      ctx.addIssue({
        code: 'custom',
        path: ['RETENTION_UNSUBSCRIBES'],
        message: 'must be at least RETENTION_FAILED: failed deliveries are replayed from the ledger',
      });
  });
export type Env = z.infer<typeof envSchema>;

function isStandardWebhookKey(secret: string): boolean {
  try {
    standardWebhookKey(secret);
    return true;
  } catch {
    return false;
  }
}

export function parseEnv(source: NodeJS.ProcessEnv = process.env): Env {
  const result = envSchema.safeParse(source);
  if (result.success) return result.data;
  const fields: Record<string, string> = {};
  for (const issue of result.error.issues) fields[issue.path.join('.')] = issue.message;
  throw new InputError(
    `invalid environment: ${Object.entries(fields)
      .map(([name, reason]) => `${name}: ${reason}`)
      .join('; ')}`,
    fields,
  );
}
