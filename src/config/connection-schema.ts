import { z } from 'zod';
import { durationMs } from './duration.js';

/**
 * The connection file schema: the product's main interface for integration engineers.
 * Every object is strict, so a misspelt key is an error naming the field rather than a silent no-op.
 */

const slug = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9_-]{0,62}$/,
    'use 1-63 lowercase letters, digits, "-" or "_", starting with a letter or digit',
  );

/** A Handlebars template string. Compiled and checked by the template module at load time. */
export const templateString = z
  .string()
  .min(1, 'must not be empty')
  .max(8_192, 'templates are limited to 8 KiB');

const headerName = z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'not a valid HTTP header name');

export const authSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('none') }).strict(),
  z
    .object({
      type: z.literal('api_key'),
      /** Header that carries the key, e.g. `Api-Key` or `X-API-Key`. */
      header: headerName,
      value: templateString,
      /** Put before the value, e.g. `Token ` or `Klaviyo-API-Key `. */
      prefix: z.string().max(64).optional(),
    })
    .strict(),
  z.object({ type: z.literal('basic'), username: templateString, password: templateString }).strict(),
  z.object({ type: z.literal('bearer'), token: templateString }).strict(),
]);
export type Auth = z.infer<typeof authSchema>;

/** `200`, `"2xx"` (a class) or `"500-599"` (an inclusive range). */
export const statusMatch = z.union([
  z.number().int().min(100).max(599),
  z.string().regex(/^[1-5]xx$/, 'write a status class like "4xx"'),
  z
    .string()
    .regex(/^[1-5]\d\d-[1-5]\d\d$/, 'write a status range like "500-599"')
    .refine((range) => {
      const [low, high] = range.split('-').map(Number);
      return low! <= high!;
    }, 'the range must go from low to high'),
]);
export type StatusMatch = z.infer<typeof statusMatch>;

const regexSource = z
  .string()
  .max(512)
  .refine((source) => {
    try {
      new RegExp(source);
      return true;
    } catch {
      return false;
    }
  }, 'not a valid regular expression');

export const matcherSchema = z
  .object({
    status: z.union([statusMatch, z.array(statusMatch).min(1)]).optional(),
    /** The response body contains this text. */
    bodyContains: z.string().min(1).max(512).optional(),
    /** The response body matches this regular expression. */
    bodyMatches: regexSource.optional(),
    /** A response header is present (`{ name }`), equals a value, or matches a regex. */
    header: z
      .object({ name: headerName, equals: z.string().optional(), matches: regexSource.optional() })
      .strict()
      .optional(),
  })
  .strict()
  .refine((m) => Object.values(m).some((v) => v !== undefined), 'a rule must test at least one thing');
export type Matcher = z.infer<typeof matcherSchema>;

export const verdictName = z.enum(['success', 'retry', 'fail']);
export type VerdictName = z.infer<typeof verdictName>;

/**
 * `{ when: <match>, then: <verdict> }` or `{ otherwise: <verdict> }`. One object shape rather than a
 * union, so a mistake inside `when` is reported at its own field instead of as "invalid input".
 */
export const ruleSchema = z
  .object({
    when: matcherSchema.optional(),
    then: verdictName.optional(),
    otherwise: verdictName.optional(),
    /** For `retry`: wait this long instead of the backoff schedule. */
    after: durationMs.optional(),
    /** Shown in the attempt record, e.g. "HubSpot says already unsubscribed". */
    reason: z.string().max(200).optional(),
  })
  .strict()
  .superRefine((rule, ctx) => {
    if (rule.otherwise !== undefined) {
      if (rule.when !== undefined || rule.then !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['otherwise'],
          message: 'write either "otherwise: <verdict>" or "when" with "then", not both',
        });
      }
      return;
    }
    if (rule.when === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['when'],
        message: 'a rule needs "when" (what to match) and "then", or "otherwise"',
      });
    if (rule.then === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['then'],
        message: 'a rule needs "then": success, retry or fail',
      });
  });
export type Rule = z.infer<typeof ruleSchema>;

export const retrySchema = z
  .object({
    /** Total attempts, the first one included. */
    attempts: z.number().int().min(1).max(100).default(10),
    backoff: z.enum(['exponential', 'fixed']).default('exponential'),
    /** First retry delay (exponential) or every delay (fixed). */
    delay: durationMs.default(5_000),
    maxDelay: durationMs.default(3_600_000),
    /** Spread retries randomly over [delay/2, delay] so a recovered CRM is not hit by a wave. */
    jitter: z.boolean().default(true),
    /** Longest Retry-After the CRM may ask for; longer answers are capped to this. */
    maxRetryAfter: durationMs.default(3_600_000),
  })
  .strict();
export type RetryPolicy = z.infer<typeof retrySchema>;

export const timeoutsSchema = z
  .object({
    connect: durationMs.default(5_000),
    headers: durationMs.default(10_000),
    body: durationMs.default(10_000),
  })
  .strict();
export type Timeouts = z.infer<typeof timeoutsSchema>;

/** JSON values allowed in a body template: string leaves are templates, the structure stays JSON. */
export type JsonTemplate =
  string | number | boolean | null | JsonTemplate[] | { [key: string]: JsonTemplate };
export const jsonTemplate: z.ZodType<JsonTemplate> = z.lazy(() =>
  z.union([
    templateString,
    z.number(),
    z.boolean(),
    z.null(),
    z.array(jsonTemplate),
    z.record(z.string(), jsonTemplate),
  ]),
);

export const requestSchema = z
  .object({
    method: z.enum(['POST', 'PUT', 'PATCH', 'DELETE', 'GET']).default('POST'),
    /** Templated URL; values are percent-encoded where they land. */
    url: templateString,
    auth: authSchema.default({ type: 'none' }),
    headers: z.record(headerName, templateString).default({}),
    body: z.object({ json: jsonTemplate }).strict().optional(),
    timeouts: timeoutsSchema.default({ connect: 5_000, headers: 10_000, body: 10_000 }),
    /** Bytes of response body read for rules and records; the rest is discarded. */
    maxResponseBytes: z.number().int().min(1_024).max(1_048_576).default(65_536),
  })
  .strict();
export type RequestTemplate = z.infer<typeof requestSchema>;

export const connectionSchema = z
  .object({
    id: slug,
    account: slug,
    name: z.string().min(1).max(200),
    enabled: z.boolean().default(true),
    /** Linked campaigns, or "*" for every campaign of the account (and unsubscribes with none). */
    campaigns: z.union([z.literal('*'), z.array(slug)]).default([]),
    /** Per-connection values for templates (`{{settings.listId}}`), e.g. list ids. Not secrets. */
    settings: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
    request: requestSchema,
    response: z
      .object({ rules: z.array(ruleSchema).max(50).default([]) })
      .strict()
      .default({ rules: [] }),
    retry: retrySchema.default({
      attempts: 10,
      backoff: 'exponential',
      delay: 5_000,
      maxDelay: 3_600_000,
      jitter: true,
      maxRetryAfter: 3_600_000,
    }),
  })
  .strict();

/** A validated connection as written in its file (defaults applied, durations in ms). */
export type Connection = z.infer<typeof connectionSchema>;
/** What a connection file holds before validation. */
export type ConnectionInput = z.input<typeof connectionSchema>;

/** A connection as kept in the shared store: the file's content plus its version. */
export const storedConnectionSchema = z.object({
  connection: connectionSchema,
  version: z.number().int().min(1),
  /** sha256 of the canonical JSON; a re-apply of an unchanged file keeps the version. */
  hash: z.string(),
  updatedAt: z.string(),
  source: z.string().optional(),
});
export type StoredConnection = z.infer<typeof storedConnectionSchema>;
