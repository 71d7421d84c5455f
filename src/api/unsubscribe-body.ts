import { domainToASCII } from 'node:url';
import { z } from 'zod';

/** Limits of the ingest body; documented in README.md ("Ingest API"). */
export const INGEST_LIMITS = {
  emailLength: 254,
  fieldLength: 256,
  attributes: 50,
  attributeKeyLength: 64,
  attributeValueLength: 1_024,
  /** Unknown top-level fields with scalar values are kept as attributes, up to this many. */
  extraFields: 10,
} as const;

const KNOWN_FIELDS = new Set(['email', 'campaign', 'occurredAt', 'source', 'attributes']);

/** Control, format (e.g. U+202E right-to-left override), unpaired surrogate and private-use characters. */
const CONTROL = /\p{C}/u;
/** RFC 6531 atext: RFC 5322's ASCII specials plus any letter, mark or digit of any script. */
const LOCAL_ATOM = /^[\p{L}\p{M}\p{N}!#$%&'*+/=?^_`{|}~-]+$/u;
const DNS_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

/**
 * One deliverable address as CRMs take it: a dot-atom local part (Unicode allowed, no quoting, no
 * comments, no display name) at a domain with at least two labels that is valid as IDNA. Stricter
 * than RFC 5322's grammar on purpose: quoted or bracketed forms are not what any CRM will accept.
 */
export function isEmailAddress(value: string): boolean {
  if (CONTROL.test(value)) return false;
  const at = value.lastIndexOf('@');
  if (at < 1 || at === value.length - 1) return false;
  const local = value.slice(0, at);
  if (local.length > 64 || !local.split('.').every((atom) => LOCAL_ATOM.test(atom))) return false;
  const ascii = domainToASCII(value.slice(at + 1));
  const labels = ascii.split('.');
  return (
    ascii.length > 0 &&
    ascii.length <= 253 &&
    labels.length >= 2 &&
    labels.every((label) => DNS_LABEL.test(label)) &&
    !/^\d+$/.test(labels.at(-1)!)
  );
}

// One address, no display name, no list: what a CRM's unsubscribe endpoint will take.
const required = (what: string) => (issue: { input?: unknown }) =>
  issue.input === undefined ? 'is required' : `must be ${what}`;

const emailSchema = z
  .string({ error: required('a string') })
  .transform((value) => value.trim())
  .pipe(
    z
      .string()
      .min(1, 'is required')
      .max(INGEST_LIMITS.emailLength, `must be at most ${INGEST_LIMITS.emailLength} characters`)
      .refine(isEmailAddress, 'must be a single valid email address'),
  );

const shortText = z
  .string({ error: required('a string') })
  .trim()
  .min(1, 'must not be empty')
  .max(INGEST_LIMITS.fieldLength, `must be at most ${INGEST_LIMITS.fieldLength} characters`)
  .refine((value) => !CONTROL.test(value), 'must not contain control characters');

const attributesSchema = z
  .record(
    z
      .string()
      .min(1)
      .max(
        INGEST_LIMITS.attributeKeyLength,
        `keys must be at most ${INGEST_LIMITS.attributeKeyLength} characters`,
      ),
    z
      .string({ error: 'values must be strings' })
      .max(
        INGEST_LIMITS.attributeValueLength,
        `values must be at most ${INGEST_LIMITS.attributeValueLength} characters`,
      ),
    { error: 'must be a flat map of strings' },
  )
  .refine(
    (map) => Object.keys(map).length <= INGEST_LIMITS.attributes,
    `at most ${INGEST_LIMITS.attributes} attributes`,
  );

const bodySchema = z.object({
  email: emailSchema,
  campaign: shortText.optional(),
  occurredAt: z.iso
    .datetime({ offset: true, error: 'must be an ISO 8601 date-time, e.g. 2026-11-23T10:00:00Z' })
    .optional(),
  source: shortText.optional(),
  attributes: attributesSchema.optional(),
});

export interface UnsubscribeBody {
  email: string;
  campaign?: string;
  occurredAt?: string;
  source?: string;
  attributes: Record<string, string>;
}

export type BodyCheck = { ok: true; body: UnsubscribeBody } | { ok: false; fields: Record<string, string> };

/**
 * Validates the ingest body and names every bad field. Partners often send a few fields of their own
 * beside `email`; up to `extraFields` unknown scalar fields are kept as attributes rather than refused.
 */
export function checkUnsubscribeBody(input: unknown): BodyCheck {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return { ok: false, fields: { body: 'must be a JSON map (object), e.g. {"email":"jane@example.com"}' } };
  }
  const fields: Record<string, string> = {};
  const extras: Record<string, string> = {};
  for (const [key, value] of Object.entries(input)) {
    if (KNOWN_FIELDS.has(key)) continue;
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
      if (
        String(value).length > INGEST_LIMITS.attributeValueLength ||
        key.length > INGEST_LIMITS.attributeKeyLength
      ) {
        fields[key] = 'unknown field is too long to keep as an attribute';
      } else extras[key] = String(value);
    } else fields[key] = 'unknown field (only scalar extra fields are accepted)';
  }
  if (Object.keys(extras).length > INGEST_LIMITS.extraFields) {
    for (const key of Object.keys(extras))
      fields[key] = `unknown field: at most ${INGEST_LIMITS.extraFields} extra fields are accepted`;
  }
  const parsed = bodySchema.safeParse(input);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const path = issue.path.join('.') || 'body';
      fields[path] ??= issue.message;
    }
  }
  if (!parsed.success || Object.keys(fields).length > 0) return { ok: false, fields };
  const { attributes, ...rest } = parsed.data;
  const merged = { ...extras, ...attributes };
  if (Object.keys(merged).length > INGEST_LIMITS.attributes) {
    return {
      ok: false,
      fields: { attributes: `at most ${INGEST_LIMITS.attributes} attributes, extra fields included` },
    };
  }
  return { ok: true, body: { ...rest, attributes: merged } };
}
