import { z } from 'zod';
import { verdictNames } from '../domain/delivery.js';
import { selectJson } from '../rules/json-match.js';
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

/** Sends an OAuth2 token in a header; `false` when the token goes elsewhere (`{{auth.accessToken}}`). */
const tokenPlacement = z.union([
  z.literal(false),
  z
    .object({ name: headerName.default('Authorization'), prefix: z.string().max(64).default('Bearer ') })
    .strict(),
]);

export const oauth2Schema = z
  .object({
    type: z.literal('oauth2_client_credentials'),
    /** Token endpoint (a template, e.g. with a per-tenant subdomain from settings). */
    tokenUrl: templateString,
    clientId: templateString,
    clientSecret: templateString,
    scope: templateString.optional(),
    audience: templateString.optional(),
    /** Extra token request parameters, e.g. SFMC's `account_id`. */
    params: z.record(z.string(), templateString).default({}),
    /** How the token request body is encoded. */
    tokenRequest: z.enum(['form', 'json']).default('form'),
    /** Client credentials in the body (`client_id`/`client_secret`) or as HTTP Basic. */
    clientAuth: z.enum(['body', 'basic']).default('body'),
    /** Where the delivery request carries the token. */
    header: tokenPlacement.default({ name: 'Authorization', prefix: 'Bearer ' }),
    /** Refresh this long before the token expires, so no request goes out with a dying token. */
    refreshBefore: durationMs.default(60_000),
    /** Used when the token response has no `expires_in`. */
    defaultTtl: durationMs.default(3_600_000),
  })
  .strict();
export type OAuth2Auth = z.infer<typeof oauth2Schema>;

export const hmacSchema = z
  .object({
    type: z.literal('hmac'),
    /**
     * `standard_webhooks`: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` over
     * `id.timestamp.body` with a `whsec_` base64 secret. `custom`: the header and payload below.
     */
    scheme: z.enum(['standard_webhooks', 'custom']).default('custom'),
    secret: templateString,
    algorithm: z.enum(['sha256', 'sha1', 'sha512']).default('sha256'),
    /** custom: header that carries the signature. */
    header: headerName.default('X-Signature'),
    /** custom: what is signed; `{{body}}`, `{{timestamp}}`, `{{id}}`, `{{method}}`, `{{url}}`, `{{path}}`. */
    payload: templateString.default('{{body}}'),
    encoding: z.enum(['hex', 'base64']).default('hex'),
    /** custom: put before the signature, e.g. `sha256=`. */
    prefix: z.string().max(64).default(''),
    /** custom: also send the timestamp (unix seconds) in this header. */
    timestampHeader: headerName.optional(),
  })
  .strict();
export type HmacAuth = z.infer<typeof hmacSchema>;

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
  oauth2Schema,
  hmacSchema,
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

const jsonScalar = z.union([z.string().max(1_024), z.number(), z.boolean(), z.null()]);

/**
 * A JSONPath (`$.errors[*].email`, `$.success`) and what the values it selects must do. String
 * values may be templates over the delivery (`contains: '{{email}}'`), for per-item results.
 */
export const jsonMatch = z
  .object({
    path: z
      .string()
      .min(1)
      .max(512)
      .refine((path) => selectJson(path, {}) !== undefined, 'not a valid JSONPath, e.g. $.errors[*].email'),
    exists: z.boolean().optional(),
    equals: jsonScalar.optional(),
    in: z.array(jsonScalar).min(1).max(100).optional(),
    contains: jsonScalar.optional(),
  })
  .strict()
  .refine(
    (m) => [m.exists, m.equals, m.in, m.contains].filter((v) => v !== undefined).length === 1,
    'give exactly one of exists, equals, in or contains',
  );
export type JsonMatch = z.infer<typeof jsonMatch>;

export const matcherSchema = z
  .object({
    status: z.union([statusMatch, z.array(statusMatch).min(1)]).optional(),
    /** The response body contains this text. */
    bodyContains: z.string().min(1).max(512).optional(),
    /** The response body matches this regular expression. */
    bodyMatches: regexSource.optional(),
    /** JSON path tests on the response body; all must hold. */
    json: z.union([jsonMatch, z.array(jsonMatch).min(1).max(10)]).optional(),
    /** A response header is present (`{ name }`), equals a value, or matches a regex. */
    header: z
      .object({ name: headerName, equals: z.string().optional(), matches: regexSource.optional() })
      .strict()
      .optional(),
  })
  .strict()
  .refine((m) => Object.values(m).some((v) => v !== undefined), 'a rule must test at least one thing');
export type Matcher = z.infer<typeof matcherSchema>;

/**
 * - `success`: delivered. `success_already_done`: the CRM says it was already unsubscribed (delivered).
 * - `retry`: try again (after `after`, Retry-After, or the backoff schedule).
 * - `rate_limited`: the CRM is throttling; wait as its headers say (Retry-After, X-RateLimit-Reset, or
 *   `delayHeader`) without spending an attempt.
 * - `refresh_auth`: the credentials were refused; fetch a new OAuth2 token once and resend.
 * - `fail`: permanent; kept as failed until replayed.
 */
export const verdictName = verdictNames;
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
    /** For `retry`: wait this long instead of the backoff schedule. For `rate_limited`: the wait when no header gives one. */
    after: durationMs.optional(),
    /** For `rate_limited`: the response header that says how long to wait (delta seconds, epoch seconds or ms, or an HTTP date). */
    delayHeader: headerName.optional(),
    /**
     * Shown in the attempt record, e.g. "HubSpot says already unsubscribed". A template over the
     * request's context and the answer: `{{response.status}}`, `{{response.body.message}}`,
     * `{{response.headers.x-request-id}}`, and in a batch `{{response.item.Message}}` (its own result).
     */
    reason: z.string().max(200).optional(),
    /**
     * `false`: a batch this rule refuses whole is not split to find a bad item (a wrong list id fails
     * every half alike); the whole batch fails as one, and can be replayed once the connection is fixed.
     */
    split: z.boolean().optional(),
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
    /** Total attempts, the first one included. Without it and with a deadline, retries go on until the deadline. */
    attempts: z.number().int().min(1).max(10_000).optional(),
    /**
     * Keep trying for this long after the unsubscribe was received (e.g. `10d`: CAN-SPAM gives 10
     * business days). Past it the delivery fails with DEADLINE_PASSED.
     */
    deadline: durationMs.optional(),
    /** A delivery still failing this close to its deadline is flagged (default: a fifth of the deadline). */
    warnBefore: durationMs.optional(),
    backoff: z.enum(['exponential', 'fixed', 'schedule']).default('exponential'),
    /** First retry delay (exponential) or every delay (fixed). */
    delay: durationMs.default(5_000),
    /** `backoff: schedule`: the wait before each retry; the last one repeats. */
    schedule: z.array(durationMs).min(1).max(100).optional(),
    maxDelay: durationMs.default(3_600_000),
    /** Spread retries randomly over [delay/2, delay] so a recovered CRM is not hit by a wave. */
    jitter: z.boolean().default(true),
    /** Longest Retry-After the CRM may ask for; longer answers are capped to this. */
    maxRetryAfter: durationMs.default(3_600_000),
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
    connect: durationMs.default(5_000),
    headers: durationMs.default(10_000),
    body: durationMs.default(10_000),
  })
  .strict();
export type Timeouts = z.infer<typeof timeoutsSchema>;

/**
 * How hard this connection's CRM may be hit, enforced across every worker process through Redis:
 * `perSecond` (GCRA, with `burst` requests allowed at once) and `concurrency` (requests in flight).
 */
export const limitsSchema = z
  .object({
    perSecond: z.number().positive().max(10_000).optional(),
    /** Requests that may go at once after a quiet spell (default: one second's worth, at least 1). */
    burst: z.number().int().min(1).max(10_000).optional(),
    concurrency: z.number().int().min(1).max(1_000).optional(),
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
    enabled: z.boolean().default(true),
    /** Consecutive retryable failures that open the circuit. */
    failures: z.number().int().min(1).max(10_000).default(10),
    /** Also open when at least this share of the outcomes in `window` failed (with `minRequests` of them). */
    failureRatio: z.number().gt(0).max(1).optional(),
    window: durationMs.default(60_000),
    minRequests: z.number().int().min(1).max(100_000).default(20),
    /** How long the circuit stays open before a probe. */
    cooldown: durationMs.default(30_000),
    /** Consecutive retryable failures that raise `connection_failing` (before the circuit opens). */
    warnAfter: z.number().int().min(1).max(10_000).default(3),
  })
  .strict();
export type CircuitPolicy = z.infer<typeof circuitSchema>;

/** The same email to the same connection within `window` is delivered once; later ones are merged into it. `0` turns it off. */
export const dedupeSchema = z.object({ window: durationMs.default(600_000) }).strict();
export type DedupePolicy = z.infer<typeof dedupeSchema>;

/**
 * Many CRMs take many addresses per request. A batched connection's deliveries are grouped, up to
 * `maxSize` or after `maxWait`, and sent as one request whose JSON body lists them with `$each`;
 * every delivery still gets its own outcome (rules with `{{email}}` in them read per-item results).
 */
export const batchSchema = z
  .object({
    maxSize: z.number().int().min(2).max(1_000),
    /** How long the first delivery of a batch waits for others. */
    maxWait: durationMs.default(1_000),
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
    json: jsonTemplate.optional(),
    form: z.record(z.string().min(1), z.union([templateString, z.array(templateString).min(1)])).optional(),
    xml: z.string().min(1).max(65_536).optional(),
    text: z.string().min(1).max(65_536).optional(),
    contentType: z.string().min(1).max(200).optional(),
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
    method: z.enum(['POST', 'PUT', 'PATCH', 'DELETE', 'GET']).default('POST'),
    /** Templated URL; values are percent-encoded where they land. */
    url: templateString,
    auth: authSchema.default({ type: 'none' }),
    headers: z.record(headerName, templateString).default({}),
    body: bodySchema.optional(),
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
    /**
     * Deliver unsubscribes that came in from this account's own systems (a key created with
     * `--origin advertiser`) back to this connection too. Off by default: sending an advertiser its own
     * unsubscribes back starts echo loops between two systems that sync each other.
     */
    echo: z.boolean().default(false),
    /** What `unsub-relay test` sends: a test address (and campaign, source, attributes) that is safe to unsubscribe. */
    testing: z
      .object({
        email: z.string().min(3).max(254),
        campaign: slug.optional(),
        source: z.string().min(1).max(256).optional(),
        attributes: z.record(z.string(), z.string()).default({}),
      })
      .strict()
      .optional(),
    /** Per-connection values for templates (`{{settings.listId}}`), e.g. list ids. Not secrets. */
    settings: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
    request: requestSchema,
    response: z
      .object({ rules: z.array(ruleSchema).max(50).default([]) })
      .strict()
      .default({ rules: [] }),
    // prefault: the empty policy is parsed, so the defaults above (and the attempts rule) apply.
    retry: retrySchema.prefault({}),
    limits: limitsSchema.default({}),
    circuit: circuitSchema.prefault({}),
    dedupe: dedupeSchema.prefault({}),
    batch: batchSchema.optional(),
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
  source: z.string().optional(),
});
export type StoredConnection = z.infer<typeof storedConnectionSchema>;
