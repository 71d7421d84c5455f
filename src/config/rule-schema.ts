import { z } from 'zod';
import { verdictNames } from '../domain/delivery.js';
import { jsonPathProblem } from '../rules/json-path.js';
import { ruleRegexProblem } from '../rules/rule-regex.js';
import { HEADER_MATCH_FIELDS, JSON_MATCH_FIELDS, MATCHER_FIELDS, RULE_FIELDS } from './connection-fields.js';
import { durationMs } from './duration.js';
import { headerName } from './schema-parts.js';

/**
 * A connection's response rules: what an answer must look like (status, JSON, body, headers) and the
 * verdict it gets. Paths and regular expressions are compiled here, at validation, so a rule that
 * validates is a rule that is evaluated.
 */

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

/** Compiled with RE2 (linear-time matching): backreferences and lookaround are refused here. */
const regexSource = z
  .string()
  .max(512)
  .superRefine((source, ctx) => {
    const problem = ruleRegexProblem(source);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

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
      .superRefine((path, ctx) => {
        const problem = jsonPathProblem(path);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .meta(JSON_MATCH_FIELDS.path),
    exists: z.boolean().optional().meta(JSON_MATCH_FIELDS.exists),
    equals: jsonScalar.optional().meta(JSON_MATCH_FIELDS.equals),
    in: z.array(jsonScalar).min(1).max(100).optional().meta(JSON_MATCH_FIELDS.in),
    contains: jsonScalar.optional().meta(JSON_MATCH_FIELDS.contains),
  })
  .strict()
  .refine(
    (m) => [m.exists, m.equals, m.in, m.contains].filter((v) => v !== undefined).length === 1,
    'give exactly one of exists, equals, in or contains',
  );
export type JsonMatch = z.infer<typeof jsonMatch>;

export const matcherSchema = z
  .object({
    status: z
      .union([statusMatch, z.array(statusMatch).min(1)])
      .optional()
      .meta(MATCHER_FIELDS.status),
    bodyContains: z.string().min(1).max(512).optional().meta(MATCHER_FIELDS.bodyContains),
    bodyMatches: regexSource.optional().meta(MATCHER_FIELDS.bodyMatches),
    json: z
      .union([jsonMatch, z.array(jsonMatch).min(1).max(10)])
      .optional()
      .meta(MATCHER_FIELDS.json),
    header: z
      .object({
        name: headerName.meta(HEADER_MATCH_FIELDS.name),
        equals: z.string().optional().meta(HEADER_MATCH_FIELDS.equals),
        matches: regexSource.optional().meta(HEADER_MATCH_FIELDS.matches),
      })
      .strict()
      .optional()
      .meta(MATCHER_FIELDS.header),
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
    when: matcherSchema.optional().meta(RULE_FIELDS.when),
    then: verdictName.optional().meta(RULE_FIELDS.then),
    otherwise: verdictName.optional().meta(RULE_FIELDS.otherwise),
    after: durationMs.optional().meta(RULE_FIELDS.after),
    delayHeader: headerName.optional().meta(RULE_FIELDS.delayHeader),
    reason: z.string().max(200).optional().meta(RULE_FIELDS.reason),
    split: z.boolean().optional().meta(RULE_FIELDS.split),
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
