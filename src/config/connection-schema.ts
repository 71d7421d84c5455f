import { z } from 'zod';
import { connectionOriginSchema } from './connection-origin.js';
import { authSchema } from './auth-schema.js';
import {
  BATCH_FIELDS,
  BODY_FIELDS,
  CIRCUIT_FIELDS,
  CONNECTION_FIELDS as F,
  DEDUPE_FIELDS,
  LIMITS_FIELDS,
  REQUEST_FIELDS,
  RESPONSE_FIELDS,
  RETRY_FIELDS,
  TESTING_FIELDS,
  TIMEOUT_FIELDS,
} from './connection-fields.js';
import { durationMs } from './duration.js';
import { headerName, slug, templateString } from './schema-parts.js';

export {
  authSchema,
  hmacSchema,
  oauth2Schema,
  type Auth,
  type HmacAuth,
  type OAuth2Auth,
} from './auth-schema.js';
export { templateString } from './schema-parts.js';
export {
  jsonMatch,
  matcherSchema,
  ruleSchema,
  statusMatch,
  verdictName,
  type JsonMatch,
  type Matcher,
  type Rule,
  type StatusMatch,
  type VerdictName,
} from './rule-schema.js';
import { ruleSchema } from './rule-schema.js';
import { settingValue } from './setting-schema.js';

/**
 * The connection file schema: the product's main interface for integration engineers.
 * Every object is strict, so a misspelt key is an error naming the field rather than a silent no-op.
 */

export const retrySchema = z
  .object({
    /** Total attempts, the first one included. Without it and with a deadline, retries go on until the deadline. */
    attempts: z.number().int().min(1).max(10_000).optional().meta(RETRY_FIELDS.attempts),
    /**
     * Keep trying for this long after the unsubscribe was received (e.g. `10d`: CAN-SPAM gives 10
     * business days). Past it the delivery fails with DEADLINE_PASSED.
     */
    deadline: durationMs.optional().meta(RETRY_FIELDS.deadline),
    /** A delivery still failing this close to its deadline is flagged (default: a fifth of the deadline). */
    warnBefore: durationMs.optional().meta(RETRY_FIELDS.warnBefore),
    backoff: z.enum(['exponential', 'fixed', 'schedule']).default('exponential').meta(RETRY_FIELDS.backoff),
    /** First retry delay (exponential) or every delay (fixed). */
    delay: durationMs.default(5_000).meta(RETRY_FIELDS.delay),
    /** `backoff: schedule`: the wait before each retry; the last one repeats. */
    schedule: z.array(durationMs).min(1).max(100).optional().meta(RETRY_FIELDS.schedule),
    maxDelay: durationMs.default(3_600_000).meta(RETRY_FIELDS.maxDelay),
    /** Spread retries randomly over [delay/2, delay] so a recovered CRM is not hit by a wave. */
    jitter: z.boolean().default(true).meta(RETRY_FIELDS.jitter),
    /** Longest Retry-After the CRM may ask for; longer answers are capped to this. */
    maxRetryAfter: durationMs.default(3_600_000).meta(RETRY_FIELDS.maxRetryAfter),
  })
  .strict()
  .superRefine((retry, ctx) => {
    if (retry.backoff === 'schedule' && !retry.schedule) {
      ctx.addIssue({
        code: 'custom',
        path: ['schedule'],
        message: 'backoff: schedule needs a schedule, e.g. [1m, 5m, 30m, 2h]',
      });
    }
    if (retry.schedule && retry.backoff !== 'schedule') {
      ctx.addIssue({
        code: 'custom',
        path: ['backoff'],
        message: 'a schedule is only used with backoff: schedule',
      });
    }
    if (retry.warnBefore !== undefined && retry.deadline === undefined) {
      ctx.addIssue({ code: 'custom', path: ['warnBefore'], message: 'warnBefore needs a deadline' });
    }
  })
  .transform((retry) => ({
    ...retry,
    // Neither attempts nor deadline: 10 attempts. Deadline only: attempts are bounded by the deadline.
    attempts: retry.attempts ?? (retry.deadline === undefined ? 10 : 10_000),
  }));
export type RetryPolicy = z.infer<typeof retrySchema>;

export const timeoutsSchema = z
  .object({
    connect: durationMs.default(5_000).meta(TIMEOUT_FIELDS.connect),
    headers: durationMs.default(10_000).meta(TIMEOUT_FIELDS.headers),
    body: durationMs.default(10_000).meta(TIMEOUT_FIELDS.body),
  })
  .strict();
export type Timeouts = z.infer<typeof timeoutsSchema>;

/**
 * How hard this connection's CRM may be hit, enforced across every worker process through Redis:
 * `perSecond` (GCRA, with `burst` requests allowed at once) and `concurrency` (requests in flight).
 */
export const limitsSchema = z
  .object({
    perSecond: z.number().positive().max(10_000).optional().meta(LIMITS_FIELDS.perSecond),
    /** Requests that may go at once after a quiet spell (default: one second's worth, at least 1). */
    burst: z.number().int().min(1).max(10_000).optional().meta(LIMITS_FIELDS.burst),
    concurrency: z.number().int().min(1).max(1_000).optional().meta(LIMITS_FIELDS.concurrency),
  })
  .strict()
  .superRefine((limits, ctx) => {
    if (limits.burst !== undefined && limits.perSecond === undefined)
      ctx.addIssue({ code: 'custom', path: ['burst'], message: 'burst needs perSecond' });
  });
export type Limits = z.infer<typeof limitsSchema>;

/**
 * The circuit breaker. Retryable failures (network errors, timeouts, 5xx: the CRM is not answering
 * properly) count; definite answers (success, or a permanent refusal of one request) mean the CRM
 * is up. Open, deliveries wait (nothing is dropped, no attempt is spent); after `cooldown` one probe
 * goes through, and its success closes the circuit.
 */
export const circuitSchema = z
  .object({
    enabled: z.boolean().default(true).meta(CIRCUIT_FIELDS.enabled),
    /** Consecutive retryable failures that open the circuit. */
    failures: z.number().int().min(1).max(10_000).default(10).meta(CIRCUIT_FIELDS.failures),
    /** Also open when at least this share of the outcomes in `window` failed (with `minRequests` of them). */
    failureRatio: z.number().gt(0).max(1).optional().meta(CIRCUIT_FIELDS.failureRatio),
    window: durationMs.default(60_000).meta(CIRCUIT_FIELDS.window),
    minRequests: z.number().int().min(1).max(100_000).default(20).meta(CIRCUIT_FIELDS.minRequests),
    /** How long the circuit stays open before a probe. */
    cooldown: durationMs.default(30_000).meta(CIRCUIT_FIELDS.cooldown),
    /** Consecutive retryable failures that raise `connection_failing` (before the circuit opens). */
    warnAfter: z.number().int().min(1).max(10_000).default(3).meta(CIRCUIT_FIELDS.warnAfter),
  })
  .strict();
export type CircuitPolicy = z.infer<typeof circuitSchema>;

/** The same email to the same connection within `window` is delivered once; later ones are merged into it. `0` turns it off. */
export const dedupeSchema = z
  .object({ window: durationMs.default(600_000).meta(DEDUPE_FIELDS.window) })
  .strict();
export type DedupePolicy = z.infer<typeof dedupeSchema>;

/**
 * Many CRMs take many addresses per request. A batched connection's deliveries are grouped, up to
 * `maxSize` or after `maxWait`, and sent as one request whose JSON body lists them with `$each`;
 * every delivery still gets its own outcome (rules with `{{email}}` in them read per-item results).
 */
export const batchSchema = z
  .object({
    maxSize: z.number().int().min(2).max(1_000).meta(BATCH_FIELDS.maxSize),
    /** How long the first delivery of a batch waits for others. */
    maxWait: durationMs.default(1_000).meta(BATCH_FIELDS.maxWait),
  })
  .strict()
  .refine((batch) => batch.maxWait <= 60_000, { path: ['maxWait'], message: 'at most 60s' });
export type BatchPolicy = z.infer<typeof batchSchema>;

/** The marker of a batched JSON body: `[{ $each: <item> }]` renders `<item>` once per unsubscribe. */
export const EACH_KEY = '$each';

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

/**
 * Exactly one kind: `json` (a structure whose string leaves are templates), `form` (fields of an
 * `application/x-www-form-urlencoded` body; a list value repeats the field), `xml` or `text` (one
 * template string; XML escapes values, text does not). `contentType` overrides the default one.
 */
export const bodySchema = z
  .object({
    json: jsonTemplate.optional().meta(BODY_FIELDS.json),
    form: z
      .record(z.string().min(1), z.union([templateString, z.array(templateString).min(1)]))
      .optional()
      .meta(BODY_FIELDS.form),
    xml: z.string().min(1).max(65_536).optional().meta(BODY_FIELDS.xml),
    text: z.string().min(1).max(65_536).optional().meta(BODY_FIELDS.text),
    contentType: z.string().min(1).max(200).optional().meta(BODY_FIELDS.contentType),
  })
  .strict()
  .superRefine((body, ctx) => {
    const kinds = (['json', 'form', 'xml', 'text'] as const).filter((kind) => body[kind] !== undefined);
    if (kinds.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: [],
        message:
          kinds.length === 0 ? 'give one of json, form, xml or text' : `give only one of ${kinds.join(', ')}`,
      });
    }
    if (body.text !== undefined && body.contentType === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['contentType'],
        message: 'a text body needs a contentType, e.g. text/plain',
      });
    }
  });
export type BodyTemplate = z.infer<typeof bodySchema>;

export const requestSchema = z
  .object({
    method: z.enum(['POST', 'PUT', 'PATCH', 'DELETE', 'GET']).default('POST').meta(REQUEST_FIELDS.method),
    url: templateString.meta(REQUEST_FIELDS.url),
    auth: authSchema.default({ type: 'none' }).meta(REQUEST_FIELDS.auth),
    headers: z.record(headerName, templateString).default({}).meta(REQUEST_FIELDS.headers),
    body: bodySchema.optional().meta(REQUEST_FIELDS.body),
    timeouts: timeoutsSchema
      .default({ connect: 5_000, headers: 10_000, body: 10_000 })
      .meta(REQUEST_FIELDS.timeouts),
    maxResponseBytes: z
      .number()
      .int()
      .min(1_024)
      .max(1_048_576)
      .default(65_536)
      .meta(REQUEST_FIELDS.maxResponseBytes),
  })
  .strict();
export type RequestTemplate = z.infer<typeof requestSchema>;

export const connectionSchema = z
  .object({
    id: slug.meta(F.id),
    account: slug.meta(F.account),
    name: z.string().min(1).max(200).meta(F.name),
    enabled: z.boolean().default(true).meta(F.enabled),
    campaigns: z
      .union([z.literal('*'), z.array(slug)], {
        error: (issue) =>
          issue.code === 'invalid_union'
            ? `expected '*' (every campaign of the account) or a list of campaign ids, e.g. [spring-sale, black-friday]; got ${String(JSON.stringify(issue.input)).slice(0, 60)}`
            : undefined,
      })
      .default([])
      .meta(F.campaigns),
    /**
     * Deliver unsubscribes that came in from this account's own systems (a key created with
     * `--origin advertiser`) back to this connection too. Off by default: sending an advertiser its own
     * unsubscribes back starts echo loops between two systems that sync each other.
     */
    echo: z.boolean().default(false).meta(F.echo),
    testing: z
      .object({
        email: z.string().min(3).max(254).meta(TESTING_FIELDS.email),
        campaign: slug.optional().meta(TESTING_FIELDS.campaign),
        source: z.string().min(1).max(256).optional().meta(TESTING_FIELDS.source),
        attributes: z.record(z.string(), z.string()).default({}).meta(TESTING_FIELDS.attributes),
      })
      .strict()
      .optional()
      .meta(F.testing),
    settings: z.record(z.string(), settingValue).default({}).meta(F.settings),
    request: requestSchema.meta(F.request),
    response: z
      .object({ rules: z.array(ruleSchema).max(50).default([]).meta(RESPONSE_FIELDS.rules) })
      .strict()
      .default({ rules: [] })
      .meta(F.response),
    // prefault: the empty policy is parsed, so the defaults above (and the attempts rule) apply.
    retry: retrySchema.prefault({}).meta(F.retry),
    limits: limitsSchema.default({}).meta(F.limits),
    circuit: circuitSchema.prefault({}).meta(F.circuit),
    dedupe: dedupeSchema.prefault({}).meta(F.dedupe),
    batch: batchSchema.optional().meta(F.batch),
  })
  .strict()
  .superRefine((connection, ctx) => {
    const body = connection.request.body;
    const hasEach = body?.json !== undefined && JSON.stringify(body.json).includes(`"${EACH_KEY}"`);
    if (connection.batch && !hasEach)
      ctx.addIssue({
        code: 'custom',
        path: ['request', 'body'],
        message: `a batched connection needs a JSON body with a list written [{ ${EACH_KEY}: ... }], rendered once per unsubscribe`,
      });
    if (!connection.batch && hasEach)
      ctx.addIssue({
        code: 'custom',
        path: ['batch'],
        message: `${EACH_KEY} renders a list of unsubscribes: add batch: { maxSize: ... }`,
      });
  });

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
  /** Where this version came from (file and hash, or API/CLI/console and who). */
  origin: connectionOriginSchema.optional(),
  /** Before origins were recorded: the file path, or `admin-api`. Read, never written. */
  source: z.string().optional(),
});
export type StoredConnection = z.infer<typeof storedConnectionSchema>;
